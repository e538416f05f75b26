"""The conformance matrix and the benchmark table for a terminal: rich tables that fit its width.

Suite headers are abbreviated (a legend under the table names them), statuses are short words,
coloured when the terminal has colour, and reasons are wrapped to the width. Where even the
abbreviated table is wider than the terminal, its suites are split over several tables. The full
matrix stays in the Markdown and JSON reports; this is what a person reads at the end of a run.
"""

from __future__ import annotations

import io
import shutil
import textwrap
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rich.box import Box
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from .benchmarks import benchmark_figures

__all__ = [
    "wrap_text",
    "grouped_reasons",
    "non_pass_entries",
    "STATUS_WORDS",
    "SUITE_ABBREVIATIONS",
    "render_benchmarks",
    "render_matrix",
    "terminal_width",
]

#: Suite -> column header; every suite of ``harness.core.case.SUITES`` has one.
SUITE_ABBREVIATIONS: dict[str, str] = {
    "export": "exp",
    "equivalence": "eq",
    "determinism": "det",
    "batch-consistency": "batch",
    "stream-continuity": "cont",
    "stream-offline": "offl",
    "stream-chunks": "chunk",
    "stream-reset": "reset",
    "stream-batch": "sbat",
    "stream-initial": "init",
    "hypothesis": "hyp",
    "dynamic-shapes": "dyn",
    "branch-coverage": "brnch",
    "golden": "gold",
    "benchmark": "bench",
}

#: Status -> (word in a cell, style where the terminal has colour).
STATUS_WORDS: dict[str, tuple[str, str]] = {
    "pass": ("ok", "green"),
    "fail": ("FAIL", "bold red"),
    "error": ("ERR", "bold magenta"),
    "xpass": ("XPASS", "bold red"),
    "export-error": ("EXPRT", "bold red"),
    "xfail": ("xfail", "yellow"),
    "skip": ("skip", "dim"),
}

DEFAULT_WIDTH = 120
#: rich's SIMPLE_HEAD in ASCII: a rule under the header, nothing else (any console encoding)
_RULE_UNDER_HEAD = Box("    \n    \n -- \n    \n    \n    \n    \n    \n", ascii=True)
_INDENT = "  "
_HANGING = "      "
_METRIC = "\0metric"  # the metric column's key among the suites
_ERRORS_HEADING = "errors (the harness, the case or the input failed; no verdict on the export):"


def terminal_width(terminalreporter: Any = None) -> int:
    """The width to render for: pytest's when it was set, else the terminal's, else 120."""
    writer = getattr(terminalreporter, "_tw", None)
    explicit = getattr(writer, "_terminal_width", None)
    if isinstance(explicit, int) and explicit > 0:
        return explicit
    columns = shutil.get_terminal_size(fallback=(DEFAULT_WIDTH, 24)).columns
    return columns if columns >= 40 else DEFAULT_WIDTH


def _console(width: int, markup: bool) -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    console = Console(
        file=buffer,
        width=width,
        force_terminal=markup,
        no_color=not markup,
        color_system="standard" if markup else None,
        highlight=False,
        emoji=False,
        soft_wrap=False,
        legacy_windows=False,
    )
    return console, buffer


def _split(
    console: Console, keys: Sequence[str], build: Callable[[Sequence[str]], Table], width: int
) -> list[Table]:
    """Tables over consecutive groups of ``keys`` (``build`` makes one from a group), each group as
    long as its table fits ``width``."""
    unbounded = console.options.update_width(10_000)  # measure() clamps to the console's width
    groups: list[list[str]] = [[]]
    for key in keys:
        trial = [*groups[-1], key]
        needed = console.measure(build(trial), options=unbounded).maximum
        if groups[-1] and needed > width:
            groups.append([key])
        else:
            groups[-1] = trial
    return [build(group) for group in groups]


def wrap_text(text: str, width: int, indent: str = _INDENT, hanging: str = _HANGING) -> list[str]:
    """``text`` filled to ``width`` with a hanging indent. Paths, options and other words longer
    than a line are kept whole (a line may overflow) so they can be copied."""
    return textwrap.wrap(
        text,
        width=width,
        initial_indent=indent,
        subsequent_indent=hanging,
        break_on_hyphens=False,
        break_long_words=False,
    ) or [indent.rstrip()]


def _section(heading: str, entries: Sequence[tuple[str, str]], width: int, style: str) -> list[Text]:
    """A heading, then one wrapped entry per (label, text): ``label: text`` with the label styled."""
    lines = [Text(""), Text(heading, style="bold")]
    for label, body in entries:
        for i, line in enumerate(wrap_text(f"{label}: {body}", width)):
            text = Text(line)
            if i == 0:
                text.stylize(style, len(_INDENT), len(_INDENT) + len(label) + 1)
            lines.append(text)
    return lines


def _print(console: Console, buffer: io.StringIO, parts: Sequence[RenderableType]) -> str:
    for part in parts:
        console.print(part, crop=False, overflow="fold")
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()).rstrip("\n")


def _cells_label(cells: Sequence[tuple[str, str]]) -> str:
    by_case: dict[str, list[str]] = {}
    for case_name, target_name in cells:
        names = by_case.setdefault(case_name, [])
        if target_name not in names:
            names.append(target_name)
    return "; ".join(f"{case_name}/{', '.join(names)}" for case_name, names in by_case.items())


def grouped_reasons(rows: Sequence[Mapping[str, Any]], key: str = "reasons") -> list[tuple[str, str]]:
    """One (cells, text) per distinct reason, in the rows' order, the cells that give it named
    once: ``pesto/torch-export, aoti, onnx`` (``; `` between cases), so a reason that eight
    targets share is read once."""
    cells_by_reason: dict[str, list[tuple[str, str]]] = {}
    for row in rows:
        for reason in row[key]:
            cells_by_reason.setdefault(reason, []).append((row["case"], row["target"]))
    return [(_cells_label(cells), reason) for reason, cells in cells_by_reason.items()]


#: Statuses a case declares or a tool decides (an expected failure, a skip): their cells are
#: grouped by the declared reason, the observed detail left to the reports.
_DECLARED = ("xfail", "skip")
_OBSERVED = " [observed: "


def non_pass_entries(rows: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """The non-pass cells as (label, text), read once each: a cell that did not do what was
    expected (fail, xpass, export-error) with its whole reason; expected failures and skips
    grouped by their declared reason over every suite and target that gives it (``stream-chunks
    (xfail) on pesto/torch-export, aoti, onnx``), the observed detail left to the reports."""
    unexpected: list[tuple[str, str]] = []
    declared: dict[tuple[str, str], tuple[dict[str, None], list[tuple[str, str]]]] = {}
    for row in rows:
        for suite_name, body in row["suites"].items():
            bad = [(name, v) for name, v in body["inputs"].items() if v["status"] not in ("pass", "error")]
            if not bad:
                continue
            status = body["status"] if body["status"] not in ("pass", "error") else bad[0][1]["status"]
            if status in _DECLARED:
                reason = bad[0][1]["reason"].split(_OBSERVED)[0]
                suites, cells = declared.setdefault((status, reason), ({}, []))
                suites[suite_name] = None  # an ordered set
                cells.append((row["case"], row["target"]))
            else:
                text = next((r for r in row["reasons"] if r.startswith(f"{suite_name} [")), None)
                unexpected.append(
                    (f"{row['case']}/{row['target']}", text or f"{suite_name}: {bad[0][1]['reason']}")
                )
    grouped = [
        (f"{', '.join(suites)} ({status}) on {_cells_label(cells)}", reason)
        for (status, reason), (suites, cells) in declared.items()
    ]
    return unexpected + grouped


def _legend(suites: Sequence[str], statuses: set[str], width: int) -> list[Text]:
    """What the abbreviated headers and the status words stand for (those in the table only)."""
    names = [f"{SUITE_ABBREVIATIONS.get(s, s)} = {s}" for s in suites if SUITE_ABBREVIATIONS.get(s, s) != s]
    words = [f"{word} = {status}" for status, (word, _) in STATUS_WORDS.items() if status in statuses]
    words += ["- = not run"] if "-" in statuses else []
    lines: list[str] = []
    for heading, entries in (("suites", names), ("statuses", words)):
        line = f"{heading}:"
        for i, entry in enumerate(entries):  # an entry is never broken over two lines
            entry += "," if i < len(entries) - 1 else ""
            if len(line) + 1 + len(entry) > width and line.strip():
                lines.append(line)
                line = " "
            line += " " + entry
        lines += [line] if entries else []
    return [Text(line, style="dim") for line in lines]


def render_matrix(
    rows: Sequence[Mapping[str, Any]],
    suites: Sequence[str],
    *,
    width: int = DEFAULT_WIDTH,
    markup: bool = False,
    metrics: Sequence[str] | None = None,
    state_audit: Mapping[str, Sequence[str]] | None = None,
    branch_coverage: Mapping[str, str] | None = None,
) -> str:
    """The matrix as text no wider than ``width``: table(s), legend, reasons, state and branches.

    ``rows`` are ``ConformanceReport.rows()``; ``metrics`` the worst equivalence metric of each
    row as text (one per row, "" where none).
    """
    console, buffer = _console(width, markup)
    metric_texts = list(metrics) if metrics is not None else [""] * len(rows)

    def build(group: Sequence[str]) -> Table:
        table = Table(box=_RULE_UNDER_HEAD, pad_edge=False, show_edge=False, collapse_padding=True)
        table.add_column("case", no_wrap=True)
        table.add_column("target", no_wrap=True)
        for key in group:
            header = "eq metric (worst)" if key == _METRIC else SUITE_ABBREVIATIONS.get(key, key)
            table.add_column(header, no_wrap=True)
        for row, metric in zip(rows, metric_texts):
            cells: list[Text | str] = [row["case"], row["target"]]
            for key in group:
                status = row["suites"].get(key, {}).get("status")
                word, style = STATUS_WORDS.get(status, (status, "")) if status else ("-", "dim")
                cells.append(metric if key == _METRIC else Text(word, style=style))
            table.add_row(*cells)
        return table

    parts: list[RenderableType] = []
    tables = _split(
        console,
        [*suites, _METRIC] if any(m not in ("", "-") for m in metric_texts) else list(suites),
        build,
        width,
    )
    for i, table in enumerate(tables):
        if len(tables) > 1:  # too wide for the terminal: the suites split over several tables
            table.title = f"table {i + 1} of {len(tables)}"
            table.title_justify = "left"
            parts += [Text("")] if i else []
        parts.append(table)
    used = {row["suites"].get(s, {}).get("status", "-") for row in rows for s in suites}
    parts += _legend(suites, used, width)
    reasons = non_pass_entries(rows)
    if reasons:
        parts += _section("non-pass cells:", reasons, width, "bold yellow")
    errors = grouped_reasons(rows, "errors")
    if errors:
        parts += _section(_ERRORS_HEADING, errors, width, "bold magenta")
    if state_audit:
        found = [(case, "; ".join(items) or "none") for case, items in sorted(state_audit.items())]
        parts += _section("state audit (what forward carries between calls):", found, width, "bold")
    if branch_coverage:
        heading = "branch coverage (data-dependent branches, sides taken by generated inputs):"
        parts += _section(heading, sorted(branch_coverage.items()), width, "bold")
    return _print(console, buffer, parts)


_BENCH_COLUMNS: tuple[tuple[str, str], ...] = (
    ("step_ms", "step\nms"),
    ("speedup", "speed-up\nvs eager"),
    ("rtf", "real-time\nfactor"),
    ("cold_ms", "cold\nstart ms"),
    ("size_mb", "size\nMB"),
    ("size_ratio", "size vs\nfloat"),
    ("float_speedup", "speed-up\nvs float"),
    ("gflops", "GFLOP/s"),
    ("peak_percent", "% of\npeak"),
)
_BENCH_FORMATS = {
    "step_ms": ".3f",
    "speedup": ".2f",
    "rtf": ".4f",
    "cold_ms": ".1f",
    "size_mb": ".2f",
    "size_ratio": ".2f",
    "float_speedup": ".2f",
    "gflops": ".2f",
    "peak_percent": ".1f",
}
OVER_PEAK_MARK = "*"


def _over_peak_note(run_peak: float | None) -> str:
    peak = f"{run_peak:.1f} GFLOP/s" if run_peak else "not measured"
    return (
        f"{OVER_PEAK_MARK} % of peak is the model's GFLOP/s (the FLOPs torch's flop counter counts for one "
        f"eager call, divided by the target's step time) against the best float32 512x512 matmul torch "
        f"measured in this run ({peak}, torch's current threads). Over 100% is not a kernel beating the "
        "machine: the target did less arithmetic than the eager count (int8 or fused kernels, a cheaper "
        "convolution algorithm, work folded away at export), its runtime used more threads or faster "
        "kernels than torch's matmul, or every peak measurement ran while the machine was busy and reads low."
    )


def render_benchmarks(
    records: Sequence[dict[str, Any]], *, width: int = DEFAULT_WIDTH, markup: bool = False
) -> str:
    """The benchmark table (``harness.reports.benchmarks.benchmark_table``'s figures) as rich tables, one
    per case, no wider than ``width``; a footnote explains a "% of peak" over 100."""
    console, buffer = _console(width, markup)
    parts: list[RenderableType] = []
    over_peak = False
    cases = benchmark_figures(records)
    run_peak = cases[0][2] if cases else None
    for case_name, streaming, _, figures in cases:
        one = "streaming step" if streaming else "call"

        def build(group: Sequence[str], figures: Sequence[dict[str, Any]] = figures) -> Table:
            table = Table(box=_RULE_UNDER_HEAD, pad_edge=False, show_edge=False, collapse_padding=True)
            table.add_column("target", no_wrap=True)
            for key in group:
                table.add_column(dict(_BENCH_COLUMNS)[key], justify="right", no_wrap=True)
            for row in figures:
                cells: list[Text | str] = [row["target"]]
                for key in group:
                    value = row[key]
                    text = "-" if value is None else format(value, _BENCH_FORMATS[key])
                    if key == "speedup" and value is not None:
                        text += "x"
                    if key == "peak_percent" and value is not None and value > 100:
                        cells.append(Text(text + OVER_PEAK_MARK, style="bold yellow"))
                        continue
                    cells.append(text)
                table.add_row(*cells)
            return table

        over_peak |= any((row["peak_percent"] or 0) > 100 for row in figures)
        parts.append(Text(f"{case_name} (one {one})", style="bold"))
        parts += _split(console, [key for key, _ in _BENCH_COLUMNS], build, width)
    peak = f"{run_peak:.1f} GFLOP/s" if run_peak else "not measured"
    notes = [
        f"float32 matmul peak in this run: {peak}; '-': no figure (not measured, or no float counterpart)"
    ]
    if over_peak:
        notes.append(_over_peak_note(run_peak))
    for note in notes:
        parts += [Text(line, style="dim") for line in wrap_text(note, width, "", "  ")]
    return _print(console, buffer, parts)
