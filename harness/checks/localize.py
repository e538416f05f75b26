"""Failure localisation: the first eager module whose output an export stops reproducing.

``localize(case, target, input_name)`` finds the call where the target's outputs first leave
eager's (the first bad chunk of a stream; for approximate targets the worst one), runs that
sequence once more on eager with a forward hook on every module and once on the target's
*tapped runner* (``Target.tapped_runner``), matches the runtime's intermediate values to eager's
modules (by the exporter's own module metadata where the file keeps it, else by shape and order,
said so) and reports, in eager's execution order, each module's error against eager.

A module *diverges* when its output differs from eager's by more than
:data:`DIVERGENCE_RELATIVE` of eager's largest magnitude there (float32 exports measured here stay
below 1e-5) or is not finite where eager's is. The first diverging module is where the export
starts to compute something else; for quantized targets the modules where the relative error
jumps most are what a quantization recipe is tuned on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..core.case import Calls, ModelCase
from ..core.judge import Judge
from ..core.pristine import built, fresh_copy
from ..core.sequence import StateThreading, run_sequence
from ..core.state import mutated_buffer_names
from ..run.eager import run_module
from ..targets.base import Artifact, Target, to_numpy
from ..targets.taps import ModuleOutput, Tap, TappedRunner, Taps
from .module_match import (
    DIVERGENCE_RELATIVE,
    ModuleError,
    _error,
    _finite,
    compare_modules,
    eager_module_outputs,
)

__all__ = [
    "DIVERGENCE_RELATIVE",
    "Localization",
    "LocalizationUnsupported",
    "ModuleError",
    "eager_module_outputs",
    "localize",
    "localize_calls",
]

#: How many modules a quantized target's report names as the largest error jumps.
TOP_JUMPS = 3


class LocalizationUnsupported(RuntimeError):
    """The target's runtime cannot show intermediate values (the reason says why)."""


@dataclass(frozen=True)
class Localization:
    """Where a target's run departs from eager's, module by module."""

    case: str
    target: str
    input_name: str
    #: 0-based index of the localised call (the first bad chunk), and how many calls there are
    call: int
    calls: int
    rows: list[ModuleError]
    how: str
    local: bool
    matched: int
    modules: int
    approximate: bool
    #: the call's output error (max relative over outputs), to tell "no divergence" from "no data"
    output_relative: float
    #: whether the call's outputs leave the case's tolerances (approximate targets: always judged)
    failing: bool = True
    #: the call was asked for (``--chunk``): modules are judged even where the outputs still agree
    chosen: bool = False
    #: the case's task metric on the calls up to the localised one (None: the case has none)
    metric: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def first(self) -> ModuleError | None:
        if not (self.failing or self.chosen):
            return None
        return next((row for row in self.rows if row.diverges), None)

    @property
    def top_jumps(self) -> list[ModuleError]:
        ranked = sorted((r for r in self.rows if np.isfinite(r.jump) and r.jump > 0), key=lambda r: -r.jump)
        return ranked[:TOP_JUMPS]

    def headline(self) -> str:
        """One line: ``first divergence: ...`` or why there is none."""
        first = self.first
        if not self.failing and first is not None:
            return (
                f"first divergence: {first.path or '(the whole model)'} ({first.cls}, {first.source}), "
                f"error there: max abs {first.max_abs:.3g}, relative {first.relative:.3g}, although the "
                f"outputs of call {self.call} are still within the case's tolerances"
                + (f"; it reads the streaming state {', '.join(first.state)}" if first.state else "")
            )
        if not self.failing and not self.chosen:
            return (
                f"first divergence: none: {self.target}'s outputs are within the case's tolerances on "
                f"every call (call {self.call}, the largest output error, shown)"
            )
        if first is None:
            if not self.failing:
                return f"first divergence: none: every matched module agrees with eager on call {self.call}"
            if self.matched == 0:
                return f"first divergence: unknown: no intermediate value of {self.target} could be matched to a module"
            return (
                f"first divergence: none: every matched module agrees with eager within "
                f"{DIVERGENCE_RELATIVE:g} relative on call {self.call}"
            )
        where = "local error" if self.local else "error there"
        text = (
            f"first divergence: {first.path or '(the whole model)'} ({first.cls}, {first.source}), "
            f"{where}: max abs {first.max_abs:.3g}, relative {first.relative:.3g}"
        )
        if self.approximate:
            pass  # a quantized target diverges at its first quantized operation, state or not
        elif first.state:
            text += (
                f"; it reads the streaming state {', '.join(first.state)}: a divergence first seen there "
                f"on call {self.call} points at the state the export carries between calls"
            )
        elif first.enclosing_state:
            text += (
                f"; its input comes from the enclosing module's own code, which reads the streaming state "
                f"{', '.join(first.enclosing_state)}: with no module before it diverging, that state is the "
                "first suspect"
            )
        return text

    def lines(self, *, table: bool = True) -> list[str]:
        chunk = f"call {self.call} of {self.calls}" if self.calls > 1 else "its one call"
        head = [
            f"localised {self.case} on {self.target}, input {self.input_name}, {chunk} "
            f"(output error {self.output_relative:.3g} relative)",
            f"values: {self.how}; {self.matched} of {self.modules} eager modules matched",
            *([f"task metric on calls 0-{self.call}: {self.metric}"] if self.metric else []),
            *self.notes,
            self.headline(),
        ]
        if self.approximate and self.top_jumps:
            head.append(
                "largest error jumps: "
                + "; ".join(f"{r.path} ({r.cls}) +{r.jump:.3g} to {r.relative:.3g}" for r in self.top_jumps)
            )
        if not table:
            return head
        width = max([len("module")] + [len(r.path or "(model)") for r in self.rows])
        cls_width = max([len("class")] + [len(r.cls) for r in self.rows])
        kind = "local rel" if self.local else "relative"
        head.append(f"{'module':<{width}}  {'class':<{cls_width}}  {'max abs':>10}  {kind:>10}  {'jump':>10}")
        for r in self.rows:
            mark = "  <- first divergence" if r is self.first else ""
            head.append(
                f"{r.path or '(model)':<{width}}  {r.cls:<{cls_width}}  {r.max_abs:>10.3g}  "
                f"{r.relative:>10.3g}  {r.jump:>+10.3g}{mark}"
            )
        return head

    def render(self, *, table: bool = True) -> str:
        return "\n".join(self.lines(table=table))

    def as_dict(self) -> dict[str, Any]:
        first = self.first
        return {
            "case": self.case,
            "target": self.target,
            "input": self.input_name,
            "call": self.call,
            "calls": self.calls,
            "how": self.how,
            "local": self.local,
            "matched": self.matched,
            "modules": self.modules,
            "output_relative": _finite(self.output_relative),
            "failing": self.failing,
            "metric": self.metric,
            "notes": list(self.notes),
            "headline": self.headline(),
            "first_divergence": first.as_dict() if first else None,
            "top_jumps": [r.path for r in self.top_jumps] if self.approximate else [],
            "rows": [r.as_dict() for r in self.rows],
        }


# --- the call to localise ----------------------------------------------------------------


def _relative_output_error(expected: Sequence[Any], actual: Sequence[Any], skip: set[int]) -> float:
    worst = 0.0
    for i, (e, a) in enumerate(zip(expected, actual)):
        if i in skip:
            continue
        e = to_numpy(e).astype(np.float64)
        a = to_numpy(a)
        if e.shape != np.shape(a):
            return float("inf")
        worst = max(worst, _error(e, a)[1])
    return worst


def _within_tolerances(judge: Judge, expected: Sequence[Any], actual: Sequence[Any], skip: set[int]) -> bool:
    return all(
        judge.compare_one(name, to_numpy(e), to_numpy(a))
        for i, (name, e, a) in enumerate(zip(judge.output_names, expected, actual))
        if i not in skip
    )


def pick_call(
    case: ModelCase, target: Target, eager_out: list, target_out: list, *, judge: Judge | None = None
) -> tuple[int, bool]:
    """The call to localise and whether its outputs fail: the first call whose outputs leave the
    case's tolerances (exact targets); for approximate targets, whose every call differs a
    little, a call where the task metric is worst; else (and for targets that pass) the call
    with the largest absolute error of the first output."""
    threading = StateThreading.of(case)
    skip = threading.output_indices() if threading else set()
    if not eager_out:
        raise ValueError("no calls to localise")
    judge = judge if judge is not None else Judge.for_cell(case, target)
    if not judge.by_metric:
        for i, (e, a) in enumerate(zip(eager_out, target_out)):
            if not _within_tolerances(judge, e, a, skip):
                return i, True
    # the largest absolute error of the case's first (non-state) output: a relative error would
    # pick a near-silent call, where every output is small and the task metric does not look
    first = next(i for i in range(len(case.output_names)) if i not in skip)

    def error(e: Sequence[Any], a: Sequence[Any]) -> float:
        expected, actual = to_numpy(e[first]).astype(np.float64), to_numpy(a[first])
        if expected.shape != actual.shape:
            return float("inf")
        return _error(expected, actual)[0]

    errors = [error(e, a) for e, a in zip(eager_out, target_out)]
    calls = range(len(errors))
    failing = judge.by_metric
    metric = judge.metric if judge.by_metric else None
    if metric is not None:
        # an approximate target is judged by its task metric: localise a call where the metric
        # is worst (a voiced frame 50 cents off, not a silent one whose pitch means nothing)
        values = [_call_metric(case, metric, e, a) for e, a in zip(eager_out, target_out)]
        worst_value = max(values)
        if worst_value > min(values):
            calls = [i for i in calls if values[i] == worst_value]
        failing = any(v > metric.threshold for v in values)
    worst = max(calls, key=lambda i: errors[i] if np.isfinite(errors[i]) else np.inf)
    return worst, failing


def _call_metric(case: ModelCase, metric: Any, expected: Sequence[Any], actual: Sequence[Any]) -> float:
    """The task metric on one call (-inf where it cannot be computed on one call alone)."""
    try:
        value = metric(_stacked(case, [expected]), _stacked(case, [actual])).value
    except Exception:  # a metric that needs more calls than one
        return float("-inf")
    return float(value) if not np.isnan(value) else float("inf")


def _stacked(case: ModelCase, per_call: Sequence[Sequence[Any]]) -> dict[str, np.ndarray]:
    return {
        name: np.stack([to_numpy(out[i]) for out in per_call]) for i, name in enumerate(case.output_names)
    }


def _metric_summary(case: ModelCase, judge: Judge, expected: list, actual: list) -> str | None:
    """The cell judge's task metric (the approximate one for quantized targets) on these calls."""
    metric = judge.metric
    if metric is None:
        return None
    try:
        return metric(_stacked(case, expected), _stacked(case, actual)).summary()
    except Exception as exc:  # a metric that needs more calls than these says so, never fails
        return f"not computed on these calls ({type(exc).__name__})"


def _state_owners(case: ModelCase, module: torch.nn.Module) -> dict[str, tuple[str, ...]]:
    owners: dict[str, list[str]] = {}
    try:
        names = mutated_buffer_names(module, tuple(case.example_inputs()))
    except Exception:  # the state audit is a hint for the headline, never a reason to fail
        return {}
    for name in names:
        owners.setdefault(name.rsplit(".", 1)[0] if "." in name else "", []).append(name)
    return {k: tuple(v) for k, v in owners.items()}


def localize_calls(
    case: ModelCase,
    target: Target,
    artifact: Artifact,
    calls: Calls,
    *,
    input_name: str = "",
    call: int | None = None,
    module: torch.nn.Module | None = None,
    judge: Judge | None = None,
) -> Localization:
    """Localise ``target``'s run of ``calls`` against eager, on ``call`` (default: picked).
    ``module``: the case's eager module, if one is built already (only copies of it are run);
    ``judge``: the cell's judge (default: ``Judge.for_cell``)."""
    threading = StateThreading.of(case)
    judge = judge if judge is not None else Judge.for_cell(case, target)
    eager_module = module if module is not None else built(case.build).eval()
    eager_out = run_module(eager_module, calls, case=case).outputs
    with target.load(artifact) as runner:
        target_out = run_sequence(lambda c: runner.run(*c), calls, threading)
    picked, failing = pick_call(case, target, eager_out, target_out, judge=judge)
    chosen = call is not None
    if call is None:
        call = picked
    else:
        skip = threading.output_indices() if threading else set()
        failing = judge.by_metric or not _within_tolerances(judge, eager_out[call], target_out[call], skip)
    metric = _metric_summary(case, judge, eager_out[: call + 1], target_out[: call + 1])
    tapped = target.tapped_runner(artifact, case)
    if tapped is None:
        raise LocalizationUnsupported(f"{target.name} cannot show intermediate values")
    try:
        prefix = list(calls[: call + 1])
        records = eager_module_outputs(fresh_copy(eager_module), prefix, threading, keep_inputs=True)
        eager_last = eager_out[call]
        target_last = run_sequence(lambda call: tapped.run(*call), prefix, threading)[-1]
        skip = threading.output_indices() if threading else set()
        output_relative = _relative_output_error(eager_last, target_last, skip)
        taps = tapped.taps(records)
    finally:
        tapped.close()
    first_output = to_numpy(target_last[0]) if target_last else None
    rows, matched, how = compare_modules(records, taps, _state_owners(case, eager_module), first_output)
    return Localization(
        case=case.name,
        target=target.name,
        input_name=input_name,
        call=call,
        calls=len(calls),
        rows=rows,
        how=how,
        local=taps.local,
        matched=matched,
        modules=len(records),
        approximate=target.approximate,
        output_relative=output_relative,
        failing=failing,
        chosen=chosen,
        metric=metric,
        notes=list(taps.notes),
    )


def localize(
    case: ModelCase,
    target: Target,
    artifact: Artifact,
    input_name: str | None = None,
    *,
    chunk: int | None = None,
    module: torch.nn.Module | None = None,
    judge: Judge | None = None,
) -> Localization:
    """Localise ``target`` on one of the case's canonical inputs (default: its primary input)."""
    name = input_name or case.main_input
    if name not in case.inputs:
        raise KeyError(f"case {case.name!r} has no input {name!r} (inputs: {', '.join(case.inputs)})")
    calls = list(case.inputs[name]())
    if chunk is not None and not 0 <= chunk < len(calls):
        raise ValueError(
            f"input {name!r} of case {case.name!r} has {len(calls)} calls; chunk {chunk} is out of range"
        )
    return localize_calls(
        case, target, artifact, calls, input_name=name, call=chunk, module=module, judge=judge
    )


def localization_record(
    case: ModelCase,
    target: Target,
    artifact: Artifact,
    input_name: str,
    *,
    calls: Calls | None = None,
    module: torch.nn.Module | None = None,
    judge: Judge | None = None,
) -> dict[str, object]:
    """The localisation of ``target`` on one canonical input (or on ``calls``), as a JSON-ready
    dict with its rendered ``text``; one that cannot be made is a dict whose headline says why
    (it never fails the cell by itself)."""
    try:
        if calls is not None:
            result = localize_calls(
                case, target, artifact, list(calls), input_name=input_name, module=module, judge=judge
            )
        else:
            result = localize(case, target, artifact, input_name, module=module, judge=judge)
        return {**result.as_dict(), "text": result.render()}
    except Exception as exc:  # any failure to localise is reported, never raised
        first = str(exc).splitlines()[0][:200] if str(exc) else ""
        headline = f"first divergence: not localised ({type(exc).__name__}: {first})"
        return {
            "case": case.name,
            "target": target.name,
            "input": input_name,
            "headline": headline,
            "text": headline,
            "rows": [],
        }


__all__ += [
    "localization_record",
    "TappedRunner",
    "Tap",
    "Taps",
    "ModuleOutput",
    "compare_modules",
    "pick_call",
]
