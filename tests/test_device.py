"""The device round trip: ``bundle`` writes a case's inputs and eager's outputs in the runtime's own
test format, a separate process that knows only the runtime runs them (tests/device_script.py,
as a phone or a board would), and ``judge`` judges what it recorded with each cell's own judge.

Every check must be able to fail: each round trip runs on a good export and on one exported from
the same model with one weight scaled by 2%, bundled with the correct eager's expected outputs.
ExecuTorch's own BundledProgram verification and an onnx_test_runner-style comparison must tell
the two apart, and so must ``judge``.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import harness
from harness.cli.bundle import bundle_format, write_bundle
from harness.run.recorded import NotRecorded, RecordedRunner, Recording

REPO_ROOT = Path(__file__).resolve().parents[1]
DEVICE = Path(__file__).with_name("device_script.py")

#: the weight scaled by 2% in each case's planted fault (PESTO's: its pitch and activations leave
#: the tolerances, measured 1.4e-3 semitones and 9.6e-3)
SCALED = {"cached_conv": None, "pesto": "encoder.fc.weight"}
#: the inputs bundled: PESTO's primary input only (184 calls: the streaming cells judge it)
INPUTS = {"cached_conv": None, "pesto": "a_major_scale"}


def _run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "120"}
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=timeout
    )


def _cli(*args: str, cache: Path) -> subprocess.CompletedProcess:
    return _run("-m", "harness", *args, f"--export-cache-dir={cache}")


def _device(command: str, bundle: Path, *flags: str) -> subprocess.CompletedProcess:
    """The device's side: numpy, onnx's TensorProto files and the runtime, nothing of the harness."""
    return _run(str(DEVICE), command, str(bundle), *flags)


def _planted(case: harness.ModelCase) -> harness.ModelCase:
    """The case's model with one weight scaled by 2% (not registered: exported, never judged)."""

    def build() -> torch.nn.Module:
        module = case.build()
        name = SCALED[case.name] or next(n for n, _ in module.named_parameters())
        with torch.no_grad():
            dict(module.named_parameters())[name].mul_(1.02)
        return module

    return dataclasses.replace(case, name=f"{case.name}_scaled", build=build, expected=())


_BUNDLES: dict[tuple[str, str, str], Path] = {}


def _bundle(export_cache, tmp_path_factory, case_name: str, target_name: str, kind: str) -> Path:
    """A bundle of ``case_name`` on ``target_name``: of the harness's export (``good``) or of the
    planted fault's (``faulty``), with eager's correct outputs either way; made once per session,
    in this process (the command itself is run by the tests below that need it)."""
    key = (case_name, target_name, kind)
    if key not in _BUNDLES:
        case, target = harness.case(case_name), harness.target(target_name)
        folder = tmp_path_factory.mktemp(f"{case_name}-{target_name}-{kind}") / "bundle"
        artifact = export_cache.get(_planted(case) if kind == "faulty" else case, target)
        inputs = [INPUTS[case_name]] if INPUTS[case_name] else None
        format_ = bundle_format(target, harness.targets())
        write_bundle(
            case, target, dataclasses.replace(artifact, case=case.name), folder, kind=format_, inputs=inputs
        )
        _BUNDLES[key] = folder
    return _BUNDLES[key]


def test_the_bundle_command_takes_a_users_file(export_cache, tmp_path):
    """``bundle --artifact``: a user's own lifted-state file (here the planted fault's export,
    with its sidecar and initial state beside it) bundled with the case's eager outputs."""
    case = harness.case("cached_conv")
    planted = export_cache.get(_planted(case), harness.target("onnx-stateful")).path
    folder = tmp_path / "bundle"
    done = _cli(
        "bundle",
        "cached_conv",
        "onnx-stateful",
        str(folder),
        f"--artifact={planted}",
        cache=export_cache.root,
    )
    assert done.returncode == 0, done.stderr
    assert (
        done.stdout.strip()
        == f"{folder}: model.onnx, 18 test sets (noise_stream: 12 calls, step_stream: 6 calls)"
    )
    assert sorted(p.name for p in folder.glob("test_data_set_17/*")) == [
        "input_0.pb", "input_1.pb", "output_0.pb", "output_1.pb"
    ]  # fmt: skip
    failed = _device("verify", folder)
    assert failed.returncode == 1 and "outputs differ" in failed.stdout


ROUND_TRIPS = [
    ("cached_conv", "onnx-stateful", "pb"),
    ("cached_conv", "executorch-xnnpack", "npz"),
    pytest.param("pesto", "onnx-stateful", "npz", marks=pytest.mark.slow),
    pytest.param("pesto", "executorch-xnnpack", "pb", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("case_name, target_name, written", ROUND_TRIPS)
def test_outputs_recorded_by_another_process_are_judged_pass_and_fail(
    export_cache, tmp_path_factory, case_name, target_name, written
):
    for kind, status in (("good", 0), ("faulty", 1)):
        bundle = _bundle(export_cache, tmp_path_factory, case_name, target_name, kind)
        recorded = _device("record", bundle, *(["--npz"] if written == "npz" else []))
        assert recorded.returncode == 0, recorded.stderr
        done = _cli("judge", case_name, target_name, f"--outputs={bundle}", cache=export_cache.root)
        assert done.returncode == status, f"{kind}: {done.stdout[-3000:]}\n{done.stderr[-2000:]}"
        assert "Traceback" not in done.stdout + done.stderr
        # what a device run cannot show is said, never passed
        assert "determinism, stream-reset (skip)" in done.stdout
        assert "not recorded on the device: the run after reset()" in done.stdout
        if kind == "good":
            assert "every cell on your files passed" in done.stdout
        else:
            assert "cells on your files did not pass" in done.stdout
            assert f"{case_name} / {target_name} / equivalence" in done.stdout


@pytest.mark.parametrize("case_name", ["cached_conv", pytest.param("pesto", marks=pytest.mark.slow)])
def test_executorch_bundled_program_verifies_the_good_program_and_fails_the_planted_fault(
    export_cache, tmp_path_factory, case_name
):
    good = _bundle(export_cache, tmp_path_factory, case_name, "executorch-xnnpack", "good")
    faulty = _bundle(export_cache, tmp_path_factory, case_name, "executorch-xnnpack", "faulty")
    passed = _device("bundled", good)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "test cases verified" in passed.stdout
    failed = _device("bundled", faulty)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert ".bpte: test case " in failed.stdout  # PESTO's first calls agree while its cache fills


@pytest.mark.parametrize("case_name", ["cached_conv", pytest.param("pesto", marks=pytest.mark.slow)])
def test_onnx_test_sets_pass_on_the_good_file_and_fail_on_the_planted_fault(
    export_cache, tmp_path_factory, case_name
):
    good = _bundle(export_cache, tmp_path_factory, case_name, "onnx-stateful", "good")
    faulty = _bundle(export_cache, tmp_path_factory, case_name, "onnx-stateful", "faulty")
    assert _device("verify", good).returncode == 0
    failed = _device("verify", faulty)
    assert failed.returncode == 1 and "outputs differ" in failed.stdout


@pytest.mark.slow
def test_a_plain_onnx_file_gets_eager_streamed_outputs_and_its_dropped_state_fails(
    export_cache, tmp_path_factory
):
    """A file without lifted state gets one test set per call against eager's stream: the plain
    dynamo export of cached_conv, which drops the cache (its declared expected failure), fails
    on the device as it fails in ``check``."""
    bundle = _bundle(export_cache, tmp_path_factory, "cached_conv", "onnx", "good")
    assert _device("verify", bundle).returncode == 1
    assert _device("record", bundle).returncode == 0
    done = _cli("judge", "cached_conv", "onnx", f"--outputs={bundle}", cache=export_cache.root)
    assert done.returncode == 1, done.stdout[-3000:]
    assert "cached_conv / onnx / equivalence" in done.stdout


def _one_line(done: subprocess.CompletedProcess, problem: str) -> None:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert problem in lines[0], lines[0]


def test_a_missing_or_malformed_outputs_folder_is_one_line_and_exit_2(
    export_cache, tmp_path_factory, tmp_path
):
    import shutil

    bundle = _bundle(export_cache, tmp_path_factory, "cached_conv", "onnx-stateful", "good")
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy, ignore=shutil.ignore_patterns("outputs"))
    judge = ("judge", "cached_conv", "onnx-stateful", f"--outputs={copy}")
    _one_line(_cli(*judge, cache=export_cache.root), f"{copy / 'outputs'}: no recorded outputs")
    assert _device("record", copy).returncode == 0
    truncated = copy / "outputs" / "test_data_set_3" / "output_0.pb"
    truncated.write_bytes(truncated.read_bytes()[:7])
    _one_line(_cli(*judge, cache=export_cache.root), f"{truncated}: not an ONNX TensorProto file")
    shutil.rmtree(copy / "outputs" / "test_data_set_3")
    _one_line(_cli(*judge, cache=export_cache.root), f"{copy / 'outputs' / 'test_data_set_3'}: missing")
    np.savez(copy / "outputs" / "test_data_set_3.npz", wrong=np.zeros(3))
    _one_line(_cli(*judge, cache=export_cache.root), "test_data_set_3.npz: no output 'features'")
    (copy / "manifest.json").write_text("{")
    _one_line(
        _cli(*judge, cache=export_cache.root), f"{copy / 'manifest.json'}: not a readable JSON manifest"
    )
    if not (bundle / "outputs").exists():  # the shared bundle: recorded by whichever test came first
        assert _device("record", bundle).returncode == 0
    _one_line(
        _cli("judge", "cached_conv", "onnx", f"--outputs={bundle}", cache=export_cache.root),
        "a bundle of cached_conv on onnx-stateful, not cached_conv on onnx",
    )


def test_bundle_names_the_targets_it_supports(export_cache, tmp_path):
    done = _cli("bundle", "cached_conv", "torchscript", str(tmp_path / "b"), cache=export_cache.root)
    _one_line(done, "torchscript: no device test format (bundle supports the ONNX and ExecuTorch targets: ")
    assert "executorch-xnnpack" in done.stderr and "onnx-stateful" in done.stderr


def test_a_run_the_device_did_not_record_is_a_skip_never_an_answer(export_cache, tmp_path_factory):
    """A recorded run answers each recorded stream once, from the start, by the exact input bytes:
    a replay after reset and another chunking are not recorded (a skip), never the same answer."""
    bundle = _bundle(export_cache, tmp_path_factory, "cached_conv", "onnx-stateful", "good")
    if not (bundle / "outputs").exists():
        assert _device("record", bundle).returncode == 0
    case = harness.case("cached_conv")
    artifact = export_cache.get(case, harness.target("onnx-stateful"))
    runner = RecordedRunner(artifact, Recording.read(bundle))
    calls = case.inputs["noise_stream"]()
    first = [runner.run(*call) for call in calls]
    with harness.target("onnx-stateful").load(artifact) as real:
        for call, answered in zip(calls, first):
            np.testing.assert_allclose(answered[0], real.run(*call)[0], rtol=1e-6, atol=1e-7)
    runner.reset()
    with pytest.raises(NotRecorded, match="a second run of 'noise_stream'"):
        runner.run(*calls[0])
    runner.reset()
    with pytest.raises(NotRecorded, match="matches no recorded call"):
        runner.run(torch.cat([calls[0][0], calls[1][0]], dim=-1))
