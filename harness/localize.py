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

from .buffers import preserved_buffers
from .case import Calls, ModelCase
from .eager import run_module
from .judge import Judge
from .sequence import StateThreading, run_sequence
from .taps import ModuleOutput, Tap, TappedRunner, Taps, class_source, first_tensor
from .targets.base import Artifact, Target, to_numpy

__all__ = [
    "DIVERGENCE_RELATIVE",
    "Localization",
    "LocalizationUnsupported",
    "ModuleError",
    "eager_module_outputs",
    "localize",
    "localize_calls",
]

#: Relative error (max abs error / eager's max magnitude) above which a module's output diverges.
DIVERGENCE_RELATIVE = 1e-3
#: How many modules a quantized target's report names as the largest error jumps.
TOP_JUMPS = 3


class LocalizationUnsupported(RuntimeError):
    """The target's runtime cannot show intermediate values (the reason says why)."""


@dataclass(frozen=True)
class ModuleError:
    """One eager module's output against the runtime's matched value."""

    path: str
    cls: str
    source: str
    #: the runtime's name for the matched value
    tap: str
    max_abs: float
    relative: float
    #: relative error minus the previous row's (where the error grows)
    jump: float
    diverges: bool
    #: streaming state buffers this module owns (a dropped state shows first where it is read)
    state: tuple[str, ...] = ()
    #: state buffers owned by a module around this one, whose own code may feed it
    enclosing_state: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "module": self.path,
            "class": self.cls,
            "source": self.source,
            "tap": self.tap,
            "max_abs": _finite(self.max_abs),
            "relative": _finite(self.relative),
            "jump": _finite(self.jump),
            "diverges": self.diverges,
            "state": list(self.state),
            "enclosing_state": list(self.enclosing_state),
        }


def _finite(value: float) -> float | str:
    return value if np.isfinite(value) else str(value)


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


# --- eager side ---------------------------------------------------------------------------


def eager_module_outputs(
    module: torch.nn.Module, calls: Calls, threading: StateThreading | None, *, keep_inputs: bool = False
) -> list[ModuleOutput]:
    """Every module's output on the last of ``calls`` (the earlier calls advance the state).

    ``module`` is run as it is (a freshly built one starts from the initial state); hooks are
    removed afterwards. Rows come in completion order: a module after the modules inside it.
    """
    names = {id(m): name for name, m in module.named_modules()}
    records: list[ModuleOutput] = []
    counts: dict[str, int] = {}
    capturing = [False]

    def hook(mod: torch.nn.Module, args: tuple[Any, ...], out: Any) -> None:
        if not capturing[0]:
            return
        value = first_tensor(out)
        if value is None:
            return
        path = names.get(id(mod), "?")
        k = counts.get(path, 0)
        counts[path] = k + 1
        kept = tuple(a.detach().clone() if isinstance(a, torch.Tensor) else a for a in args) if keep_inputs else ()
        records.append(
            ModuleOutput(
                path=path if k == 0 else f"{path}#{k}",
                cls=type(mod).__name__,
                source=class_source(type(mod)),
                value=to_numpy(value).astype(np.float64),
                inputs=kept,
            )
        )

    handles = [m.register_forward_hook(hook) for m in module.modules()]
    last = len(calls) - 1
    index = [0]

    def step(call: tuple[torch.Tensor, ...]) -> tuple[Any, ...]:
        capturing[0] = index[0] == last
        index[0] += 1
        with torch.no_grad():
            out = module(*call)
        return tuple(out) if isinstance(out, (tuple, list)) else (out,)

    try:
        run_sequence(step, calls, threading)
    finally:
        for handle in handles:
            handle.remove()
    return records


# --- matching -----------------------------------------------------------------------------


def _in_scope(tap_module: str, path: str) -> bool:
    return path == "" or tap_module == path or tap_module.startswith(path + ".")


def _fits(tap: Tap, eager: np.ndarray) -> bool:
    return tap.value.shape == eager.shape or (tap.value.size == eager.size and tap.value.size > 1)


def _match_by_names(eager: Sequence[ModuleOutput], taps: Sequence[Tap]) -> list[Tap | None]:
    """Each module's value, among the values the file's metadata places where that output can come
    from: the module's own operations, or the module that completed last inside it (a container's
    output is its last child's, never an earlier child's). Of those with the module's shape, the
    one closest to eager's; a value of another shape only where it agrees (a reshape), since a
    different layout of the same elements cannot be compared.

    Closest, not last: exporters keep several same-shaped values in one scope (a layout copy, a
    pre-activation), and naming the wrong one would report a divergence that is not there; a real
    divergence leaves no close value in the scope.
    """
    matched: list[Tap | None] = []
    for index, record in enumerate(eager):
        base = record.module_path
        inside = [r.module_path for r in eager[:index] if r.module_path != base and _in_scope(r.module_path, base)]
        last_child = inside[-1] if inside else None

        def allowed(module: str, base: str = base, last_child: str | None = last_child) -> bool:
            if last_child is None:
                return _in_scope(module, base)
            return module == base or _in_scope(module, last_child)

        scoped = [t for t in taps if t.module is not None and allowed(t.module) and _fits(t, record.value)]
        exact = [t for t in scoped if t.value.shape == record.value.shape]
        if exact:
            matched.append(min(exact, key=lambda t: _rank(_error(record.value, t.value)[1])))
            continue
        agreeing = [t for t in scoped if _error(record.value, t.value)[1] <= DIVERGENCE_RELATIVE]
        matched.append(agreeing[0] if agreeing else None)
    return matched


def _rank(relative: float) -> float:
    return relative if np.isfinite(relative) else float("inf")


def _match_by_order(eager: Sequence[ModuleOutput], taps: Sequence[Tap]) -> tuple[list[Tap | None], int]:
    """No metadata: each module takes the next value of its shape (monotone in execution order).

    Returns the matches and how many were ambiguous (another value of that shape came before
    the next module's match).
    """
    matched: list[Tap | None] = []
    pointer = 0
    ambiguous = 0
    for record in eager:
        found = None
        for i in range(pointer, len(taps)):
            if taps[i].value.shape == record.value.shape:
                found = taps[i]
                same_shape_after = sum(1 for t in taps[i + 1 :] if t.value.shape == record.value.shape)
                ambiguous += same_shape_after > 0
                pointer = i + 1
                break
        matched.append(found)
    return matched, ambiguous


def _error(expected: np.ndarray, actual: np.ndarray) -> tuple[float, float]:
    actual = np.asarray(actual, dtype=np.float64).reshape(expected.shape)
    finite = np.isfinite(expected)
    if not np.isfinite(actual[finite]).all():
        return float("inf"), float("inf")
    if expected.size == 0:
        return 0.0, 0.0
    diff = np.abs(actual - expected)[finite]
    max_abs = float(diff.max()) if diff.size else 0.0
    scale = float(np.abs(expected[finite]).max()) if diff.size else 0.0
    return max_abs, (max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf")))


def _strip_wrapper(tap: Tap, known: set[str]) -> Tap:
    """A module path seen through a wrapper (``module.encoder`` for a lifted-state export of
    ``encoder``) as eager's path: leading parts dropped until eager knows it."""
    if tap.module is None or tap.module in known:
        return tap
    parts = tap.module.split(".")
    for i in range(1, len(parts)):
        candidate = ".".join(parts[i:])
        if candidate in known:
            return Tap(tap.name, candidate, tap.value)
    return tap


def compare_modules(
    eager: Sequence[ModuleOutput],
    taps: Taps,
    state_of: dict[str, tuple[str, ...]],
    output: np.ndarray | None = None,
) -> tuple[list[ModuleError], int, str]:
    """Rows of module errors in eager's order, how many modules matched, and how they matched.

    ``output``: the target's first output on the call, which the whole model's row is judged on.
    """
    known = {r.module_path for r in eager}
    taps = Taps([_strip_wrapper(t, known) for t in taps.taps], taps.how, taps.local, list(taps.notes))
    named = any(t.module is not None for t in taps.taps)
    how = taps.how
    inner = [r for r in eager if r.path != ""]
    if named:
        matched = _match_by_names(inner, taps.taps)
    else:
        matched, ambiguous = _match_by_order(inner, taps.taps)
        how += (
            "; matched by shape and execution order (the file names no modules)"
            + (f", {ambiguous} match(es) ambiguous where shapes repeat: read them as a region" if ambiguous else "")
        )
    if len(inner) < len(eager):
        eager = [*inner, next(r for r in eager if r.path == "")]
        matched = [*matched, Tap("output 0", "", np.asarray(output)) if output is not None else None]
    rows: list[ModuleError] = []
    previous = 0.0
    for record, tap in zip(eager, matched):
        if tap is None:
            continue
        max_abs, relative = _error(record.value, tap.value)
        jump = relative - previous if np.isfinite(relative) else float("inf")
        previous = relative if np.isfinite(relative) else previous
        rows.append(
            ModuleError(
                path=record.path,
                cls=record.cls,
                source=record.source,
                tap=tap.name,
                max_abs=max_abs,
                relative=relative,
                jump=jump,
                diverges=not relative <= DIVERGENCE_RELATIVE,
                state=state_of.get(record.module_path, ()),
                enclosing_state=tuple(
                    name
                    for owner, names in state_of.items()
                    if owner != record.module_path and _in_scope(record.module_path, owner)
                    for name in names
                ),
            )
        )
    return rows, sum(t is not None for t in matched), how


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


def pick_call(case: ModelCase, target: Target, eager_out: list, target_out: list) -> tuple[int, bool]:
    """The call to localise and whether its outputs fail: the first call whose outputs leave the
    case's tolerances (exact targets); for approximate targets, whose every call differs a
    little, a call where the task metric is worst; else (and for targets that pass) the call
    with the largest absolute error of the first output."""
    threading = StateThreading.of(case)
    skip = threading.output_indices() if threading else set()
    if not eager_out:
        raise ValueError("no calls to localise")
    judge = Judge.for_cell(case, target)
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
    return {name: np.stack([to_numpy(out[i]) for out in per_call]) for i, name in enumerate(case.output_names)}


def _metric_summary(case: ModelCase, target: Target, expected: list, actual: list) -> str | None:
    """The cell judge's task metric (the approximate one for quantized targets) on these calls."""
    metric = Judge.for_cell(case, target).metric
    if metric is None:
        return None
    try:
        return metric(_stacked(case, expected), _stacked(case, actual)).summary()
    except Exception as exc:  # a metric that needs more calls than these says so, never fails
        return f"not computed on these calls ({type(exc).__name__})"


def _state_owners(case: ModelCase, module: torch.nn.Module) -> dict[str, tuple[str, ...]]:
    from .state import mutated_buffer_names

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
) -> Localization:
    """Localise ``target``'s run of ``calls`` against eager, on ``call`` (default: picked).
    ``module``: the case's eager module, if one is built already (its buffers are restored)."""
    threading = StateThreading.of(case)
    eager_module = module if module is not None else case.build().eval()
    eager_out = run_module(eager_module, calls, case=case).outputs
    with target.load(artifact) as runner:
        target_out = run_sequence(lambda c: runner.run(*c), calls, threading)
    picked, failing = pick_call(case, target, eager_out, target_out)
    chosen = call is not None
    if call is None:
        call = picked
    else:
        skip = threading.output_indices() if threading else set()
        judge = Judge.for_cell(case, target)
        failing = judge.by_metric or not _within_tolerances(judge, eager_out[call], target_out[call], skip)
    metric = _metric_summary(case, target, eager_out[: call + 1], target_out[: call + 1])
    tapped = target.tapped_runner(artifact, case)
    if tapped is None:
        raise LocalizationUnsupported(f"{target.name} cannot show intermediate values")
    try:
        prefix = list(calls[: call + 1])
        with preserved_buffers(eager_module):
            records = eager_module_outputs(eager_module, prefix, threading, keep_inputs=True)
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
) -> Localization:
    """Localise ``target`` on one of the case's canonical inputs (default: its primary input)."""
    name = input_name or case.main_input
    if name not in case.inputs:
        raise KeyError(f"case {case.name!r} has no input {name!r} (inputs: {', '.join(case.inputs)})")
    calls = list(case.inputs[name]())
    if chunk is not None and not 0 <= chunk < len(calls):
        raise ValueError(f"input {name!r} of case {case.name!r} has {len(calls)} calls; chunk {chunk} is out of range")
    return localize_calls(case, target, artifact, calls, input_name=name, call=chunk, module=module)


__all__ += ["TappedRunner", "Tap", "Taps", "ModuleOutput", "compare_modules", "pick_call"]
