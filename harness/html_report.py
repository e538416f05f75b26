"""A self-contained HTML report: the matrix with expandable reasons, and pictures.

For every case whose outputs give one value per call (PESTO's pitch, confidence, volume), the
eager trace and each target's trace over time, and the error over chunks; the benchmark ratios
as bars. Plain inline SVG: the file opens anywhere, with no script and no download.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["render_html", "svg_bars", "svg_lines"]

PALETTE = (
    "#000000",
    "#d62728",
    "#1f77b4",
    "#2ca02c",
    "#ff7f0e",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#7f7f7f",
)
STATUS_COLOURS = {
    "pass": "#c8e6c9",
    "xfail": "#fff3c4",
    "skip": "#eeeeee",
    "fail": "#ffcdd2",
    "error": "#ffcdd2",
    "xpass": "#ffcdd2",
    "export-error": "#ffcdd2",
}


def _finite(values: Sequence[float]) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v)]


def svg_lines(
    series: Mapping[str, Sequence[float]],
    *,
    title: str,
    ylabel: str,
    xlabel: str = "frame (call)",
    width: int = 760,
    height: int = 260,
) -> str:
    """An SVG line chart, one polyline per series (a first series named "eager" is drawn thick)."""
    left, right, top, bottom = 60, 170, 28, 36
    values = [v for s in series.values() for v in _finite(s)]
    if not values:
        return ""
    lo, hi = min(values), max(values)
    if hi == lo:
        lo, hi = lo - 1.0, hi + 1.0
    n = max(len(s) for s in series.values())
    plot_w, plot_h = width - left - right, height - top - bottom

    def x(i: int) -> float:
        return left + plot_w * (i / max(n - 1, 1))

    def y(v: float) -> float:
        return top + plot_h * (1.0 - (v - lo) / (hi - lo))

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        'font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="16" font-size="13" font-weight="bold">{html.escape(title)}</text>',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#888"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#888"/>',
        f'<text x="{left + plot_w / 2}" y="{height - 6}" text-anchor="middle">{html.escape(xlabel)}</text>',
        f'<text x="14" y="{top + plot_h / 2}" transform="rotate(-90 14 {top + plot_h / 2})" text-anchor="middle">'
        f"{html.escape(ylabel)}</text>",
    ]
    for k in range(5):
        value = lo + (hi - lo) * k / 4
        parts.append(f'<text x="{left - 6}" y="{y(value) + 4:.1f}" text-anchor="end">{value:.3g}</text>')
        parts.append(
            f'<line x1="{left}" y1="{y(value):.1f}" x2="{left + plot_w}" y2="{y(value):.1f}" stroke="#eee"/>'
        )
    for index, (label, values_) in enumerate(series.items()):
        colour = PALETTE[index % len(PALETTE)]
        points = " ".join(
            f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values_) if v is not None and math.isfinite(v)
        )
        reference = index == 0 and label == "eager"
        stroke = 3.0 if reference else 1.4
        dash = "" if reference or index == 1 else ' stroke-dasharray="5 3"'
        parts.append(
            f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="{stroke}" opacity="0.85"{dash}/>'
        )
        legend_y = top + 14 * index + 8
        parts.append(
            f'<line x1="{width - right + 10}" y1="{legend_y}" x2="{width - right + 30}" y2="{legend_y}" '
            f'stroke="{colour}" stroke-width="{stroke}"{dash}/>'
        )
        parts.append(f'<text x="{width - right + 34}" y="{legend_y + 4}">{html.escape(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def svg_bars(values: Mapping[str, float], *, title: str, unit: str, width: int = 760) -> str:
    """A horizontal bar chart (e.g. speed-up against eager), with a line at 1."""
    items = [(k, v) for k, v in values.items() if v is not None and math.isfinite(v) and v > 0]
    if not items:
        return ""
    left, right, row = 170, 60, 20
    height = 40 + row * len(items)
    top = max(v for _, v in items)
    scale = (width - left - right) / top
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="16" font-size="13" font-weight="bold">{html.escape(title)}</text>',
    ]
    for i, (label, value) in enumerate(items):
        y0 = 28 + i * row
        parts.append(f'<text x="{left - 6}" y="{y0 + 12}" text-anchor="end">{html.escape(label)}</text>')
        parts.append(
            f'<rect x="{left}" y="{y0}" width="{value * scale:.1f}" height="{row - 6}" fill="#1f77b4"/>'
        )
        parts.append(
            f'<text x="{left + value * scale + 4:.1f}" y="{y0 + 12}">{value:.2f}{html.escape(unit)}</text>'
        )
    if top >= 1:
        parts.append(
            f'<line x1="{left + scale:.1f}" y1="24" x2="{left + scale:.1f}" y2="{height - 4}" stroke="#d62728"/>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _matrix_html(body: Mapping[str, Any]) -> str:
    rows = body["rows"]
    suites: list[str] = []
    for row in rows:
        suites += [s for s in row["suites"] if s not in suites]
    out = [
        "<table><tr><th>case</th><th>target</th>"
        + "".join(f"<th>{html.escape(s)}</th>" for s in suites)
        + "</tr>"
    ]
    for row in rows:
        cells = []
        for suite in suites:
            cell = row["suites"].get(suite)
            if cell is None:
                cells.append("<td>-</td>")
                continue
            status = cell["status"]
            bad = [(name, v) for name, v in cell["inputs"].items() if v["status"] != "pass"]
            inner = html.escape(status)
            if bad:
                reasons = "".join(
                    f"<li><b>{html.escape(name)}</b> ({html.escape(v['status'])}): {html.escape(v['reason'])}</li>"
                    for name, v in bad
                )
                inner = f"<details><summary>{inner}</summary><ul>{reasons}</ul></details>"
            cells.append(f'<td style="background:{STATUS_COLOURS.get(status, "#fff")}">{inner}</td>')
        out.append(
            f"<tr><td>{html.escape(row['case'])}</td><td>{html.escape(row['target'])}</td>{''.join(cells)}</tr>"
        )
    out.append("</table>")
    return "".join(out)


def trace_svgs(
    traces: Mapping[str, Any], *, target_order: Sequence[str] = (), only_targets: Sequence[str] | None = None
) -> list[tuple[str, str]]:
    """(caption, svg) for each case, input and per-call output: eager against every target,
    then each target's absolute error over chunks."""
    rank = {name: i for i, name in enumerate(target_order)}
    figures = []
    for key, by_target in sorted(traces.items()):
        case_name, input_name = key.split("/", 1)
        eager = by_target.get("eager", {})
        others = sorted((t for t in by_target if t != "eager"), key=lambda t: (rank.get(t, len(rank)), t))
        if only_targets is not None:
            others = [t for t in others if t in only_targets]
        for output in sorted(eager):
            series = {"eager": eager[output]}
            series.update({t: by_target[t][output] for t in others if output in by_target[t]})
            figures.append(
                (
                    f"{case_name} on {input_name}: {output}",
                    svg_lines(
                        series,
                        title=f"{case_name} / {input_name}: {output}, eager against each target",
                        ylabel=output,
                    ),
                )
            )
            errors = {
                t: [
                    abs(a - e) if (a is not None and e is not None) else None
                    for a, e in zip(v, eager[output])
                ]
                for t, v in series.items()
                if t != "eager"
            }
            figures.append(
                (
                    f"{case_name} on {input_name}: |{output} - eager|",
                    svg_lines(
                        errors,
                        title=f"{case_name} / {input_name}: |{output} - eager| per chunk",
                        ylabel="abs error",
                    ),
                )
            )
    return figures


def render_html(
    body: Mapping[str, Any],
    traces: Mapping[str, Any],
    benchmarks: Sequence[Mapping[str, Any]],
    *,
    target_order: Sequence[str] = (),
) -> str:
    """The whole report as one HTML document."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>export conformance</title><style>",
        "body{font-family:sans-serif;margin:24px;max-width:1200px} table{border-collapse:collapse;font-size:13px}",
        "td,th{border:1px solid #ccc;padding:3px 6px;vertical-align:top} details summary{cursor:pointer}",
        "figure{margin:12px 0} figcaption{font-size:12px;color:#555}</style></head><body>",
        "<h1>Export conformance</h1>",
        f"<p>versions: {html.escape(', '.join(f'{k} {v}' for k, v in sorted(body.get('versions', {}).items())))}</p>",
        "<h2>Matrix</h2>",
        _matrix_html(body),
        "<p>Click a non-pass cell for its reason on each input set.</p>",
    ]
    audit = body.get("state_audit") or {}
    if audit:
        parts.append("<h2>State audit</h2><ul>")
        parts += [
            f"<li><b>{html.escape(c)}</b>: {html.escape('; '.join(f) or 'none')}</li>"
            for c, f in sorted(audit.items())
        ]
        parts.append("</ul>")
    located = body.get("localizations") or {}
    if located:
        parts.append("<h2>Where failing cells leave eager</h2>")
        for name, loc in sorted(located.items()):
            parts.append(
                f"<details><summary><b>{html.escape(name)}</b>: {html.escape(loc.get('headline', ''))}</summary>"
                f"<p>{html.escape(loc.get('how', ''))}; call {loc.get('call', '?')}</p>"
            )
            rows = loc.get("rows") or []
            if rows:
                parts.append("<table><tr><th>module</th><th>class</th><th>max abs</th><th>relative</th><th>jump</th></tr>")
                for row in rows:
                    mark = " style='background:#fdd'" if row.get("diverges") else ""
                    cells = [row.get("module") or "(model)", row.get("class", "")] + [
                        f"{v:.3g}" if isinstance(v, (int, float)) else str(v)
                        for v in (row.get("max_abs"), row.get("relative"), row.get("jump"))
                    ]
                    parts.append(f"<tr{mark}>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
                parts.append("</table>")
            parts.append("</details>")
    figures = trace_svgs(traces, target_order=target_order)
    if figures:
        parts.append("<h2>Outputs over time</h2>")
        parts += [
            f"<figure>{svg}<figcaption>{html.escape(caption)}</figcaption></figure>"
            for caption, svg in figures
            if svg
        ]
    speedups: dict[str, dict[str, float]] = {}
    for record in benchmarks:
        speedups.setdefault(record["case"], {})
        if record.get("step_s"):
            speedups[record["case"]][record["target"]] = record["step_s"]
    charts = []
    for case_name, steps in sorted(speedups.items()):
        if "eager" in steps:
            ratios = {t: steps["eager"] / s for t, s in steps.items()}
            charts.append(
                svg_bars(ratios, title=f"{case_name}: speed-up of one step against eager", unit="x")
            )
    if charts:
        parts.append("<h2>Benchmarks</h2>")
        parts += [f"<figure>{c}</figure>" for c in charts if c]
    parts.append("</body></html>")
    return "\n".join(parts)
