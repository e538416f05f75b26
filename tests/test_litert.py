"""The LiteRT targets (``litert``, ``litert-stateful``, ``litert-int8``): the plain conversion's
dropped state diagnosed as such and refuted on the lifted one, a weight fault not called a state
fault, localisation through the interpreter's preserved tensors, and a user's ``.tflite`` gated
with one clear line for a wrong file. Skipped where the ``litert`` extra is not installed."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import harness
from harness.checks.localize import localize
from harness.checks.streaming import check_continuity, check_initial_state, check_reset
from harness.plugin.suites import evidence_for
from harness.run.eager import eager_reference
from harness.targets.litert_target import module_of_tensor
from tests.test_aoti_openvino import _scaled_conv_case
from tests.test_localize import _case as conv_stack_case
from tests.test_streaming_faults import _setup  # (case, module, calls, state names)

pytestmark = pytest.mark.filterwarnings("ignore")

REPO = Path(__file__).resolve().parents[1]


def _runtime() -> None:
    reason = harness.target("litert-int8").missing_runtime()
    if reason:
        pytest.skip(reason)


def test_tensor_names_are_placed_in_the_eager_modules():
    """litert_torch's ``<root>/<class>_<attribute>/...;N`` names, attributes with underscores
    and the lifted wrapper's ``module.`` prefix resolved against eager's module paths."""
    known = {"", "conv", "hcqt", "hcqt.cqt_kernels", "hcqt.cqt_kernels.0", "hcqt.cqt_kernels.0.conv"}
    lifted = (
        "harness.core.state.LiftedState/fixtures.toys.CachedConv_module/torch.nn.modules.conv.Conv1d_conv;3"
    )
    assert module_of_tensor(lifted, known) == "conv"
    assert module_of_tensor("harness.core.state.LiftedState/fixtures.toys.CachedConv_module;2", known) == ""
    deep = (
        "x.Pesto/pesto.utils.hcqt.HarmonicCQT_hcqt/torch.nn.modules.container.ModuleList_cqt_kernels/"
        "pesto.utils.hcqt.CQT_0/pesto.utils.cached_conv.CachedConv1d_conv;7"
    )
    assert module_of_tensor(deep, known) == "hcqt.cqt_kernels.0.conv"
    for unplaced in ("arith.constant", "serving_default_args_0", "serving_default_output_0_output"):
        assert module_of_tensor(unplaced, known) is None


@pytest.mark.parametrize("case_name", ["cached_conv", "lstm_stream"])
def test_the_plain_conversion_drops_the_state_and_the_lifted_one_keeps_it(export_cache, case_name):
    _runtime()
    case, module, calls, names = _setup(case_name)
    plain_target = harness.target("litert")
    plain = export_cache.get(case, plain_target)
    with plain_target.load(plain) as runner:
        dropped = check_continuity(
            evidence_for(
                "stream-continuity", plain_target, runner, eager_reference(case, calls, names, module=module)
            )
        )
    assert not dropped
    assert dropped.diagnosis.startswith("state dropped: every chunk sees the initial value of"), (
        dropped.diagnosis
    )

    lifted_target = harness.target("litert-stateful")
    lifted = export_cache.get(case, lifted_target)
    assert lifted.meta["state_names"] == names
    with lifted_target.load(lifted) as runner:
        kept = check_continuity(
            evidence_for(
                "stream-continuity", lifted_target, runner, eager_reference(case, calls, names, module=module)
            )
        )
        assert kept, kept.report()  # the diagnosis refuted: the lifted file streams like eager
        runner.reset()
        assert set(runner.state()) == set(names)
    with lifted_target.load(lifted) as fresh:
        assert check_initial_state(
            evidence_for("stream-initial", lifted_target, fresh, eager_reference(case, calls, names))
        )
    with lifted_target.load(lifted) as fresh:
        assert check_reset(evidence_for("stream-reset", lifted_target, fresh, eager_reference(case, calls)))


def test_a_weight_fault_is_not_called_a_state_fault(tmp_path):
    _runtime()
    case, module, calls, names = _setup("cached_conv")
    target = harness.target("litert-stateful")
    artifact = target.export(_scaled_conv_case("cached_conv", factor=1.02), tmp_path)
    with target.load(artifact) as runner:
        result = check_continuity(
            evidence_for(
                "stream-continuity", target, runner, eager_reference(case, calls, names, module=module)
            )
        )
    assert not result
    assert result.diagnosis.startswith("outputs diverge from eager at chunk 0 (features: MISMATCH"), (
        result.diagnosis
    )
    assert "no state hypothesis" in result.report() and not result.diagnosis.startswith("state")


@pytest.mark.parametrize("planted", [True, False])
def test_localisation_names_the_planted_module_and_none_on_a_correct_file(tmp_path, planted):
    _runtime()
    target = harness.target("litert")
    artifact = target.export(conv_stack_case(planted), tmp_path)
    found = localize(conv_stack_case(), target, artifact)
    if not planted:
        assert found.first is None, found.render()
        return
    assert found.first is not None, found.render()
    # the converter fuses the planted convolution with the ReLU after it: the first value that
    # shows the fault is the fused op's, and the report says which module was folded into it
    assert found.first.path == "features.3", found.render()
    assert "fused by the converter" in found.render() and "features.2 into features.3" in found.render()
    assert "placed in modules by litert_torch's tensor names" in found.render()
    assert "differ from the XNNPACK run's by" in found.render()


def test_the_int8_file_is_quantized_and_judged_by_the_task_metric(export_cache):
    _runtime()
    case = harness.case("pesto")
    int8, float_file = harness.target("litert-int8"), harness.target("litert-stateful")
    assert int8.approximate and not float_file.approximate
    quantized = export_cache.get(case, int8)
    floating = export_cache.get(case, float_file)
    assert quantized.path.stat().st_size < 0.4 * floating.path.stat().st_size  # int8 weights
    assert quantized.meta["quantization"].startswith("ai_edge_quantizer dynamic_wi8_afp32")
    calls = case.inputs["a_major_scale"]()[:30]
    with int8.load(quantized) as runner:
        pitch = np.concatenate([runner.run(*call)[0].reshape(-1) for call in calls])
    assert np.isfinite(pitch).all()


def _check(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness", "check", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_a_users_tflite_files_are_gated(export_cache, tmp_path):
    """From a folder of the user's own: the lifted file with its sidecar passes (exit 0), the
    plain conversion fails with the state named (exit 1), an ONNX file given as a .tflite and a
    truncated .tflite are one line each naming the file (exit 2)."""
    _runtime()
    case = harness.case("cached_conv")
    files = {}
    for source in ("litert", "litert-stateful"):
        original = export_cache.get(case, harness.target(source))
        folder = tmp_path / source
        folder.mkdir()
        for path in original.files:
            shutil.copy(path, folder / path.name)
        sidecar = original.path.with_name(original.path.name + ".json")
        shutil.copy(sidecar, folder / sidecar.name)
        files[source] = folder / original.path.name
    lifted = _check("cached_conv", f"--artifact=litert-stateful={files['litert-stateful']}", cwd=REPO)
    assert lifted.returncode == 0, lifted.stdout + lifted.stderr
    plain = _check("cached_conv", f"--artifact=litert={files['litert']}", cwd=REPO)
    assert plain.returncode == 1, plain.stdout + plain.stderr
    assert "state dropped" in plain.stdout

    onnx_file = export_cache.get(case, harness.target("onnx")).path
    wrong = tmp_path / "model.tflite"
    shutil.copy(onnx_file, wrong)
    refused = _check("cached_conv", f"--artifact=litert={wrong}", cwd=REPO)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    said = [line for line in refused.stderr.splitlines() if line.strip()]
    assert len(said) == 1 and str(wrong) in said[0] and "not a LiteRT (.tflite) model" in said[0], said
    assert "Traceback" not in refused.stderr + refused.stdout

    truncated = tmp_path / "cut.tflite"
    whole = files["litert"].read_bytes()
    truncated.write_bytes(whole[: len(whole) // 2])
    cut = _check("cached_conv", f"--artifact=litert={truncated}", cwd=REPO)
    assert cut.returncode == 2, cut.stdout + cut.stderr
    said = [line for line in cut.stderr.splitlines() if line.strip()]
    assert len(said) == 1 and str(truncated) in said[0], said


def test_a_lifted_tflite_without_a_sidecar_is_told_to_name_its_state(export_cache, tmp_path):
    """A .tflite names its state tensors by position only: without a sidecar the harness cannot
    tell state from input, and says so in one line."""
    _runtime()
    case = harness.case("cached_conv")
    original = export_cache.get(case, harness.target("litert-stateful"))
    bare = tmp_path / "bare.tflite"
    shutil.copy(original.path, bare)
    result = _check("cached_conv", f"--artifact=litert-stateful={bare}", cwd=REPO)
    assert result.returncode == 2, result.stdout + result.stderr
    said = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(said) == 1 and "sidecar" in said[0], said
    sidecar = json.loads(original.path.with_name(original.path.name + ".json").read_text())
    assert sidecar["meta"]["state_inputs"] == ["args_1"]


def _state_kind_case(name: str) -> harness.ModelCase:
    """One of tests/state_kinds.py's toys as a case, built here (not registered: the session's
    matrix stays as collected)."""
    from tests import state_kinds

    return harness.ModelCase(
        name=name,
        build=lambda: state_kinds._seeded(state_kinds.MODELS[name]),
        example_inputs=lambda: state_kinds._chunks(1, 1)[0],
        input_names=("x",),
        output_names=("y",),
        inputs={"noise": lambda: state_kinds._chunks(2)},
        tolerance={"default": harness.tol(1e-5, 1e-5)},
        streaming=harness.StreamingSpec(chunk=state_kinds.CHUNK, input_time_axis=2, output_time_axis=2),
    )


@pytest.mark.parametrize(
    "name", ["state_buffer", "state_attribute", "state_in_place", "state_lazy_buffer", "state_counter"]
)
def test_every_kind_of_state_streams_on_the_lifted_file_and_the_plain_one_names_it(tmp_path, name):
    """Found from outside, on the built wheel: a Python counter carried as a buffer starts as int64,
    which the converter writes as int32; the runner feeds the state as the signature declares it
    (it raised on every call before). The plain conversion drops each kind or refuses it."""
    _runtime()
    case = _state_kind_case(name)
    calls = list(case.inputs["noise"]())
    lifted_target = harness.target("litert-stateful")
    lifted = lifted_target.export(case, tmp_path / "lifted")
    with lifted_target.load(lifted) as runner:
        kept = check_continuity(
            evidence_for("stream-continuity", lifted_target, runner, eager_reference(case, calls))
        )
    assert kept, kept.report()
    plain_target = harness.target("litert")
    try:
        plain = plain_target.export(case, tmp_path / "plain")
    except harness.ExportError as refused:  # an attribute written in place: "Constant total is mutated"
        assert name == "state_in_place" and "is mutated in the forward method" in str(refused), refused
        return
    with plain_target.load(plain) as runner:
        dropped = check_continuity(
            evidence_for("stream-continuity", plain_target, runner, eager_reference(case, calls))
        )
    assert not dropped
    assert dropped.diagnosis.startswith("state dropped"), dropped.diagnosis
