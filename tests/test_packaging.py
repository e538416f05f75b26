"""The distribution as users install it, not the editable clone: the sdist and the wheel that
``python -m build`` makes from the tracked files, checked by twine and check-wheel-contents,
then the wheel installed (not editable) into a fresh venv outside the repository and used there
by an unrelated project, by a project with its own case, and through the console script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.outside import SUITES, outside_env, run_outside, scorer_case

pytestmark = [pytest.mark.filterwarnings("ignore"), pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]

CASE_MODULE = scorer_case("wheel_scorer")

SCALE_WEIGHTS = """
import sys, torch
module = torch.jit.load(sys.argv[1])
with torch.no_grad():
    for p in module.parameters():
        p.mul_(1.02)
module.save(sys.argv[2])
"""


def _tracked_files(into: Path) -> Path:
    """The files a clean clone has (tracked, or new and not ignored), copied to ``into``."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, check=True,
    ).stdout.decode()  # fmt: skip
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, into / name)
    return into


def _build(tmp: Path) -> tuple[Path, Path]:
    source = _tracked_files(tmp / "source")
    dist = tmp / "dist"
    # the sdist first, then the wheel built from the unpacked sdist: a file the sdist lacks fails here
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(source)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    (wheel,) = dist.glob("*.whl")
    (sdist,) = dist.glob("*.tar.gz")
    return wheel, sdist


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return _build(tmp_path_factory.mktemp("packaging"))


def _run(cwd: Path, *args: str | Path, timeout: int = 900) -> subprocess.CompletedProcess:
    return run_outside(cwd, *args, python="", timeout=timeout)


def test_the_distributions_pass_twine_and_check_wheel_contents(dist):
    wheel, sdist = dist
    twine = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", str(wheel), str(sdist)],
        capture_output=True,
        text=True,
    )
    assert twine.returncode == 0, twine.stdout + twine.stderr
    contents = subprocess.run(
        [sys.executable, "-m", "check_wheel_contents", str(wheel)], capture_output=True, text=True
    )
    assert contents.returncode == 0, contents.stdout + contents.stderr


def test_the_wheel_holds_the_library_and_the_suites_under_one_package_and_nothing_of_the_repository(dist):
    wheel, sdist = dist
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {str(p.relative_to(REPO)) for p in (REPO / "harness").rglob("*.py")}
    expected |= {f"harness/suites/{p.name}" for p in (REPO / "suites").glob("*.py")}
    expected |= {
        "harness/py.typed",
        *(str(p.relative_to(REPO)) for p in (REPO / "harness" / "templates").iterdir()),
    }
    assert expected - names == set(), "the wheel lacks these files of the library"
    top_level = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top_level == {"harness"}, (
        "one import package of ours: no fixtures, suites or tests of the repository"
    )
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert (
        "export_conformance = harness.plugin" in text
        and "export-conformance = harness.__main__:console" in text
    )
    # the sdist is the repository: its self-tests, cases and golden files can run from it
    with tarfile.open(sdist) as archive:
        members = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    for needed in (
        "tests/test_packaging.py",
        "fixtures/pesto_pitch.py",
        "golden/conformance-baseline.json",
        "tox.ini",
        "conftest.py",
    ):
        assert needed in members, needed


def _reproducers(into: Path) -> list[tuple[Path, str, int, str]]:
    """Reproducers written by this process's harness: (folder, script, exit status, a line said)."""
    import dataclasses

    import torch

    import harness
    from harness.checks.localize import localization_record
    from harness.reports.repro import write_repro
    from harness.run.cache import ExportCache

    case = harness.case("cached_conv")
    calls = list(case.inputs["noise_stream"]())
    cache = ExportCache(into / "cache")
    onnx, lifted = harness.target("onnx"), harness.target("onnx-stateful")
    dropped = cache.get(case, onnx)
    located = localization_record(case, onnx, dropped, "noise_stream")
    state = write_repro(
        case, onnx, dropped, calls, into / "dropped", input_name="noise_stream", localization=located
    )
    fixed = write_repro(
        case, lifted, cache.get(case, lifted), calls, into / "fixed", input_name="noise_stream"
    )

    def build() -> torch.nn.Module:
        module = case.build()
        with torch.no_grad():
            next(module.parameters()).mul_(1.02)
        return module

    script = harness.target("torchscript")
    scaled = script.export(
        dataclasses.replace(case, name="cached_conv_scaled", build=build), into / "scaled-export"
    )
    weight = write_repro(case, script, scaled, calls, into / "scaled", input_name="noise_stream")
    return [
        (state.folder, "repro.py", 1, f"first divergence: call {state.first} (of {state.calls})"),
        (state.folder, "model.py", 1, "DIVERGES"),
        (fixed.folder, "repro.py", 0, "no divergence"),
        (weight.folder, "repro.py", 1, "first divergence: call 0 (of 1)"),
    ]


def test_installed_from_the_wheel_in_a_fresh_venv(dist, tmp_path):
    """One venv (installing torch takes most of a minute): an unrelated project, a project with
    its own case through the installed suites, and ``export-conformance list / export / check``."""
    wheel, _ = dist
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=outside_env())
    python = venv / "bin" / "python"
    # Before the harness is installed, torch and onnxruntime alone run the reproducers it writes:
    # a dropped state on ONNX (and model.py: the first divergent module's torch.export program and
    # the ONNX subgraph at its boundary), the fixed lifted export, a scaled weight on TorchScript.
    bare = _run(tmp_path, python, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                "torch==2.13.*", "onnxruntime", "numpy")  # fmt: skip
    assert bare.returncode == 0, bare.stderr[-3000:]
    assert _run(tmp_path, python, "-c", "import harness").returncode == 1
    for folder, script, status, said in _reproducers(tmp_path / "repros"):
        ran = _run(folder, python, script)
        assert ran.returncode == status and said in ran.stdout, (
            folder,
            script,
            ran.stdout + ran.stderr[-2000:],
        )
    installed = _run(tmp_path, python, "-m", "pip", "install", "-q", "--disable-pip-version-check", wheel)
    assert installed.returncode == 0, installed.stderr[-3000:]
    where = _run(tmp_path, python, "-c", "import harness, importlib.util as u; print(harness.__file__); "
                 "print(u.find_spec('fixtures'), u.find_spec('suites'))")  # fmt: skip
    assert where.stdout.splitlines() == [
        str(
            venv
            / "lib"
            / f"python{sys.version_info.major}.{sys.version_info.minor}"
            / "site-packages"
            / "harness"
            / "__init__.py"
        ),
        "None None",
    ], where.stdout + where.stderr

    # An unrelated project, with packages of its own named fixtures and suites: the plugin is inert
    # and silent, imports nothing heavy, and shadows nothing of theirs.
    unrelated = tmp_path / "unrelated"
    for package in ("fixtures", "suites"):
        (unrelated / package).mkdir(parents=True)
        (unrelated / package / "__init__.py").write_text(f"OWNER = 'theirs: {package}'\n")
    (unrelated / "test_theirs.py").write_text(
        "import sys\nimport fixtures, suites\n\n\ndef test_theirs():\n"
        "    assert fixtures.OWNER == 'theirs: fixtures' and suites.OWNER == 'theirs: suites'\n"
        "    assert 'torch' not in sys.modules\n"
    )
    theirs = _run(unrelated, python, "-m", "pytest", "-p", "no:cacheprovider", "-q")
    assert theirs.returncode == 0, theirs.stdout + theirs.stderr
    assert "1 passed" in theirs.stdout and "conformance" not in theirs.stdout.lower()

    # A project with its own case, through the installed suites.
    project = tmp_path / "their-project"
    project.mkdir()
    (project / "pytest.ini").write_text("[pytest]\nconformance_case_modules = theircases\n")
    (project / "theircases.py").write_text(CASE_MODULE)
    suites = (
        *SUITES,
        "--conformance-targets=eager,torchscript",
    )
    recorded = _run(project, python, *suites, "-k", "golden", "--snapshot-update")
    assert recorded.returncode == 0, recorded.stdout[-3000:] + recorded.stderr[-3000:]
    matrix = _run(project, python, *suites)
    assert matrix.returncode == 0, matrix.stdout[-3000:] + matrix.stderr[-3000:]
    table = matrix.stdout.split("conformance matrix")[1].split("\nsuites:")[0]
    rows = [line for line in table.splitlines() if line.startswith("wheel_scorer")]
    assert [row.split()[1] for row in rows] == ["eager", "torchscript"], table
    assert all("FAIL" not in row and "ERR" not in row for row in rows), table
    assert (project / "golden" / "snapshots" / "test_golden").is_dir()

    # The console script: list, export, and check gating a good and a changed file.
    script = venv / "bin" / "export-conformance"
    listed = _run(project, script, "list")
    assert listed.returncode == 0 and "wheel_scorer" in listed.stdout, listed.stdout + listed.stderr
    exported = _run(project, script, "export", "wheel_scorer", "torchscript", "out")
    assert exported.returncode == 0, exported.stderr
    good = project / exported.stdout.strip().splitlines()[-1]
    changed = project / "mine" / "scorer.ts.pt"
    changed.parent.mkdir()
    scaled = _run(project, python, "-c", SCALE_WEIGHTS, good, changed)
    assert scaled.returncode == 0, scaled.stderr
    cache = tmp_path / "their-cache"
    shutil.rmtree(project / ".export-cache")  # the suites' run above used the default folder
    passed = _run(
        project,
        script,
        "check",
        "wheel_scorer",
        f"--artifact=torchscript={good}",
        f"--export-cache-dir={cache}",
    )
    assert passed.returncode == 0, passed.stdout[-3000:] + passed.stderr[-3000:]
    assert "every cell on your files passed" in passed.stdout
    wide = [line for line in passed.stdout.splitlines() if len(line) > 120 and "/" not in line]
    assert not wide, "check's output fits 120 columns (a path is kept whole)"
    assert not (project / ".export-cache").exists() and cache.is_dir(), "check honours --export-cache-dir"
    failed = _run(
        project,
        script,
        "check",
        "wheel_scorer",
        f"--artifact=torchscript={changed}",
        f"--export-cache-dir={cache}",
    )
    assert failed.returncode == 1, failed.stdout[-3000:] + failed.stderr[-3000:]
    assert (
        "cells on your files did not pass" in failed.stdout
        and "Traceback" not in failed.stdout + failed.stderr
    )
    # its reproducer, from the wheel: the console script writes it, torch alone runs it
    written = _run(project, script, "repro", "wheel_scorer", "torchscript", f"--artifact={changed}",
                   "--out=repro-scorer", f"--export-cache-dir={cache}")  # fmt: skip
    assert written.returncode == 1 and "first divergence at call 0" in written.stdout, (
        written.stdout + written.stderr
    )
    ran = _run(project / "repro-scorer", python, "repro.py")
    assert ran.returncode == 1 and "first divergence: call 0" in ran.stdout, ran.stdout + ran.stderr
    # the gate's misuse, from the wheel: one line and exit 2 each, nothing of the project written
    golden_before = sorted(p.read_bytes() for p in (project / "golden").rglob("*") if p.is_file())
    os.mkfifo(project / "pipe.ts.pt")
    misuses = {
        "gives two files for wheel_scorer:torchscript": [f"--artifact=torchscript={changed}", f"--artifact=torchscript={good}"],
        "--snapshot-update with --conformance-artifact would record": [f"--artifact=torchscript={changed}", "--", "--snapshot-update"],
        "is a FIFO": [f"--artifact=torchscript={project / 'pipe.ts.pt'}"],
        "no cell would judge this file": [f"--artifact=torchscript={good}", "--targets=eager"],
    }  # fmt: skip
    for line, args in misuses.items():
        refused = _run(project, script, "check", "wheel_scorer", *args, f"--export-cache-dir={cache}")
        output = refused.stdout + refused.stderr
        assert refused.returncode == 2 and line in output and "Traceback" not in output, output[-3000:]
    assert sorted(p.read_bytes() for p in (project / "golden").rglob("*") if p.is_file()) == golden_before
    report = json.loads((project / "reports" / "conformance.json").read_text())
    assert report["versions"]["export-conformance"] == "0.1.0" and report["machine"]["cores"]
