"""Fuzzing users' files: corruptions of every artifact format the targets write (byte flips,
truncations, header edits, files of another format), and of sidecars and state files, each end
as one clear error naming the file or as an honest verdict: never an uncaught exception, a hang
or an aborted process. A few examples per format under the ci profile, hundreds under nightly."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import harness

pytestmark = [pytest.mark.filterwarnings("ignore"), pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
NIGHTLY = "nightly" in settings.get_current_profile_name()
EXAMPLES = 200 if NIGHTLY else 3

#: (case, target): every format the targets write, a lifted-state ONNX with its sidecar and state
FORMATS = [
    ("conv_mlp", "onnx"),
    ("cached_conv", "onnx-stateful"),
    ("conv_mlp", "torchscript"),
    ("conv_mlp", "torch-export"),
    ("conv_mlp", "executorch-portable"),
    ("conv_mlp", "aoti"),  # a zip with a compiled shared library inside
    ("conv_mlp", "openvino"),  # the IR's .xml (its .bin travels beside it unharmed)
]


@pytest.fixture(scope="module")
def originals(tmp_path_factory) -> dict[tuple[str, str], Path]:
    out = tmp_path_factory.mktemp("originals")
    return {
        (case, target): harness.target(target).export(harness.case(case), out / f"{case}-{target}").path
        for case, target in FORMATS
    }


def _corrupt(data: bytes, kind: str, position: float, value: int, other: bytes) -> bytes:
    at = min(int(position * len(data)), len(data) - 1)
    if kind == "flip":
        return data[:at] + bytes([data[at] ^ value]) + data[at + 1 :]
    if kind == "truncate":
        return data[:at]
    if kind == "header":
        return bytes((b ^ value) for b in data[:16]) + data[16:]
    return other  # "swap": another format's file under this name


corruptions = st.tuples(
    st.sampled_from(["flip", "truncate", "header", "swap"]),
    st.floats(0.0, 1.0, allow_nan=False),
    st.integers(1, 255),
)


def _judge(case: str, target: str, path: Path, work: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, str(REPO / "tests" / "fuzz_driver.py"), case, target, str(path), str(work)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, f"the process died ({done.returncode}) on {path}: {done.stderr[-2000:]}"
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["outcome"] != "unexpected", result["message"]
    if result["outcome"] == "artifact-error":
        message = result["message"]
        assert len(message.splitlines()) == 1 and "Traceback" not in message, message
        assert path.name in message or path.name + ".json" in message or ".npz" in message, message
    return result


@pytest.mark.parametrize("fmt", FORMATS, ids=[f"{c}-{t}" for c, t in FORMATS])
def test_corrupted_artifacts_end_in_a_clear_error_or_an_honest_verdict(fmt, originals, tmp_path_factory):
    case, target = fmt
    original = originals[fmt]
    other = originals[FORMATS[(FORMATS.index(fmt) + 1) % len(FORMATS)]].read_bytes()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=not NIGHTLY,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(corruptions)
    def fuzz(corruption) -> None:
        folder = tmp_path_factory.mktemp("fuzz")
        for sibling in original.parent.iterdir():  # sidecar and state travel with the file
            shutil.copyfile(sibling, folder / sibling.name)
        path = folder / original.name
        path.write_bytes(_corrupt(original.read_bytes(), *corruption, other))
        _judge(case, target, path, folder / "work")

    fuzz()


@given(
    st.sampled_from(["sidecar", "state"]),
    corruptions,
)
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not NIGHTLY,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_corrupted_sidecars_and_state_files_end_in_a_clear_error_or_an_honest_verdict(which, corruption):
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="fuzz-side-"))
    original = harness.target("onnx-stateful").export(harness.case("cached_conv"), folder / "export").path
    victim = original.with_name(original.name + (".json" if which == "sidecar" else ".state.npz"))
    victim.write_bytes(_corrupt(victim.read_bytes(), *corruption, b'["not", "a", "sidecar"]'))
    _judge("cached_conv", "onnx-stateful", original, folder / "work")
    shutil.rmtree(folder, ignore_errors=True)
