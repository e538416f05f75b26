"""The terminal matrix and benchmark table fit the terminal: 80 and 120 columns."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.core.case import SUITES
from harness.reports.matrix import ConformanceReport
from harness.reports.terminal import SUITE_ABBREVIATIONS, render_benchmarks, terminal_width

TARGETS = ("eager", "torchscript", "torch-export", "onnx", "onnx-stateful", "executorch-xnnpack")
CASES = ("cached_conv_with_a_long_name", "pesto_like")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _long_reason(case: str, target: str, suite: str) -> str:
    return (
        f"{target} vs eager on {case}: logits: MISMATCH: max abs err 0.0294 (rel 0.000581) at (14, 0, 0) "
        "[eager 50.7099, got 50.6804], 3/20 elements outside atol=0.001 rtol=0; would pass at "
        f"atol=0.0294 | first divergence: conv ({suite}, torch/nn/modules/conv.py:225), error there: "
        "max abs 0.294, relative 0.153; it reads the streaming state cache: a divergence first seen "
        "there on call 1 points at the state the export carries between calls " + "detail " * 40
    ).strip()


@pytest.fixture
def report(tmp_path: Path) -> ConformanceReport:
    """Every suite, six targets, failing cells with reasons of several hundred characters."""
    report = ConformanceReport(tmp_path)
    for case in CASES:
        for t, target in enumerate(TARGETS):
            for s, suite in enumerate(SUITES):
                cell = {"case_name": case, "target_name": target, "suite": suite, "input_name": "noise"}
                status = ("pass", "fail", "xfail", "skip", "error", "export-error", "xpass")[(t + s) % 7]
                reason = "" if status == "pass" else _long_reason(case, target, suite)
                metric = {"name": "max_abs", "value": 0.01 * (t + 1), "unit": "abs"}
                report.add(cell, status, reason, {"metric": metric} if suite == "equivalence" else None)
    report.state_audit = {"cached_conv_with_a_long_name": ["cache [1, 1, 4] float32 " * 8]}
    report.branch_coverage = {"pesto_like": "both sides of `if x.sum() > 0:` taken " * 5}
    return report


@pytest.mark.parametrize("width", [80, 120])
@pytest.mark.parametrize("markup", [False, True])
def test_matrix_fits_the_width_and_keeps_every_cell_and_reason(report, width, markup):
    text = report.render_text(width, markup=markup)
    assert ("\x1b[" in text) == markup  # colour only where the terminal has it
    plain = ANSI.sub("", text)
    lines = plain.splitlines()
    assert max(len(line) for line in lines) <= width, "\n".join(line for line in lines if len(line) > width)
    # the legend names every abbreviated suite header and the status words
    legend = " ".join(line.strip() for line in lines if line.startswith(("suites:", "  ")))
    for suite in SUITES:
        assert f"{SUITE_ABBREVIATIONS[suite]} = {suite}" in legend
    for word in ("ok = pass", "FAIL = fail", "ERR = error", "xfail = xfail", "EXPRT = export-error"):
        assert word in plain
    # every (case, target) has a row in every table the suites are split over
    tables = max(1, sum(bool(re.fullmatch(r"table \d+ of \d+", line.strip())) for line in lines))
    for case in CASES:
        for target in TARGETS:
            rows = [line for line in lines if re.match(rf"{re.escape(case)}\s+{re.escape(target)}\s", line)]
            assert len(rows) == tables, (case, target)
    # every reason is there in full, wrapped: the same text once line breaks are ignored
    flat = "".join(plain.split())
    for row in report.rows():
        for reason in row["reasons"] + row["errors"]:
            suite = reason.split(" [", 1)[0]
            if row["suites"][suite]["status"] in ("xfail", "skip"):  # grouped by the declared reason
                assert "".join(reason.split("]: ", 1)[1].split()) in flat
            else:
                assert "".join(f"{row['case']}/{row['target']}: {reason}".split()) in flat
    assert "".join(report.branch_coverage["pesto_like"].split()) in flat
    assert "".join("; ".join(report.state_audit["cached_conv_with_a_long_name"]).split()) in flat


def test_a_matrix_too_wide_for_the_terminal_is_split_not_overflowed(report):
    narrow = report.render_text(80).splitlines()
    wide = report.render_text(200).splitlines()
    assert "table 1 of " in "\n".join(narrow)
    assert "table 1 of " not in "\n".join(wide)
    header = next(line for line in wide if line.startswith("case "))
    assert header.split()[2:] == [SUITE_ABBREVIATIONS[s] for s in SUITES] + ["eq", "metric", "(worst)"]


def test_the_full_matrix_stays_in_markdown_and_json(report):
    markdown = report.render_markdown()
    assert "| case | target | " + " | ".join(SUITES) + " |" in markdown
    reasons = [reason for row in report.as_json()["rows"] for reason in row["reasons"]]
    assert reasons and all(len(reason) > 400 for reason in reasons)


def test_width_is_pytests_when_set_else_the_terminals_else_120(monkeypatch):
    assert terminal_width(SimpleNamespace(_tw=SimpleNamespace(_terminal_width=93))) == 93
    monkeypatch.setenv("COLUMNS", "80")
    assert terminal_width(SimpleNamespace(_tw=SimpleNamespace(_terminal_width=None))) == 80
    monkeypatch.delenv("COLUMNS")
    monkeypatch.setattr("shutil.get_terminal_size", lambda fallback: SimpleNamespace(columns=fallback[0]))
    assert terminal_width(None) == 120


def _records(onnx_step_s: float) -> list[dict]:
    base = {"case": "m", "flops": 4e9, "peak_gflops": 10.0, "chunk_seconds": 0.01, "streaming": True}
    return [
        {**base, "target": "eager", "step_s": 0.8, "size_bytes": 8e6},
        {**base, "target": "onnx", "step_s": onnx_step_s, "size_bytes": 8e6},
        {
            **base,
            "target": "executorch-xnnpack-int8",
            "step_s": 0.5,
            "size_bytes": 2e6,
            "float_counterpart": "onnx",
        },
        {"case": "m", "target": "onnx", "cold_s": 0.05},
    ]


@pytest.mark.parametrize("width", [80, 120])
def test_benchmark_table_explains_a_percent_of_peak_over_100(width):
    text = render_benchmarks(_records(onnx_step_s=0.1), width=width)  # 40 GFLOP/s against a 10 peak
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= width
    assert "|" not in text  # a table, not raw Markdown
    assert "400.0*" in text and "80.0" in text  # onnx over the peak is marked, int8 at 80% is not
    flat = " ".join(text.split())
    assert "* % of peak is the model's GFLOP/s" in flat
    assert "float32 512x512 matmul" in flat and "10.0 GFLOP/s" in flat
    assert "Over 100% is not a kernel beating the machine" in flat
    for target in ("eager", "onnx", "executorch-xnnpack-int8"):
        assert any(line.startswith(target + " ") for line in lines)


def test_benchmark_table_without_figures_over_the_peak_has_no_footnote():
    text = render_benchmarks(_records(onnx_step_s=0.5), width=120)
    assert "Over 100%" not in text and "*" not in text
    assert "float32 matmul peak in this run: 10.0 GFLOP/s" in text


def test_a_reason_that_several_cells_share_is_printed_once_naming_them(tmp_path):
    report = ConformanceReport(tmp_path)
    shared = "benchmark: pytest-benchmark times nothing under xdist: run `pytest -p no:xdist -k benchmark`"
    for case, targets in (("pesto", ("eager", "onnx", "aoti")), ("toy", ("onnx",))):
        for target in targets:
            cell = {"case_name": case, "target_name": target, "suite": "benchmark", "input_name": "x"}
            report.add(cell, "skip", shared)
    cell = {"case_name": "toy", "target_name": "aoti", "suite": "benchmark", "input_name": "x"}
    report.add(cell, "skip", "a reason of its own")
    plain = ANSI.sub("", report.render_text(120))
    flat = " ".join(plain.split())
    assert flat.count("times nothing under xdist") == 1, plain
    order = [row["target"] for row in report.rows() if row["case"] == "pesto"]  # the matrix's order
    assert f"benchmark (skip) on pesto/{', '.join(order)}; toy/onnx: " + shared in flat
    assert "benchmark (skip) on toy/aoti: a reason of its own" in flat
    # a declared reason's observed detail is left to the reports; an unexpected failure keeps it whole
    for target, status, reason in (
        ("eager", "xfail", "declared [observed: 1.5]"),
        ("onnx", "xfail", "declared [observed: 2.5]"),
        ("aoti", "fail", "max abs err 3 [observed: all of it]"),
    ):
        report.add(
            {"case_name": "toy", "target_name": target, "suite": "equivalence", "input_name": "x"},
            status,
            reason,
        )
    flat = " ".join(ANSI.sub("", report.render_text(120)).split())
    assert "equivalence (xfail) on toy/eager, onnx: declared" in flat and "observed: 1.5" not in flat
    assert "toy/aoti: equivalence [x]: max abs err 3 [observed: all of it]" in flat
