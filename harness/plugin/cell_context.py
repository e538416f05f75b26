"""What a suite function gets as its ``conformance`` fixture: the cell's runner, its eager side,
its judge, and the one place its verdict and its record are written."""

from __future__ import annotations

import contextlib
import glob
import math
from collections.abc import Callable, Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any, Protocol

import pytest

from ..checks.golden import TensorSnapshotExtension, unreadable_snapshot
from ..checks.localize import localization_record
from ..core.case import Calls, MetricResult
from ..core.errors import ConformanceFailure, HarnessError, TargetRunError
from ..core.judge import Judge
from ..core.shapes import describe_fixed_dims, dims_fixed_in_file, unadmitted_input
from ..reports.repro import repro_folder_name, write_repro
from ..run.eager import EagerReference, StreamRun
from ..run.evidence import Attempt, Evidence, Need, gather, run_example
from ..run.session import Cell, ConformanceSession
from ..run.target_runs import FreshRun
from ..targets import EAGER, Artifact, ExportError, Runner, RuntimeMissing
from .cell_record import CellRecord, Outcome
from .hooks import cell_judge
from .profiles import EXAMPLE_DATABASE
from .suites import SUITE_REGISTRY, Suite

__all__ = ["LOCALIZED_SUITES", "CellContext", "Verdict", "record_of"]


CONTEXT_KEY = pytest.StashKey["CellContext"]()

#: What a cell's context may note for its record (its identity and outcome come from the plugin).
_NOTED = frozenset(f.name for f in fields(CellRecord)) - {
    "case_name",
    "target_name",
    "input_name",
    "suite",
    "external",
    "artifact",
    "outcome",
}


def record_of(
    item: pytest.Item, cell: Cell, *, artifact: dict[str, str] | None, external: bool, outcome: Outcome | None
) -> CellRecord:
    """The one place a :class:`CellRecord` is made: the cell's identity, what the plugin knows
    (a user's file, the outcome it classified) and what the cell's context noted while it ran."""
    context = item.stash.get(CONTEXT_KEY, None)
    noted = dict(context.noted) if context is not None else {}
    return CellRecord(
        cell.case_name,
        cell.target_name,
        cell.input_name,
        cell.suite,
        external=external,
        artifact=artifact,
        outcome=outcome,
        **noted,
    )


#: (artifact path, case, target) -> the declared dynamic dimensions that artifact holds at one
#: size (read once per process: a user's file's input shapes come from its bytes)
_FIXED_DIMS: dict[tuple[str, str, str], dict[str, dict[str, Any]]] = {}

#: Suites whose failures are localised: they compare a target's outputs with eager's.
LOCALIZED_SUITES = frozenset(s.name for s in SUITE_REGISTRY.values() if s.localized)


class Verdict(Protocol):
    """What a suite hands to ``verdict``: truthy on pass, a one-line summary, a full report."""

    def __bool__(self) -> bool: ...
    def summary(self) -> str: ...
    def report(self) -> str: ...


class CellContext:
    """What a suite needs for its cell: the runner, inputs, the eager reference, and a verdict."""

    def __init__(self, cell: Cell, session: ConformanceSession, item: pytest.Item) -> None:
        self.cell = cell
        self.case = cell.case
        self.target = cell.target
        self._session = session
        self._item = item
        #: what this cell has found for its record (summary, metric, state, ...), by record field;
        #: the plugin makes the record from it (:func:`record_of`), once per report
        self.noted: dict[str, Any] = {}
        item.stash[CONTEXT_KEY] = self

    def _note(self, **facts: Any) -> None:
        unknown = set(facts) - _NOTED
        assert not unknown, f"not a field a cell notes: {sorted(unknown)}"
        self.noted.update(facts)

    def skip_if_runtime_missing(self) -> None:
        """Skip the cell, naming the extra to install, where its target's runtime is absent (not
        gated by the baseline: see ``CellRecord.runtime_missing``)."""
        reason = self.target.missing_runtime()
        if reason:
            self._note(runtime_missing=True)
            pytest.skip(reason)

    def runner(self) -> Runner:
        """The target's loaded runner for this case (whoever feeds it a sequence resets it);
        skips when the runtime is missing, and where the artifact cannot take the cell's input
        (a declared dynamic dimension it holds at one size: ``dynamic-shapes`` reports that)."""
        try:
            runner = self._session.runner(self.case, self.target)
        except RuntimeMissing as exc:  # a target whose runtime check passed but whose load did not
            self._note(runtime_missing=True)
            pytest.skip(str(exc))
        except ExportError as exc:
            self._note(summary=str(exc))
            raise
        if self.cell.suite == "batch-consistency":
            batch = [dim for dim, entry in self.fixed_dims().items() if entry["axis"] == 0]
            if batch:
                self.not_applicable(
                    f"the artifact holds the batch dimension {batch[0]!r} at one size; the dynamic-shapes "
                    "cell reports the fixed dimension"
                )
        elif self.cell.suite != "dynamic-shapes" and self.cell.input_name in self.case.inputs:
            # (a generated input's cell judges only the examples the artifact takes)
            refused = self._admission_problem()
            if refused:
                self.not_applicable(
                    f"not judged on this input: {refused}; the dynamic-shapes cell reports the fixed dimension"
                )
        return runner

    def fixed_dims(self) -> dict[str, dict[str, Any]]:
        """The declared dynamic dimensions the artifact holds at one size, by dimension name: the
        harness's fixed-shape fallback (``dims_fixed`` in its sidecar) or, for any file, its own
        input shapes (``Target.input_shapes``: an exporter can fix a dimension without a word)."""
        if self.target.name == EAGER or not self.case.dynamic_axes():
            return {}
        artifact = self._session.artifact(self.case, self.target)
        key = (str(artifact.path), self.case.name, self.target.name)
        if key not in _FIXED_DIMS:
            in_file = {}
            if artifact.meta.get("user_file"):  # the harness's exports read their file when written
                example = tuple(self.case.example_inputs())
                in_file = dims_fixed_in_file(
                    self.case, example, self.target.input_shapes(Path(artifact.path))
                )
            _FIXED_DIMS[key] = {**in_file, **(artifact.meta.get("dims_fixed") or {})}
        return _FIXED_DIMS[key]

    def _admission_problem(self, input_name: str | None = None) -> str | None:
        """Why the artifact cannot take the cell's input (or another canonical one): a declared
        dynamic dimension it holds at another size, named; None where it takes it."""
        fixed = self.fixed_dims()
        if not fixed:
            return None
        return unadmitted_input(fixed, self.case.input_names, self.calls(input_name))

    def refuse_fixed_dims(self) -> None:
        """The one verdict on an artifact that holds declared dynamic dimensions at one size: the
        harness's own export is an ``export-error`` quoting the exporter's refusal (the other cells
        judge its fixed-shape export); a user's file that does so is an ``error`` naming them."""
        fixed = self.fixed_dims()
        if not fixed:
            return
        artifact = self._session.artifact(self.case, self.target)
        sizes = ", ".join(f"{dim} = {entry['size']}" for dim, entry in fixed.items())
        because = artifact.meta.get("dims_fixed_because") or "its input shapes say so"
        if artifact.meta.get("user_file"):
            message = (
                f"{artifact.meta['user_file']} holds declared dynamic dimensions at one size ({describe_fixed_dims(fixed)}): "
                "other sizes cannot be judged on it; the other cells judge it at that size"
            )
            self._note(summary=message)
            raise HarnessError(message)
        whole = artifact.meta.get("dims_fixed_refusal")
        error = ExportError(
            self.target.name,
            self.case.name,
            "its declared dynamic range",
            f"{sizes} fixed: {because}\n{describe_fixed_dims(fixed)}" + (f"\n{whole}" if whole else ""),
        )
        self._note(summary=str(error))
        raise error

    @contextlib.contextmanager
    def _recording_cause(self) -> Iterator[None]:
        """Keep the whole message of a target's runtime error in the cell's record (the JSON
        report's ``detail``); its first line stays the reason."""
        try:
            yield
        except TargetRunError as exc:
            self._note(summary=str(exc))
            raise

    def fresh_runner(self) -> Runner:
        """A newly loaded runner, not reset: what a user gets by loading the artifact."""
        self.runner()  # export (or report the export error) and skip a missing runtime first
        return self._session.fresh_runner(self.case, self.target)

    def eager_module(self) -> Any:
        return self._session.eager_module(self.case)

    def _note_state(self) -> list[str]:
        """Names of the buffers forward mutates, recorded for the report's state audit."""
        audit = self._session.state_audit(self.case)
        found = [b.describe() for b in audit]
        spec = self.case.streaming
        if spec is not None and spec.state:
            found += [
                f"{name} -> {output} (explicit state in the signature)" for name, output in spec.state.items()
            ]
        self._note(state=found)
        return [b.name for b in audit]

    def _note_traces(self, expected: Any, actual: Any, *, max_points: int = 2000) -> None:
        """Keep outputs with one value per call (a pitch curve) for the report's plots."""

        def series(values: Any) -> list[float | None]:
            flat = values.reshape(values.shape[0], -1)[:max_points, 0].astype(float)
            return [float(v) if math.isfinite(v) else None for v in flat]

        per_call = [n for n in self.case.output_names if expected[n][0].size == 1]
        if per_call and len(expected[per_call[0]]) > 1:
            trace = {
                "eager": {n: series(expected[n]) for n in per_call},
                "target": {n: series(actual[n]) for n in per_call if actual[n].shape == expected[n].shape},
            }
            self._note(trace=trace)

    def record_branches(self, summary: str) -> None:
        """Branch coverage for the report, per case."""
        self._note(branches=summary)

    def branches(self) -> Any:
        """The case's data-dependent branches (cached per process)."""
        return self._session.branches(self.case)

    def not_applicable(self, reason: str) -> None:
        """Skip a check that does not apply to this case (as opposed to a file that went
        unjudged, e.g. for a missing runtime): a user's file is not failed for it."""
        self._note(not_applicable=True)
        pytest.skip(reason)

    def updating_snapshots(self) -> bool:
        """Whether this run records golden snapshots (``--snapshot-update``)."""
        return bool(self._item.config.option.update_snapshots)

    def require_snapshot(self, snapshot: Any) -> None:
        """A golden cell without a stored snapshot is not a verdict on the export: say so plainly
        (syrupy alone prints ``assert [- snapshot] == [+ received]``)."""
        if self._item.config.option.update_snapshots:
            return
        path = TensorSnapshotExtension.stored_path(self._item.name, self._session.golden_root)
        if path is not None and not path.is_file():
            older = sorted(path.parent.parent.glob(f"test_*/{glob.escape(path.name)}"))
            if older:
                raise HarnessError(
                    f"the golden snapshot of {self.cell.id} is stored where an older version kept it: "
                    f"move {older[0]} (and its .json) to {path.parent}/"
                )
            raise HarnessError(
                f"no golden snapshot yet for {self.cell.id}: record it with --snapshot-update "
                f"(it is written to {path})"
            )
        problem = unreadable_snapshot(path) if path is not None else None
        if problem:  # a damaged file is the repository's problem, not a verdict on the export
            raise HarnessError(
                f"{path}: the golden snapshot of {self.cell.id} cannot be read ({problem}): restore it from "
                "version control, or record it again with --snapshot-update"
            )

    def golden_root(self) -> Path | None:
        """Where this run's golden snapshots live (``<rootdir>/golden/snapshots``)."""
        return self._session.golden_root

    def hypothesis_database(self) -> str:
        """The example database generated-input suites replay (``<rootdir>/golden/hypothesis``)."""
        return str(self._session.hypothesis_database or EXAMPLE_DATABASE)

    def artifact(self) -> Artifact:
        """The artifact this cell judges: the harness's export, or the user's file (``--artifact``)."""
        return self._session.artifact(self.case, self.target)

    def record_benchmark(self, **fields: Any) -> dict[str, Any]:
        """Benchmark figures for the report's table (ratios against eager are taken there)."""
        figures = {"case": self.case.name, "target": self.target.name, **fields}
        # thread counts decide step times on small models: recorded with every figure
        import torch

        figures.setdefault("torch_threads", torch.get_num_threads())
        for key, value in self.target.runtime_settings().items():  # e.g. onnxruntime's threads
            figures.setdefault(key, value)
        if fields.get("kind") == "cold":
            figures["cold_s"] = fields["median_s"]
        else:
            figures["step_s"] = fields["median_s"]
        self._note(benchmark=figures)
        return figures

    def calls(self, input_name: str | None = None) -> Any:
        return self._session.calls(self.case, input_name or self.cell.input_name)

    def reference(self, input_name: str | None = None) -> Any:
        """Eager's outputs on the cell's input (or another), stacked over calls."""
        return self._session.reference(self.case, input_name or self.cell.input_name)

    def eager(self, input_name: str | None = None) -> EagerReference:
        """The eager side of the cell's input: runs, state replays and offline output, computed
        once per process and shared by every target."""
        return self._session.eager_reference(self.case, input_name or self.cell.input_name)

    def judge(self, *, reference: str = "eager") -> Judge:
        """The cell's judge: the case's tolerances and task metric, or the metric alone for an
        approximate target, unless a conftest's ``pytest_conformance_judge`` gives another."""
        return cell_judge(
            self._item.config, self.cell, Judge.for_cell(self.case, self.target, reference=reference)
        )

    def _target_run(self, input_name: str | None = None) -> StreamRun:
        """The target fed the cell's input (or another canonical one) from its initial state, once
        per process: every check that judges that run (equivalence, golden, the streaming checks)
        shares it."""
        self.runner()  # export (or report the export error) and skip a missing runtime first
        name = input_name or self.cell.input_name
        with self._recording_cause():
            if name != self.case.main_input and not self._primary_input_runs():
                # the session runs the primary input first; where that fails, this input's cell
                # runs its own input on a freshly loaded runner instead of quoting the primary's
                return self._session.fresh_run(self.case, self.target, name).first
            return self._session.target_run(self.case, self.target, name)

    def _primary_input_runs(self) -> bool:
        """Whether the target takes the primary input (the runner's first run, which the
        session's other runs follow)."""
        if self._admission_problem(self.case.main_input):
            return False
        try:
            self._session.fresh_run(self.case, self.target, self.case.main_input)
        except Exception:  # that input's own cells report it
            return False
        return True

    def _fresh_run(self, input_name: str | None = None) -> FreshRun:
        """The cell's input (or another canonical one) fed to a freshly loaded runner, and its
        replay after reset."""
        self.runner()  # export (or report the export error) and skip a missing runtime first
        with self._recording_cause():
            return self._session.fresh_run(self.case, self.target, input_name or self.cell.input_name)

    @property
    def suite(self) -> Suite:
        return SUITE_REGISTRY[self.cell.suite]

    def evidence(self) -> Evidence:
        """What the cell's suite declares it is judged on (``Suite.evidence``), gathered once:
        the eager side of its input and the target's runs (the canonical run shared with every
        check on that input). A generated-input cell's evidence is the primary input's; its
        examples are run one by one (:meth:`run_example`)."""
        input_name = self.case.main_input if self.suite.inputs == "generated" else self.cell.input_name
        if Need.CANONICAL in self.suite.evidence:  # eager first: a case that fails on its own inputs is named
            self.eager(input_name).outputs()
        self.runner()  # export (or report the export error) and skip what does not apply first
        if self.suite.streaming:
            self._note_state()  # recorded for the report's state audit
        with self._recording_cause():
            return gather(
                self.case,
                self.target,
                input_name,
                self.eager(input_name),
                _CellRuns(self, input_name),
                self.suite.evidence,
                judge=self.judge(),
                fixed_dims=self.fixed_dims(),
            )

    def run_example(self, calls: Calls) -> Attempt:
        """A generated example through the cell's target from its initial state."""
        return run_example(self.runner(), self.case, calls)

    def judge_by(self, check: Callable[[Evidence], Verdict]) -> None:
        """Gather the cell's evidence, judge it by ``check`` and record the verdict."""
        evidence = self.evidence()
        if self.cell.suite == "equivalence":
            self._note_traces(evidence.eager.outputs(), evidence.outputs())
        self.verdict(check(evidence))

    def verdict(self, result: Verdict, *, localize: bool = True) -> None:
        """Record the result for the matrix, and fail the test with its report unless it passed
        (with the first diverging module, for suites that compare outputs, unless ``localize``
        is False: a check run once per generated example localises its final one instead)."""
        self._note(summary=result.summary())
        if not getattr(result, "applies", True):  # said once for every target it applies to
            self.not_applicable(result.diagnosis)
        metric = getattr(result, "metric", None)
        if isinstance(metric, MetricResult):
            self._note(
                metric={
                    "name": metric.name,
                    "value": metric.value,
                    "unit": metric.unit,
                    "figures": dict(metric.figures),
                }
            )
        if not result:
            located = self._localize() if localize else None
            if located is not None:
                self._note(localization=located)
            text = result.report()
            if located is not None:
                text += "\n" + located["text"]
            raise ConformanceFailure(text)

    @contextlib.contextmanager
    def localized_on(self, failed: list[Any]) -> Iterator[None]:
        """Localise the last of ``failed`` (call sequences) if the block fails with a verdict:
        the shrunk example of a property check, localised once instead of per example."""
        try:
            yield
        except ConformanceFailure as exc:
            located = self._localize(calls=failed[-1]) if failed else None
            if located is None:
                raise
            self._note(localization=located)
            located_failure = ConformanceFailure(f"{exc}\n{located['text']}")
            for note in getattr(exc, "__notes__", ()):  # hypothesis's failing example and its reproduce blob
                located_failure.add_note(note)
            raise located_failure from None

    def _localize(self, calls: Any = None) -> dict[str, Any] | None:
        """Where the export leaves eager, for a failing cell of a suite that compares outputs:
        once per (case, target, input) per process; expected failures only with
        ``--conformance-localize=all``. Never changes the verdict: a localisation that cannot
        be made says why."""
        mode = self._item.config.getoption("conformance_localize", "failures")
        if mode == "none" or self.cell.suite not in LOCALIZED_SUITES or self.target.name == EAGER:
            return None
        if mode == "failures" and self._item.get_closest_marker("xfail") is not None:
            return None
        key = (self.case.name, self.target.name, self.cell.input_name)
        if key not in self._session.localizations:
            located = localization_record(
                self.case,
                self.target,
                self.artifact(),
                self.cell.input_name,
                calls=calls,
                module=self.eager_module(),
                judge=self.judge(),
            )
            self._session.localizations[key] = self._with_repro(located, calls)
        return self._session.localizations[key]

    def _with_repro(self, located: dict[str, Any], calls: Any) -> dict[str, Any]:
        """The localisation with the cell's reproducer (``<report>/repro/<case-target-input>/``)
        written beside it and named in its text; one that cannot be written says why, and never
        changes the verdict."""
        if self.target.standalone is None:
            return located
        root = Path(self._item.config.rootpath) / (
            self._item.config.getoption("conformance_report") or "reports"
        )
        folder = root / "repro" / repro_folder_name(self.case.name, self.target.name, self.cell.input_name)
        try:
            repro = write_repro(
                self.case,
                self.target,
                self.artifact(),
                list(calls) if calls is not None else list(self.calls()),
                folder,
                input_name=self.cell.input_name if calls is None else "the example hypothesis found",
                judge=self.judge(),
                module=self.eager_module(),
                localization=located,
                suite=self.cell.suite,
            )
        except Exception as exc:  # a reproducer is a courtesy: it never fails the cell
            line = f"reproducer: not written ({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''})"
            return {**located, "repro": {"error": line}, "text": f"{located['text']}\n{line}"}
        return {**located, "repro": repro.as_dict(), "text": f"{located['text']}\n{repro.headline()}"}


class _CellRuns:
    """The session's shared runs of one cell's target, as :func:`~harness.run.evidence.gather` asks."""

    def __init__(self, context: CellContext, input_name: str) -> None:
        self._context, self._input = context, input_name

    def runner(self) -> Runner:
        return self._context.runner()

    def canonical(self) -> StreamRun:
        return self._context._target_run(self._input)

    def fresh(self) -> FreshRun:
        return self._context._fresh_run(self._input)
