"""State audit and state lifting for models whose streaming state lives in buffers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .buffers import buffer_snapshot, preserved_buffers

__all__ = ["LiftedState", "StateBuffer", "audit_state", "mutated_buffer_names"]


@dataclass(frozen=True)
class StateBuffer:
    """A buffer that forward mutates: the model's streaming state."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    in_export_signature: bool
    changed_by_forward: bool

    def describe(self) -> str:
        found = [
            w
            for w, ok in (
                ("export signature", self.in_export_signature),
                ("running forward", self.changed_by_forward),
            )
            if ok
        ]
        return f"{self.name} {list(self.shape)} {self.dtype} (found by {' and '.join(found)})"


def _exported_mutations(module: nn.Module, example: tuple[torch.Tensor, ...]) -> set[str] | None:
    """Buffer names in torch.export's mutation signature; None when torch.export refuses the model."""
    with preserved_buffers(module):
        try:
            program = torch.export.export(module, example, strict=False).run_decompositions()
        except Exception:  # a model torch.export refuses is audited by running it alone
            return None
    return set(program.graph_signature.buffers_to_mutate.values())


def _changed_by_forward(module: nn.Module, example: tuple[torch.Tensor, ...]) -> set[str]:
    with preserved_buffers(module) as initial, torch.no_grad():
        module(*example)
        after = buffer_snapshot(module)
    return {name for name, value in after.items() if not torch.equal(value, initial[name])}


def audit_state(module: nn.Module, example_inputs: Sequence[torch.Tensor]) -> list[StateBuffer]:
    """Every buffer that forward mutates, from the export signature and confirmed by running.

    The module's buffers are left as they were. A buffer counts when either source names it:
    the signature sees mutations that happen to write the same value, running sees mutations
    of a model that torch.export refuses.
    """
    example = tuple(example_inputs)
    in_signature = _exported_mutations(module, example) or set()
    changed = _changed_by_forward(module, example)
    buffers = dict(module.named_buffers())
    return [
        StateBuffer(
            name,
            tuple(buffers[name].shape),
            str(buffers[name].dtype).removeprefix("torch."),
            name in in_signature,
            name in changed,
        )
        for name in buffers
        if name in in_signature or name in changed
    ]


def mutated_buffer_names(module: nn.Module, example_inputs: Sequence[torch.Tensor]) -> list[str]:
    return [b.name for b in audit_state(module, example_inputs)]


class LiftedState(nn.Module):
    """The module with its state buffers turned into explicit inputs and outputs.

    ``forward(*inputs, *state) -> (*outputs, *next_state)``, states in ``state_names`` order.
    The state inputs are cloned and handed to the module in place of its buffers, so its
    in-place updates land on the clones, which are returned as the next state; nothing in the
    wrapped module changes. This is the pattern Optimum uses for ``past_key_values``.
    """

    def __init__(self, module: nn.Module, state_names: Sequence[str]) -> None:
        super().__init__()
        self.module = module
        self.state_names = tuple(state_names)
        known = dict(module.named_buffers())
        missing = [n for n in self.state_names if n not in known]
        if missing:
            raise ValueError(f"LiftedState: module has no buffers {missing}")

    def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        n_state = len(self.state_names)
        inputs, states = args[: len(args) - n_state], args[len(args) - n_state :]
        working = {name: state.clone() for name, state in zip(self.state_names, states)}
        out = torch.func.functional_call(self.module, working, inputs, strict=False)
        out = tuple(out) if isinstance(out, (tuple, list)) else (out,)
        return (*out, *(working[name] for name in self.state_names))

    def initial_state(self) -> tuple[torch.Tensor, ...]:
        buffers = dict(self.module.named_buffers())
        return tuple(buffers[name].detach().clone() for name in self.state_names)
