"""The gate probed as a user gating releases would: every file given is judged or the run says why
before anything runs, nothing of the repository is written from a user's file, and a bad input
is one line with exit status 2, never a traceback, an INTERNALERROR or exit 1 (the code of a
failing model). Each probe asserts the exit code and the line that names the problem; a new
option or format adds its probes here."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

import harness
from tests.outside import run_outside

pytestmark = [pytest.mark.filterwarnings("ignore"), pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]

#: A case module with a bug of its own, and one whose example the module cannot take.
RAISES_AT_IMPORT = "import fixtures.toys\nraise ZeroDivisionError('a bug in their case module')\n"
WRONG_ARITY = """
import torch
from harness import ModelCase, register, tol

class Two(torch.nn.Module):
    def forward(self, a, b):
        return a + b

register(ModelCase(
    name="wrong_arity", build=lambda: Two().eval(), example_inputs=lambda: (torch.ones(2), torch.ones(2), torch.ones(2)),
    input_names=("a", "b", "c"), output_names=("y",), inputs={"ones": lambda: [(torch.ones(2),) * 3]},
))
"""


def _project(root: Path, modules: str = "fixtures.toys") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "pytest.ini").write_text(f"[pytest]\nconformance_case_modules = {modules}\npythonpath = {REPO}\n")
    return root


def _run(project: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return run_outside(project, *args, timeout=timeout, columns=200)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """The harness's own exports of the toys, and files made from them."""
    import onnx
    from onnx import numpy_helper

    out = tmp_path_factory.mktemp("probe-files")
    mlp, conv = harness.case("conv_mlp"), harness.case("cached_conv")
    made = {
        "good": harness.target("onnx").export(mlp, out / "good").path,
        "int8": harness.target("onnx-int8").export(mlp, out / "int8").path,
        "stateful": harness.target("onnx-stateful").export(conv, out / "stateful").path,
    }
    model = onnx.load(str(made["good"]))
    weight = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * 1.5, weight.name))
    (out / "bad").mkdir()
    made["bad"] = out / "bad" / "conv_mlp.onnx"
    onnx.save(model, str(made["bad"]))
    # the lifted state input declared with another length
    state_model = onnx.load(str(made["stateful"]))
    state_input = next(i for i in state_model.graph.input if i.name.startswith("state"))
    state_input.type.tensor_type.shape.dim[-1].dim_value += 3
    (out / "reshaped").mkdir()
    made["reshaped-state"] = out / "reshaped" / "cached_conv.stateful.onnx"
    onnx.save(state_model, str(made["reshaped-state"]))
    for suffix in (".json", ".state.npz"):
        sidecar = made["stateful"].with_name(made["stateful"].name + suffix)
        if sidecar.exists():
            shutil.copy(sidecar, made["reshaped-state"].with_name(made["reshaped-state"].name + suffix))
    # weights in external data that lies outside the model's folder
    (out / "ext" / "model").mkdir(parents=True)
    external = onnx.load(str(made["good"]))
    model_path = out / "ext" / "model" / "m.onnx"
    onnx.save(external, str(model_path), save_as_external_data=True, location="weights.bin", size_threshold=0)
    (out / "ext" / "model" / "weights.bin").rename(out / "ext" / "weights.bin")
    moved = onnx.load(str(model_path), load_external_data=False)  # onnx.save refuses '..' itself
    for tensor in moved.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../weights.bin"
    model_path.write_bytes(moved.SerializeToString())
    made["external-outside"] = out / "ext" / "model" / "m.onnx"
    # an OpenVINO IR whose weights file is cut short: the runtime's own error, quoted whole
    ir = harness.target("openvino").export(mlp, out / "ir").path
    weights = ir.with_suffix(".bin")
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 3])
    made["truncated-ir"] = ir
    return made


def _with_sidecar(tmp: Path, good: Path, edit) -> Path:
    folder = tmp / "sidecar"
    folder.mkdir(exist_ok=True)
    path = folder / good.name
    shutil.copy(good, path)
    body = json.loads(good.with_name(good.name + ".json").read_text())
    edit(body["meta"])
    path.with_name(path.name + ".json").write_text(json.dumps(body))
    return path


@dataclass(frozen=True)
class Probe:
    name: str
    #: (tmp folder, the made files) -> check's arguments after the case
    args: object
    code: int
    line: str
    case: str = "conv_mlp"


def _special(tmp: Path, kind: str) -> Path:
    if kind == "loop":
        (tmp / "a").symlink_to(tmp / "b")
        (tmp / "b").symlink_to(tmp / "a")
        return tmp / "a"
    if kind == "fifo":
        os.mkfifo(tmp / "pipe.onnx")
        return tmp / "pipe.onnx"
    if kind == "deleted":
        (tmp / "art").mkdir()
        shutil.copy(REPO / "README.md", tmp / "art" / "x.onnx")
        (tmp / "gone" / "deeper").mkdir(parents=True)
        path = tmp / "gone" / "deeper" / ".." / ".." / "art" / "x.onnx"
        shutil.rmtree(tmp / "gone")
        return path
    raise ValueError(kind)


PROBES = [
    # every file given is judged, or the run says why not
    Probe("two files, broken first", lambda t, f: [f"--artifact=onnx={f['bad']}", f"--artifact=onnx={f['good']}"], 2,
          "gives two files for conv_mlp:onnx"),
    Probe("two files, broken last", lambda t, f: [f"--artifact=onnx={f['good']}", f"--artifact=onnx={f['bad']}"], 2,
          "gives two files for conv_mlp:onnx"),
    Probe("one broken file", lambda t, f: [f"--artifact=onnx={f['bad']}", "-k", "equivalence"], 1,
          "cells on your files did not pass"),
    Probe("the same file twice is judged once", lambda t, f: [f"--artifact=onnx={f['good']}"] * 2 + ["-k", "equivalence"], 0,
          "every cell on your files passed"),
    Probe("int8 file, case without a task metric", lambda t, f: [f"--artifact=onnx-int8={f['int8']}"], 2,
          "no cell would judge this file: onnx-int8 is judged by the case's task metric"),
    Probe("int8 file beside a judged one", lambda t, f: [f"--artifact=onnx={f['good']}", f"--artifact=onnx-int8={f['int8']}"], 2,
          "no cell would judge this file"),
    Probe("target left out", lambda t, f: [f"--artifact=onnx={f['good']}", "--targets=eager"], 2,
          "--conformance-targets=eager leaves out onnx"),
    Probe("every cell deselected", lambda t, f: [f"--artifact=onnx={f['good']}", "-k", "no_such_suite"], 2,
          "no cell judged this file"),
    # paths resolved by the file system, special files named as such
    Probe("symlink loop", lambda t, f: [f"--artifact=onnx={_special(t, 'loop')}"], 2, "a symbolic link loop"),
    Probe("FIFO", lambda t, f: [f"--artifact=onnx={_special(t, 'fifo')}"], 2, "is a FIFO"),
    Probe("/dev/null", lambda t, f: ["--artifact=onnx=/dev/null"], 2, "is a character device"),
    Probe("through a deleted folder", lambda t, f: [f"--artifact=onnx={_special(t, 'deleted')}"], 2,
          "artifact file does not exist"),
    Probe("a folder", lambda t, f: [f"--artifact=onnx={t}"], 2, "is a directory"),
    # the export cache folder
    Probe("cache folder is a file", lambda t, f: [f"--export-cache-dir={REPO / 'README.md'}"], 2,
          "the export cache folder is a file, not a folder"),
    Probe("cache folder cannot be written", lambda t, f: ["--export-cache-dir=/proc/no-such-cache"], 2,
          "the export cache folder cannot be written"),
    # sidecars against the schema and the case, before any cell runs
    Probe("meta.inputs of numbers", lambda t, f: [f"--artifact=onnx={_with_sidecar(t, f['good'], lambda m: m.update(inputs=[1, 2]))}"], 2,
          "meta.inputs must list one entry per input"),
    Probe("meta.inputs entry without shape", lambda t, f: [f"--artifact=onnx={_with_sidecar(t, f['good'], lambda m: m['inputs'][0].pop('shape'))}"], 2,
          "must be an object with name, dtype and shape"),
    Probe("meta.inputs float64", lambda t, f: [f"--artifact=onnx={_with_sidecar(t, f['good'], lambda m: m['inputs'][0].update(dtype='float64'))}"], 2,
          "is 'float64', the case feeds it float32"),
    Probe("meta.inputs absurd size", lambda t, f: [f"--artifact=onnx={_with_sidecar(t, f['good'], lambda m: m['inputs'][0]['shape'].__setitem__(2, 10**12))}"], 2,
          "dimension 2 is 1000000000000"),
    Probe("meta.inputs another fixed size", lambda t, f: [f"--artifact=onnx={_with_sidecar(t, f['good'], lambda m: m['inputs'][0]['shape'].__setitem__(2, 48))}"], 2,
          "does not admit the case's own example input"),
    Probe("state input of another shape", lambda t, f: [f"--artifact=onnx-stateful={f['reshaped-state']}"], 2,
          "in the graph, the case's state", case="cached_conv"),
    Probe("truncated OpenVINO weights", lambda t, f: [f"--artifact=openvino={f['truncated-ir']}", "--", "--openvino-precision=f32"], 2,
          "Incorrect weights in bin file"),
    Probe("external data outside the model's folder", lambda t, f: [f"--artifact=onnx={f['external-outside']}"], 2,
          "its external data lies outside the model's folder"),
]  # fmt: skip


@pytest.mark.parametrize("probe", PROBES, ids=[p.name for p in PROBES])
def test_probe(probe: Probe, files, tmp_path):
    project = _project(tmp_path / "project")
    work = tmp_path / "work"
    work.mkdir()
    args = probe.args(work, files)
    done = _run(project, "-m", "harness", "check", probe.case, *args)
    output = done.stdout + done.stderr
    assert done.returncode == probe.code, output[-4000:]
    assert probe.line in output, output[-4000:]
    assert "Traceback" not in output and "INTERNALERROR" not in output, output[-4000:]
    if probe.code == 2:  # one line says it: no matrix, no cell ran
        assert "conformance matrix" not in output, output[-4000:]


def test_case_modules_with_bugs_of_their_own_are_named_not_blamed_on_an_export(tmp_path):
    """A case module that raises at import, and a case whose module rejects its own example, are
    the case's errors (exit 2, naming the module), never an export failure or a traceback."""
    raising = _project(tmp_path / "raising", modules="theircases")
    (raising / "theircases.py").write_text(RAISES_AT_IMPORT)
    for args in (["list"], ["check", "conv_mlp"], ["export", "conv_mlp", "onnx", "out"]):
        done = _run(raising, "-m", "harness", *args)
        assert done.returncode == 2, done.stdout + done.stderr
        assert (
            "case module 'theircases' raised at import: ZeroDivisionError: a bug in their case module"
            in done.stderr
        )
        assert "Traceback" not in done.stdout + done.stderr
    under_pytest = _run(raising, "-m", "pytest", "--pyargs", "harness.suites", "-q", "-p", "no:cacheprovider")
    assert under_pytest.returncode == pytest.ExitCode.USAGE_ERROR, under_pytest.stdout + under_pytest.stderr
    assert "INTERNALERROR" not in under_pytest.stdout + under_pytest.stderr

    arity = _project(tmp_path / "arity", modules="theircases")
    (arity / "theircases.py").write_text(WRONG_ARITY)
    import torch

    class Two(torch.nn.Module):
        def forward(self, a, b):
            return a + b

    file = arity / "two.ts.pt"
    torch.jit.save(torch.jit.trace(Two(), (torch.ones(2), torch.ones(2))), str(file))
    gated = _run(arity, "-m", "harness", "check", "wrong_arity", f"--artifact=torchscript={file}")
    assert gated.returncode == 2, gated.stdout[-3000:] + gated.stderr[-3000:]
    assert "INTERNALERROR" not in gated.stdout + gated.stderr
    assert (
        "case 'wrong_arity' (theircases): its module does not run on its own example_inputs"
        in gated.stdout + gated.stderr
    )
    exported = _run(arity, "-m", "harness", "export", "wrong_arity", "torchscript", "out")
    assert exported.returncode == 2
    assert (
        "case 'wrong_arity' (theircases): its module does not run on its own example_inputs (TypeError"
        in exported.stderr
    )
    cells = _run(arity, "-m", "pytest", "--pyargs", "harness.suites.test_outputs", "-q", "-p", "no:cacheprovider",
                 "--conformance-targets=torchscript", "-k", "equivalence")  # fmt: skip
    flat = " ".join(cells.stdout.split())
    assert "the case's eager module (Two from theircases) raised on its own inputs: TypeError" in flat, flat[
        -3000:
    ]
    matrix = cells.stdout.split("conformance matrix")[1].split("\nsuites:")[0]
    assert "EXPRT" not in matrix and "ERR" in matrix, matrix


def test_export_to_a_path_that_is_not_a_folder_is_one_line(tmp_path):
    project = _project(tmp_path / "project")
    for outdir in (str(REPO / "README.md"), "/dev/null", "/proc/no/such/folder"):
        done = _run(project, "-m", "harness", "export", "conv_mlp", "torchscript", outdir)
        assert done.returncode == 2, done.stdout + done.stderr
        assert outdir in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_snapshot_update_with_a_users_file_writes_nothing_of_the_repository(files, tmp_path):
    """``--snapshot-update --artifact=...`` would record the user's broken file as the golden
    snapshot: refused (exit 4 under pytest, 2 from check), and golden/ is byte for byte as before."""
    before = _digests(REPO / "golden")
    done = _run(REPO, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-p", "no:xdist", "--snapshot-update",
                f"--artifact=conv_mlp:onnx={files['bad']}", "--conformance-targets=onnx", "-k", "conv_mlp and golden")  # fmt: skip
    assert done.returncode == pytest.ExitCode.USAGE_ERROR, done.stdout[-3000:] + done.stderr[-3000:]
    assert (
        "--snapshot-update with --conformance-artifact would record a user's file"
        in done.stdout + done.stderr
    )
    checked = _run(
        REPO,
        "-m",
        "harness",
        "check",
        "conv_mlp",
        f"--artifact=onnx={files['bad']}",
        "--",
        "--snapshot-update",
    )
    assert checked.returncode == 2, checked.stdout[-3000:] + checked.stderr[-3000:]
    assert _digests(REPO / "golden") == before


def test_an_unreadable_golden_snapshot_is_an_error_naming_it_never_a_fail(tmp_path):
    project = _project(tmp_path / "project")
    suite = ("-m", "pytest", "--pyargs", "harness.suites.test_golden", "-q", "-p", "no:cacheprovider",
             "--conformance-targets=eager", "-k", "conv_mlp")  # fmt: skip
    recorded = _run(project, *suite, "--snapshot-update")
    assert recorded.returncode == 0, recorded.stdout[-3000:]
    snapshot = sorted((project / "golden" / "snapshots").rglob("*conv_mlp-eager*.npz"))[0]
    snapshot.write_bytes(os.urandom(512))
    done = _run(project, *suite)
    assert done.returncode == 1
    assert f"{snapshot}: the golden snapshot of conv_mlp-eager" in " ".join(done.stdout.split()), done.stdout[
        -3000:
    ]
    matrix = done.stdout.split("conformance matrix")[1].split("\nsuites:")[0]
    assert "ERR" in matrix and "FAIL" not in matrix, matrix
