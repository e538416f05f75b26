"""Regression gating: exports made elsewhere, golden snapshots, and the conformance baseline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import harness
from harness.run.external import ArtifactOverride, external_artifact
from harness.targets import ArtifactError

pytestmark = pytest.mark.filterwarnings("ignore")

TOYS = ("fixtures.toys",)


def _perturbed_onnx(tmp_path: Path) -> Path:
    import onnx
    from onnx import numpy_helper

    case = harness.case("conv_mlp")
    artifact = harness.target("onnx").export(case, tmp_path / "export")
    model = onnx.load(str(artifact.path))
    weight = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) + 1e-3, weight.name))
    path = tmp_path / "user-model.onnx"
    onnx.save(model, str(path))
    return path


def _onnx_with_input_names(tmp_path: Path, case: harness.ModelCase, names: list[str]) -> Path:
    path = tmp_path / "renamed.onnx"
    torch.onnx.export(case.build(), case.example_inputs(), str(path), dynamo=True, input_names=names)
    return path


def test_renamed_input_is_rejected_with_a_clear_message(tmp_path):
    case = harness.case("conv_mlp")
    path = _onnx_with_input_names(tmp_path, case, ["x"])
    with pytest.raises(ArtifactError) as info:
        external_artifact(ArtifactOverride("conv_mlp", "onnx", path), tmp_path / "work")
    message = str(info.value)
    assert message.startswith(str(path)) and "does not fit case 'conv_mlp' on onnx" in message
    assert "inputs differ: the graph has ['x'], the case declares ['signal']" in message


def test_reordered_inputs_are_rejected(tmp_path):
    class Pair(torch.nn.Module):
        def forward(self, a, b):
            return a * 2 + b

    a, b = torch.ones(2, 3), torch.zeros(2, 3)
    case = harness.register(
        harness.ModelCase(
            name="planted_pair",
            build=lambda: Pair().eval(),
            example_inputs=lambda: (a, b),
            input_names=("a", "b"),
            output_names=("y",),
            inputs={"ones": lambda: [(a, b)]},
        )
    )
    try:
        path = _onnx_with_input_names(tmp_path, case, ["b", "a"])
        with pytest.raises(
            ArtifactError,
            match=r"inputs are reordered: the graph has \['b', 'a'\], the case declares \['a', 'b'\]",
        ):
            external_artifact(ArtifactOverride("planted_pair", "onnx", path), tmp_path / "work")
    finally:
        harness.core.registry.unregister("planted_pair")


def test_wrong_fixed_dimension_is_named(tmp_path):
    case = harness.case("conv_mlp")
    wide = (torch.zeros(2, 1, 80),)  # an 80-sample input where the case feeds 64

    class Wrapped(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = torch.nn.Linear(80, 4)

        def forward(self, signal):
            return self.inner(signal).flatten(1)[:, :4]

    path = tmp_path / "wide.onnx"
    torch.onnx.export(
        Wrapped().eval(), wide, str(path), dynamo=True, input_names=["signal"], output_names=["logits"]
    )
    with pytest.raises(
        ArtifactError, match="input 'signal' dimension 2 is 80 in the graph, 64 in the case's example"
    ):
        external_artifact(ArtifactOverride(case.name, "onnx", path), tmp_path / "work")


def test_a_misfit_artifact_stops_the_run_before_anything_runs(inner_pytest, tmp_path):
    path = _onnx_with_input_names(tmp_path, harness.case("conv_mlp"), ["x"])
    result = inner_pytest("--artifact", f"conv_mlp:onnx={path}", modules=TOYS)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "inputs differ: the graph has ['x'], the case declares ['signal']" in result.stderr.str()
    bad = inner_pytest("--artifact", "conv_mlp:tflite=x.tflite", modules=TOYS)
    assert bad.ret == pytest.ExitCode.USAGE_ERROR and "no target named 'tflite'" in bad.stderr.str()


def test_slightly_perturbed_artifact_given_with_artifact_fails(inner_pytest, tmp_path):
    path = _perturbed_onnx(tmp_path)
    result = inner_pytest(
        "--artifact", f"conv_mlp:onnx={path}", "--conformance-targets", "onnx", "-k", "conv_mlp", modules=TOYS
    )
    result.assert_outcomes(passed=1, failed=3)  # determinism passes: the perturbed file is deterministic
    text = " ".join(result.stdout.str().split())  # the terminal wraps long reasons
    # a grouped reason gives each input its own cause
    assert "conv_mlp/onnx: equivalence [noise,zeros,loud]: noise: onnx vs eager: logits: MISMATCH" in text
    assert "; zeros: onnx vs eager: logits: MISMATCH" in text and "; loud: onnx vs eager" in text


PLANTED = """
import torch
from harness import ModelCase, register

class Doubler(torch.nn.Module):
    def forward(self, x):
        return x * 2.0

x = torch.arange(6.0).reshape(2, 3)
register(ModelCase(
    name="doubler", build=lambda: Doubler().eval(), example_inputs=lambda: (x,),
    input_names=("x",), output_names=("y",), inputs={"ramp": lambda: [(x,)]},
))
"""


def test_hand_edited_snapshot_fails_with_a_readable_diff_and_is_not_rewritten(inner_pytest, pytester):
    args = ("--conformance-targets", "eager", "-p", "no:xdist")
    first = inner_pytest(*args, "--snapshot-update", cases=PLANTED, suites=("test_golden",))
    first.assert_outcomes(passed=1, skipped=1)  # the target half has no cell: eager only
    (snapshot,) = (pytester.path / "golden" / "snapshots").rglob("*.npz")
    assert (snapshot.parent / (snapshot.name + ".json")).is_file()
    # one folder whatever file imports the suite (here test_suites.py), so `pytest`, `pytest
    # --pyargs harness.suites` and `export-conformance check` find the same snapshots
    assert snapshot.parent.name == "test_golden", snapshot
    with np.load(snapshot) as stored:
        data = {k: stored[k] for k in stored.files}
    data["y"] = data["y"] + 0.5  # edited by hand
    np.savez_compressed(snapshot, **data)
    edited = snapshot.read_bytes()

    second = inner_pytest(*args, cases=PLANTED, suites=("test_golden",))
    second.assert_outcomes(failed=1, skipped=1)
    text = second.stdout.str()
    assert "tensor snapshot differs beyond tolerance" in text
    assert "y: MISMATCH: max abs err 0.5" in text and "6/6 elements outside" in text
    assert snapshot.read_bytes() == edited  # never rewritten without --snapshot-update
    # a verdict on the export (fail, with the mismatch as its reason), not a harness error
    report = json.loads((pytester.path / "reports" / "conformance.json").read_text())
    (row,) = [r for r in report["rows"] if r["target"] == "eager"]
    cell = row["suites"]["golden"]
    assert cell["status"] == "fail", cell
    assert "differs from its golden snapshot: y: MISMATCH" in next(iter(cell["inputs"].values()))["reason"], (
        cell
    )


def test_baseline_gate_fails_on_a_regression_an_improvement_and_a_removed_case(
    inner_pytest, pytester, tmp_path
):
    select = ("--conformance-targets", "onnx", "-k", "conv_mlp")
    inner_pytest(*select, "--conformance-baseline-update", modules=TOYS).assert_outcomes(passed=4)
    baseline = pytester.path / "golden" / "conformance-baseline.json"
    body = json.loads(baseline.read_text())
    assert body["cells"]["conv_mlp"]["onnx"]["equivalence"] == {
        "noise": "pass",
        "zeros": "pass",
        "loud": "pass",
    }

    same = inner_pytest(*select, modules=TOYS)
    assert same.ret == 0 and "conformance baseline gate passed" in same.stdout.str()

    regressed = inner_pytest(
        *select,
        f"--artifact=conv_mlp:onnx={_perturbed_onnx(tmp_path)}",
        "--conformance-baseline-with-artifacts",  # a user's file is gated on the baseline only when asked
        modules=TOYS,
    )
    assert regressed.ret == pytest.ExitCode.TESTS_FAILED
    assert "conformance baseline gate FAILED" in regressed.stdout.str()
    assert "conv_mlp / onnx / equivalence [noise]: pass -> fail" in regressed.stdout.str()

    body["cells"]["conv_mlp"]["onnx"]["determinism"]["noise"] = "xfail"
    body["cells"]["retired_model"] = {"onnx": {"equivalence": {"x": "pass"}}}
    baseline.write_text(json.dumps(body))
    changed = inner_pytest(*select, modules=TOYS)
    assert changed.ret == pytest.ExitCode.TESTS_FAILED  # every test passed: the gate alone fails the run
    out = changed.stdout.str()
    assert "conv_mlp / onnx / determinism [noise]: xfail -> pass" in out
    assert (
        "retired_model / onnx / equivalence [x]: pass -> (removed: case or target no longer registered)"
        in out
    )


def test_approximate_snapshots_are_judged_by_the_task_metric():
    from harness.checks.golden import TensorSnapshot, tensor_snapshot_extension
    from harness.core.judge import Judge
    from harness.metrics import pitch_error_cents

    metric = pitch_error_cents(threshold=25.0, statistic="median")
    judge = Judge("snapshot", {}, harness.tol(1e-6), metric=metric, by_metric=True)
    extension = tensor_snapshot_extension(judge)()
    snap = TensorSnapshot({"pitch": np.array([60.0, 62.0, 64.0]), "confidence": np.ones(3)})
    near = TensorSnapshot({"pitch": np.array([60.1, 62.1, 64.1]), "confidence": np.ones(3)})
    far = TensorSnapshot({"pitch": np.array([61.0, 63.0, 65.0]), "confidence": np.ones(3)})
    stored = extension.serialize(snap)
    assert extension.matches(serialized_data=extension.serialize(near), snapshot_data=stored)  # 10 cents
    assert not extension.matches(serialized_data=extension.serialize(far), snapshot_data=stored)  # 100 cents
    diff = "\n".join(extension.diff_lines(extension.serialize(far), stored))
    assert "judged by its task metric: median pitch error on voiced frames: OVER THRESHOLD: 100 cents" in diff


def test_a_snapshot_in_an_older_folder_is_pointed_at_not_silently_rerecorded(inner_pytest, pytester):
    """Snapshots once lived under the importing file's name: the cell names the file to move."""
    args = ("--conformance-targets", "eager", "-p", "no:xdist")
    inner_pytest(*args, "--snapshot-update", cases=PLANTED, suites=("test_golden",))
    root = pytester.path / "golden" / "snapshots"
    (old := root / "test_suites").mkdir()
    for path in list((root / "test_golden").iterdir()):
        path.rename(old / path.name)
    again = inner_pytest(*args, cases=PLANTED, suites=("test_golden",))
    text = " ".join(again.stdout.str().split())
    assert again.ret == pytest.ExitCode.TESTS_FAILED
    assert "is stored where an older version kept it: move" in text and "test_suites" in text
    assert "golden snapshots that belong to no cell" in text  # listed as misplaced too


ABSENT_RUNTIME_TARGET = """
from harness import register_target
from harness.targets.torch_targets import TorchScriptTarget


class AbsentRuntime(TorchScriptTarget):
    name = "absent-runtime"
    requires = ("no_such_runtime_module_here",)


register_target(AbsentRuntime())
"""


def test_cells_of_a_runtime_that_is_not_installed_are_neither_recorded_nor_compared(inner_pytest, pytester):
    """A missing runtime is a fact of the machine: its cells are skips naming it, the baseline
    written beside them holds none of them, and a later run (where the runtime may be there or
    not) is gated on the cells that ran, saying how many it left out."""
    select = ("--conformance-targets", "torchscript,absent-runtime", "-k", "conv_mlp and equivalence")
    written = inner_pytest(
        *select, "--conformance-baseline-update", modules=TOYS, cases=ABSENT_RUNTIME_TARGET
    )
    assert written.ret == 0, written.stdout.str()[-3000:]
    assert "no_such_runtime_module_here" in written.stdout.str()
    body = json.loads((pytester.path / "golden" / "conformance-baseline.json").read_text())
    assert "torchscript" in body["cells"]["conv_mlp"] and "absent-runtime" not in body["cells"]["conv_mlp"]
    again = inner_pytest(*select, modules=TOYS, cases=ABSENT_RUNTIME_TARGET)
    assert again.ret == 0, again.stdout.str()[-3000:]
    said = again.stdout.str()
    assert "conformance baseline gate passed" in said and "not gated: the runtime of absent-runtime" in said
