"""Explicit state and per-call inputs through every streaming check, and diagnoses that are
refuted when they do not apply (a weight or output fault is never called a state fault)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

import harness
from harness.checks.streaming import check_continuity, check_initial_state, check_offline
from harness.core.errors import HarnessError
from harness.plugin.suites import evidence_for
from harness.run.eager import eager_reference

pytestmark = pytest.mark.filterwarnings("ignore")

STATE_WORDS = (
    "state dropped",
    "state advanced",
    "swapped",
    "does not start from the initial state",
    "state buffer",
)


class IgnoresState(torch.nn.Module):
    """An export that drops explicit state: it always computes from the initial (zero) state."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x, state, sr):
        return self.inner(x, torch.zeros_like(state), sr)


class Constant(torch.nn.Module):
    """An export whose framed output is a constant (with the right shapes)."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, *args):
        out = self.inner(*args)
        out = out if isinstance(out, tuple) else (out,)
        return (torch.full_like(out[0], 0.5), *out[1:]) if len(out) > 1 else torch.full_like(out[0], 0.5)


class NanOnQuietFrames(torch.nn.Module):
    """An export that returns NaN where the input chunk is quiet (the seen PESTO fault's shape)."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x, state, sr):
        prob, next_state = self.inner(x, state, sr)
        quiet = x.abs().mean() < 0.3
        return torch.where(quiet, torch.full_like(prob, float("nan")), prob), next_state


def _fp16_weights(module: torch.nn.Module) -> torch.nn.Module:
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(p.half().float())
    return module


def _planted(tmp_path, case_name: str, target_name: str, wrap, tag: str):
    """The case's module, wrapped by a fault, exported with the real exporter: (target, artifact)."""
    case = harness.case(case_name)
    target = harness.target(target_name)
    planted = replace(case, name=f"{case_name}_{tag}", build=lambda: wrap(case.build()).eval())
    artifact = target.export(planted, tmp_path / tag)
    return target, replace(artifact, case=case.name)


def _names(case_name: str) -> list[str]:
    case = harness.case(case_name)
    return harness.audit_state(case.build(), case.example_inputs()) and [
        b.name for b in harness.audit_state(case.build(), case.example_inputs())
    ]


def _judged(suite: str, check, case_name: str, planted):
    """``check`` on the suite's evidence from a freshly loaded runner of the planted artifact."""
    case = harness.case(case_name)
    calls = case.inputs[case.main_input]()
    target, artifact = planted
    with target.load(artifact) as runner:
        eager = eager_reference(case, calls, _names(case_name), module=case.build())
        return check(evidence_for(suite, target, runner, eager))


def _continuity(case_name: str, planted):
    return _judged("stream-continuity", check_continuity, case_name, planted)


def _initial(case_name: str, planted):
    return _judged("stream-initial", check_initial_state, case_name, planted)


def test_every_streaming_check_passes_on_eager_with_explicit_state_and_a_sample_rate(export_cache):
    case = harness.case("explicit_state_vad")
    calls = case.inputs["bursts"]()
    target = harness.target("eager")
    artifact = export_cache.get(case, target)
    for suite, check, eager in [
        (
            "stream-continuity",
            check_continuity,
            lambda: eager_reference(case, calls, [], module=case.build()),
        ),
        ("stream-offline", check_offline, lambda: eager_reference(case, calls, [])),
        (
            "stream-initial",
            check_initial_state,
            lambda: eager_reference(case, calls, [], module=case.build()),
        ),
    ]:
        with target.load(artifact) as runner:
            assert check(evidence_for(suite, target, runner, eager())), suite


def test_an_export_that_ignores_its_explicit_state_is_diagnosed_as_state_dropped(tmp_path):
    planted = _planted(tmp_path, "explicit_state_vad", "onnx", IgnoresState, "drops")
    result = _continuity("explicit_state_vad", planted)
    assert not result
    assert result.diagnosis.startswith("state dropped: every chunk sees the initial value of state"), result


@pytest.mark.parametrize(
    "case_name, target, wrap, tag",
    [
        ("explicit_state_vad", "onnx", _fp16_weights, "fp16"),
        ("explicit_state_vad", "onnx", Constant, "constant"),
        ("explicit_state_vad", "onnx", NanOnQuietFrames, "nan"),
        ("cached_conv", "onnx-stateful", _fp16_weights, "fp16"),
        ("lstm_stream", "onnx-stateful", _fp16_weights, "fp16"),
        ("lstm_stream", "onnx-stateful", Constant, "constant"),
    ],
)
def test_weight_and_output_faults_get_no_state_diagnosis(tmp_path, case_name, target, wrap, tag):
    planted = _planted(tmp_path, case_name, target, wrap, tag)
    continuity = _continuity(case_name, planted)
    initial = _initial(case_name, planted)
    assert not continuity
    assert "no state hypothesis" in " ".join(continuity.details)
    for result in (continuity, initial):
        assert not any(word in result.diagnosis for word in STATE_WORDS), result.diagnosis
    if not initial:  # (NaN on quiet frames leaves the loud first chunk right)
        assert initial.diagnosis.startswith("first chunk differs from eager's"), initial.diagnosis


def test_a_streaming_input_on_which_eager_is_constant_is_refused(export_cache):
    """A constant export would pass such an input (PESTO's constant 60 on the C4 sine)."""
    case = harness.case("cached_conv")
    calls = [(torch.zeros(1, 1, 32),)] * 6
    target = harness.target("eager")
    artifact = export_cache.get(case, target)
    with target.load(artifact) as runner:
        with pytest.raises(HarnessError, match="is constant over the frames of this input"):
            check_offline(evidence_for("stream-offline", target, runner, eager_reference(case, calls, [])))
    with target.load(artifact) as runner:
        eager = eager_reference(case, calls, ["cache"], module=case.build())
        with pytest.raises(HarnessError, match="is constant over the frames of this input"):
            check_continuity(evidence_for("stream-continuity", target, runner, eager))
