"""The controller's side of a run: each cell's record turned into a status, the matrix printed,
the baseline gated, users' files judged strictly (registered by the active plugin on the
controller, or in a run without xdist)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from ..core.environment import environment, environment_changes
from ..core.registry import cases
from ..reports.baseline import UNGATED_SUITES, Baseline, BaselineChange, gated
from ..reports.matrix import ConformanceReport
from ..reports.terminal import render_benchmarks, terminal_width, wrap_text
from ..targets import EAGER, targets
from .cell_record import RECORD_PROPERTY, CellRecord

__all__ = ["MatrixCollector", "status_of"]


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


class MatrixCollector:
    """A plugin object on the controller: collects cell statuses, gates them against the baseline
    and prints the matrix."""

    def __init__(
        self,
        report: ConformanceReport,
        baseline: Baseline | None = None,
        *,
        update: bool = False,
        external: Mapping[str, str] | None = None,
    ) -> None:
        self.report = report
        self.baseline = baseline
        self.update = update
        #: the user's files (``--artifact``): "case/target" -> the file as given
        self.external = dict(external or {})
        #: user's files no cell judged (every cell deselected): the run is a usage error
        self.unjudged: list[str] = []
        self.changes: list[BaselineChange] = []
        self.gate_note = ""
        #: cells on a user's file (``--artifact``) that did not pass: they fail the run
        self.external_problems: list[str] = []
        #: cells skipped because their target's runtime is not installed: not gated in this run
        self.runtime_missing: set[tuple[str, str, str, str]] = set()

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        observed = {cell: v for cell, v in self.report.observed().items() if cell not in self.runtime_missing}
        if self.external_problems:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        judged = {f"{case}/{target}" for (case, target, _) in self.report.cells}
        # the exit status is set last, by the active plugin (syrupy ORs exit codes after this hook)
        self.unjudged = [f"{path} ({key})" for key, path in self.external.items() if key not in judged]
        if self.baseline is None:
            if self.external:
                self.gate_note = (
                    "baseline not consulted: this run judges files given with --conformance-artifact on their own "
                    "(--conformance-baseline-with-artifacts gates them too)"
                )
            return
        if not observed:
            return
        known_cases = [c.name for c in cases()]
        known_targets = [t.name for t in targets()]
        now = environment(d for c in cases() for d in c.depends_on)
        if self.update:
            self.baseline.write(observed, known_cases, known_targets, now)
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
        changed = environment_changes(self.baseline.environment(), now)
        since = f"; since the baseline was written: {', '.join(changed)}" if changed else ""
        if self.changes:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
            self.gate_note = (
                f"conformance baseline gate FAILED: {len(self.changes)} cells differ from {self.baseline.path} "
                f"(update it on purpose with --conformance-baseline-update){since}"
            )
        else:
            count = len(gated(observed))
            self.gate_note = (
                f"conformance baseline gate passed: {count} cells as in {self.baseline.path}{since}"
                if count
                else "conformance baseline: no gated cell in this run (benchmark cells are not gated)"
            )
        missing = sorted({cell[1] for cell in self.runtime_missing})
        if missing and self.gate_note:
            self.gate_note += f"; {len(self.runtime_missing)} cells not gated: the runtime of {', '.join(missing)} is not installed"

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
            if record.runtime_missing:
                self.runtime_missing.add(
                    (record.case_name, record.target_name, record.suite, record.input_name)
                )
            # a skip is no verdict where the check does not apply, or on a benchmark (it times,
            # it does not judge; under xdist it times nothing)
            does_not_apply = status[0] == "skip" and (record.not_applicable or record.suite in UNGATED_SUITES)
            if record.external and status[0] != "pass" and not does_not_apply:
                problem = (
                    f"{record.case_name} / {record.target_name} / {record.suite} [{record.input_name}]: "
                    f"{status[0]}: {status[1]}"
                )
                if problem not in self.external_problems:  # one matrix cell (a step and a cold start)
                    self.external_problems.append(problem)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        width = terminal_width(terminalreporter)
        for file in self.unjudged:
            text = (
                f"ERROR: {file}: no cell judged this file: every cell of it was deselected (-k, a node id or "
                "a shard); select at least one of its cells"
            )
            for line in wrap_text(text, width, indent="", hanging="  "):
                terminalreporter.write_line(line, red=True)
        if not self.report.cells:
            return
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
        repros = [
            (name, found["repro"])
            for name, found in sorted(self.report.localizations.items())
            if isinstance(found.get("repro"), dict) and found["repro"].get("folder")
        ]
        if repros:
            terminalreporter.write_line(
                f"reproducers of failing cells ({len(repros)}; each runs without the harness: python FOLDER/repro.py):"
            )
            for name, repro in repros:
                first = repro.get("first_divergent_call")
                said = (
                    f"first divergence at call {first}" if first is not None else "no divergence on its calls"
                )
                for line in wrap_text(
                    f"{name}: {repro['folder']} ({repro['calls']} calls, {said})",
                    width,
                    indent="  ",
                    hanging="      ",
                ):
                    terminalreporter.write_line(line)
        if self.external:
            terminalreporter.section("artifacts given with --conformance-artifact")
            for key, file in sorted(self.report.artifacts.items()):
                for line in wrap_text(
                    f"{key}: {file['path']} (sha256 {file['sha256']})", width, indent="", hanging="  "
                ):
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
