"""Running a sequence of calls, the one way every check does it: explicit state threaded.

A case with explicit state (``StreamingSpec.state``: ``(x, state, ...) -> (y, new_state)``)
is fed, on every call after the first, the state its previous call returned; the first call's
state input is the initial state. Eager and every target are run through :func:`run_sequence`,
so no check threads state on its own, and a hypothesis about the state (dropped, swapped,
advanced) is a parameter of the same function.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .case import Call, Calls, ModelCase

__all__ = ["CallList", "StateThreading", "run_sequence"]


class CallList(list):
    """Calls whose ``repr`` is one line: hypothesis reports a failing example by its ``repr``,
    and a stream's tensors printed in full are pages of numbers (and cost ~0.2 s of formatting
    per report, measured on PESTO); the example is reproduced from hypothesis's own blob."""

    def __repr__(self) -> str:
        if not self:
            return "<0 calls>"
        first = self[0] if isinstance(self[0], (tuple, list)) else (self[0],)
        parts = [
            f"{tuple(value.shape)} {str(value.dtype).removeprefix('torch.')}"
            for value in first
            if isinstance(value, torch.Tensor)
        ]
        peak = max(
            (float(v.abs().max()) for call in self for v in (call if isinstance(call, (tuple, list)) else (call,))
             if isinstance(v, torch.Tensor) and v.numel() and v.is_floating_point()),
            default=None,
        )  # fmt: skip
        peak_text = f", peak |x| {peak:.3g}" if peak is not None else ""
        return f"<{len(self)} calls of ({', '.join(parts)}){peak_text}>"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # hypothesis's pretty printer
        printer.text(repr(self))


@dataclass(frozen=True)
class StateThreading:
    """Which inputs are explicit state, and which output feeds each back."""

    #: explicit state input name -> (input index, output index)
    pairs: Mapping[str, tuple[int, int]]

    @classmethod
    def of(cls, case: ModelCase) -> StateThreading | None:
        spec = case.streaming
        if spec is None or not spec.state:
            return None
        return cls(
            {
                name: (case.input_names.index(name), case.output_names.index(output))
                for name, output in spec.state.items()
            }
        )

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.pairs)

    def output_indices(self) -> set[int]:
        return {o for _, o in self.pairs.values()}


def _as_tensor(value: Any) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    return torch.as_tensor(np.array(value, copy=True))


def run_sequence(
    step: Callable[[Call], Sequence[Any]],
    calls: Calls,
    threading: StateThreading | None = None,
    *,
    reset_each_call: Collection[str] = (),
    swap_after_each_call: tuple[str, str] | None = None,
    initial_state: Mapping[str, torch.Tensor] | None = None,
) -> list[Sequence[Any]]:
    """Feed ``calls`` to ``step`` in order, threading explicit state; returns each call's outputs.

    Args:
        reset_each_call: explicit states fed their initial value on every call (state dropped).
        swap_after_each_call: two explicit states exchanged between calls (fed back crosswise).
        initial_state: initial values replacing the first call's (state advanced by export).
    """
    if threading is None or not calls:
        return [step(tuple(call)) for call in calls]
    first = calls[0]
    initial = {name: _as_tensor(first[i]) for name, (i, _) in threading.pairs.items()}
    if initial_state:
        initial.update({name: _as_tensor(v) for name, v in initial_state.items() if name in initial})
    current = dict(initial)
    outputs = []
    for call in calls:
        fed = list(call)
        for name, (i, _) in threading.pairs.items():
            fed[i] = initial[name] if name in reset_each_call else current[name]
        out = step(tuple(fed))
        for name, (_, o) in threading.pairs.items():
            current[name] = _as_tensor(out[o])
        if swap_after_each_call is not None:
            a, b = swap_after_each_call
            current[a], current[b] = current[b], current[a]
        outputs.append(out)
    return outputs
