"""Matching a runtime's intermediate values to eager's modules, and each module's error.

Eager's side is every module's output, recorded by forward hooks; a runtime's side is its taps
(``Target.tapped_runner``). Matching takes the exporter's own module metadata where the file
keeps it, else shape and order (said so); ``compare_modules`` then gives each module's error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..core.case import Calls
from ..core.sequence import StateThreading, run_sequence
from ..targets.base import to_numpy
from ..targets.taps import ModuleOutput, Tap, Taps, class_source, first_tensor

__all__ = ["DIVERGENCE_RELATIVE", "ModuleError", "compare_modules", "eager_module_outputs"]

#: Relative error (max abs error / eager's max magnitude) above which a module's output diverges.
DIVERGENCE_RELATIVE = 1e-3


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
        kept = (
            tuple(a.detach().clone() if isinstance(a, torch.Tensor) else a for a in args)
            if keep_inputs
            else ()
        )
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
        inside = [
            r.module_path for r in eager[:index] if r.module_path != base and _in_scope(r.module_path, base)
        ]
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
        how += "; matched by shape and execution order (the file names no modules)" + (
            f", {ambiguous} match(es) ambiguous where shapes repeat: read them as a region"
            if ambiguous
            else ""
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
