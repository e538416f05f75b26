"""The plugin's hooks for a project's conftest (``harness.plugin.hookspec``) and the runtimes'
own options (``Target.runtime_options``), from temp projects: a conftest's target gets cells
that are judged and takes a command-line option of its own, a conftest's judge changes a cell's
verdict, and the built-in runtimes' options stay where users and tox.ini spell them."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from harness.plugin.hooks import cell_judge
from harness.targets import builtin_runtime_options, targets
from harness.targets.options import RuntimeOption, unique_options
from tests.conftest import REPO_ROOT
from tests.test_plugin import _cases

pytestmark = [pytest.mark.filterwarnings("ignore")]

#: A project's own target, registered and given a command-line option by its conftest alone.
TARGET_CONFTEST = """
from collections.abc import Sequence
from typing import Any

import torch

from harness import Artifact, Runner, Target
from harness.targets.options import RuntimeOption, add_runtime_options

SCALE = RuntimeOption(
    flags=("--conformance-my-scale",), dest="my_scale", type=float, default=1.0,
    help="scale my runtime's outputs (a planted fault)",
)


class ScaledRunner(Runner):
    def __init__(self, artifact: Artifact, module: Any, scale: float) -> None:
        super().__init__(artifact)
        self.module, self.scale = module, scale

    def _run_impl(self, inputs: tuple[torch.Tensor, ...]) -> Sequence[Any]:
        with torch.no_grad():
            out = self.module(*inputs)
        return [o * self.scale for o in (out if isinstance(out, (tuple, list)) else (out,))]

    def _reset_impl(self) -> None:
        pass


class MyTarget(Target):
    name = "my-traced"
    suffix = ".traced.pt"
    description = "torch.jit.trace, run with torch.jit.load, outputs scaled by --conformance-my-scale"
    runtime_options = (SCALE,)
    scale = 1.0
    seen = ""

    def configure(self, options):
        self.seen = ",".join(sorted(options))
        self.scale = options["my_scale"]

    def runtime_settings(self):
        return {"my_scale": str(self.scale), "my_options": self.seen}

    def _export_impl(self, module, example, case, path):
        torch.jit.save(torch.jit.trace(module, example), str(path))
        return {"exporter": "torch.jit.trace"}

    def _load_impl(self, artifact):
        return ScaledRunner(artifact, torch.jit.load(str(artifact.path), map_location="cpu"), self.scale)


def pytest_addoption(parser):
    add_runtime_options(parser, MyTarget.runtime_options)


def pytest_conformance_targets(config):
    return [MyTarget()]
"""

#: A project's test that asks the plugin for a cell's judge, as the cell context does.
JUDGE_TEST = """
import numpy as np

from harness.core.judge import Judge
from harness.plugin.hooks import cell_judge
from harness.run.session import Cell


def _verdict(config, target_name, factor):
    cell = Cell("doubler", target_name, "ones", "equivalence")
    judge = cell_judge(config, cell, Judge.for_cell(cell.case, cell.target))
    expected = {"y": np.full((1, 2, 3), 2.0, dtype=np.float32)}
    return judge, judge.judge(expected, {"y": expected["y"] * factor}, what="planted")


def test_the_hook_loosens_one_cell(request):
    judge, verdict = _verdict(request.config, "onnx", 1.2)
    assert verdict, verdict.report()
    assert judge.reference == "eager"  # kept whatever the hook said


def test_other_cells_keep_the_cases_judge(request):
    judge, verdict = _verdict(request.config, "torchscript", 1.2)
    assert not verdict
    cell = Cell("doubler", "torchscript", "ones", "equivalence")
    assert judge == Judge.for_cell(cell.case, cell.target)
"""

JUDGE_CONFTEST = """
import dataclasses

from harness import tol


def pytest_conformance_judge(cell, judge):
    if cell.target_name == "onnx" and cell.suite == "equivalence":
        loose = tol(0.5, 0.0)
        return dataclasses.replace(
            judge, default_tolerance=loose, tolerances=dict.fromkeys(judge.tolerances, loose), reference="mine"
        )
    return None
"""


def test_the_entry_point_imports_no_torch_and_adds_exactly_the_builtin_targets_options():
    light = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, harness.plugin\n"
            "from harness.targets import builtin_runtime_options\n"
            "assert builtin_runtime_options()\n"
            "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)[:5]",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert light.returncode == 0, light.stderr
    declared = unique_options(o for t in targets() for o in t.runtime_options)
    assert set(declared) == set(builtin_runtime_options())
    assert {t.name for t in targets() if any(o.dest == "ort_threads" for o in t.runtime_options)} >= {
        "onnx",
        "onnx-legacy",
        "onnx-stateful",
        "onnx-int8",
    }


def test_two_different_declarations_of_one_option_are_refused():
    one = RuntimeOption(flags=("--conformance-x",), dest="x", help="x")
    other = RuntimeOption(flags=("--conformance-x",), dest="x", help="another x", type=int)
    assert unique_options([one, one]) == [one]
    with pytest.raises(ValueError, match="declared twice"):
        unique_options([one, other])


def test_the_runtime_options_are_in_the_conformance_group_with_their_aliases(inner_pytest):
    result = inner_pytest("--help", conftest=TARGET_CONFTEST)
    text = result.stdout.str()
    group = text.split("export conformance:")[1].split("\n\n")[0]
    for spelling in (
        "--conformance-ort-optimization={disable,basic,extended,all}, --ort-optimization=",
        "--conformance-ort-threads=ORT_THREADS, --ort-threads=ORT_THREADS",
        "--conformance-openvino-precision={default,f32,bf16,f16}, --openvino-precision=",
        "--conformance-my-scale=MY_SCALE",  # a conftest's target's own, added in its pytest_addoption
    ):
        assert spelling in group, group


def test_a_targets_declared_options_reach_its_configure(inner_pytest, pytester):
    result = inner_pytest(
        "--conformance-ort-threads=1",
        "--ort-optimization=basic",
        "--conformance-targets=eager,onnx",
        "--conformance-report=out",
        "-k",
        "doubler and equivalence",
        cases=_cases(),
    )
    assert result.ret == 0, result.stdout.str()[-3000:]
    settings = json.loads((pytester.path / "out" / "conformance.json").read_text())["runtime_settings"]
    assert settings["ort_threads"] == "1" and settings["ort_optimization"] == "basic", settings


def test_a_conftests_target_gets_cells_that_are_judged_and_takes_its_own_option(inner_pytest, pytester):
    args = ("--conformance-targets=eager,my-traced", "--conformance-report=out", "-v", "-k", "doubler")
    good = inner_pytest(*args, cases=_cases(), conftest=TARGET_CONFTEST)
    out = good.stdout.str()
    assert good.ret == 0, out[-3000:]
    assert "test_equivalence[doubler-my-traced-ones] PASSED" in out, out[-3000:]
    report = json.loads((pytester.path / "out" / "conformance.json").read_text())
    assert any(r["case"] == "doubler" and r["target"] == "my-traced" for r in report["rows"])
    # configure gets the options the target declares (their defaults where not given) and threads
    assert report["runtime_settings"]["my_options"] == "my_scale,threads", report["runtime_settings"]

    bad = inner_pytest(*args, "--conformance-my-scale=1.5", cases=_cases(), conftest=TARGET_CONFTEST)
    out = bad.stdout.str()
    assert bad.ret == 1 and "test_equivalence[doubler-my-traced-ones] FAILED" in out, out[-3000:]
    assert "my-traced vs eager" in out and "MISMATCH" in out, out[-3000:]


def test_a_conftests_target_that_is_no_target_or_takes_a_builtin_name_is_a_usage_error(inner_pytest):
    for returned, said in (
        ("[object()]", "expected harness.Target instances"),
        ("[type(target('onnx'))()]", "a target named 'onnx' is already registered"),
    ):
        conftest = f"from harness import target\n\ndef pytest_conformance_targets():\n    return {returned}\n"
        result = inner_pytest("--collect-only", "-q", cases=_cases(), conftest=conftest)
        text = result.stdout.str() + result.stderr.str()
        assert result.ret == pytest.ExitCode.USAGE_ERROR and said in text, text[-2000:]


def test_a_conftests_judge_changes_a_cells_verdict(inner_pytest, pytester):
    pytester.makepyfile(test_judge_hook=JUDGE_TEST)
    result = inner_pytest("test_judge_hook.py", cases=_cases(), conftest=JUDGE_CONFTEST)
    result.assert_outcomes(passed=2)


#: A conftest that loosens one target's equivalence cells (its own target's, planted 20% off).
LOOSE_JUDGE_CONFTEST = """

import dataclasses

from harness import tol


def pytest_conformance_judge(cell, judge):
    if cell.target_name == "my-traced" and cell.suite == "equivalence":
        loose = tol(0.5, 0.0)
        return dataclasses.replace(
            judge, default_tolerance=loose, tolerances=dict.fromkeys(judge.tolerances, loose), metric=None
        )
    return None
"""


def test_a_conftests_judge_decides_the_suites_verdict(inner_pytest):
    """End to end: the suites judge a cell with the judge the hook returns (through its evidence),
    and only that cell: the same planted fault fails without the hook, and determinism, judged
    by two runs of the export, is left alone."""
    args = (
        "--conformance-targets=eager,my-traced",
        "--conformance-my-scale=1.2",
        "-v",
        "-k",
        "doubler and (equivalence or determinism)",
    )
    strict = inner_pytest(*args, cases=_cases(), conftest=TARGET_CONFTEST)
    out = strict.stdout.str()
    assert strict.ret == 1 and "test_equivalence[doubler-my-traced-ones] FAILED" in out, out[-3000:]
    loose = inner_pytest(*args, cases=_cases(), conftest=TARGET_CONFTEST + LOOSE_JUDGE_CONFTEST)
    out = loose.stdout.str()
    assert loose.ret == 0, out[-3000:]
    assert "test_equivalence[doubler-my-traced-ones] PASSED" in out, out[-3000:]
    assert "test_determinism[doubler-my-traced-ones] PASSED" in out, out[-3000:]


def test_without_an_implementation_a_cells_judge_is_the_cases_own(request):
    """In this very run (no conftest implements the hook), ``cell_judge`` returns what it was given."""
    from harness.run.session import Cell

    class _Cell(Cell):  # a cell of no registered case: the hook is handed what the cell names
        case = property(lambda self: None)  # type: ignore[assignment]
        target = property(lambda self: None)  # type: ignore[assignment]

    from harness.core.compare import tol
    from harness.core.judge import Judge

    judge = Judge("eager", {"y": tol(1e-5, 1e-5)}, tol(1e-5, 1e-5))
    assert cell_judge(request.config, _Cell("c", "t", "i", "equivalence"), judge) is judge
    assert judge.judge({"y": np.ones(3)}, {"y": np.ones(3)}, what="same")
