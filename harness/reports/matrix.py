"""The conformance matrix: collected from test reports, printed, written as Markdown and JSON."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core import registry
from ..core.case import SUITES
from ..core.environment import environment
from ..core.registry import CaseError
from ..core.registry import case as find_case
from ..targets import targets
from .benchmarks import benchmark_table
from .html import metric_text, render_html
from .summary import STATUS_ORDER
from .terminal import render_matrix

__all__ = ["STATUS_ORDER", "ConformanceReport", "InputResult", "runtime_settings"]


@dataclass(frozen=True)
class InputResult:
    input_name: str
    status: str
    reason: str
    metric: dict[str, Any] | None = None
    #: the whole message behind a one-line reason (an exporter's or runtime's text, every line),
    #: where it says more than the reason; kept in the JSON report
    detail: str | None = None


def runtime_settings() -> dict[str, Any]:
    """The runtime knobs this run used (they change what a cell measures, not the exports): every
    target's own (``Target.runtime_settings``: onnxruntime's threads, OpenVINO's precision)."""
    settings: dict[str, Any] = {}
    for target in targets():
        settings.update(target.runtime_settings())
    return settings


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
    #: "case/target/input" -> failure localisation (``harness.checks.localize.Localization.as_dict``)
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
        summary = (result or {}).get("summary")
        detail = summary if isinstance(summary, str) and "\n" in summary.strip() else None
        self.cells[key].append(InputResult(cell["input_name"], status, reason, metric, detail))

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
                            r.input_name: {
                                "status": r.status,
                                "reason": r.reason,
                                "metric": r.metric,
                                **({"detail": r.detail} if r.detail else {}),
                            }
                            for r in results
                        },
                    }
                    results = self._in_declared_order(case_name, results)
                    errors = [r for r in results if r.status == "error"]
                    if errors:
                        names = ",".join(r.input_name for r in errors)
                        row["errors"].append(f"{suite} [{names}]: {self._each_cause(errors)}")
                    bad = [r for r in results if r.status not in ("pass", "error")]
                    if bad:
                        names = ",".join(r.input_name for r in bad)
                        row["reasons"].append(f"{suite} [{names}]: {self._each_cause(bad)}")
                    if suite == "equivalence":  # other suites' metrics measure other things
                        metrics += [r.metric for r in results if r.metric]
                if metrics:
                    worst_metric = max(metrics, key=lambda m: m["value"])
                    row["metric"] = worst_metric
                rows.append(row)
        return rows

    @classmethod
    def _each_cause(cls, results: list[InputResult]) -> str:
        """One reason for several inputs: the worst input's where they all give the same, else
        each input's own cause after its name (``sweep: ...; silence: ... NaN``)."""
        reasons = list(dict.fromkeys(r.reason for r in results))
        if len(reasons) == 1:
            return cls.worst(results).reason
        return "; ".join(f"{r.input_name}: {r.reason}" for r in results)

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
        """The matrix for a terminal ``width`` columns wide (``harness.reports.terminal``): suites
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
            lines += ["", "State audit (what forward carries between calls):", ""]
            lines += [
                f"- `{case}`: {'; '.join(found) or 'none'}"
                for case, found in sorted(self.state_audit.items())
            ]
        if self.branch_coverage:
            lines += ["", "Branch coverage (data-dependent branches, sides taken by generated inputs):", ""]
            lines += [f"- `{case}`: {summary}" for case, summary in sorted(self.branch_coverage.items())]
        lines += ["", self._environment_line()]
        return "\n".join(lines) + "\n"

    @staticmethod
    def _environment_line() -> str:
        """The libraries and the machine of this run, in one line (the JSON has them as objects)."""
        env = environment(dependency for case in registry.cases() for dependency in case.depends_on)
        installed = [f"{name} {version}" for name, version in env["versions"].items() if version != "absent"]
        machine = env["machine"]
        return f"Run with {', '.join(installed)}, on {machine['cpu']} ({machine['cores']} cores, {machine['machine']})."

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
            # the libraries (the harness's own version and the cases' declared dependencies among
            # them) and the machine, as the baseline records them
            **environment(dependency for case in registry.cases() for dependency in case.depends_on),
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
            render_html(
                self.as_json(), self.traces, self.benchmarks, target_order=order, report_dir=self.out_dir
            )
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
