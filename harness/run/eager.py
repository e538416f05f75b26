"""The eager side: the one way an eager module is run over a call sequence, under a state
hypothesis where a diagnosis needs one. The session caches what it computes
(:class:`~harness.session.ConformanceSession`): modules, canonical runs, offline references."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..core.branches import discover_branches
from ..core.case import Call, Calls, ModelCase
from ..core.errors import HarnessError, TargetRunError, describe_exception
from ..core.framing import whole_signal
from ..core.pristine import fresh_copy
from ..core.sequence import StateThreading, run_sequence
from ..core.state import StateItem, audit_state, created_buffers, describe_kinds, read_state, write_state

__all__ = ["PerCall", "StreamRun", "module_step", "run_module", "stack_outputs"]

#: One tuple of outputs per call, in the case's output order.
PerCall = list[tuple[np.ndarray, ...]]


@dataclass(frozen=True)
class StreamRun:
    """A call sequence's outputs, and the state after each call where it can be read."""

    outputs: PerCall
    states: list[dict[str, np.ndarray]] | None


def stack_outputs(
    per_call: Sequence[Sequence[np.ndarray]], names: Sequence[str], where: str
) -> dict[str, np.ndarray]:
    """Outputs by name, stacked over calls on a new leading axis."""
    for index, outputs in enumerate(per_call):
        if len(outputs) != len(names):
            raise ValueError(
                f"{where}: call {index} returned {len(outputs)} outputs, the case declares {len(names)} {tuple(names)}"
            )
    for i, name in enumerate(names):
        shapes = [tuple(np.shape(o[i])) for o in per_call]
        if len(set(shapes)) > 1:
            other = next(k for k, s in enumerate(shapes) if s != shapes[0])
            # eager's own outputs varying is the case's input set; a target's (where eager's did
            # not vary, as eager runs first) is the export's
            error = HarnessError if where == "eager" else TargetRunError
            raise error(
                f"{where}: output {name!r} is {shapes[other]} at call {other} and {shapes[0]} at call 0: outputs "
                "are stacked over the calls of an input set, so every call of one input set must give "
                "outputs of one shape (give calls of different sizes as separate input sets)"
            )
    return {name: np.stack([np.asarray(o[i]) for o in per_call]) for i, name in enumerate(names)}


def module_step(module: torch.nn.Module) -> Callable[[Call], tuple[np.ndarray, ...]]:
    """One call of an eager module, outputs as numpy arrays (the module's own errors are the
    case's: :class:`HarnessError`)."""

    def step(call: Call) -> tuple[np.ndarray, ...]:
        try:
            with torch.no_grad():
                out = module(*call)
        except Exception as exc:
            kind, line = describe_exception(exc)
            owner = f"{type(module).__qualname__} from {type(module).__module__}"
            raise HarnessError(
                f"the case's eager module ({owner}) raised on its own inputs: {kind}: {line}"
            ) from exc
        out = tuple(out) if isinstance(out, (tuple, list)) else (out,)
        return tuple(o.detach().cpu().numpy().copy() for o in out)

    return step


def run_module(
    module: torch.nn.Module,
    calls: Calls,
    *,
    case: ModelCase | None = None,
    state_names: Sequence[str] = (),
    reset_each_call: Sequence[str] = (),
    swap_after_each_call: tuple[str, str] | None = None,
    preroll: Call | None = None,
) -> StreamRun:
    """Eager fed ``calls`` from the module's state, under a hypothesis, on a copy of it: the
    module given is never changed, wherever it keeps its state.

    State names are the audit's (:func:`harness.core.state.audit_state`: buffers, tensor
    attributes, items of containers, numbers), or, for a case with explicit state, its state inputs.

    Args:
        case: the case, for its explicit state (threaded as every target's is).
        state_names: state whose value after each call is recorded in ``states``.
        reset_each_call: state put back to its initial value before every call (state dropped);
            state a call creates (a buffer forward registers) goes back to its value when created.
        swap_after_each_call: two states exchanged between calls (state fed back crosswise).
        preroll: one call made before the stream and not recorded (state advanced by export).
    """
    threading = StateThreading.of(case) if case is not None else None
    explicit = set(threading.names) if threading else set()
    work = fresh_copy(module)
    step = module_step(work)
    states: list[dict[str, np.ndarray]] = []
    own_resets = [n for n in reset_each_call if n not in explicit]
    own_swap = (
        swap_after_each_call if swap_after_each_call and swap_after_each_call[0] not in explicit else None
    )
    state_swap = (
        swap_after_each_call if swap_after_each_call and swap_after_each_call[0] in explicit else None
    )
    initial = {n: _held(read_state(work, n)) for n in own_resets}
    recorded_names = [n for n in state_names if n not in explicit]

    def recorded(call: Call) -> tuple[np.ndarray, ...]:
        for name in own_resets:
            value = initial[name] if initial[name] is not None else created.get(name)
            if value is not None or read_state(work, name) is not None:
                write_state(work, name, value)
        out = step(call)
        states.append(
            {n: np.array(_held(v)) for n in recorded_names if (v := read_state(work, n)) is not None}
        )
        if own_swap is not None:
            a, b = own_swap
            held_a, held_b = _held(read_state(work, a)), _held(read_state(work, b))
            write_state(work, a, held_b)
            write_state(work, b, held_a)
        return out

    with created_buffers(work) as created:
        advanced = None
        if preroll is not None:
            out = step(tuple(preroll))
            if threading is not None:
                advanced = {name: out[o] for name, (_, o) in threading.pairs.items()}
        outputs = run_sequence(
            recorded,
            calls,
            threading,
            reset_each_call=[n for n in reset_each_call if n in explicit],
            swap_after_each_call=state_swap,
            initial_state={k: torch.as_tensor(v) for k, v in advanced.items()} if advanced else None,
        )
    return StreamRun(list(outputs), states)


def _held(value: Any) -> Any:
    """A state value kept apart from the module (a tensor's clone; numbers are immutable)."""
    return value.detach().clone() if isinstance(value, torch.Tensor) else value


def _as_float64(call: Call) -> Call:
    return tuple(x.double() if isinstance(x, torch.Tensor) and x.is_floating_point() else x for x in call)


def float_noise(
    case: ModelCase, module: torch.nn.Module, calls: Calls, e32: dict[str, np.ndarray]
) -> dict[str, np.ndarray] | None:
    """``|eager float32 - eager float64|`` on ``calls``, by output (``e32``: eager's stacked
    float32 outputs on them): the largest over each call's elements, broadcast over them. None
    where the model does not run in float64."""
    try:
        wide = fresh_copy(module, share_weights=False).double()
        e64 = stack_outputs(
            run_module(wide, [_as_float64(c) for c in calls], case=case).outputs, case.output_names, "eager"
        )
    except Exception:  # an op without a float64 kernel: no floor, the tolerance alone judges
        return None
    noise = {}
    for name in case.output_names:
        if e32[name].shape != e64[name].shape or not np.issubdtype(e32[name].dtype, np.floating):
            continue
        diff = np.abs(e32[name].astype(np.float64) - e64[name]).reshape(len(calls), -1)
        per_call = np.where(np.isfinite(diff), diff, 0.0).max(axis=1, initial=0.0)
        noise[name] = np.broadcast_to(per_call.reshape(-1, *([1] * (e32[name].ndim - 1))), e32[name].shape)
    return noise


def calls_key(calls: Calls) -> str:
    """A call sequence's content, as a key (generated examples are new tensors every time)."""
    digest = hashlib.sha1()
    for call in calls:
        for tensor in call:
            t = torch.as_tensor(tensor)
            digest.update(f"{tuple(t.shape)}{t.dtype}".encode())
            digest.update(t.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class EagerReference:
    """The eager side of one case on one canonical input set, computed once per worker and
    shared by every check and target that needs it (the session caches one per case and input).

    ``stream()`` is eager fed the calls from the initial state (with the state after each call);
    ``replay(...)`` the same under a state hypothesis; ``offline()`` the whole signal in one call;
    ``outputs_for(calls)`` eager's outputs for any other calls (a generated example, a resized
    input), shared with every target through the session; ``branches()`` the module's
    data-dependent branches. It is the one context object a check gets for the eager side.
    """

    def __init__(
        self,
        case: ModelCase,
        module: torch.nn.Module | Callable[[], torch.nn.Module],
        calls: Calls,
        state_items: Callable[[], list[StateItem]],
        offline_module: Callable[[], torch.nn.Module],
        *,
        outputs_for: Callable[[Calls], dict[str, np.ndarray]] | None = None,
        branches: Callable[[], list[Any]] | None = None,
    ) -> None:
        self.case = case
        self._module = module
        self.calls: list[Call] = list(calls)
        self._state_items = state_items
        self._offline_module = offline_module
        self._outputs_for = outputs_for
        self._branches = branches
        self._runs: dict[tuple, StreamRun] = {}
        self._offline: PerCall | None = None
        self._noise: dict[str, dict[str, np.ndarray] | None] = {}

    @property
    def module(self) -> torch.nn.Module:
        """The case's eager module (built on first use where a factory was given)."""
        if not isinstance(self._module, torch.nn.Module):
            self._module = self._module()
        return self._module

    def outputs_for(self, calls: Calls) -> dict[str, np.ndarray]:
        """Eager's stacked outputs for any call sequence, from the initial state."""
        if self._outputs_for is not None:
            return self._outputs_for(calls)
        return stack_outputs(
            run_module(self.module, calls, case=self.case).outputs, self.case.output_names, "eager"
        )

    def branches(self) -> list[Any]:
        """The module's data-dependent branches (``harness.core.branches``)."""
        if self._branches is None:
            found = discover_branches(self.module, self.case.example_inputs())
            self._branches = lambda: found
        return self._branches()

    def state_items(self) -> list[StateItem]:
        """What the state audit found forward carries between calls, wherever it lives."""
        return self._state_items()

    def state_names(self) -> list[str]:
        """The state a stream carries: what forward carries between calls (buffers, tensor
        attributes, numbers: :func:`~harness.core.state.audit_state`), and explicit state inputs."""
        spec = self.case.streaming
        return [*(item.name for item in self._state_items()), *(spec.state if spec is not None else ())]

    def describe_state(self, names: Sequence[str]) -> str:
        """The named state, with what it is where it is not a buffer (for a diagnosis)."""
        return ", ".join(names) + describe_kinds(self._state_items(), names)

    def stream(self, *, head: bool = False) -> StreamRun:
        """Eager over the calls (``head``: the first call only) from the initial state, with the
        stream's state after each call recorded (for a streaming case)."""
        return self.replay(head=head)

    def outputs(self) -> dict[str, np.ndarray]:
        """Outputs stacked on a leading call axis: what every target is judged against."""
        return stack_outputs(self.stream().outputs, self.case.output_names, "eager")

    def replay(
        self,
        *,
        head: bool = False,
        reset_each_call: Sequence[str] = (),
        swap_after_each_call: tuple[str, str] | None = None,
        preroll: bool = False,
    ) -> StreamRun:
        """Eager under a state hypothesis, cached (every target a diagnosis asks about shares it).

        Args:
            head: the first call only (what a freshly loaded artifact's first output depends on).
            reset_each_call: state put back to its initial value before every call.
            swap_after_each_call: two states exchanged between calls.
            preroll: one forward call with the case's example input first (state advanced by export).
        """
        if head:  # the first call of the whole run under the same hypothesis: never run apart
            full = self.replay(
                reset_each_call=reset_each_call, swap_after_each_call=swap_after_each_call, preroll=preroll
            )
            return StreamRun(full.outputs[:1], full.states[:1] if full.states is not None else None)
        key = (tuple(reset_each_call), swap_after_each_call, preroll)
        if key not in self._runs:
            self._runs[key] = run_module(
                self.module,
                self.calls,
                case=self.case,
                state_names=self.state_names() if self.case.streaming is not None else (),
                reset_each_call=reset_each_call,
                swap_after_each_call=swap_after_each_call,
                preroll=tuple(self.case.example_inputs()) if preroll else None,
            )
        return self._runs[key]

    def float_noise(self, calls: Calls | None = None) -> dict[str, np.ndarray] | None:
        """Eager's own float32 noise on ``calls`` (default: this input's), by output: the largest
        ``|float32 - float64|`` over each call's elements, broadcast over them (the floor a
        case's ``noise_multiple`` scales). None where the module does not run in float64."""
        calls = list(calls if calls is not None else self.calls)
        key = calls_key(calls)
        if key not in self._noise:  # eager's float32 run of these calls is the session's, shared
            self._noise[key] = float_noise(self.case, self.module, calls, self.outputs_for(calls))
        return self._noise[key]

    def offline(self) -> PerCall:
        """The whole signal in one call, through the case's offline model (or its module)."""
        if self._offline is None:
            self._offline = run_module(self._offline_module(), [whole_signal(self.case, self.calls)]).outputs
        return self._offline


def eager_reference(
    case: ModelCase,
    calls: Calls | None = None,
    buffer_names: Sequence[str] | None = None,
    *,
    module: torch.nn.Module | None = None,
    branches: Sequence[Any] | None = None,
) -> EagerReference:
    """An :class:`EagerReference` outside a session (self-tests, scripts): the case's module
    (built once here unless given), its primary input unless ``calls`` are given, the buffers
    forward mutates (audited unless ``buffer_names`` are given) and its branches (discovered
    unless given)."""
    chosen = list(calls) if calls is not None else list(case.inputs[case.main_input]())

    audited: list[StateItem] = []

    def items() -> list[StateItem]:
        if not audited:
            if buffer_names is not None:
                buffers = dict(reference.module.named_buffers())
                audited.extend(
                    StateItem(n, tuple(buffers[n].shape), str(buffers[n].dtype), True, True)
                    for n in buffer_names
                )
            else:
                audited.extend(audit_state(reference.module, case.example_inputs()))
        return audited

    def offline() -> torch.nn.Module:
        spec = case.streaming
        return spec.offline().eval() if spec is not None and spec.offline is not None else reference.module

    found = list(branches) if branches is not None else None
    reference = EagerReference(
        case,
        module if module is not None else (lambda: case.build().eval()),
        chosen,
        items,
        offline,
        branches=(lambda: found) if found is not None else None,
    )
    return reference
