"""The HTML report: colours, noise floors, benchmark records from the benchmark pass, and the page
as headless Chromium renders it."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import xml.dom.minidom

import pytest

from harness.reports.html import NOISE_FLOOR, bars_figure, render_html, target_colours, trace_figure
from harness.reports.svg_chart import linear_ticks, log_ticks

TOYS = ("fixtures.toys",)
BENCH = [
    {"case": "explicit_state_vad", "target": "eager", "kind": "step", "step_s": 2e-3},
    {"case": "explicit_state_vad", "target": "torchscript", "kind": "step", "step_s": 1e-3},
]


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_one_colour_per_target_fixed_by_the_target_order():
    order = ["eager", "torchscript", "onnx"]
    colours = target_colours(order)
    assert colours["eager"] == "#000000"
    assert target_colours(order, extra=["zzz"])["onnx"] == colours["onnx"]  # extras never shift them
    assert len(set(colours.values())) == len(order)


def test_trace_figure_leaves_gaps_for_missing_points():
    fig, _ = trace_figure({"eager": [1.0, None, 3.0]}, {"eager": "#000000"}, output="y")
    ydata = list(fig.panels[0].lines[0].values)
    assert math.isnan(ydata[1]) and 0.0 not in ydata  # skipped, not drawn at zero


def test_charts_are_valid_svg_with_gaps_round_ticks_and_no_ids():
    fig, _ = trace_figure(
        {"eager": [1.0, None, 3.0], "onnx": [1.0, 2.0, 3.5]}, target_colours(["eager", "onnx"]), output="y"
    )
    svg = fig.svg()
    root = xml.dom.minidom.parseString(svg).documentElement
    assert root.tagName == "svg" and ' id="' not in svg  # inline many times on one page: no id clashes
    eager_path = next(p for p in root.getElementsByTagName("path") if p.getAttribute("stroke") == "#000000")
    assert eager_path.getAttribute("d").count("M") == 2  # the missing call breaks the line
    assert (
        svg
        == trace_figure(
            {"eager": [1.0, None, 3.0], "onnx": [1.0, 2.0, 3.5]},
            target_colours(["eager", "onnx"]),
            output="y",
        )[0].svg()
    )
    assert linear_ticks(0.0, 1.0) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert linear_ticks(-0.3, 183.3, 12, integer=True)[:3] == [0.0, 20.0, 40.0]
    assert log_ticks(1e-6, 20.0) == [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0]
    bars = bars_figure(
        {"eager": 1.0, "onnx": 3.0, "slow": 0.01}, {"eager": 2e-3, "onnx": 6.7e-4, "slow": 0.2}, {}
    )
    assert "3.00x (0.67 ms)" in bars.svg() and xml.dom.minidom.parseString(bars.svg())


def test_a_target_not_finite_where_eager_is_shows_at_the_top_of_the_error_panel():
    """Traces store null for a value that was not finite: where eager's is finite, that is the
    worst disagreement (PESTO's NaN frames), never a gap like a call both sides lack."""
    series = {"eager": [1.0, 2.0, None, 4.0], "onnx": [1.0, None, None, 4.5]}
    fig, notes = trace_figure(series, target_colours(["eager", "onnx"]), output="pitch")
    errors = fig.panels[1].lines[0].values
    assert errors[1] == fig.panels[1].ylim[1] and math.isnan(errors[2])  # top; both missing: a gap
    assert "onnx: not finite at 1 call where eager is finite" in " ".join(notes)


def test_silent_input_keeps_a_noise_floor_instead_of_autoscaling():
    series = {"eager": [1e-13, -2e-13, 0.0], "onnx": [1e-13, -2e-13, 3e-14]}
    fig, notes = trace_figure(series, target_colours(["eager", "onnx"]), output="prob")
    assert fig.panels[0].ylim == (-NOISE_FLOOR, NOISE_FLOOR)
    assert fig.panels[1].ylim[0] > 1e-9  # the error axis does not reach down to 1e-13
    assert any("below noise floor" in note for note in notes) and len(notes) == 2


def test_benchmarks_come_from_the_benchmark_pass_when_the_run_timed_nothing(tmp_path):
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "benchmarks.json").write_text(json.dumps(BENCH))
    body = {"versions": {}, "rows": []}
    page = render_html(body, {}, [], target_order=["eager", "torchscript"], report_dir=tmp_path)
    assert "2.00x" in page and str(tmp_path / "benchmarks" / "benchmarks.json") in page
    assert 'id="bench-explicit_state_vad"' in page
    assert "No benchmark figures" in render_html(body, {}, [], report_dir=tmp_path / "nowhere")


@pytest.mark.skipif(
    _chromium() is None, reason="no chromium binary (apt-get install chromium) to render the page"
)
def test_rendered_page_has_the_matrix_metric_column_and_every_promised_chart(
    inner_pytest, pytester, tmp_path
):
    out = pytester.path / "out"
    (out / "benchmarks").mkdir(parents=True)
    (out / "benchmarks" / "benchmarks.json").write_text(json.dumps(BENCH))
    result = inner_pytest(
        "-p", "no:xdist", "--conformance-targets", "eager,torchscript", "--conformance-report", str(out),
        "-k", "explicit_state_vad", modules=TOYS,
    )  # fmt: skip
    result.assert_outcomes(passed=6)  # equivalence on two inputs, determinism on one, two targets
    page = out / "conformance.html"
    source = page.read_text()
    assert "<script" not in source.lower()
    shot = tmp_path / "page.png"
    chromium = [
        _chromium(),
        "--headless=new",
        "--disable-gpu",
        "--no-sandbox",
        "--enable-logging=stderr",
        "--v=0",
    ]
    dumped = subprocess.run(
        [*chromium, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=180, check=True
    )
    subprocess.run(
        [*chromium, "--hide-scrollbars", "--window-size=1400,2000", f"--screenshot={shot}", page.as_uri()],
        capture_output=True, text=True, timeout=180, check=True,
    )  # fmt: skip
    assert shot.stat().st_size > 10_000
    console = [line for line in dumped.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert console == []  # no JavaScript ran, so none failed
    dom = dumped.stdout
    assert re.search(r'<table class="matrix">', dom) and '<td class="name">explicit_state_vad</td>' in dom
    assert '<th class="metric">equivalence metric (worst)</th>' in dom
    promised = sum(int(n) for n in re.findall(r'data-charts="(\d+)"', dom))
    figures = re.findall(r'<figure class="chart" id="([^"]+)">\s*<svg', dom)
    assert promised == len(figures) == 3  # prob on each of two inputs, one benchmark case
    for anchor in re.findall(r'<a href="#([^"]+)"', dom):
        assert f'id="{anchor}"' in dom  # every contents link lands somewhere
    assert "Where failing cells leave eager" not in dom  # nothing failed here
    assert "the separate benchmark pass" in dom
