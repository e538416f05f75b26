"""A self-contained HTML report: a contents list, the matrix with expandable reasons, and charts.

For every case whose outputs give one value per call (PESTO's pitch, a VAD's probability), eager
and each target over time, with each target's error below; the benchmark speed-ups as bars.
Charts are written as inline SVG by ``svg_chart`` (no plotting library: a dozen many-line
charts through matplotlib cost about 3 s of CPU per run); the page comes from the Jinja2
template ``templates/report.html.j2`` with autoescaping on. No script, no download: the file opens anywhere.

``python -m harness.reports.html DIR`` renders ``DIR/conformance.html`` again from
``DIR/conformance.json``, picking up ``DIR/benchmarks/benchmarks.json`` when the main run
timed nothing (under xdist nothing is timed; ``.ci/run`` times benchmarks in a second pass).
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..core.case import SUITES
from ..targets import EAGER, targets
from .svg_chart import Band, BarChart, Line, LineChart, Panel

__all__ = [
    "ERROR_FLOOR",
    "NOISE_FLOOR",
    "Chart",
    "bars_figure",
    "load_benchmarks",
    "render_html",
    "rerender",
    "target_colours",
    "trace_figure",
]

#: eager's values all below this in magnitude: the input is silent, the axis is not autoscaled
NOISE_FLOOR = 1e-6
#: errors below this (or 1e-5 of eager's magnitude, whichever is larger) are float noise
ERROR_FLOOR = 1e-6
ERROR_FLOOR_RELATIVE = 1e-5
EAGER_COLOUR = "#000000"
#: tab10 then tab20's light shades; eager is black, so never in here
PALETTE = (
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
    "#bcbd22", "#7f7f7f", "#aec7e8", "#ff9896", "#98df8a", "#ffbb78", "#c5b0d5",
)  # fmt: skip
STATUS_CLASSES = {"pass": "pass", "xfail": "xfail", "skip": "skip"}  # everything else is "bad"
BENCHMARK_HELP = "pytest -p no:xdist -k benchmark --conformance-report=<report dir>/benchmarks"


@dataclass
class Chart:
    """One figure on the page: its anchor, caption and inline SVG."""

    anchor: str
    caption: str
    svg: str
    notes: list[str] = field(default_factory=list)


def target_colours(target_order: Sequence[str], extra: Sequence[str] = ()) -> dict[str, str]:
    """One colour per target, fixed by the registration order (eager always black)."""
    names = [t for t in target_order if t != EAGER]
    names += sorted({t for t in extra if t != EAGER and t not in names})
    colours = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}
    colours[EAGER] = EAGER_COLOUR
    return colours


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-") or "x"


def _array(values: Sequence[float | None]) -> list[float]:
    """Missing or non-finite points become NaN: the chart leaves a gap, never a zero."""
    return [float(v) if v is not None and math.isfinite(v) else math.nan for v in values]


def trace_figure(
    series: Mapping[str, Sequence[float | None]], colours: Mapping[str, str], *, output: str, title: str = ""
) -> tuple[LineChart, list[str]]:
    """Eager against each target over calls (top) and |target - eager| on a log axis (bottom);
    notes say where a noise floor was applied."""
    eager = _array(series.get(EAGER, []))
    finite = [abs(v) for s in series.values() for v in _array(s) if not math.isnan(v)]
    scale = max((abs(v) for v in eager if not math.isnan(v)), default=0.0)
    notes: list[str] = []
    lines = []
    for name, values in series.items():
        reference = name == EAGER
        lines.append(
            Line(
                name, _array(values), colours.get(name, "#777777"), width=3.5 if reference else 1.5,
                dash=None if reference else "7,3", marker=4.0 if len(values) <= 300 else 0.0,
            )
        )  # fmt: skip
    if max(finite, default=0.0) < NOISE_FLOOR:
        top_range = (-NOISE_FLOOR, NOISE_FLOOR)
        notes.append(f"{output}: every value below noise floor (|value| < {NOISE_FLOOR:g}); axis clamped")
    else:
        values = [v for line in lines for v in line.values if not math.isnan(v)]
        low, high = min(values), max(values)
        pad = 0.05 * (high - low) if high > low else max(abs(low) * 0.05, NOISE_FLOOR)
        top_range = (low - pad, high + pad)
    floor = max(ERROR_FLOOR, ERROR_FLOOR_RELATIVE * scale)
    highest = 0.0
    target_errors = []
    for line in lines[1:] if lines and lines[0].label == EAGER else lines:
        # a trace holds a value per call, null where it was not finite: a target that is not
        # finite where eager is has an infinite error, drawn at the top of the error panel
        errors = [math.nan if math.isnan(e) else math.inf if math.isnan(a) else abs(a - e) for a, e in zip(line.values, eager)]  # fmt: skip
        highest = max([highest, *(e for e in errors if math.isfinite(e))])
        broken = sum(math.isinf(e) for e in errors)
        if broken:
            notes.append(
                f"{line.label}: not finite at {broken} call{'s' if broken != 1 else ''} where eager is finite "
                "(drawn at the top of the error panel)"
            )
        target_errors.append((line, errors))
    ceiling = max(highest, floor) * 10
    error_lines = [
        Line(None, [e if math.isnan(e) else min(max(e, floor), ceiling) for e in errors], line.colour, width=1.5, marker=3.5)
        for line, errors in target_errors
    ]  # fmt: skip
    if highest < floor:
        notes.append(f"|{output} - eager|: every error below noise floor (< {floor:.0e})")
    shade = Band(floor / 10, floor, "#dddddd", f"below noise floor (< {floor:.0e})")
    chart = LineChart(
        panels=[
            Panel(lines, top_range, ylabel=output),
            Panel(
                error_lines,
                (floor / 10, ceiling),
                log=True,
                ylabel=f"|{output} - eager|",
                band=shade,
            ),
        ],
        title=title or f"{output}: eager against each target",
        xlabel="call (chunk index)",
        legend=[*((line.label or "", line) for line in lines), (shade.label, shade)],
    )
    return chart, notes


def bars_figure(
    ratios: Mapping[str, float],
    steps: Mapping[str, float],
    colours: Mapping[str, str],
    *,
    title: str = "",
) -> BarChart:
    """Horizontal bars from eager's line at 1 to each target's speed-up of one step, on a log axis
    (right: faster than eager, left: slower)."""
    names = list(ratios)
    return BarChart(
        names=names,
        values=[ratios[n] for n in names],
        labels=[f"{ratios[n]:.2f}x ({steps[n] * 1e3:.3g} ms)" for n in names],
        colours=[colours.get(n, "#777777") for n in names],
        title=title,
        xlabel="speed-up of one step against eager (log scale; right of the line at 1 is faster than eager)",
        reference_colour=EAGER_COLOUR,
    )


def metric_text(row: Mapping[str, Any]) -> str:
    """A matrix row's "equivalence metric (worst)" text, for every rendering ("-": no metric)."""
    metric = row.get("metric")
    if not metric:
        return "-"
    statistic = " (median)" if metric["name"].startswith("median") else ""
    return f"{metric['value']:.3g} {metric['unit']}{statistic}"


def _matrix(body: Mapping[str, Any]) -> dict[str, Any]:
    suites: list[str] = []
    for row in body["rows"]:
        suites += [s for s in row["suites"] if s not in suites]
    # in declaration order: a re-read JSON file has its keys sorted
    suites.sort(key=lambda s: (SUITES.index(s) if s in SUITES else len(SUITES), s))
    rows = []
    for row in body["rows"]:
        cells = []
        for suite in suites:
            cell = row["suites"].get(suite)
            if cell is None:
                cells.append(None)
                continue
            bad = [(name, v) for name, v in cell["inputs"].items() if v["status"] != "pass"]
            status = cell["status"]
            cells.append({"status": status, "css": STATUS_CLASSES.get(status, "bad"), "bad": bad})
        rows.append(
            {
                "case": row["case"],
                "target": row["target"],
                "cells": cells,
                "metric": metric_text(row),
                "artifact": row.get("artifact"),
            }
        )
    return {"suites": suites, "rows": rows}


def _trace_charts(
    traces: Mapping[str, Any], colours: Mapping[str, str], rank: Mapping[str, int]
) -> dict[str, list[Chart]]:
    """case -> one chart per (input, per-call output)."""
    charts: dict[str, list[Chart]] = {}
    for key, by_target in sorted(traces.items()):
        case_name, input_name = key.split("/", 1)
        eager = by_target.get(EAGER, {})
        others = sorted((t for t in by_target if t != EAGER), key=lambda t: (rank.get(t, len(rank)), t))
        for output in sorted(eager):
            series = {EAGER: eager[output]}
            series.update({t: by_target[t][output] for t in others if output in by_target[t]})
            title = f"{case_name} / {input_name}: {output}, eager against each target"
            fig, notes = trace_figure(series, colours, output=output, title=title)
            caption = (
                f"{case_name} / {input_name}: {output}, eager against each target, and the error per call"
            )
            anchor = f"chart-{_slug(case_name)}-{_slug(input_name)}-{_slug(output)}"
            charts.setdefault(case_name, []).append(Chart(anchor, caption, fig.svg(), notes))
    return charts


def load_benchmarks(report_dir: Path) -> tuple[list[dict[str, Any]], str]:
    """Records from ``report_dir/benchmarks/benchmarks.json`` (the separate, non-xdist benchmark
    pass) and a sentence saying where they came from; ([], "") when there is none."""
    path = Path(report_dir) / "benchmarks" / "benchmarks.json"
    if not path.is_file():
        return [], ""
    try:
        records = json.loads(path.read_text())
    except (OSError, ValueError):
        return [], ""
    if not isinstance(records, list):
        return [], ""
    stamp = datetime.fromtimestamp(path.stat().st_mtime, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
    return records, (
        f"This run timed nothing (no benchmark cell ran, or they ran under xdist, where "
        f"pytest-benchmark times nothing); these figures come from "
        f"{path} (the separate benchmark pass, written {stamp})."
    )


def _benchmark_charts(
    benchmarks: Sequence[Mapping[str, Any]], colours: Mapping[str, str], rank: Mapping[str, int]
) -> list[Chart]:
    steps: dict[str, dict[str, float]] = {}
    for record in benchmarks:
        if record.get("step_s"):
            steps.setdefault(record["case"], {})[record["target"]] = float(record["step_s"])
    charts = []
    for case_name, by_target in sorted(steps.items()):
        if EAGER not in by_target:
            continue
        names = sorted(by_target, key=lambda t: (rank.get(t, len(rank)), t))
        ratios = {t: by_target[EAGER] / by_target[t] for t in names}
        svg = bars_figure(ratios, {t: by_target[t] for t in names}, colours, title=case_name).svg()
        caption = f"{case_name}: speed-up of one step against eager (step time in brackets)"
        charts.append(Chart(f"bench-{_slug(case_name)}", caption, svg))
    return charts


def _localizations(located: Mapping[str, Any]) -> list[dict[str, Any]]:
    out = []
    for name, loc in sorted(located.items()):
        rows = []
        for row in loc.get("rows") or []:
            numbers = [
                f"{v:.3g}" if isinstance(v, (int, float)) else str(v)
                for v in (row.get("max_abs"), row.get("relative"), row.get("jump"))
            ]
            rows.append(
                {"cells": [row.get("module") or "(model)", row.get("class", ""), *numbers],
                 "diverges": bool(row.get("diverges"))}
            )  # fmt: skip
        out.append({"name": name, "headline": loc.get("headline", ""), "how": loc.get("how", ""),
                    "call": loc.get("call", "?"), "rows": rows})  # fmt: skip
    return out


def render_html(
    body: Mapping[str, Any],
    traces: Mapping[str, Any],
    benchmarks: Sequence[Mapping[str, Any]],
    *,
    target_order: Sequence[str] = (),
    report_dir: Path | None = None,
) -> str:
    """The whole report as one HTML document.

    With no benchmark records of its own and a ``report_dir``, the records of a sibling
    ``report_dir/benchmarks/benchmarks.json`` are shown instead, saying where they came from.
    """
    import jinja2

    benchmark_source = "Measured in this run." if benchmarks else ""
    if not benchmarks and report_dir is not None:
        benchmarks, benchmark_source = load_benchmarks(report_dir)
    seen = {t for by_target in traces.values() for t in by_target} | {r["target"] for r in benchmarks}
    seen |= {row["target"] for row in body.get("rows", [])}
    colours = target_colours(target_order, sorted(seen))
    order = [t for t in colours if t == EAGER] + [t for t in colours if t != EAGER]
    rank = {name: i for i, name in enumerate(order)}
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("harness", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    trace_charts = _trace_charts(traces, colours, rank)
    page = environment.get_template("report.html.j2").render(
        versions=sorted(body.get("versions", {}).items()),
        machine=sorted((body.get("machine") or {}).items()),
        matrix=_matrix(body),
        state_audit=sorted((body.get("state_audit") or {}).items()),
        branch_coverage=sorted((body.get("branch_coverage") or {}).items()),
        localizations=_localizations(body.get("localizations") or {}),
        trace_charts=[(name, _slug(name), charts) for name, charts in trace_charts.items()],
        benchmark_charts=_benchmark_charts(benchmarks, colours, rank),
        benchmark_source=benchmark_source,
        benchmark_help=BENCHMARK_HELP,
        legend=[(t, colours[t]) for t in order if t in seen],
        noise_floor=NOISE_FLOOR,
        error_floor=ERROR_FLOOR,
        error_floor_relative=ERROR_FLOOR_RELATIVE,
    )
    return page


def rerender(report_dir: Path) -> Path:
    """Write ``report_dir/conformance.html`` again from ``conformance.json`` (and benchmarks)."""
    report_dir = Path(report_dir)
    body = json.loads((report_dir / "conformance.json").read_text())
    own = report_dir / "benchmarks.json"
    records = json.loads(own.read_text()) if own.is_file() else []
    page = report_dir / "conformance.html"
    order = [t.name for t in targets()]
    page.write_text(
        render_html(body, body.get("traces", {}), records, target_order=order, report_dir=report_dir)
    )
    return page


if __name__ == "__main__":  # python -m harness.reports.html [REPORT_DIR]
    print(rerender(Path(sys.argv[1] if len(sys.argv) > 1 else "reports")))
