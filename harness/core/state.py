"""State audit, state access and state lifting, wherever a model keeps its streaming state.

A model carries state between calls in buffers (what exporters see), and just as often outside
them: a tensor attribute that forward reassigns (``y, (self.hidden, self.cell) = self.lstm(...)``)
or mutates in place, tensors in a list or dict attribute, a Python counter, a buffer a submodule
registers on its first call. The audit finds each kind by running forward on a copy; the
accessors read and write each kind by name, for the eager hypotheses; :func:`state_in_buffers`
registers tensor state as buffers for the harness's own state-carrying exports.
"""

from __future__ import annotations

import contextlib
import copy
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.modules.module import register_module_buffer_registration_hook
from torch.utils._python_dispatch import TorchDispatchMode

from .pristine import fresh_copy

__all__ = [
    "BUFFER",
    "CONTAINER",
    "LAZY_BUFFER",
    "NUMBER",
    "TENSOR_ATTRIBUTE",
    "LiftedState",
    "StateBuffer",
    "StateItem",
    "audit_state",
    "created_buffers",
    "describe_kinds",
    "mutated_buffer_names",
    "read_state",
    "state_in_buffers",
    "write_state",
]

#: The kinds of state, as the audit names them.
BUFFER = "buffer"
LAZY_BUFFER = "buffer registered by forward"
TENSOR_ATTRIBUTE = "tensor attribute"
CONTAINER = "tensor in a list or dict attribute"
NUMBER = "Python number"

#: What each kind of state means for an export (the audit and the diagnoses quote it).
KIND_NOTES = {
    BUFFER: "",
    LAZY_BUFFER: "created on the first call: an export traces its creation, so every call starts from it",
    TENSOR_ATTRIBUTE: "not a buffer: torch.export, TorchScript and ONNX freeze it as a constant",
    CONTAINER: "not a buffer: exporters freeze it as a constant",
    NUMBER: "every exporter bakes its value at export time as a constant",
}

#: What the harness's own exports to targets that carry state (``Target.carries_state``) do
#: with each kind (:func:`state_in_buffers`); a user's own export is judged as it is.
HARNESS_EXPORTS = {
    LAZY_BUFFER: "the harness's state-carrying exports create it first and rewind it",
    TENSOR_ATTRIBUTE: "the harness's state-carrying exports register it as a buffer",
    NUMBER: "the harness's state-carrying exports register it as a buffer",
    CONTAINER: "no export carries it",
}

#: ``nn.Module``'s own instance attributes: never the model's state.
_MODULE_INTERNALS = frozenset(vars(nn.Module())) | {"_flat_weights", "_flat_weights_names"}
_ITEM = re.compile(r"^(?P<attribute>[^\[\]]+)\[(?P<key>[^\]]+)\]$")


@dataclass(frozen=True)
class StateItem:
    """Something forward changes that the next call reads: the model's streaming state.

    ``name`` is a path from the root module: ``lstm.h`` (a buffer or an attribute),
    ``cache[0]`` / ``cache['k']`` (an item of a list or dict attribute).
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    written_by_forward: bool
    changed_by_forward: bool
    kind: str = BUFFER

    @property
    def is_buffer(self) -> bool:
        """Whether exporters see it as module state (a buffer registered before the first call)."""
        return self.kind == BUFFER

    def describe(self) -> str:
        found = [
            w
            for w, ok in (
                ("forward's writes", self.written_by_forward),
                ("its changed value", self.changed_by_forward),
            )
            if ok
        ]
        kind = (
            ""
            if self.kind == BUFFER
            else f", {self.kind}: {KIND_NOTES[self.kind]}; {HARNESS_EXPORTS[self.kind]}"
        )
        return f"{self.name} {list(self.shape)} {self.dtype} (found by {' and '.join(found)}{kind})"


#: The name earlier releases gave it, when only buffers were state.
StateBuffer = StateItem


def describe_kinds(items: Sequence[StateItem], names: Sequence[str]) -> str:
    """``" (hidden, cell: tensor attributes, not buffers: ...)"``: what the named state is, where
    any of it is not a plain buffer (a diagnosis's suffix; empty for buffers only)."""
    by_name = {item.name: item for item in items}
    groups: dict[str, list[str]] = {}
    for name in names:
        item = by_name.get(name)
        if item is not None and not item.is_buffer:
            groups.setdefault(item.kind, []).append(name)
    if not groups:
        return ""
    if len(groups) == 1 and sum(map(len, groups.values())) == len(names):  # one kind: say it once
        ((kind, _),) = groups.items()
        return f" ({kind}, {KIND_NOTES[kind]})"
    parts = [f"{', '.join(found)}: {kind}, {KIND_NOTES[kind]}" for kind, found in groups.items()]
    return f" ({'; '.join(parts)})"


# ---- access by name ------------------------------------------------------------------------


def _owner(module: nn.Module, name: str) -> tuple[nn.Module, str, str | int | None]:
    """(the module holding it, its attribute, the container key or None)."""
    path, _, leaf = name.rpartition(".")
    match = _ITEM.match(leaf)
    key: str | int | None = None
    if match:
        leaf, raw = match["attribute"], match["key"]
        key = raw.strip("'") if raw.startswith("'") else int(raw)
    return (module.get_submodule(path) if path else module), leaf, key


def read_state(module: nn.Module, name: str) -> Any:
    """The current value of one state item (a tensor or a number); None where it is absent
    (a buffer forward has not registered yet)."""
    try:
        owner, attribute, key = _owner(module, name)
    except AttributeError:
        return None
    value = getattr(owner, attribute, None)
    if key is None or value is None:
        return value
    try:
        return value[key]
    except (KeyError, IndexError, TypeError):
        return None


def write_state(module: nn.Module, name: str, value: Any) -> None:
    """Set one state item (a clone of ``value``). A buffer of the same shape is written in place,
    so views of it stay views; anything else is rebound."""
    owner, attribute, key = _owner(module, name)
    new = value.detach().clone() if isinstance(value, torch.Tensor) else copy.deepcopy(value)
    current = getattr(owner, attribute, None)
    if key is not None:
        if isinstance(current, tuple):
            items = list(current)
            items[int(key)] = new
            object.__setattr__(owner, attribute, type(current)(items))
        else:
            current[key] = new
        return
    if (
        attribute in owner._buffers
        and isinstance(current, torch.Tensor)
        and isinstance(new, torch.Tensor)
        and current.shape == new.shape
    ):
        with torch.no_grad():
            current.copy_(new)
        return
    setattr(owner, attribute, new)


@contextlib.contextmanager
def created_buffers(module: torch.nn.Module) -> Iterator[dict[str, torch.Tensor]]:
    """Buffers that modules of ``module`` register while the block runs, by name, each with the
    value it was created with (what a dropped state of that kind goes back to)."""
    prefixes = {id(sub): f"{path}." if path else "" for path, sub in module.named_modules()}
    created: dict[str, torch.Tensor] = {}

    def record(owner: torch.nn.Module, name: str, tensor: torch.Tensor | None) -> None:
        if id(owner) in prefixes and tensor is not None:
            created.setdefault(prefixes[id(owner)] + name, tensor.detach().clone())

    handle = register_module_buffer_registration_hook(record)
    try:
        yield created
    finally:
        handle.remove()


# ---- the audit -----------------------------------------------------------------------------


def _surface(module: nn.Module) -> dict[str, tuple[str, Any]]:
    """Everything state could be kept in, by name: (kind, value). Parameters are weights."""
    found: dict[str, tuple[str, Any]] = {}
    for path, sub in module.named_modules():
        prefix = f"{path}." if path else ""
        for name, buffer in sub._buffers.items():
            if buffer is not None:
                found[prefix + name] = (BUFFER, buffer)
        for name, value in vars(sub).items():
            if name in _MODULE_INTERNALS:
                continue
            if isinstance(value, torch.Tensor) and not isinstance(value, nn.Parameter):
                found[prefix + name] = (TENSOR_ATTRIBUTE, value)
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                found[prefix + name] = (NUMBER, value)
            elif isinstance(value, (list, tuple)):
                for index, item in enumerate(value):
                    if isinstance(item, torch.Tensor) and not isinstance(item, nn.Parameter):
                        found[f"{prefix}{name}[{index}]"] = (CONTAINER, item)
            elif isinstance(value, dict):
                for key, item in value.items():
                    if (
                        isinstance(key, str)
                        and isinstance(item, torch.Tensor)
                        and not isinstance(item, nn.Parameter)
                    ):
                        found[f"{prefix}{name}['{key}']"] = (CONTAINER, item)
    return found


class _Writes(TorchDispatchMode):
    """Records which watched tensors an operator writes: an argument the operator's schema marks
    as written (``copy_``'s self, an ``out=``) whose storage is a watched tensor's, views included."""

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


def _snapshot(surface: dict[str, tuple[str, Any]]) -> dict[str, Any]:
    return {n: (v.detach().clone() if isinstance(v, torch.Tensor) else v) for n, (_, v) in surface.items()}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.shape == b.shape and a.dtype == b.dtype and bool(torch.equal(a, b))
    return type(a) is type(b) and a == b


@dataclass
class _Call:
    """What one forward call did to the surface."""

    written: set[str]
    reassigned: set[str]
    changed: set[str]
    after: dict[str, tuple[str, Any]]


def _observe(module: nn.Module, example: Sequence[torch.Tensor]) -> tuple[dict[str, tuple[str, Any]], _Call]:
    before = _surface(module)
    values = _snapshot(before)
    storages: dict[int, list[str]] = {}
    for name, (_, value) in before.items():
        if isinstance(value, torch.Tensor) and value.numel():
            storages.setdefault(_storage(value), []).append(name)
    recorder = _Writes(storages)
    with torch.no_grad(), recorder:
        module(*example)
    after = _surface(module)
    reassigned = {n for n in before if n in after and after[n][1] is not before[n][1]}
    changed = {n for n in before if n in after and not _same(values[n], after[n][1])}
    return before, _Call(recorder.written, reassigned, changed, after)


def audit_state(module: nn.Module, example_inputs: Sequence[torch.Tensor]) -> list[StateItem]:
    """Everything forward changes that the next call can read, found by calling forward twice
    on a deep copy of ``module`` (which is left exactly as it was).

    On the first call: a buffer or attribute that an operator writes in place (what an
    exporter's functionalisation sees: a write of the same value counts), one that is rebound,
    one whose value changes. Something the first call creates (a buffer a submodule registers,
    a tensor attribute bound from None) is state when the second call writes or changes it, and
    a cache made once otherwise. Only the path the example takes is seen: a write behind a
    branch the example does not take is not.
    """
    work = fresh_copy(module)
    example = tuple(example_inputs)
    first_before, first = _observe(work, example)
    second_before, second = _observe(work, example)
    items = []
    for name, (kind, value) in first.after.items():
        existed = name in first_before
        if existed:
            written = name in first.written | first.reassigned | second.written | second.reassigned
            changed = name in first.changed | second.changed
            kind = first_before[name][0]
        else:  # created by the first call: state only if the next call touches it again
            written = name in second.written | second.reassigned
            changed = name in second.changed
            kind = LAZY_BUFFER if kind == BUFFER else kind
        if not (written or changed):
            continue
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else ()
        dtype = (
            str(value.dtype).removeprefix("torch.")
            if isinstance(value, torch.Tensor)
            else type(value).__name__
        )
        items.append(StateItem(name, shape, dtype, written, changed, kind))
    order = {name: i for i, name in enumerate(first.after)}
    return sorted(items, key=lambda item: (item.kind != BUFFER, order[item.name]))


def mutated_buffer_names(module: nn.Module, example_inputs: Sequence[torch.Tensor]) -> list[str]:
    """The state that is already a buffer (what a lifted export carries as inputs/outputs)."""
    return [b.name for b in audit_state(module, example_inputs) if b.is_buffer]


# ---- state for the harness's own state-carrying exports ------------------------------------


@dataclass(frozen=True)
class CarriedState:
    """What :func:`state_in_buffers` did: state registered as buffers, buffers that forward
    creates made by one call on a copy that was then rewound, and state it left."""

    registered: tuple[str, ...]
    created_first: tuple[str, ...]
    not_carried: tuple[str, ...]

    def notes(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        if self.registered:
            found["state_registered_as_buffers"] = list(self.registered)
        if self.created_first:
            found["state_created_by_a_rewound_call"] = list(self.created_first)
        if self.not_carried:
            found["state_not_carried"] = list(self.not_carried)
        return found


def _outputs(module: nn.Module, example: tuple[torch.Tensor, ...], calls: int) -> list[list[torch.Tensor]]:
    found = []
    with torch.no_grad():
        for _ in range(calls):
            out = module(*example)
            out = out if isinstance(out, (tuple, list)) else (out,)
            found.append([o.detach().clone() for o in out if isinstance(o, torch.Tensor)])
    return found


def _agree(a: list[list[torch.Tensor]], b: list[list[torch.Tensor]]) -> bool:
    return all(
        len(x) == len(y)
        and all(p.shape == q.shape and torch.allclose(p, q, rtol=1e-5, atol=1e-6) for p, q in zip(x, y))
        for x, y in zip(a, b)
    )


def _as_buffer(module: nn.Module, name: str) -> None:
    owner, attribute, _ = _owner(module, name)
    value = getattr(owner, attribute)
    tensor = value.detach().clone() if isinstance(value, torch.Tensor) else torch.tensor(value)
    delattr(owner, attribute)
    owner.register_buffer(attribute, tensor)


def _rewound(module: nn.Module, example: tuple[torch.Tensor, ...], items: Sequence[StateItem]) -> nn.Module:
    """A copy of ``module`` called once, so that what its first call creates (buffers, flags)
    exists, with every state item put back: a buffer forward registered to its value when
    created, everything else to ``module``'s."""
    work = fresh_copy(module)
    with created_buffers(work) as created, torch.no_grad():
        work(*example)
    for item in items:
        value = created.get(item.name) if item.kind == LAZY_BUFFER else read_state(module, item.name)
        if value is not None:
            write_state(work, item.name, value)
    return work


def state_in_buffers(
    module: nn.Module, example: Sequence[torch.Tensor], items: Sequence[StateItem], calls: int = 3
) -> tuple[nn.Module, CarriedState]:
    """``module`` with its state outside buffers made into buffers, for an exporter that carries
    buffer state (torch.export turns a rebound buffer into a write): a new module, and what was
    done. Tensor attributes and Python numbers are registered as buffers; buffers that forward
    registers on its first call are created by one call on a copy, which is then rewound to the
    initial state. Tensors in a list or dict stay as they are (named in ``not_carried``). The
    result must compute what ``module`` computes over ``calls`` calls of the example, or nothing
    is changed (and that is said)."""
    example = tuple(example)
    lazy = [i.name for i in items if i.kind == LAZY_BUFFER]
    movable = [
        i.name
        for i in items
        if i.kind in (TENSOR_ATTRIBUTE, NUMBER)
        and isinstance(read_state(module, i.name), (torch.Tensor, int, float))
    ]
    left = [
        f"{i.name}: {i.kind}, {KIND_NOTES[i.kind]}"
        if i.kind == CONTAINER
        else f"{i.name}: {i.kind} bound by the first call, so it has no value before it to register"
        for i in items
        if not i.is_buffer and i.name not in movable and i.name not in lazy
    ]
    if not movable and not lazy:
        return module, CarriedState((), (), tuple(left))
    try:
        converted = _rewound(module, example, items) if lazy else fresh_copy(module)
        for name in movable:
            _as_buffer(converted, name)
        same = _agree(
            _outputs(fresh_copy(module), example, calls), _outputs(fresh_copy(converted), example, calls)
        )
        why = "the model computes something else that way"
    except Exception as exc:  # a number used as a Python int (a range, a branch) cannot be a tensor
        same, why = False, f"the model does not run that way ({type(exc).__name__}: {exc})"
    if not same:
        names = ", ".join([*movable, *lazy])
        reason = f"{names}: not made buffers ({why}); an export freezes them"
        return module, CarriedState((), (), (*left, reason))
    return converted, CarriedState(tuple(movable), tuple(lazy), tuple(left))


class LiftedState(nn.Module):
    """The module with its state buffers turned into explicit inputs and outputs.

    ``forward(*inputs, *state) -> (*outputs, *next_state)``, states in ``state_names`` order.
    The state inputs are cloned and put in place of the module's buffers for the call; the next
    state is what the buffers hold after it (written in place or rebound by forward), and the
    module's own buffers are put back. Nothing in the wrapped module changes. This is the
    pattern Optimum uses for ``past_key_values``.
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
        owners = [_owner(self.module, name)[:2] for name in self.state_names]
        kept = [owner._buffers[attribute] for owner, attribute in owners]
        try:
            for (owner, attribute), state in zip(owners, states):
                owner._buffers[attribute] = state.clone()
            out = self.module(*inputs)
            after = [owner._buffers[attribute] for owner, attribute in owners]
        finally:
            for (owner, attribute), original in zip(owners, kept):
                owner._buffers[attribute] = original
        out = tuple(out) if isinstance(out, (tuple, list)) else (out,)
        return (*out, *after)

    def initial_state(self) -> tuple[torch.Tensor, ...]:
        buffers = dict(self.module.named_buffers())
        return tuple(buffers[name].detach().clone() for name in self.state_names)
