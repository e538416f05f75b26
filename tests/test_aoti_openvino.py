"""The aoti and openvino targets: streaming state kept by each runtime, planted faults diagnosed
as what they are, the precision knob, and one clear error for every file of the wrong kind."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import harness
from harness.checks.streaming import check_continuity, check_initial_state, check_reset
from harness.plugin.suites import evidence_for
from harness.run.eager import eager_reference
from harness.run.external import ArtifactOverride, external_artifact
from harness.targets import ArtifactError
from harness.targets.openvino_target import OPENVINO_PRECISION_ENV, openvino_precision
from tests.test_streaming_faults import _setup  # (case, module, calls, state names)

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture
def f32(monkeypatch: pytest.MonkeyPatch) -> None:
    """OpenVINO compiled with INFERENCE_PRECISION_HINT=f32: held to the tensor tolerances."""
    monkeypatch.setenv(OPENVINO_PRECISION_ENV, "f32")


def _continuity(target_name: str, runner, case, calls, names, module):
    """stream-continuity judged on its suite's evidence from ``runner`` (freshly loaded)."""
    eager = eager_reference(case, calls, names, module=module)
    return check_continuity(evidence_for("stream-continuity", harness.target(target_name), runner, eager))


def _scaled_conv_case(case_name: str, factor: float = 1.5):
    """The case with one convolution's weight scaled: a weight fault, not a state fault."""
    case = harness.case(case_name)

    def build() -> torch.nn.Module:
        module = case.build()
        conv = next(m for m in module.modules() if isinstance(m, torch.nn.Conv1d))
        with torch.no_grad():
            conv.weight.mul_(factor)
        return module

    return dataclasses.replace(case, build=build)


@pytest.mark.parametrize("target_name", ["aoti", "openvino"])
@pytest.mark.parametrize("case_name", ["cached_conv", "lstm_stream"])
def test_each_runtime_keeps_the_streaming_state(export_cache, f32, target_name, case_name):
    case, module, calls, names = _setup(case_name)
    target = harness.target(target_name)
    assert not target.approximate
    artifact = export_cache.get(case, target)
    with target.load(artifact) as runner:
        assert _continuity(target_name, runner, case, calls, names, module)
        if target_name == "openvino":  # OpenVINO's variables are readable, under the buffers' names
            runner.reset()
            assert set(runner.state()) == set(names)
    with target.load(artifact) as fresh:
        eager = eager_reference(case, calls, names, module=module)
        assert check_initial_state(evidence_for("stream-initial", target, fresh, eager))
    with target.load(artifact) as fresh:
        assert check_reset(evidence_for("stream-reset", target, fresh, eager_reference(case, calls)))


def test_two_loads_of_one_aoti_package_do_not_share_state(export_cache):
    case, module, calls, _ = _setup("cached_conv")
    target = harness.target("aoti")
    artifact = export_cache.get(case, target)
    first, second = target.load(artifact), target.load(artifact)
    for call in calls[:3]:
        first.run(*call)
    with torch.no_grad():
        expected = module(*calls[0])
    np.testing.assert_allclose(second.run(*calls[0])[0], expected.numpy(), atol=1e-5)


@pytest.mark.parametrize("target_name", ["aoti", "openvino"])
def test_a_weight_fault_is_not_called_a_state_fault(tmp_path, f32, target_name):
    case, module, calls, names = _setup("cached_conv")
    target = harness.target(target_name)
    artifact = target.export(_scaled_conv_case("cached_conv"), tmp_path)
    with target.load(artifact) as runner:
        result = _continuity(target_name, runner, case, calls, names, module)
    assert not result
    # wrong from the first chunk on, and no state hypothesis (dropped, advanced, swapped) fits
    assert result.diagnosis.startswith("outputs diverge from eager at chunk 0 (features: MISMATCH"), (
        result.diagnosis
    )
    assert "no state hypothesis" in result.report() and not result.diagnosis.startswith("state")


def test_an_ir_converted_from_the_plain_onnx_export_is_diagnosed_as_state_dropped(
    export_cache, tmp_path, f32
):
    """A user's IR made the usual way (plain ONNX export, convert_model): the cache write is
    gone, and the harness says so, not 'outputs differ'."""
    import openvino as ov

    case, module, calls, names = _setup("cached_conv")
    plain = export_cache.get(case, harness.target("onnx")).path
    user_ir = tmp_path / "mine.xml"
    ov.save_model(ov.convert_model(str(plain)), str(user_ir), compress_to_fp16=False)
    artifact = external_artifact(ArtifactOverride("cached_conv", "openvino", user_ir), tmp_path / "work")
    assert artifact.path.with_suffix(".bin").is_file()  # the weights travel with the IR
    with harness.target("openvino").load(artifact) as runner:
        result = _continuity("openvino", runner, case, calls, names, module)
    assert not result
    assert result.diagnosis.startswith("state dropped: every chunk sees the initial value of"), (
        result.diagnosis
    )


def test_a_users_onnx_file_runs_on_openvino_its_lifted_state_made_internal(export_cache, tmp_path, f32):
    """An ``.onnx`` given to openvino: a plain export is diagnosed as state dropped; a lifted-state
    one (``state.X`` / ``next_state.X``, as onnx-stateful writes) streams correctly, its state
    turned into OpenVINO variables at load."""
    case, module, calls, names = _setup("cached_conv")
    verdicts = {}
    for source in ("onnx", "onnx-stateful"):
        original = export_cache.get(case, harness.target(source)).path
        mine = tmp_path / source / "mine.onnx"
        mine.parent.mkdir()
        shutil.copyfile(original, mine)
        artifact = external_artifact(
            ArtifactOverride("cached_conv", "openvino", mine), tmp_path / source / "work"
        )
        with harness.target("openvino").load(artifact) as runner:
            verdicts[source] = _continuity("openvino", runner, case, calls, names, module)
            if source == "onnx-stateful":
                assert set(runner.state()) == set(names)
    assert verdicts["onnx"].diagnosis.startswith("state dropped"), verdicts["onnx"].diagnosis
    assert verdicts["onnx-stateful"], verdicts["onnx-stateful"].diagnosis


def test_the_precision_knob_decides_how_openvino_is_judged(monkeypatch, export_cache):
    import openvino as ov

    default = ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()
    monkeypatch.delenv(OPENVINO_PRECISION_ENV, raising=False)
    assert openvino_precision() == default
    assert harness.target("openvino").approximate == (default != "f32")
    monkeypatch.setenv(OPENVINO_PRECISION_ENV, "f32")
    assert openvino_precision() == "f32" and not harness.target("openvino").approximate
    case = harness.case("conv_mlp")
    target = harness.target("openvino")
    with target.load(export_cache.get(case, target)) as runner:
        assert runner.precision == "f32"
        x = case.example_inputs()
        with torch.no_grad():
            expected = case.build()(*x).numpy()
        assert np.abs(runner.run(*x)[0] - expected).max() < 1e-5
    monkeypatch.setenv(OPENVINO_PRECISION_ENV, "f64")
    with pytest.raises(ValueError, match="expected one of default, f32, bf16, f16"):
        openvino_precision()


def test_bf16_by_default_is_what_the_cpu_plugin_does_here(monkeypatch, export_cache):
    """Measured fact behind the README: where the plugin's default is bf16 a float32 model
    compiled with defaults is off by far more than float rounding, and f32 conforms."""
    import openvino as ov

    if ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name() == "f32":
        pytest.skip("this CPU's plugin computes in f32 by default")
    monkeypatch.delenv(OPENVINO_PRECISION_ENV, raising=False)
    case = harness.case("conv_mlp")
    target = harness.target("openvino")
    x = case.example_inputs()
    with torch.no_grad():
        expected = case.build()(*x).numpy()
    with target.load(export_cache.get(case, target)) as runner:
        assert runner.precision in ("bf16", "f16")
        assert np.abs(runner.run(*x)[0] - expected).max() > 1e-3


def _error(target: str, path: Path, work: Path, case: str = "cached_conv") -> str:
    with pytest.raises(ArtifactError) as info:
        external_artifact(ArtifactOverride(case, target, path), work)
    message = str(info.value)
    assert path.name in message and "Traceback" not in message and len(message.splitlines()) == 1, message
    return message


def test_files_of_the_wrong_kind_are_one_clear_error(export_cache, tmp_path):
    case = harness.case("cached_conv")
    program = export_cache.get(case, harness.target("torch-export")).path
    package = export_cache.get(case, harness.target("aoti")).path
    ir = export_cache.get(case, harness.target("openvino")).path
    as_package = tmp_path / "program.pt2"
    shutil.copyfile(program, as_package)
    assert "is a torch.export archive, not an AOTInductor package" in _error(
        "aoti", as_package, tmp_path / "w"
    )
    as_program = tmp_path / "package.pt2"
    shutil.copyfile(package, as_program)
    assert "is an AOTInductor package, not a torch.export archive" in _error(
        "torch-export", as_program, tmp_path / "w"
    )
    lonely = tmp_path / "lonely" / "model.xml"
    lonely.parent.mkdir()
    shutil.copyfile(ir, lonely)
    assert "its weights file model.bin is missing" in _error("openvino", lonely, tmp_path / "w")
    text = tmp_path / "notes.xml"
    text.write_text("<html>not a network</html>\n")
    assert "not an OpenVINO IR" in _error("openvino", text, tmp_path / "w")
    other = export_cache.get(harness.case("conv_mlp"), harness.target("openvino")).path
    message = _error("openvino", other, tmp_path / "w")
    assert "inputs are ['signal']" in message and "the case's are ['chunk']" in message, message


def test_aoti_without_a_cpp_compiler_is_a_skip_with_its_reason(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CXX", raising=False)
    reason = harness.target("aoti").missing_runtime()
    assert reason is not None and "no C++ compiler found" in reason


def test_the_report_says_which_precision_openvino_computed_in(inner_pytest, pytester):
    import json

    result = inner_pytest(
        "--openvino-precision=f32",
        "--conformance-targets=openvino",
        "-k",
        "cached_conv and equivalence",
        modules=("fixtures.toys",),
    )
    text = result.stdout.str()
    assert result.ret == 0, text
    assert "openvino computed in f32 (--openvino-precision): held to the tensor tolerances" in text
    report = json.loads((pytester.path / "reports" / "conformance.json").read_text())
    assert report["runtime_settings"]["openvino_precision"] == "f32"
    assert report["versions"]["openvino"] != "absent"


def test_the_harness_own_openvino_export_is_accepted_as_a_users_file(export_cache, tmp_path, f32):
    """Found by a new-user trial: the IR's sidecar names the lifted state it was made from, and
    --artifact parsed the IR as ONNX because of it."""
    case, module, calls, names = _setup("cached_conv")
    original = export_cache.get(case, harness.target("openvino")).path
    mine = tmp_path / "mine"
    mine.mkdir()
    for sibling in original.parent.iterdir():
        shutil.copyfile(sibling, mine / sibling.name)
    artifact = external_artifact(
        ArtifactOverride("cached_conv", "openvino", mine / original.name), tmp_path / "w"
    )
    with harness.target("openvino").load(artifact) as runner:
        assert _continuity("openvino", runner, case, calls, names, module)


def test_a_users_file_with_a_dynamic_chunk_needs_no_sidecar(export_cache, tmp_path, f32):
    """Found by a new-user trial: a file whose own input shapes leave the chunk dynamic was taken
    at the example chunk, and stream-chunks failed it. Files that state no shapes (AOTInductor)
    are still taken at the example chunk, and the cell says how to declare other sizes."""
    from harness.checks.streaming import check_chunk_sizes

    case, _, calls, _ = _setup("cached_conv")
    for source, as_target, name in (
        ("onnx-stateful", "openvino", "dyn.onnx"),
        ("torch-export", "torch-export", "dyn.pt2"),
    ):
        folder = tmp_path / source
        folder.mkdir()
        shutil.copyfile(export_cache.get(case, harness.target(source)).path, folder / name)
        artifact = external_artifact(ArtifactOverride("cached_conv", as_target, folder / name), folder / "w")
        assert artifact.meta["inputs"][0]["shape"][-1] == [32, 64, "chunk"], source
        target = harness.target(as_target)
        with target.load(artifact) as runner:
            evidence = evidence_for("stream-chunks", target, runner, eager_reference(case, calls))
            assert check_chunk_sizes(evidence), source
    package = tmp_path / "aoti" / "mine.pt2"
    package.parent.mkdir()
    shutil.copyfile(export_cache.get(case, harness.target("aoti")).path, package)
    artifact = external_artifact(ArtifactOverride("cached_conv", "aoti", package), tmp_path / "aoti" / "w")
    aoti = harness.target("aoti")
    with aoti.load(artifact) as runner:
        result = check_chunk_sizes(evidence_for("stream-chunks", aoti, runner, eager_reference(case, calls)))
    assert not result and "your file states no dynamic chunk" in result.diagnosis, result.diagnosis


def test_openvino_snapshots_are_recorded_at_f32_only(monkeypatch):
    target = harness.target("openvino")
    monkeypatch.setenv(OPENVINO_PRECISION_ENV, "bf16")
    assert "rerun with --openvino-precision=f32 --snapshot-update" in target.recording_problem()
    monkeypatch.setenv(OPENVINO_PRECISION_ENV, "f32")
    assert target.recording_problem() is None
    assert target.runtime_settings() == {
        "openvino_precision": "f32",
        "openvino_precision_source": "--openvino-precision",
    }


def test_a_dropped_state_is_named_at_bf16_too(export_cache, tmp_path, monkeypatch):
    """Judged by the task metric, a user's IR that lost PESTO's state is still diagnosed as state
    dropped (eager replayed with the state reset every chunk matches it by that metric)."""
    import openvino as ov

    monkeypatch.setenv(OPENVINO_PRECISION_ENV, "bf16")
    case, module, calls, names = _setup("pesto")
    plain = export_cache.get(case, harness.target("onnx")).path
    user_ir = tmp_path / "pesto.xml"
    ov.save_model(ov.convert_model(str(plain)), str(user_ir), compress_to_fp16=False)
    artifact = external_artifact(ArtifactOverride("pesto", "openvino", user_ir), tmp_path / "work")
    with harness.target("openvino").load(artifact) as runner:
        result = _continuity("openvino", runner, case, calls, names, module)
    assert not result
    assert result.diagnosis.startswith("state dropped: every chunk sees the initial value of hcqt"), (
        result.diagnosis
    )


def test_a_weight_fault_judged_by_the_task_metric_is_not_called_a_state_fault(tmp_path, monkeypatch):
    """The refutation of the bf16 'state dropped': PESTO with its pitch read one semitone off (the
    activations rolled by 3 more bins; noise on every encoder weight moved no frame past 50 cents),
    exported correctly stateful, fails by the metric and matches no state hypothesis."""
    monkeypatch.setenv(OPENVINO_PRECISION_ENV, "bf16")
    case, module, calls, names = _setup("pesto")

    def build() -> torch.nn.Module:
        planted = case.build()
        planted.roll_bins += 3  # 3 bins per semitone: every voiced frame 100 cents off
        return planted

    target = harness.target("openvino")
    artifact = target.export(dataclasses.replace(case, build=build), tmp_path)
    with target.load(artifact) as runner:
        result = _continuity("openvino", runner, case, calls, names, module)
    assert not result, result.diagnosis
    assert not result.diagnosis.startswith("state"), result.diagnosis
