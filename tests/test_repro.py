"""Reproducers: each one, moved to a fresh folder and run in a process that cannot import the
harness or the case's code, exits 1 on the planted fault and 0 on the correct export.

Faults: one convolution weight scaled by 2% in the exported model (every target: the first
call diverges, and the reproducer keeps that call alone), and the cache the plain ONNX export
drops (a stream: the reproducer keeps the calls up to the first wrong one, and the first
divergent module is reduced to a torch.export program and the ONNX subgraph at its boundary).
"""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import harness
from harness.checks.localize import localization_record
from harness.reports.repro import write_repro
from harness.targets import targets
from harness.targets.openvino_settings import OPENVINO_PRECISION_ENV
from harness.targets.standalone import RUNTIME_MODULES

pytestmark = pytest.mark.filterwarnings("ignore")

#: every target with a standalone program, on the streaming toy (``litert-stateful`` where installed)
TARGETS = (
    "onnx-stateful",
    "torchscript",
    "torch-export",
    "executorch-xnnpack",
    "executorch-portable",
    "aoti",
    "openvino",
    "litert-stateful",
)


def scaled(case_name: str, factor: float = 1.02):
    """The case with its first convolution's weight scaled: the planted fault."""
    case = harness.case(case_name)

    def build() -> torch.nn.Module:
        module = case.build()
        conv = next(m for m in module.modules() if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d)))
        with torch.no_grad():
            conv.weight.mul_(factor)
        return module

    return dataclasses.replace(case, name=f"{case.name}_scaled", build=build)


def without_the_harness(tmp_path: Path) -> dict[str, str]:
    """An environment where ``import harness`` and ``import fixtures`` fail: the reproducer must
    need neither (the packages found first on PYTHONPATH refuse to import)."""
    blocker = tmp_path / "blocked"
    for name in ("harness", "fixtures"):
        (blocker / name).mkdir(parents=True, exist_ok=True)
        (blocker / name / "__init__.py").write_text(f"raise ImportError('the reproducer imported {name}')\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "COV_"))}
    env["PYTHONPATH"] = str(blocker)
    return env


def run_moved(folder: Path, tmp_path: Path, script: str = "repro.py") -> subprocess.CompletedProcess:
    """``python SCRIPT`` in a copy of ``folder`` somewhere else, without the harness."""
    moved = tmp_path / "elsewhere" / folder.name
    if not moved.exists():
        shutil.copytree(folder, moved)
    return subprocess.run(
        [sys.executable, script],
        cwd=moved,
        env=without_the_harness(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("target_name", TARGETS)
def test_a_planted_weight_fault_is_reproduced_on_its_first_call_and_the_correct_file_passes(
    target_name, export_cache, tmp_path, monkeypatch
):
    target = harness.target(target_name)
    if target.missing_runtime():
        pytest.skip(target.missing_runtime())
    if target_name == "openvino":  # at f32, held to the tensor tolerances; repro.json carries the hint
        monkeypatch.setenv(OPENVINO_PRECISION_ENV, "f32")
    case = harness.case("cached_conv")
    calls = list(case.inputs["noise_stream"]())
    good = export_cache.get(case, target)
    faulty = target.export(scaled("cached_conv"), tmp_path / "faulty-export")
    planted = write_repro(case, target, faulty, calls, tmp_path / "planted", input_name="noise_stream")
    assert (planted.first, planted.calls) == (0, 1), planted
    ran = run_moved(planted.folder, tmp_path)
    assert ran.returncode == 1, ran.stdout + ran.stderr
    assert "first divergence: call 0 (of 1), output features" in ran.stdout, ran.stdout
    assert "imported" not in ran.stderr

    correct = write_repro(case, target, good, calls, tmp_path / "correct", input_name="noise_stream")
    assert correct.first is None and correct.calls == len(calls)
    ran = run_moved(correct.folder, tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert f"no divergence: every output of the {len(calls)} calls" in ran.stdout
    config = json.loads((correct.folder / "repro.json").read_text())
    assert config["sha256"] and (correct.folder / config["artifact"]).is_file()
    if target_name == "openvino":
        assert config["options"] == {"precision": "f32"}
    readme = (correct.folder / "README.md").read_text()
    assert "pip install numpy==" in readme and "Recorded with: python" in readme


def test_a_dropped_state_needs_the_calls_up_to_its_first_wrong_one_and_the_module_is_reduced(
    export_cache, tmp_path
):
    """The plain ONNX export of the cached convolution drops its cache: the reproducer holds the
    calls up to the first wrong one and no more; model.py shows eager's module reproduced by
    its torch.export program and the ONNX subgraph at its boundary diverging."""
    case = harness.case("cached_conv")
    target = harness.target("onnx")
    calls = list(case.inputs["noise_stream"]())
    artifact = export_cache.get(case, target)
    located = localization_record(case, target, artifact, "noise_stream")
    assert located["first_divergence"], located["headline"]
    repro = write_repro(
        case, target, artifact, calls, tmp_path / "dropped", input_name="noise_stream", localization=located
    )
    assert repro.first is not None and repro.first > 0 and repro.calls == repro.first + 1 < len(calls)
    ran = run_moved(repro.folder, tmp_path)
    assert ran.returncode == 1, ran.stdout + ran.stderr
    assert f"first divergence: call {repro.first} (of {repro.calls})" in ran.stdout
    assert ran.stdout.count(": ok (largest error") == repro.first  # the calls before it agree

    assert (repro.folder / "module" / "module.pt2").is_file() and (
        repro.folder / "module" / "subgraph.onnx"
    ).is_file()
    reduced = run_moved(repro.folder, tmp_path, "model.py")
    assert reduced.returncode == 1, reduced.stdout + reduced.stderr
    assert "from the recorded output" in reduced.stdout and "DIVERGES" in reduced.stdout, reduced.stdout
    eager_line = next(line for line in reduced.stdout.splitlines() if line.startswith("eager's module"))
    assert float(eager_line.split("max abs ")[1].split()[0]) < 1e-5, eager_line

    fixed = write_repro(
        case,
        harness.target("onnx-stateful"),
        export_cache.get(case, harness.target("onnx-stateful")),
        calls,
        tmp_path / "lifted",
        input_name="noise_stream",
    )
    ran = run_moved(fixed.folder, tmp_path)
    assert fixed.first is None and ran.returncode == 0, ran.stdout + ran.stderr


def test_a_reproducer_without_its_runtime_says_what_it_needs(export_cache, tmp_path):
    case = harness.case("cached_conv")
    target = harness.target("onnx-stateful")
    repro = write_repro(
        case, target, export_cache.get(case, target), list(case.inputs["step_stream"]()), tmp_path / "r",
        input_name="step_stream",
    )  # fmt: skip
    env = without_the_harness(tmp_path)
    (tmp_path / "blocked" / "onnxruntime").mkdir()
    (tmp_path / "blocked" / "onnxruntime" / "__init__.py").write_text(
        "raise ImportError('No module named onnxruntime')\n"
    )
    ran = subprocess.run(
        [sys.executable, "repro.py"], cwd=repro.folder, env=env, capture_output=True, text=True, timeout=120
    )
    assert (
        ran.returncode == 2
        and "this reproducer needs numpy==" in ran.stderr
        and "onnxruntime==" in ran.stderr
    )
    assert "Traceback" not in ran.stderr


def test_every_standalone_program_imports_no_harness_module():
    folder = Path(harness.__file__).parent / "targets" / "standalone"
    for name in (*RUNTIME_MODULES, "driver"):
        tree = ast.parse((folder / f"{name}.py").read_text())
        imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {
            ("." * n.level) + (n.module or "") for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
        }
        roots = {i.split(".")[0] for i in imported}
        allowed = {"argparse", "json", "sys", "pathlib", "re", "numpy", "torch", "onnxruntime", "openvino"}
        allowed |= {"executorch", "ai_edge_litert"}
        assert roots <= allowed, (name, roots - allowed)
    declared = {t.standalone for t in targets() if t.standalone}
    assert declared == set(RUNTIME_MODULES)


def test_each_failing_cell_writes_its_reproducer_and_the_run_names_them(
    inner_pytest, pytester, export_cache, tmp_path
):
    """A user's plain ONNX file of the cached convolution (its cache dropped) gated by the suites:
    each failing (case, target, input) gets reports/repro/<case-target-input>/, listed after the
    matrix, and its repro.py fails alone; the reproducers of an earlier run are not left behind."""
    artifact = export_cache.get(harness.case("cached_conv"), harness.target("onnx"))
    mine = tmp_path / "mine.onnx"
    shutil.copy2(artifact.path, mine)
    stale = pytester.path / "reports" / "repro" / "an-earlier-run"
    stale.mkdir(parents=True)
    args = ("--artifact", f"cached_conv:onnx={mine}", "--conformance-targets", "onnx", "-k", "cached_conv")
    result = inner_pytest(*args, modules=("fixtures.toys",), suites=("test_outputs", "test_streaming"))
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    out = result.stdout.str()
    folders = sorted((pytester.path / "reports" / "repro").iterdir())
    assert [f.name for f in folders] == ["cached_conv-onnx-noise_stream", "cached_conv-onnx-step_stream"], (
        folders
    )
    assert "reproducers of failing cells (2; each runs without the harness" in out, out[-3000:]
    assert "cached_conv/onnx/noise_stream:" in out and "first divergence at call" in out
    ran = run_moved(folders[0], tmp_path)
    assert ran.returncode == 1 and "first divergence: call" in ran.stdout, ran.stdout + ran.stderr
