"""Streaming checks for stateful cases, each with a diagnosis in words.

Every check returns a :class:`Check`: truthy on pass, ``summary()`` one line saying what
went wrong (state dropped, state advanced by export, buffers swapped, batch rows sharing state,
a reset that does not reset, a chunk size the artifact rejects), ``report()`` the details.
Diagnoses are found by replaying eager under each hypothesis and seeing which one the target
reproduces, so they work for runtimes whose state cannot be read (ONNX, ExecuTorch).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import torch

from .buffers import buffer_snapshot, restore_buffers
from .case import Call, Calls, ModelCase, StreamingSpec
from .check import Check
from .compare import Comparison, compare
from .equivalence import DETERMINISM_TOLERANCE
from .targets import Runner
from .targets.base import describe_exception

__all__ = [
    "check_batch_isolation",
    "check_chunk_sizes",
    "check_continuity",
    "check_initial_state",
    "check_offline",
    "check_reset",
    "eager_stream",
    "rechunk",
]

PerCall = list[tuple[np.ndarray, ...]]


@dataclass(frozen=True)
class StreamRun:
    outputs: PerCall
    states: list[dict[str, np.ndarray]] | None  # state after each call, where readable


def _spec(case: ModelCase) -> StreamingSpec:
    if case.streaming is None:
        raise ValueError(f"case {case.name!r} has no streaming spec")
    return case.streaming


def eager_stream(
    module: torch.nn.Module,
    calls: Calls,
    *,
    state_names: Sequence[str] = (),
    reset_each_call: Sequence[str] = (),
    swap_after_each_call: tuple[str, str] | None = None,
    preroll: Call | None = None,
) -> StreamRun:
    """Eager fed ``calls`` from its current state, under a hypothesis; the module is restored.

    Args:
        reset_each_call: buffers put back to their initial value before every call (state dropped).
        swap_after_each_call: two buffers exchanged between calls (state fed back crosswise).
        preroll: one call made before the stream and not recorded (state advanced by export).
    """
    initial = buffer_snapshot(module)
    buffers = dict(module.named_buffers())
    outputs: PerCall = []
    states = []
    try:
        with torch.no_grad():
            if preroll is not None:
                module(*preroll)
            for call in calls:
                for name in reset_each_call:
                    buffers[name].copy_(initial[name])
                out = module(*call)
                out = tuple(out) if isinstance(out, (tuple, list)) else (out,)
                outputs.append(tuple(o.detach().cpu().numpy().copy() for o in out))
                states.append({n: buffers[n].detach().cpu().numpy().copy() for n in state_names})
                if swap_after_each_call is not None:
                    a, b = swap_after_each_call
                    held = buffers[a].clone()
                    buffers[a].copy_(buffers[b])
                    buffers[b].copy_(held)
    finally:
        restore_buffers(module, initial)
    return StreamRun(outputs, states)


def target_stream(runner: Runner, calls: Calls, *, reset: bool = True) -> StreamRun:
    """The target fed ``calls`` (after a reset unless told otherwise), with its state where readable."""
    if reset:
        runner.reset()
    outputs: PerCall = []
    states: list[dict[str, np.ndarray]] | None = []
    for call in calls:
        outputs.append(runner.run(*call))
        state = runner.state()
        if state is None:
            states = None
        elif states is not None:
            states.append(state)
    return StreamRun(outputs, states)


def _first_divergence(
    case: ModelCase, target: str, expected: PerCall, actual: PerCall, tolerance=None
) -> tuple[int, Comparison] | None:
    """The first call whose outputs differ, with the comparison of the worst output there."""
    for index, (e, a) in enumerate(zip(expected, actual)):
        failing = [
            compare(ev, av, tolerance or case.tolerance_for(name, target), name=name)
            for name, ev, av in zip(case.output_names, e, a)
        ]
        failing = [c for c in failing if not c]
        if failing:
            return index, max(failing, key=lambda c: (c.nonfinite_mismatches, c.max_abs))
    if len(expected) != len(actual):
        raise ValueError(f"{len(actual)} calls ran, {len(expected)} expected")
    return None


def _reproduces(case: ModelCase, target: str, hypothesis: StreamRun, actual: PerCall) -> bool:
    return _first_divergence(case, target, hypothesis.outputs, actual) is None


def _state_divergence(eager: StreamRun, actual: StreamRun, names: Sequence[str]) -> str | None:
    if actual.states is None:
        return None
    for index, (e, a) in enumerate(zip(eager.states or [], actual.states)):
        for name in names:
            if name in e and name in a:
                comparison = compare(e[name], a[name], DETERMINISM_TOLERANCE, name=name)
                if not comparison:
                    return f"state buffer {name!r} first differs from eager's after chunk {index} ({comparison.summary()})"
    return None


def _explain_divergence(
    case: ModelCase,
    target: str,
    module: torch.nn.Module,
    calls: Calls,
    state_names: Sequence[str],
    actual: StreamRun,
    first: tuple[int, Comparison],
) -> tuple[str, list[str]]:
    """Which hypothesis about the state does the target reproduce?"""
    index, comparison = first
    where = f"outputs diverge from eager at chunk {index} ({comparison.summary()})"
    details = [where]
    if state_names:
        dropped = eager_stream(module, calls, reset_each_call=state_names)
        if _reproduces(case, target, dropped, actual.outputs):
            names = ", ".join(state_names)
            if len(state_names) > 1:
                single = [
                    n
                    for n in state_names
                    if _reproduces(
                        case, target, eager_stream(module, calls, reset_each_call=[n]), actual.outputs
                    )
                ]
                names = ", ".join(single) or names
            return (
                f"state dropped: every chunk sees the initial value of {names}; first wrong output at chunk {index}",
                details + ["the target reproduces eager with the state reset before every chunk"],
            )
        advanced = eager_stream(module, calls, preroll=tuple(case.example_inputs()))
        if _reproduces(case, target, advanced, actual.outputs):
            return (
                "state advanced by export: the artifact starts from the state one forward call with the "
                f"example input leaves ({', '.join(state_names)}); torch.jit.trace runs forward while tracing",
                details,
            )
        buffers = dict(module.named_buffers())
        for a, b in combinations(state_names, 2):
            if buffers[a].shape == buffers[b].shape:
                swapped = eager_stream(module, calls, swap_after_each_call=(a, b))
                if _reproduces(case, target, swapped, actual.outputs):
                    return (
                        f"state buffers swapped: {a!r} and {b!r} are fed back into each other's place between chunks",
                        details,
                    )
        eager = eager_stream(module, calls, state_names=state_names)
        state_note = _state_divergence(eager, actual, state_names)
        if state_note:
            details.append(state_note)
            return f"{where}; {state_note}", details
    return where, details


def check_continuity(
    case: ModelCase,
    target: str,
    runner: Runner,
    module: torch.nn.Module,
    calls: Calls,
    state_names: Sequence[str],
) -> Check:
    """Chunk by chunk, the target matches eager fed the same chunks from the initial state."""
    eager = eager_stream(module, calls, state_names=state_names)
    actual = target_stream(runner, calls)
    first = _first_divergence(case, target, eager.outputs, actual.outputs)
    what = f"{target} streamed vs eager streamed"
    if first is None:
        return Check(what, True, f"ok over {len(calls)} chunks")
    diagnosis, details = _explain_divergence(case, target, module, calls, state_names, actual, first)
    return Check(what, False, diagnosis, tuple(details))


def check_initial_state(
    case: ModelCase,
    target: str,
    fresh_runner: Runner,
    module: torch.nn.Module,
    calls: Calls,
    state_names: Sequence[str],
) -> Check:
    """A freshly loaded artifact starts from the module's initial state (export consumed none)."""
    what = f"{target} freshly loaded"
    head = list(calls[:1])  # the first call's outputs depend on the initial state alone
    actual = target_stream(fresh_runner, head, reset=False)
    eager = eager_stream(module, head, state_names=state_names)
    details = []
    state = actual.states[0] if actual.states else None
    if state is not None:
        initial = {n: b.detach().cpu().numpy() for n, b in module.named_buffers() if n in state_names}
        fresh_runner.reset()
        start = fresh_runner.state() or {}
        for name in state_names:
            if name in start and not compare(initial[name], start[name], DETERMINISM_TOLERANCE, name=name):
                details.append(f"initial value of {name!r} differs from the module's")
    first = _first_divergence(case, target, eager.outputs, actual.outputs)
    if first is None and not details:
        return Check(what, True, "ok: starts from the initial state")
    if first is not None:
        advanced = eager_stream(module, head, preroll=tuple(case.example_inputs()))
        if state_names and _reproduces(case, target, advanced, actual.outputs):
            return Check(
                what,
                False,
                "state advanced by export: the artifact starts where one forward call with the example input "
                "left the state (torch.jit.trace runs forward while tracing; reset the buffers after tracing)",
                tuple(details),
            )
        details.insert(0, f"first chunks differ from eager's from the initial state: {first[1].summary()}")
    return Check(what, False, "does not start from the initial state: " + details[0], tuple(details))


def check_reset(case: ModelCase, target: str, fresh_runner: Runner, calls: Calls) -> Check:
    """After ``reset()``, replaying a stream gives what the freshly loaded artifact gave."""
    what = f"{target} reset"
    first = target_stream(fresh_runner, calls, reset=False)
    fresh_runner.reset()
    replay = target_stream(fresh_runner, calls, reset=False)
    divergence = _first_divergence(case, target, first.outputs, replay.outputs, DETERMINISM_TOLERANCE)
    if divergence is None:
        return Check(what, True, f"ok: replay after reset identical over {len(calls)} chunks")
    index, comparison = divergence
    return Check(
        what,
        False,
        f"reset() did not return to the initial state: the replay differs from the first run at chunk {index}",
        (comparison.summary(),),
    )


def _whole_signal(calls: Calls, axis: int) -> tuple[torch.Tensor, ...]:
    return tuple(torch.cat([call[i] for call in calls], dim=axis) for i in range(len(calls[0])))


def rechunk(calls: Calls, chunk: int, axis: int) -> list[Call]:
    """The same signal cut into calls of ``chunk`` time steps (a ragged tail is dropped)."""
    whole = _whole_signal(calls, axis)
    length = whole[0].shape[axis]
    return [
        tuple(t.narrow(axis, start, chunk).contiguous() for t in whole)
        for start in range(0, length - chunk + 1, chunk)
    ]


def _frames(case: ModelCase, per_call: PerCall) -> dict[str, np.ndarray]:
    spec = _spec(case)
    return {
        name: np.concatenate([out[i] for out in per_call], axis=spec.frame_axis(name))
        for i, name in enumerate(case.output_names)
    }


def _compare_frames(case: ModelCase, target: str, expected: dict, actual: dict, what: str) -> Check:
    spec = _spec(case)
    comparisons = []
    for name in case.output_names:
        axis = spec.frame_axis(name)
        n = min(expected[name].shape[axis], actual[name].shape[axis])
        e = np.take(expected[name], range(n), axis=axis)
        a = np.take(actual[name], range(n), axis=axis)
        comparisons.append(compare(e, a, case.tolerance_for(name, target), name=name))
    failing = [c for c in comparisons if not c]
    if not failing:
        return Check(what, True, "ok")
    worst = failing[0]
    return Check(what, False, worst.summary(), tuple(c.summary() for c in comparisons))


def check_chunk_sizes(case: ModelCase, target: str, runner: Runner, calls: Calls) -> Check:
    """The same signal in every admitted chunk size gives the same frames as the main chunk."""
    spec = _spec(case)
    what = f"{target} chunk sizes {[spec.chunk, *spec.other_chunks]}"
    reference = _frames(case, target_stream(runner, calls).outputs)
    for chunk in spec.other_chunks:
        other_calls = rechunk(calls, chunk, spec.input_time_axis)
        try:
            other = _frames(case, target_stream(runner, other_calls).outputs)
        except Exception as exc:  # runtimes raise anything on a shape they were not built for
            kind, line = describe_exception(exc)
            return Check(
                what,
                False,
                f"artifact rejects chunk {chunk} (exported at chunk {spec.chunk} with static shapes?): {kind}: {line}",
            )
        result = _compare_frames(case, target, reference, other, what)
        if not result:
            return Check(
                what,
                False,
                f"chunk {chunk} gives other frames than chunk {spec.chunk}: {result.diagnosis}",
                result.details,
            )
    return Check(what, True, "ok: same frames for every admitted chunk size")


def _offline_reference(
    case: ModelCase, module_factory: Callable[[], torch.nn.Module], calls: Calls
) -> dict[str, np.ndarray]:
    spec = _spec(case)
    offline = (spec.offline or module_factory)().eval()
    with torch.no_grad():
        out = offline(*_whole_signal(calls, spec.input_time_axis))
    out = tuple(out) if isinstance(out, (tuple, list)) else (out,)
    return {name: o.detach().cpu().numpy() for name, o in zip(case.output_names, out)}


def check_offline(
    case: ModelCase, target: str, runner: Runner, module_factory: Callable[[], torch.nn.Module], calls: Calls
) -> Check:
    """Streamed output matches whole-signal (offline) output after the warm-up frames."""
    spec = _spec(case)
    what = f"{target} streamed vs offline"
    streamed = _frames(case, target_stream(runner, calls).outputs)
    offline = _offline_reference(case, module_factory, calls)
    aligned_streamed, aligned_offline = {}, {}
    for name in case.output_names:
        axis = spec.frame_axis(name)
        n_s, n_o = streamed[name].shape[axis], offline[name].shape[axis]
        start = max(spec.warmup, spec.latency)
        stop = min(n_s, n_o + spec.latency)
        if stop <= start:
            return Check(what, False, f"too few frames ({n_s} streamed) to pass warm-up {spec.warmup}")
        aligned_streamed[name] = np.take(streamed[name], range(start, stop), axis=axis)
        aligned_offline[name] = np.take(
            offline[name], range(start - spec.latency, stop - spec.latency), axis=axis
        )
    if spec.offline_metric is not None:
        result = spec.offline_metric(aligned_offline, aligned_streamed)
        return Check(what, bool(result), result.summary(), metric=result)
    check = _compare_frames(case, target, aligned_offline, aligned_streamed, what)
    return check


def _altered_rows(calls: Calls) -> list[Call]:
    """The same calls with every batch row but the first replaced by other data."""
    altered = []
    for call in calls:
        new = []
        for tensor in call:
            t = tensor.clone()
            t[1:] = torch.flip(t[1:], dims=[-1]) * -0.7 + 0.05
            new.append(t)
        altered.append(tuple(new))
    return altered


def check_batch_isolation(case: ModelCase, target: str, runner: Runner, calls: Calls) -> Check:
    """Batch rows are independent streams: changing the other rows leaves row 0 unchanged."""
    what = f"{target} batch isolation"
    base = target_stream(runner, calls).outputs
    changed = target_stream(runner, _altered_rows(calls)).outputs
    for index, (a, b) in enumerate(zip(base, changed)):
        for name, x, y in zip(case.output_names, a, b):
            comparison = compare(x[:1], y[:1], DETERMINISM_TOLERANCE, name=name)
            if not comparison:
                return Check(
                    what,
                    False,
                    f"batch rows share state: changing rows 1.. changed row 0's {name!r} from chunk {index}",
                    (comparison.summary(),),
                )
    return Check(what, True, f"ok: row 0 unchanged over {len(calls)} chunks")
