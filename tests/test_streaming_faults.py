"""Streaming: each planted state fault is reported with its own diagnosis."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

import harness
from harness.checks.streaming import (
    check_batch_isolation,
    check_continuity,
    check_initial_state,
    check_reset,
)
from harness.core.framing import rechunk, whole_signal
from harness.core.state import LiftedState, audit_state
from harness.plugin.suites import evidence_for
from harness.run.eager import eager_reference
from harness.targets import Artifact
from harness.targets.executorch_target import ExecuTorchRunner
from harness.targets.torch_targets import TorchScriptTarget

pytestmark = pytest.mark.filterwarnings("ignore")


def _setup(case_name: str):
    case = harness.case(case_name)
    module = case.build()
    calls = list(case.inputs[case.main_input]())
    names = [b.name for b in audit_state(module, case.example_inputs())]
    return case, module, calls, names


def test_audit_finds_the_state_buffers_and_leaves_them_untouched():
    case, module, _, _ = _setup("lstm_stream")
    before = {n: b.clone() for n, b in module.named_buffers()}
    audit = audit_state(module, case.example_inputs())
    assert [(b.name, b.shape, b.dtype) for b in audit] == [
        ("h", (2, 16), "float32"),
        ("c", (2, 16), "float32"),
    ]
    assert all(b.written_by_forward and b.changed_by_forward for b in audit)
    assert all(torch.equal(before[n], b) for n, b in module.named_buffers())
    assert audit_state(harness.case("conv_mlp").build(), harness.case("conv_mlp").example_inputs()) == []


def test_audit_of_a_model_torch_export_refuses_still_finds_its_state():
    class BranchyCache(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("total", torch.zeros(1))

        def forward(self, x):
            if x.sum() > 0:  # data-dependent: torch.export refuses it
                self.total.add_(x.sum())
            return x + self.total

    (found,) = audit_state(BranchyCache(), (torch.ones(3),))
    assert found.name == "total" and found.written_by_forward and found.changed_by_forward


def test_audit_tells_a_write_from_a_change_and_ignores_buffers_only_read():
    class Mixed(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("ring", torch.zeros(2, 4))  # written through a view
            self.register_buffer("flag", torch.ones(1))  # written with the value it holds
            self.register_buffer("count", torch.zeros(1))  # reassigned, not written in place
            self.register_buffer("window", torch.hann_window(4))  # only read

        def forward(self, x):
            self.ring[1].copy_(x * self.window)
            self.flag.fill_(1.0)
            self.count = self.count + 1
            return self.ring.sum(0)

    module = Mixed()
    found = {
        b.name: (b.written_by_forward, b.changed_by_forward) for b in audit_state(module, (torch.ones(4),))
    }
    assert found == {"ring": (True, True), "flag": (True, False), "count": (True, True)}
    assert torch.equal(module.ring, torch.zeros(2, 4)) and torch.equal(
        module.count, torch.zeros(1)
    )  # put back

    class LazyScale(torch.nn.Module):  # registers a buffer on its first call (lazy initialisation)
        def forward(self, x):
            if not hasattr(self, "scale"):
                self.register_buffer("scale", x.abs().max().reshape(1))
            return x / self.scale

    lazy = LazyScale()
    assert audit_state(lazy, (torch.ones(4),)) == []  # no error, and no state carried over
    assert not hasattr(lazy, "scale")  # left as it was: the next call initialises from its own input


def test_lifted_state_computes_what_the_stateful_module_computes():
    case, module, calls, names = _setup("lstm_stream")
    lifted = LiftedState(case.build(), names)
    state = lifted.initial_state()
    with torch.no_grad():
        for (x,) in calls:
            expected = module(x)
            actual, *state = lifted(x, *state)
            torch.testing.assert_close(actual, expected)
    assert all(
        torch.count_nonzero(b) == 0 for _, b in lifted.module.named_buffers()
    )  # wrapped module untouched


def test_rechunk_keeps_the_signal():
    calls = [(torch.arange(6.0).reshape(1, 6),), (torch.arange(6.0, 12.0).reshape(1, 6),)]
    case = harness.case("cached_conv")
    assert [c[0].tolist() for c in rechunk(case, calls, 4)] == [
        [[0, 1, 2, 3]],
        [[4, 5, 6, 7]],
        [[8, 9, 10, 11]],
    ]


def test_rechunk_and_whole_signal_cut_only_time_inputs():
    """A per-call scalar (the sample rate) and explicit state are never joined or cut: the seen
    crash was torch.cat of a 0-dim sample rate, reported as the model failing on eager."""
    case = harness.case("explicit_state_vad")
    calls = case.inputs["bursts"]()
    whole = whole_signal(case, calls)
    assert whole[0].shape == (1, 64 * len(calls))
    assert whole[1].shape == (2, 1, 16) and whole[2].dim() == 0 and int(whole[2]) == 16000
    pairs = rechunk(case, calls, 128)
    assert [tuple(c[0].shape) for c in pairs] == [(1, 128)] * (len(calls) // 2)
    assert all(c[2].dim() == 0 and c[1].shape == (2, 1, 16) for c in pairs)


@pytest.mark.parametrize("case_name", ["cached_conv", "lstm_stream"])
def test_plain_onnx_is_diagnosed_as_state_dropped(export_cache, case_name):
    case, module, calls, names = _setup(case_name)
    target = harness.target("onnx")
    with target.load(export_cache.get(case, target)) as runner:
        result = check_continuity(
            evidence_for(
                "stream-continuity", target, runner, eager_reference(case, calls, names, module=module)
            )
        )
    assert not result
    assert result.diagnosis.startswith("state dropped: every chunk sees the initial value of")
    assert all(name in result.diagnosis for name in names)
    assert "first wrong output at chunk 1" in result.diagnosis


def test_lifted_onnx_carries_the_state(export_cache):
    case, module, calls, names = _setup("lstm_stream")
    target = harness.target("onnx-stateful")
    with target.load(export_cache.get(case, target)) as runner:
        assert check_continuity(
            evidence_for(
                "stream-continuity", target, runner, eager_reference(case, calls, names, module=module)
            )
        )
        assert set(runner.state()) == set(names)


def test_tracing_without_a_state_reset_is_diagnosed_as_state_advanced(tmp_path):
    case, module, calls, names = _setup("cached_conv")
    planted = TorchScriptTarget()
    planted.reset_state_after_trace = False  # the fault: trace's forward call advanced the cache
    artifact = planted.export(case, tmp_path)
    with planted.load(artifact) as runner:
        initial = check_initial_state(
            evidence_for(
                "stream-initial", planted, runner, eager_reference(case, calls, names, module=module)
            )
        )
    with planted.load(artifact) as runner:
        continuity = check_continuity(
            evidence_for(
                "stream-continuity", planted, runner, eager_reference(case, calls, names, module=module)
            )
        )
    assert not initial and initial.diagnosis.startswith("state advanced by export")
    assert "initial value of 'cache' differs" in initial.report()
    assert not continuity and continuity.diagnosis.startswith("state advanced by export")


def test_the_real_torchscript_target_starts_from_the_initial_state(export_cache):
    case, module, calls, names = _setup("cached_conv")
    target = harness.target("torchscript")
    with target.load(export_cache.get(case, target)) as runner:
        assert check_initial_state(
            evidence_for("stream-initial", target, runner, eager_reference(case, calls, names, module=module))
        )


class RowMixingLstm(torch.nn.Module):
    """The planted fault: the state update averages over the batch, so streams leak into each other."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, frames):
        out = self.inner(frames)
        with torch.no_grad():
            self.inner.h.copy_(self.inner.h.mean(0, keepdim=True).expand_as(self.inner.h))
        return out


def test_state_shared_across_batch_rows_is_reported(tmp_path):
    case, _, calls, _ = _setup("lstm_stream")
    leaky = RowMixingLstm(case.build()).eval()
    path = tmp_path / "leaky.ts.pt"
    torch.jit.save(torch.jit.trace(leaky, case.example_inputs(), check_trace=False), str(path))
    artifact = Artifact(path, "torchscript", case.name, case.input_names, case.output_names)
    target = harness.target("torchscript")
    with target.load(artifact) as runner:
        result = check_batch_isolation(
            evidence_for("stream-batch", target, runner, eager_reference(case, calls))
        )
    assert not result
    assert result.diagnosis.startswith(
        "batch rows share state: changing rows 1.. changed row 0's 'scores' from chunk 1"
    )


def test_the_real_lstm_export_keeps_rows_independent(export_cache):
    case, _, calls, _ = _setup("lstm_stream")
    target = harness.target("executorch-xnnpack")
    with target.load(export_cache.get(case, target)) as runner:
        assert check_batch_isolation(
            evidence_for("stream-batch", target, runner, eager_reference(case, calls))
        )


class MethodOnlyResetRunner(ExecuTorchRunner):
    """The planted fault, a real pitfall: reloading only the method keeps the program's buffers."""

    def __init__(self, artifact: Artifact) -> None:
        super().__init__(artifact)
        self._program = self.method_program

    def _load_method(self):
        from executorch.runtime import Runtime

        program = getattr(self, "_program", None) or Runtime.get().load_program(self._program_bytes)
        self.method_program = program
        return program.load_method("forward")


def test_a_reset_that_does_not_reset_is_reported(export_cache):
    case, _, calls, _ = _setup("cached_conv")
    target = harness.target("executorch-portable")
    artifact = export_cache.get(case, target)
    with MethodOnlyResetRunner(artifact) as runner:
        result = check_reset(evidence_for("stream-reset", target, runner, eager_reference(case, calls)))
    assert not result
    assert result.diagnosis.startswith("reset() did not return to the initial state")
    with target.load(artifact) as runner:
        assert check_reset(evidence_for("stream-reset", target, runner, eager_reference(case, calls)))


def test_lifted_state_fed_back_swapped_is_diagnosed(export_cache, tmp_path):
    case, module, calls, names = _setup("lstm_stream")
    good = export_cache.get(case, harness.target("onnx-stateful"))
    for suffix in ("", ".json", ".state.npz"):
        shutil.copy(str(good.path) + suffix, tmp_path / (good.path.name + suffix))
    sidecar = tmp_path / (good.path.name + ".json")
    body = json.loads(sidecar.read_text())
    body["meta"]["state_inputs"].reverse()  # the fault: next_state.h goes into state.c and back
    sidecar.write_text(json.dumps(body))
    planted = Artifact.read_sidecar(tmp_path / good.path.name)
    target = harness.target("onnx-stateful")
    with target.load(planted) as runner:
        result = check_continuity(
            evidence_for(
                "stream-continuity", target, runner, eager_reference(case, calls, names, module=module)
            )
        )
    assert not result
    assert result.diagnosis.startswith("state buffers swapped: 'h' and 'c'")


def test_streamed_output_that_drifts_from_offline_is_reported(export_cache):
    from harness.checks.streaming import check_offline

    case, _, calls, _ = _setup("cached_conv")
    target = harness.target("onnx")
    with target.load(export_cache.get(case, target)) as runner:
        result = check_offline(
            evidence_for("stream-offline", target, runner, eager_reference(case, calls, []))
        )
    assert not result and result.diagnosis.startswith("features: MISMATCH")
    stateful = harness.target("onnx-stateful")
    with stateful.load(export_cache.get(case, stateful)) as runner:
        assert check_offline(
            evidence_for("stream-offline", stateful, runner, eager_reference(case, calls, []))
        )


def test_an_artifact_fixed_to_one_chunk_size_is_reported(tmp_path):
    from harness.checks.streaming import check_chunk_sizes
    from harness.targets.torch_targets import TorchExportTarget

    class StaticChunk(TorchExportTarget):
        """The fault: exported with static shapes, as torch.export does unless told otherwise."""

        def _export_impl(self, module, example, case, path):
            torch.export.save(torch.export.export(module, example, strict=False), str(path))
            return None

    case, _, calls, _ = _setup("cached_conv")
    planted = StaticChunk()
    with planted.load(planted.export(case, tmp_path)) as runner:
        result = check_chunk_sizes(
            evidence_for("stream-chunks", planted, runner, eager_reference(case, calls))
        )
    assert result.passed and not result.applies  # judged on what it admits: a skip that says so
    assert (
        result.diagnosis
        == "fixed at a chunk of 32: only 32 admitted (chunk 64 is not: exported with static shapes)"
    )


@pytest.mark.parametrize(
    "target_name", ["torch-export", "onnx-stateful", "executorch-portable", "executorch-xnnpack"]
)
def test_streaming_exports_take_every_admitted_chunk_size(export_cache, target_name):
    from harness.checks.streaming import check_chunk_sizes

    case, _, calls, _ = _setup("cached_conv")
    target = harness.target(target_name)
    artifact = export_cache.get(case, target)
    assert artifact.meta["chunk_dynamic"] is True
    assert artifact.meta["inputs"][0]["shape"][-1] == [32, 64, "chunk"]
    with target.load(artifact) as runner:
        assert check_chunk_sizes(evidence_for("stream-chunks", target, runner, eager_reference(case, calls)))


def test_a_refused_dynamic_chunk_is_reported_with_the_exporters_reason(export_cache):
    """lstm_stream loops over the chunk's frames in Python: torch.export specialises the chunk,
    the export falls back to the fixed chunk and the cell says why (not 'static shapes?')."""
    from harness.checks.streaming import check_chunk_sizes

    case, _, calls, _ = _setup("lstm_stream")
    target = harness.target("torch-export")
    artifact = export_cache.get(case, target)
    assert artifact.meta["chunk_dynamic"] is False
    assert "specialized it to be a constant (4)" in artifact.meta["chunk_fixed_because"]
    with target.load(artifact) as runner:
        result = check_chunk_sizes(
            evidence_for("stream-chunks", target, runner, eager_reference(case, calls))
        )
    assert result.passed and not result.applies
    assert result.diagnosis.startswith("fixed at a chunk of 4: only 4 admitted (chunk 2 is not: UserError: ")
    assert "specialized it to be a constant (4)" in result.diagnosis
