"""Line and bar charts written as SVG text: the report's only drawing code.

A report draws a dozen many-line charts per streaming case; laying them out and serialising them
through matplotlib cost about 3 s of CPU per run (measured, 12 PESTO charts), more than the rest
of the page and a fifth of the harness's overhead over the work its verdicts need. These charts
need polylines with gaps, a linear or log axis with round ticks, a grid, a shaded band and a
legend; drawn here they cost milliseconds. Output is deterministic (no ids, no dates), so two
renderings of one report are byte-identical.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

__all__ = ["Band", "BarChart", "Line", "LineChart", "Panel", "linear_ticks", "log_ticks"]

FONT = "font-family:DejaVu Sans,Helvetica,Arial,sans-serif"
GRID = "#e5e5e5"
FRAME = "#333333"


@dataclass(frozen=True)
class Line:
    """One series: NaN values are gaps (never drawn at zero)."""

    label: str | None
    values: Sequence[float]
    colour: str
    width: float = 1.5
    dash: str | None = None  # an SVG stroke-dasharray
    marker: float = 0.0  # dot diameter in px, 0 for none
    opacity: float = 0.9


@dataclass(frozen=True)
class Band:
    """A shaded horizontal band across a panel (a noise floor), with its legend label."""

    low: float
    high: float
    colour: str
    label: str


@dataclass
class Panel:
    """One plot area: its lines, y range (low, high), scale and labels."""

    lines: list[Line]
    ylim: tuple[float, float]
    log: bool = False
    ylabel: str = ""
    band: Band | None = None


def _nice_step(span: float, count: int) -> float:
    raw = span / max(count, 1)
    power = 10.0 ** math.floor(math.log10(raw))
    for factor in (1.0, 2.0, 2.5, 5.0, 10.0):
        if raw <= factor * power * (1 + 1e-9):
            return factor * power
    return 10.0 * power


def linear_ticks(low: float, high: float, count: int = 6, *, integer: bool = False) -> list[float]:
    """Round tick values inside [low, high], about ``count`` of them (whole numbers if asked)."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low] if math.isfinite(low) else []
    step = _nice_step(high - low, count)
    if integer:
        step = max(1.0, math.ceil(step))
    first = math.ceil(low / step - 1e-9)
    ticks = []
    for k in range(first, first + count * 3 + 2):
        value = round(k * step, 12)
        if value > high + step * 1e-9:
            break
        ticks.append(0.0 if value == 0 else value)
    return ticks


def log_ticks(low: float, high: float, most: int = 8) -> list[float]:
    """Powers of ten inside [low, high], thinned to at most ``most``."""
    first, last = math.ceil(math.log10(low) - 1e-9), math.floor(math.log10(high) + 1e-9)
    stride = max(1, math.ceil((last - first + 1) / most))
    return [10.0**k for k in range(first, last + 1, stride)]


def _number(value: float) -> str:
    return f"{value:.6g}".replace("-", "\u2212") if value != 0 else "0"


def _power_label(value: float) -> str:
    exponent = round(math.log10(value))
    return f'10<tspan dy="-5" font-size="8">{_number(exponent)}</tspan>'


def _points(values: Sequence[float], x_of, y_of) -> list[list[tuple[float, float]]]:
    """Runs of finite points, one list per unbroken stretch."""
    runs: list[list[tuple[float, float]]] = [[]]
    for i, value in enumerate(values):
        if value is None or not math.isfinite(value):
            if runs[-1]:
                runs.append([])
            continue
        runs[-1].append((x_of(i), y_of(value)))
    return [run for run in runs if run]


def _path(runs: list[list[tuple[float, float]]]) -> str:
    return " ".join("M" + " L".join(f"{x:.1f},{y:.1f}" for x, y in run) for run in runs)


def _dots(runs: list[list[tuple[float, float]]]) -> str:
    """Zero-length segments with round caps: one path draws every marker."""
    return " ".join(f"M{x:.1f},{y:.1f}h0" for run in runs for x, y in run)


def _text(x: float, y: float, body: str, *, size: int = 11, anchor: str = "start", extra: str = "") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}"{extra}>{body}</text>'


@dataclass
class LineChart:
    """Panels stacked over one shared x axis (calls), a title and a legend on the right."""

    panels: list[Panel]
    title: str = ""
    xlabel: str = ""
    width: int = 1050
    height: int = 540
    legend: list[tuple[str, Line | Band]] = field(default_factory=list)

    #: plot area in pixels: left, right edge, top, bottom edge (of the whole stack)
    left: int = 80
    right: int = 808
    top: int = 38
    bottom: int = 486
    gap: int = 25

    def _length(self) -> int:
        return max((len(line.values) for panel in self.panels for line in panel.lines), default=0)

    def svg(self) -> str:
        """The chart as one ``<svg>`` element (usable inline and as a file)."""
        count = self._length()
        x_low, x_high = -0.05 * max(count - 1, 1), (count - 1) + 0.05 * max(count - 1, 1)
        span = self.right - self.left
        x_of = lambda i: self.left + (i - x_low) / (x_high - x_low) * span  # noqa: E731
        rows = len(self.panels)
        height = (self.bottom - self.top - self.gap * (rows - 1)) / rows
        parts = [
            f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {self.width} {self.height}" '
            f'width="{self.width}" height="{self.height}" style="{FONT}">',
            f'<rect width="{self.width}" height="{self.height}" fill="#ffffff"/>',
        ]
        if self.title:
            parts.append(_text(self.left, self.top - 10, escape(self.title), size=14))
        x_ticks = linear_ticks(max(0.0, x_low), x_high, 12, integer=True)
        for row, panel in enumerate(self.panels):
            top = self.top + row * (height + self.gap)
            parts += self._panel(panel, top, height, x_of, x_ticks, last=row == rows - 1)
        if self.xlabel:
            parts.append(
                _text((self.left + self.right) / 2, self.bottom + 36, escape(self.xlabel), anchor="middle")
            )
        parts += self._legend()
        parts.append("</svg>")
        return "\n".join(parts)

    def _panel(
        self, panel: Panel, top: float, height: float, x_of, x_ticks: list[float], *, last: bool
    ) -> list[str]:
        low, high = panel.ylim
        if panel.log:
            low_v, high_v = math.log10(low), math.log10(high)

            def y_of(v: float) -> float:
                v = min(max(v, low), high)
                return top + height - (math.log10(v) - low_v) / (high_v - low_v) * height

            ticks = log_ticks(low, high)
            label = _power_label
        else:

            def y_of(v: float) -> float:
                v = min(max(v, low), high)
                return top + height - (v - low) / (high - low) * height

            ticks = linear_ticks(low, high, 6)
            label = _number
        left, right, bottom = self.left, self.right, top + height
        parts = []
        if panel.band is not None:
            y1, y2 = y_of(panel.band.high), y_of(panel.band.low)
            parts.append(
                f'<rect x="{left}" y="{y1:.1f}" width="{right - left}" height="{y2 - y1:.1f}" fill="{panel.band.colour}"/>'
            )
        for value in ticks:
            y = y_of(value)
            parts.append(f'<path d="M{left},{y:.1f} H{right}" stroke="{GRID}" stroke-width="0.8"/>')
            parts.append(_text(left - 6, y + 4, label(value), size=10, anchor="end"))
        for value in x_ticks:
            x = x_of(value)
            parts.append(f'<path d="M{x:.1f},{top:.1f} V{bottom:.1f}" stroke="{GRID}" stroke-width="0.8"/>')
            if last:
                parts.append(_text(x, bottom + 16, _number(value), size=10, anchor="middle"))
        for line in panel.lines:
            runs = _points(line.values, x_of, y_of)
            if not runs:
                continue
            dash = f' stroke-dasharray="{line.dash}"' if line.dash else ""
            parts.append(
                f'<path d="{_path(runs)}" fill="none" stroke="{line.colour}" stroke-width="{line.width}" '
                f'stroke-opacity="{line.opacity}" stroke-linejoin="round"{dash}/>'
            )
            if line.marker:
                parts.append(
                    f'<path d="{_dots(runs)}" stroke="{line.colour}" stroke-width="{line.marker}" stroke-linecap="round"/>'
                )
        parts.append(
            f'<rect x="{left}" y="{top:.1f}" width="{right - left}" height="{height:.1f}" fill="none" '
            f'stroke="{FRAME}" stroke-width="0.8"/>'
        )
        if panel.ylabel:
            middle = top + height / 2
            parts.append(
                _text(
                    left - 58,
                    middle,
                    escape(panel.ylabel),
                    anchor="middle",
                    extra=f' transform="rotate(-90 {left - 58} {middle:.1f})"',
                )
            )
        return parts

    def _legend(self) -> list[str]:
        x, y, parts = self.right + 12, self.top + 8, []
        for label, entry in self.legend:
            if isinstance(entry, Band):
                parts.append(f'<rect x="{x}" y="{y - 6}" width="24" height="10" fill="{entry.colour}"/>')
            else:
                dash = f' stroke-dasharray="{entry.dash}"' if entry.dash else ""
                parts.append(
                    f'<path d="M{x},{y} h24" stroke="{entry.colour}" stroke-width="{entry.width}"{dash}/>'
                )
            parts.append(_text(x + 30, y + 4, escape(label), size=11))
            y += 18
        return parts


@dataclass
class BarChart:
    """Horizontal bars from a reference line at 1 to each value, on a log axis, each labelled."""

    names: list[str]
    values: list[float]
    labels: list[str]
    colours: list[str]
    title: str = ""
    xlabel: str = ""
    reference_colour: str = "#000000"
    width: int = 1050

    def svg(self) -> str:
        """The chart as one ``<svg>`` element."""
        rows = len(self.names)
        height = int(90 + 38 * rows)
        left = 20 + 7 * max((len(n) for n in self.names), default=4)
        right, top, bottom = self.width - 20, 30, height - 50
        low = min([*self.values, 1.0]) / 4
        high = max([*self.values, 1.0]) * 4
        span = math.log10(high) - math.log10(low)
        x_of = lambda v: left + (math.log10(v) - math.log10(low)) / span * (right - left)  # noqa: E731
        band = (bottom - top) / max(rows, 1)
        parts = [
            f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {self.width} {height}" width="{self.width}" '
            f'height="{height}" style="{FONT}">',
            f'<rect width="{self.width}" height="{height}" fill="#ffffff"/>',
        ]
        if self.title:
            parts.append(_text(left, top - 10, escape(self.title), size=14))
        for tick in log_ticks(low, high):
            x = x_of(tick)
            parts.append(f'<path d="M{x:.1f},{top} V{bottom}" stroke="{GRID}" stroke-width="0.8"/>')
            parts.append(_text(x, bottom + 16, f"{tick:g}x", size=10, anchor="middle"))
        one = x_of(1.0)
        for row, (name, value, label, colour) in enumerate(
            zip(self.names, self.values, self.labels, self.colours)
        ):
            middle = top + band * (row + 0.5)
            end = x_of(value)
            parts.append(
                f'<rect x="{min(one, end):.1f}" y="{middle - band * 0.325:.1f}" width="{abs(end - one):.1f}" '
                f'height="{band * 0.65:.1f}" fill="{colour}"/>'
            )
            slower = value < 1.0
            parts.append(
                _text(
                    end + (-4 if slower else 4),
                    middle + 4,
                    escape(label),
                    size=10,
                    anchor="end" if slower else "start",
                )
            )
            parts.append(_text(left - 6, middle + 4, escape(name), size=11, anchor="end"))
        parts.append(
            f'<path d="M{one:.1f},{top} V{bottom}" stroke="{self.reference_colour}" stroke-width="1.5"/>'
        )
        parts.append(
            f'<rect x="{left}" y="{top}" width="{right - left}" height="{bottom - top}" fill="none" stroke="{FRAME}" stroke-width="0.8"/>'
        )
        if self.xlabel:
            parts.append(_text((left + right) / 2, bottom + 36, escape(self.xlabel), anchor="middle"))
        parts.append("</svg>")
        return "\n".join(parts)
