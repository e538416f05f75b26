"""The plugin end to end, in a subprocess: generated ids, strict xfail, export-error cells, skips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import harness

PLANTED = """
import torch
from torch import nn
from harness import ExpectedFailure, ModelCase, register, tol

class Doubler(nn.Module):
    def forward(self, x):
        return x * 2.0

class Branch(nn.Module):
    def forward(self, x):
        if x.sum() > 0:
            return x + 1.0
        return x - 1.0

x = torch.ones(2, 3)
register(ModelCase(
    name="doubler", build=lambda: Doubler().eval(), example_inputs=lambda: (x,),
    input_names=("x",), output_names=("y",), inputs={"ones": lambda: [(x,)]},
    expected=tuple(EXPECTED_DOUBLER),
))
register(ModelCase(
    name="branch", build=lambda: Branch().eval(), example_inputs=lambda: (x,),
    input_names=("x",), output_names=("y",), inputs={"ones": lambda: [(x,)]},
))
"""


def _cases(expected_doubler: str = "[]") -> str:
    return PLANTED.replace("EXPECTED_DOUBLER", expected_doubler)


def test_ids_select_by_case_and_target(inner_pytest):
    result = inner_pytest("--collect-only", "-q", "-k", "doubler and onnx", cases=_cases())
    lines = [line for line in result.outlines if "::" in line]
    assert sorted(lines) == [
        "test_suites.py::test_determinism[doubler-onnx-legacy-ones]",
        "test_suites.py::test_determinism[doubler-onnx-ones]",
        "test_suites.py::test_determinism[doubler-onnx-stateful-ones]",
        "test_suites.py::test_equivalence[doubler-onnx-legacy-ones]",
        "test_suites.py::test_equivalence[doubler-onnx-ones]",
        "test_suites.py::test_equivalence[doubler-onnx-stateful-ones]",
    ]


def test_matrix_is_printed_and_written_with_export_error_cells(inner_pytest, pytester):
    result = inner_pytest(
        "--conformance-targets",
        "eager,torchscript,torch-export",
        "--conformance-report",
        "out",
        cases=_cases(),
    )
    # the undeclared refusal of torch.export is a failing export-error cell, not a crash; the
    # batch-consistency suite has no cell here (no planted case declares a batch size): one skip
    result.assert_outcomes(passed=10, failed=2, skipped=1)
    text = result.stdout.str()
    assert "conformance matrix" in text
    assert "export-error: torch-export could not export branch" in text
    matrix = json.loads((pytester.path / "out" / "conformance.json").read_text())
    cells = {(r["case"], r["target"]): r for r in matrix["rows"]}
    assert cells[("branch", "torch-export")]["suites"]["equivalence"]["status"] == "export-error"
    assert cells[("doubler", "torch-export")]["suites"]["equivalence"]["status"] == "pass"
    assert (
        "| branch | torch-export | **export-error** |"
        in (pytester.path / "out" / "conformance.md").read_text()
    )


def test_declared_expected_failure_that_passes_fails_the_run(inner_pytest):
    declared = '[ExpectedFailure("torchscript", "equivalence", "believed broken")]'
    result = inner_pytest(
        "--conformance-targets", "eager,torchscript", "-k", "doubler", cases=_cases(declared)
    )
    result.assert_outcomes(passed=3, failed=1)
    assert "XPASS(strict)" in result.stdout.str()
    assert "xpass" in result.stdout.str()


@pytest.mark.parametrize(
    ("declared", "message"),
    [
        ('[ExpectedFailure("onnxx", "equivalence", "typo")]', "unknown target 'onnxx'"),
        ('[ExpectedFailure("onnx", "equivalence", "typo", inputs=("one",))]', "unknown input set 'one'"),
    ],
)
def test_declarations_naming_nothing_are_rejected_at_collection(inner_pytest, declared, message):
    result = inner_pytest("--collect-only", cases=_cases(declared))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()


def test_expected_failure_that_matches_no_generated_test_is_stale(inner_pytest):
    # determinism runs on the primary input only: a declaration for another input matches nothing
    declared = '[ExpectedFailure("onnx", "determinism", "stale", inputs=("ones",))]'
    stale_cases = _cases(declared).replace(
        'inputs={"ones": lambda: [(x,)]},\n    expected',
        'inputs={"zeros": lambda: [(x * 0,)], "ones": lambda: [(x,)]},\n    expected',
    )
    result = inner_pytest("--collect-only", cases=stale_cases)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "stale expected failures" in result.stderr.str()


def test_missing_optional_runtime_is_a_skip_with_a_reason(inner_pytest):
    blocker = "import sys\nsys.modules['onnxruntime'] = None  # planted: the runtime is not installed\n"
    result = inner_pytest("-k", "doubler and onnx", "-rs", cases=_cases(), conftest=blocker)
    result.assert_outcomes(skipped=6)  # onnx, onnx-legacy and onnx-stateful, two suites each
    assert "onnx: the optional runtime 'onnxruntime' is not installed" in result.stdout.str()
    assert "pip install 'export-conformance[onnx]'" in result.stdout.str()  # the extra that installs it
    assert "ImportError" not in result.stdout.str()


def test_runtimes_are_extras_the_dev_install_includes():
    import tomllib

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"])
    extras = project["optional-dependencies"]
    for runtime in ("onnxruntime", "executorch", "openvino", "pesto-pitch"):
        assert runtime not in core, runtime
    assert "onnxruntime" in " ".join(extras["onnx"]) and "executorch" in " ".join(extras["executorch"])
    assert "openvino" in " ".join(extras["openvino"]) and "export-conformance[onnx]" in extras["openvino"]
    assert "export-conformance[onnx,executorch,openvino,models]" in extras["dev"]


def test_second_run_exports_nothing_and_fresh_exports_again(inner_pytest, pytester):
    args = ("--conformance-targets", "torchscript", "-k", "doubler")
    inner_pytest(*args, cases=_cases()).assert_outcomes(passed=2)
    cache = pytester.path / "cache" / "doubler"
    (entry,) = [p for p in cache.iterdir() if p.is_dir()]
    first = json.loads((entry / "result.json").read_text())["session"]
    inner_pytest(*args, cases=_cases()).assert_outcomes(passed=2)
    assert json.loads((entry / "result.json").read_text())["session"] == first
    inner_pytest(*args, "--export-fresh", cases=_cases()).assert_outcomes(passed=2)
    assert json.loads((entry / "result.json").read_text())["session"] != first


def test_the_ci_tier_runs_large_models_on_the_quick_targets_only():
    """``ci_targets`` leave a case's ExecuTorch and int8 cells to the nightly tier; the stale
    expected-failure check does not mistake those for declarations that match nothing."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]

    def collected(*args: str) -> set[str]:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "--co",
                "-q",
                "-p",
                "no:xdist",
                "-k",
                "efficientnet and equivalence",
                *args,
            ],
            capture_output=True,
            text=True,
            cwd=root,
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        return {line for line in done.stdout.splitlines() if "::" in line}

    quick, nightly = collected(), collected("--conformance-tier=nightly")
    assert not any("executorch" in item for item in quick)
    assert any("efficientnet_b0-executorch-xnnpack-int8" in item for item in nightly)
    assert any("efficientnet_b0-onnx-noise" in item for item in quick)


def test_a_costly_target_runs_in_the_ci_tier_on_the_cases_that_ask_for_it():
    """``Target.costly`` (aoti's C++ compile) keeps it off a case in the ci tier unless the case
    names it (``ci_costly_targets`` or ``ci_targets``): the library names no case of ours."""
    import dataclasses

    from harness.core.registry import case
    from harness.plugin.suites import in_quick_tier
    from harness.targets import target

    assert target("aoti").costly and not target("onnx").costly
    assert in_quick_tier(case("pesto"), target("aoti")) and in_quick_tier(case("cached_conv"), target("aoti"))
    theirs = dataclasses.replace(case("cached_conv"), name="their_case", ci_costly_targets=())
    assert not in_quick_tier(theirs, target("aoti")) and in_quick_tier(theirs, target("onnx"))
    listed = dataclasses.replace(theirs, ci_targets=("eager", "aoti"))
    assert in_quick_tier(listed, target("aoti")) and not in_quick_tier(listed, target("onnx"))
    unknown = dataclasses.replace(theirs, ci_costly_targets=("aoit",))
    problems = unknown.check_declarations([t.name for t in harness.targets()])
    assert problems == ["case 'their_case': ci_costly_targets names unknown target 'aoit'"], problems


def test_shards_split_a_run_by_case_and_cover_it_once(inner_pytest):
    """--conformance-shard=K/N: every cell of a case in one shard, the shards disjoint and together
    the whole run; a malformed shard is a usage error."""
    modules = ("fixtures.toys",)
    suites = ("test_outputs", "test_streaming")
    every = _collected(inner_pytest("--collect-only", "-q", modules=modules, suites=suites))
    shards = [
        _collected(
            inner_pytest("--collect-only", "-q", f"--conformance-shard={k}/2", modules=modules, suites=suites)
        )
        for k in (1, 2)
    ]
    assert sorted(sum(shards, [])) == sorted(every) and len(set(sum(shards, []))) == len(every)
    owners: dict[str, set[int]] = {}
    for k, ids in enumerate(shards):
        for node in ids:
            owners.setdefault(node.split("[", 1)[1].split("-", 1)[0], set()).add(k)
    assert all(len(found) == 1 for found in owners.values()), owners
    assert all(shards)  # the cases are spread, not all in one job
    bad = inner_pytest("--collect-only", "--conformance-shard=4/3", modules=modules)
    assert bad.ret == pytest.ExitCode.USAGE_ERROR and "K must be between 1 and N" in bad.stderr.str()


def _collected(result) -> list[str]:
    return [line for line in result.outlines if "::" in line and "[" in line]


def test_a_suite_no_case_can_use_says_which_declaration_is_missing(inner_pytest):
    """Not pytest's bare "got empty parameter set": the suite, and what a case would declare."""
    result = inner_pytest("-rs", "-p", "no:xdist", cases=_cases(), suites=("test_streaming",))
    out = result.stdout.str()
    assert "got empty parameter set" not in out
    assert "stream-continuity: no registered case declares a StreamingSpec (streaming=...)" in out
    result.assert_outcomes(skipped=6)  # the six streaming suites, one skip each


def test_a_suite_marker_that_names_no_suite_or_says_where_it_runs_is_one_usage_error(inner_pytest):
    """Where a suite runs is the registry's (harness.plugin.suites): a marker with an unknown suite
    or an old-style kwarg is a usage error (exit 4) naming the function, never a traceback."""
    user = """
import pytest

@pytest.mark.conformance("equivalence", inputs="all")
def test_mine(conformance):
    pass

@pytest.mark.conformance("no-such-suite")
def test_other(conformance):
    pass
"""
    result = inner_pytest("-q", modules=("fixtures.toys",), suites=("test_outputs",), user_suites=user)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()[-2000:]
    err = result.stderr.str()
    assert "test_user_suites.py::test_mine: @pytest.mark.conformance('equivalence') takes only" in err, err
    assert "got ['inputs']" in err and "unknown conformance suite 'no-such-suite'" in err, err
    assert "Traceback" not in err + result.stdout.str()


def test_every_cell_carries_its_suite_as_a_keyword(inner_pytest):
    """-k SUITE selects that column: the cells of stream-chunks and nothing else."""
    result = inner_pytest(
        "--collect-only",
        "-q",
        "-k",
        "stream-chunks",
        modules=("fixtures.toys",),
        suites=("test_outputs", "test_streaming"),
    )
    ids = [line for line in result.stdout.lines if "::" in line]
    assert ids and all("::test_stream_chunks[" in line for line in ids), ids
