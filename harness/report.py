"""The conformance matrix: collected from test reports, printed, written as Markdown and JSON."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .baseline import Baseline, BaselineChange, gated
from .benchmarks import benchmark_table
from .cache import library_versions
from .case import SUITES
from .cell_record import RECORD_PROPERTY, CellRecord
from .html_report import metric_text, render_html
from .registry import CaseError, cases
from .registry import case as find_case
from .summary import STATUS_ORDER
from .targets import EAGER, targets
from .terminal_matrix import render_benchmarks, render_matrix, terminal_width, wrap_text

__all__ = ["STATUS_ORDER", "ConformanceReport", "InputResult", "MatrixCollector", "status_of"]


@dataclass(frozen=True)
class InputResult:
    input_name: str
    status: str
    reason: str
    metric: dict[str, Any] | None = None


def runtime_settings() -> dict[str, Any]:
    """The runtime knobs this run used (they change what a cell measures, not the exports): every
    target's own (``Target.runtime_settings``: onnxruntime's threads, OpenVINO's precision)."""
    settings: dict[str, Any] = {}
    for target in targets():
        settings.update(target.runtime_settings())
    return settings


def _first_line(text: str) -> str:
    for line in str(text).splitlines():
        line = line.strip()
        if line:
            return line[:400]
    return ""


def _longrepr_message(report: pytest.TestReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        return _first_line(crash.message)
    if isinstance(report.longrepr, tuple):
        return _first_line(report.longrepr[2])
    return _first_line(str(report.longrepr))


def status_of(report: pytest.TestReport, record: CellRecord | None) -> tuple[str, str] | None:
    """(status, one-line reason) for a test report, or None for phases that say nothing new.

    The record's ``outcome`` is the plugin's classification of what the cell raised: a verdict
    (``fail``), an exporter refusal (``export-error``), anything else (``error``: the harness,
    the case or the user's input, never the export), or a strict expected failure that passed
    (``xpass``). pytest's outcome says only skipped and expected-to-fail.
    """
    observed = (record.summary if record else None) or ""
    outcome = record.outcome if record else None
    if report.when == "call":
        if report.passed:
            return "pass", ""
        if report.skipped and hasattr(report, "wasxfail"):
            return (
                "xfail",
                f"{report.wasxfail} [observed: {_first_line(observed) or _longrepr_message(report)}]",
            )
        if report.skipped:
            return "skip", _longrepr_message(report).removeprefix("Skipped: ")
        message = _longrepr_message(report)
        status = outcome.status if outcome is not None else "fail"
        if status == "xpass":
            return "xpass", f"passed but declared as expected failure: {message}"
        if status == "export-error":
            return "export-error", (_first_line(observed) or message).removeprefix("export-error: ")
        if status == "error":
            return "error", outcome.reason or message
        return "fail", _first_line(observed) or message
    if report.when == "setup" and report.skipped:
        if hasattr(report, "wasxfail"):
            return "xfail", report.wasxfail
        return "skip", _longrepr_message(report).removeprefix("Skipped: ")
    if report.failed:
        return "error", f"{report.when}: {_longrepr_message(report)}"
    return None


@dataclass
class ConformanceReport:
    """Statuses per (case, target, suite) and per input set; rendered as text, Markdown and JSON."""

    out_dir: Path
    cells: dict[tuple[str, str, str], list[InputResult]] = field(default_factory=lambda: defaultdict(list))
    state_audit: dict[str, list[str]] = field(default_factory=dict)
    benchmarks: list[dict[str, Any]] = field(default_factory=list)
    branch_coverage: dict[str, str] = field(default_factory=dict)
    #: "case/input" -> target -> output -> one value per call (outputs with one value per call)
    traces: dict[str, dict[str, dict[str, list[float | None]]]] = field(default_factory=dict)
    #: "case/target/input" -> failure localisation (``harness.localize.Localization.as_dict``)
    localizations: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: "case/target" -> the user's file judged there (``--artifact``): path and sha256 prefix
    artifacts: dict[str, dict[str, str]] = field(default_factory=dict)

    def add(
        self, cell: dict[str, str], status: str, reason: str, result: dict[str, Any] | None = None
    ) -> None:
        metric = (result or {}).get("metric")
        key = (cell["case_name"], cell["target_name"], cell["suite"])
        if cell.get("artifact"):
            self.artifacts[f"{cell['case_name']}/{cell['target_name']}"] = dict(cell["artifact"])
        located = (result or {}).get("localization")
        if located and status in ("fail", "xfail"):
            reason = f"{reason} | {located['headline']}" if reason else located["headline"]
            name = f"{cell['case_name']}/{cell['target_name']}/{cell['input_name']}"
            self.localizations[name] = {k: v for k, v in located.items() if k != "text"}
        self.cells[key].append(InputResult(cell["input_name"], status, reason, metric))

    @staticmethod
    def worst(results: list[InputResult]) -> InputResult:
        return min(results, key=lambda r: STATUS_ORDER.index(r.status))

    def _layout(self) -> tuple[list[str], dict[str, list[str]], list[str]]:
        """Cases by name, targets in registration order, suites in declaration order
        (xdist reports arrive in completion order, which must not reorder the matrix)."""
        target_order = {t.name: i for i, t in enumerate(targets())}
        cases = sorted({k[0] for k in self.cells})
        targets_by_case: dict[str, list[str]] = defaultdict(list)
        for case_name, target_name, _ in self.cells:
            if target_name not in targets_by_case[case_name]:
                targets_by_case[case_name].append(target_name)
        for names in targets_by_case.values():
            names.sort(key=lambda name: (target_order.get(name, len(target_order)), name))
        suites = sorted(
            {k[2] for k in self.cells}, key=lambda s: (SUITES.index(s) if s in SUITES else len(SUITES), s)
        )
        return cases, targets_by_case, suites

    def rows(self) -> list[dict[str, Any]]:
        """One row per (case, target): a status per suite, the worst metric, and the reasons."""
        cases, targets_by_case, suites = self._layout()
        rows = []
        for case_name in cases:
            for target_name in targets_by_case[case_name]:
                row: dict[str, Any] = {
                    "case": case_name,
                    "target": target_name,
                    "suites": {},
                    "reasons": [],
                    "errors": [],
                }
                artifact = self.artifacts.get(f"{case_name}/{target_name}")
                if artifact:
                    row["artifact"] = artifact
                metrics = []
                for suite in suites:
                    results = self.cells.get((case_name, target_name, suite))
                    if not results:
                        continue
                    worst = self.worst(results)
                    row["suites"][suite] = {
                        "status": worst.status,
                        "inputs": {
                            r.input_name: {"status": r.status, "reason": r.reason, "metric": r.metric}
                            for r in results
                        },
                    }
                    results = self._in_declared_order(case_name, results)
                    errors = [r for r in results if r.status == "error"]
                    if errors:
                        names = ",".join(r.input_name for r in errors)
                        row["errors"].append(f"{suite} [{names}]: {errors[0].reason}")
                    bad = [r for r in results if r.status not in ("pass", "error")]
                    if bad:
                        names = ",".join(r.input_name for r in bad)
                        row["reasons"].append(f"{suite} [{names}]: {self.worst(bad).reason}")
                    if suite == "equivalence":  # other suites' metrics measure other things
                        metrics += [r.metric for r in results if r.metric]
                if metrics:
                    worst_metric = max(metrics, key=lambda m: m["value"])
                    row["metric"] = worst_metric
                rows.append(row)
        return rows

    @staticmethod
    def _short_notes(row: dict[str, Any]) -> list[str]:
        """Reasons without the observed detail, suites with the same reason on one line."""
        by_reason: dict[str, list[str]] = {}
        for suite, body in row["suites"].items():
            bad = [v for v in body["inputs"].values() if v["status"] != "pass"]
            if bad:
                reason = bad[0]["reason"].split(" [observed: ")[0]
                by_reason.setdefault(reason, []).append(f"{suite} ({bad[0]['status']})")
        notes = [f"{', '.join(suites)}: {reason}" for reason, suites in by_reason.items()]
        if row.get("artifact"):
            file = row["artifact"]
            notes.insert(0, f"your file (--artifact): {file['path']} (sha256 {file['sha256']})")
        return notes

    @staticmethod
    def _in_declared_order(case_name: str, results: list[InputResult]) -> list[InputResult]:
        try:
            order = list(find_case(case_name).inputs)
        except CaseError:
            return results
        return sorted(
            results, key=lambda r: order.index(r.input_name) if r.input_name in order else len(order)
        )

    @staticmethod
    def _metric_text(row: dict[str, Any]) -> str:
        return metric_text(row)

    def render_text(self, width: int = 120, *, markup: bool = False) -> str:
        """The matrix for a terminal ``width`` columns wide (``harness.terminal_matrix``): suites
        abbreviated with a legend, statuses as short words (coloured with ``markup``), reasons
        wrapped; the full matrix is in ``render_markdown`` and ``as_json``."""
        _, _, suites = self._layout()
        rows = self.rows()
        return render_matrix(
            rows,
            suites,
            width=width,
            markup=markup,
            metrics=[self._metric_text(r) for r in rows],
            state_audit=self.state_audit,
            branch_coverage=self.branch_coverage,
        )

    def render_markdown(self) -> str:
        _, _, suites = self._layout()
        rows = self.rows()
        lines = [
            "| case | target | " + " | ".join(suites) + " | equivalence metric (worst) | notes |",
            "|---|---|" + "---|" * len(suites) + "---|---|",
        ]
        for r in rows:
            statuses = [r["suites"].get(s, {}).get("status", "-") for s in suites]
            statuses = [
                f"**{s}**" if s in ("fail", "error", "xpass", "export-error") else s for s in statuses
            ]
            notes = "<br>".join(note.replace("|", "\\|") for note in self._short_notes(r))
            lines.append(
                f"| {r['case']} | {r['target']} | "
                + " | ".join(statuses)
                + f" | {self._metric_text(r)} | {notes} |"
            )
        if self.state_audit:
            lines += ["", "State audit (buffers that forward mutates):", ""]
            lines += [
                f"- `{case}`: {'; '.join(found) or 'none'}"
                for case, found in sorted(self.state_audit.items())
            ]
        if self.branch_coverage:
            lines += ["", "Branch coverage (data-dependent branches, sides taken by generated inputs):", ""]
            lines += [f"- `{case}`: {summary}" for case, summary in sorted(self.branch_coverage.items())]
        return "\n".join(lines) + "\n"

    def observed(self) -> dict[tuple[str, str, str, str], tuple[str, str]]:
        """(case, target, suite, input) -> (status, reason) for every cell this run observed."""
        return {
            (case, target, suite, r.input_name): (r.status, r.reason)
            for (case, target, suite), results in self.cells.items()
            for r in results
        }

    def as_json(self) -> dict[str, Any]:
        return {
            "schema": "export-conformance/matrix/1",
            "versions": library_versions(),
            "runtime_settings": runtime_settings(),
            "rows": self.rows(),
            "state_audit": self.state_audit,
            "branch_coverage": self.branch_coverage,
            "traces": self.traces,
            "localizations": self.localizations,
        }

    def write(self) -> list[Path]:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        md = self.out_dir / "conformance.md"
        js = self.out_dir / "conformance.json"
        md.write_text(self.render_markdown())
        js.write_text(json.dumps(self.as_json(), indent=2, sort_keys=True) + "\n")
        page = self.out_dir / "conformance.html"
        order = [t.name for t in targets()]
        page.write_text(
            render_html(self.as_json(), self.traces, self.benchmarks, target_order=order, report_dir=self.out_dir)
        )
        written = [md, js, page]
        if not self.benchmarks:  # files from an earlier run must not pass for this one's
            for stale in ("benchmarks.md", "benchmarks.json"):
                (self.out_dir / stale).unlink(missing_ok=True)
        if self.benchmarks:
            bench_md = self.out_dir / "benchmarks.md"
            bench_md.write_text("\n".join(benchmark_table(self.benchmarks)))
            bench_js = self.out_dir / "benchmarks.json"
            bench_js.write_text(json.dumps(self.benchmarks, indent=2, sort_keys=True) + "\n")
            written += [bench_md, bench_js]
        return written


class MatrixCollector:
    """A plugin object on the controller: collects cell statuses, gates them against the baseline
    and prints the matrix."""

    def __init__(
        self,
        report: ConformanceReport,
        baseline: Baseline | None = None,
        *,
        update: bool = False,
        external: bool = False,
    ) -> None:
        self.report = report
        self.baseline = baseline
        self.update = update
        self.external = external
        self.changes: list[BaselineChange] = []
        self.gate_note = ""
        #: cells on a user's file (``--artifact``) that did not pass: they fail the run
        self.external_problems: list[str] = []

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        observed = self.report.observed()
        if self.external_problems:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if self.baseline is None:
            if self.external:
                self.gate_note = (
                    "baseline not consulted: this run judges files given with --artifact on their own "
                    "(--conformance-baseline-with-artifacts gates them too)"
                )
            return
        if not observed:
            return
        known_cases = [c.name for c in cases()]
        known_targets = [t.name for t in targets()]
        if self.update:
            self.baseline.write(observed, known_cases, known_targets)
            self.gate_note = f"conformance baseline rewritten: {self.baseline.path}"
            return
        if not self.baseline.exists():
            self.gate_note = f"no conformance baseline at {self.baseline.path}; write one with --conformance-baseline-update"
            return
        try:
            self.changes = self.baseline.compare(observed, known_cases, known_targets)
        except ValueError as exc:
            self.changes = []
            self.gate_note = str(exc)
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
            return
        if self.changes:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
            self.gate_note = (
                f"conformance baseline gate FAILED: {len(self.changes)} cells differ from {self.baseline.path} "
                "(update it on purpose with --conformance-baseline-update)"
            )
        else:
            count = len(gated(observed))
            self.gate_note = (
                f"conformance baseline gate passed: {count} cells as in {self.baseline.path}"
                if count
                else "conformance baseline: no gated cell in this run (benchmark cells are not gated)"
            )

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        data = dict(report.user_properties).get(RECORD_PROPERTY)
        if data is None:
            return
        record = CellRecord.from_dict(data)
        cell = record.cell
        if record.benchmark is not None and report.when == "call":
            self.report.benchmarks.append(record.benchmark)
        if record.branches is not None:
            self.report.branch_coverage[record.case_name] = record.branches
        if record.trace is not None and report.when == "call":
            by_target = self.report.traces.setdefault(f"{record.case_name}/{record.input_name}", {})
            by_target[EAGER] = record.trace["eager"]
            by_target[record.target_name] = record.trace["target"]
        if record.state is not None:
            self.report.state_audit[record.case_name] = record.state
        status = status_of(report, record)
        if status is not None:
            self.report.add(cell, *status, record.result())
            does_not_apply = status[0] == "skip" and record.not_applicable
            if record.external and status[0] != "pass" and not does_not_apply:
                self.external_problems.append(
                    f"{record.case_name} / {record.target_name} / {record.suite} [{record.input_name}]: "
                    f"{status[0]}: {status[1]}"
                )

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.report.cells:
            return
        width = terminal_width(terminalreporter)
        markup = bool(getattr(terminalreporter, "hasmarkup", False))
        terminalreporter.section("conformance matrix")
        for line in self.report.render_text(width, markup=markup).splitlines():
            terminalreporter.write_line(line)
        in_run = {target for (_, target, _) in self.report.cells}
        notes = [target.judging_note() for target in targets() if target.name in in_run]
        for note in filter(None, notes):
            for line in wrap_text(note, width, indent="", hanging="  "):
                terminalreporter.write_line(line)
        written = self.report.write()
        if self.report.benchmarks:
            terminalreporter.section("benchmarks (ratios against eager in this run)")
            for line in render_benchmarks(self.report.benchmarks, width=width, markup=markup).splitlines():
                terminalreporter.write_line(line)
        written_text = "written: " + ", ".join(str(p) for p in written)
        for line in wrap_text(written_text, width, indent="", hanging="  "):
            terminalreporter.write_line(line)
        if self.external:
            terminalreporter.section("artifacts given with --artifact")
            for key, file in sorted(self.report.artifacts.items()):
                for line in wrap_text(f"{key}: {file['path']} (sha256 {file['sha256']})", width, indent="", hanging="  "):
                    terminalreporter.write_line(line)
            if self.external_problems:
                terminalreporter.write_line(
                    f"{len(self.external_problems)} cells on your files did not pass (no expected failure "
                    "applies to a user's file):",
                    red=True,
                )
                for problem in self.external_problems:
                    for line in wrap_text(problem, width, indent="  ", hanging="      "):
                        terminalreporter.write_line(line)
            else:
                terminalreporter.write_line("every cell on your files passed", green=True)
        if self.gate_note:
            terminalreporter.section("conformance baseline")
            for line in wrap_text(self.gate_note, width, indent="", hanging="  "):
                terminalreporter.write_line(line, red=bool(self.changes), green=not self.changes)
            for change in self.changes:
                for line in wrap_text(change.line(), width, indent="  ", hanging="      "):
                    terminalreporter.write_line(line)
