"""State audit and state lifting for models whose streaming state lives in buffers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from .buffers import preserved_buffers

__all__ = ["LiftedState", "StateBuffer", "audit_state", "mutated_buffer_names"]


@dataclass(frozen=True)
class StateBuffer:
    """A buffer that forward mutates: the model's streaming state."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    written_by_forward: bool
    changed_by_forward: bool

    def describe(self) -> str:
        found = [
            w
            for w, ok in (
                ("forward's writes", self.written_by_forward),
                ("its changed value", self.changed_by_forward),
            )
            if ok
        ]
        return f"{self.name} {list(self.shape)} {self.dtype} (found by {' and '.join(found)})"


class _BufferWrites(TorchDispatchMode):
    """Records which buffers an operator writes: an argument the operator's schema marks as
    written (``copy_``'s self, an ``out=``) whose storage is a buffer's, views included."""

    def __init__(self, storages: dict[int, list[str]]) -> None:
        super().__init__()
        self.storages = storages
        self.written: set[str] = set()

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        schema = func._schema
        if schema.is_mutable:
            for index, argument in enumerate(schema.arguments):
                if argument.alias_info is None or not argument.alias_info.is_write:
                    continue
                value = args[index] if index < len(args) else kwargs.get(argument.name)
                for tensor in value if isinstance(value, (list, tuple)) else (value,):
                    if isinstance(tensor, torch.Tensor):
                        self.written.update(self.storages.get(_storage(tensor), ()))
        return func(*args, **kwargs)


def _storage(tensor: torch.Tensor) -> int:
    return tensor.untyped_storage().data_ptr()


def audit_state(module: nn.Module, example_inputs: Sequence[torch.Tensor]) -> list[StateBuffer]:
    """Every buffer that forward mutates, found by running forward once on the example.

    Two sources, either suffices: the operators that write a buffer in place (what an exporter's
    functionalisation sees: a write of the same value counts) and a reassigned buffer, and the
    buffers whose value the call changed. The module's buffers are left as they were. Only the
    path this example takes is seen: a write behind a branch the example does not take is not.
    """
    buffers = dict(module.named_buffers())
    storages: dict[int, list[str]] = {}
    for name, buffer in buffers.items():
        if buffer.numel():
            storages.setdefault(_storage(buffer), []).append(name)
    recorder = _BufferWrites(storages)
    with preserved_buffers(module) as initial, torch.no_grad():
        with recorder:
            module(*example_inputs)
        after = dict(module.named_buffers())
        # buffers forward registers anew are not state it carries between calls: only known names
        reassigned = {name for name in buffers if after.get(name) is not buffers[name]}
        changed = {name for name in buffers if name in after and not torch.equal(after[name], initial[name])}
    written = recorder.written | reassigned
    return [
        StateBuffer(
            name,
            tuple(buffers[name].shape),
            str(buffers[name].dtype).removeprefix("torch."),
            name in written,
            name in changed,
        )
        for name in buffers
        if name in written or name in changed
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
