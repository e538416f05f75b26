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
from .equivalence import DETERMINISM_TOLERANCE, module_step
from .errors import HarnessError, TargetRunError
from .sequence import StateThreading, run_sequence
from .shapes import InputSignatureError
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
    case: ModelCase | None = None,
    state_names: Sequence[str] = (),
    reset_each_call: Sequence[str] = (),
    swap_after_each_call: tuple[str, str] | None = None,
    preroll: Call | None = None,
) -> StreamRun:
    """Eager fed ``calls`` from its current state, under a hypothesis; the module is restored.

    State names are buffer names, or, for a case with explicit state, its state inputs.

    Args:
        case: the case, for its explicit state (threaded as every target's is).
        reset_each_call: state put back to its initial value before every call (state dropped).
        swap_after_each_call: two states exchanged between calls (state fed back crosswise).
        preroll: one call made before the stream and not recorded (state advanced by export).
    """
    threading = StateThreading.of(case) if case is not None else None
    explicit = set(threading.names) if threading else set()
    initial = buffer_snapshot(module)
    buffers = dict(module.named_buffers())
    step = module_step(module)
    states: list[dict[str, np.ndarray]] = []
    buffer_resets = [n for n in reset_each_call if n not in explicit]
    buffer_swap = swap_after_each_call if swap_after_each_call and swap_after_each_call[0] not in explicit else None
    state_swap = swap_after_each_call if swap_after_each_call and swap_after_each_call[0] in explicit else None

    def recorded(call: Call) -> tuple[np.ndarray, ...]:
        with torch.no_grad():
            for name in buffer_resets:
                buffers[name].copy_(initial[name])
        out = step(call)
        states.append({n: buffers[n].detach().cpu().numpy().copy() for n in state_names if n in buffers})
        if buffer_swap is not None:
            a, b = buffer_swap
            with torch.no_grad():
                held = buffers[a].clone()
                buffers[a].copy_(buffers[b])
                buffers[b].copy_(held)
        return out

    try:
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
    finally:
        restore_buffers(module, initial)
    return StreamRun(list(outputs), states)


def target_stream(runner: Runner, calls: Calls, *, reset: bool = True, case: ModelCase | None = None) -> StreamRun:
    """The target fed ``calls`` (after a reset unless told otherwise), with its state where readable."""
    if reset:
        runner.reset()
    states: list[dict[str, np.ndarray]] | None = []

    def step(call: Call) -> tuple[np.ndarray, ...]:
        nonlocal states
        out = runner.run(*call)
        state = runner.state()
        if state is None:
            states = None
        elif states is not None:
            states.append(state)
        return out

    outputs = run_sequence(step, calls, StateThreading.of(case) if case is not None else None)
    return StreamRun(list(outputs), states)


def _approximate(case: ModelCase, target: str) -> bool:
    """An approximate target (bf16 OpenVINO) is judged on streams by the case's task metric."""
    from .targets import target as find_target

    try:
        return find_target(target).approximate and case.approximate_metric is not None
    except KeyError:
        return False


def _approximate_state_cause(
    case: ModelCase, module: torch.nn.Module, calls: Calls, state_names: Sequence[str], actual: StreamRun
) -> str | None:
    """For a target judged by the task metric: the state hypothesis whose eager replay the
    target matches by that metric (its own rounding hides a tensor-exact match)."""
    if not state_names:
        return None
    assert case.approximate_metric is not None
    observed = _frames(case, actual.outputs)

    def fits(run: StreamRun) -> bool:
        # both ways: a metric that judges only the frames its expected side selects (PESTO's voiced
        # frames) passes vacuously on a replay that selects none (a dropped state is near-silence)
        replayed = _frames(case, run.outputs)
        return bool(case.approximate_metric(replayed, observed)) and bool(case.approximate_metric(observed, replayed))

    if fits(eager_stream(module, calls, case=case, reset_each_call=state_names)):
        return f"state dropped: every chunk sees the initial value of {', '.join(state_names)}"
    if fits(eager_stream(module, calls, case=case, preroll=tuple(case.example_inputs()))):
        return (
            f"state advanced by export: the artifact starts from the state one forward call with the example "
            f"input leaves ({', '.join(state_names)})"
        )
    return None


def _metric_check(case: ModelCase, what: str, expected: dict, actual: dict, passed: str) -> Check:
    """Judge framed outputs by the case's task metric (approximate targets)."""
    assert case.approximate_metric is not None
    result = case.approximate_metric(expected, actual)
    return Check(what, bool(result), f"{passed} ({result.summary()})" if result else result.summary(), metric=result)


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
    """The hypothesis explains the target: it reproduces every call within tolerance. A target
    that is simply wrong (other weights, swapped or constant outputs, NaN) reproduces none."""
    return _first_divergence(case, target, hypothesis.outputs, actual) is None


def _state_divergence(
    eager: StreamRun, actual: StreamRun, names: Sequence[str], output_index: int
) -> str | None:
    """A readable state that diverges *before* the outputs do (at the same chunk, outputs and
    state differ together, which any numerical fault does: no evidence about the state)."""
    if actual.states is None:
        return None
    for index, (e, a) in enumerate(zip(eager.states or [], actual.states)):
        if index >= output_index:
            return None
        for name in names:
            if name in e and name in a:
                comparison = compare(e[name], a[name], DETERMINISM_TOLERANCE, name=name)
                if not comparison:
                    return (
                        f"state buffer {name!r} first differs from eager's after chunk {index}, before any "
                        f"output does ({comparison.summary()})"
                    )
    return None


def stream_state_names(case: ModelCase, buffer_names: Sequence[str]) -> list[str]:
    """The state a stream carries: buffers forward mutates, and explicit state inputs."""
    spec = case.streaming
    return [*buffer_names, *(spec.state if spec is not None else ())]


def _state_shapes(case: ModelCase, module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    shapes = {name: tuple(b.shape) for name, b in module.named_buffers()}
    example = tuple(case.example_inputs())
    for name in case.streaming.state if case.streaming is not None else ():
        shapes[name] = tuple(example[case.input_names.index(name)].shape)
    return shapes


def _explain_divergence(
    case: ModelCase,
    target: str,
    module: torch.nn.Module,
    calls: Calls,
    state_names: Sequence[str],
    actual: StreamRun,
    first: tuple[int, Comparison],
) -> tuple[str, list[str]]:
    """Which hypothesis about the state does the target reproduce? None: say what differs,
    without a cause."""
    index, comparison = first
    where = f"outputs diverge from eager at chunk {index} ({comparison.summary()})"
    details = [where]
    if not state_names:
        return where, details

    def replay(**hypothesis) -> StreamRun:
        return eager_stream(module, calls, case=case, **hypothesis)

    dropped = replay(reset_each_call=state_names)
    if _reproduces(case, target, dropped, actual.outputs):
        names = ", ".join(state_names)
        if len(state_names) > 1:
            single = [n for n in state_names if _reproduces(case, target, replay(reset_each_call=[n]), actual.outputs)]
            names = ", ".join(single) or names
        return (
            f"state dropped: every chunk sees the initial value of {names}; first wrong output at chunk {index}",
            details + ["the target reproduces eager with the state reset before every chunk"],
        )
    advanced = replay(preroll=tuple(case.example_inputs()))
    if _reproduces(case, target, advanced, actual.outputs):
        return (
            "state advanced by export: the artifact starts from the state one forward call with the "
            f"example input leaves ({', '.join(state_names)}); torch.jit.trace runs forward while tracing",
            details,
        )
    shapes = _state_shapes(case, module)
    for a, b in combinations(state_names, 2):
        if shapes.get(a) == shapes.get(b):
            if _reproduces(case, target, replay(swap_after_each_call=(a, b)), actual.outputs):
                return (
                    f"state buffers swapped: {a!r} and {b!r} are fed back into each other's place between chunks",
                    details,
                )
    eager = replay(state_names=state_names)
    state_note = _state_divergence(eager, actual, state_names, index)
    if state_note:
        details.append(state_note)
        return f"{where}; {state_note}", details
    details.append(
        "no state hypothesis (dropped, advanced by export, swapped) reproduces the target: the export "
        "computes something else from the first wrong chunk on"
    )
    return where, details


def _require_varying(case: ModelCase, frames: dict[str, np.ndarray], what: str) -> None:
    """A streaming check on an input where eager's output is constant could pass a constant
    export (PESTO's pitch on a steady tone): refuse such an input, it cannot judge."""
    spec = _spec(case)
    flat = [
        name
        for name, value in frames.items()
        if value.size and np.ptp(np.nan_to_num(np.moveaxis(value, spec.frame_axis(name), 0), nan=0.0), axis=0).max() == 0
    ]
    if flat:
        raise HarnessError(
            f"{what}: eager's {', '.join(repr(n) for n in flat)} is constant over the frames of this input, "
            "so a constant export would pass: give the streaming checks an input on which every output "
            "varies (the case's primary_input)"
        )


def check_continuity(
    case: ModelCase,
    target: str,
    runner: Runner,
    module: torch.nn.Module,
    calls: Calls,
    state_names: Sequence[str],
) -> Check:
    """Chunk by chunk, the target matches eager fed the same chunks from the initial state."""
    state_names = stream_state_names(case, state_names)
    what = f"{target} streamed vs eager streamed"
    eager = eager_stream(module, calls, case=case, state_names=state_names)
    _require_varying(case, _frames(case, eager.outputs), what)
    actual = target_stream(runner, calls, case=case)
    if _approximate(case, target):
        expected_frames, actual_frames = _frames(case, eager.outputs), _frames(case, actual.outputs)
        check = _metric_check(case, what, expected_frames, actual_frames, f"ok over {len(calls)} chunks")
        cause = None if check else _approximate_state_cause(case, module, calls, state_names, actual)
        return Check(what, False, f"{cause} ({check.diagnosis})", metric=check.metric) if cause else check
    first = _first_divergence(case, target, eager.outputs, actual.outputs)
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
    """A freshly loaded artifact starts from the module's initial state (export consumed none).

    Only evidence about the state counts: a readable initial state that differs from the
    module's, or a first chunk that eager reproduces from the advanced state. A first chunk
    that differs for any other reason (other weights, swapped or constant outputs) is reported
    as such, never as a start-state problem.
    """
    state_names = stream_state_names(case, state_names)
    what = f"{target} freshly loaded"
    head = list(calls[:1])  # the first call's outputs depend on the initial state alone
    actual = target_stream(fresh_runner, head, reset=False, case=case)
    eager = eager_stream(module, head, case=case, state_names=state_names)
    details = []
    state = actual.states[0] if actual.states else None
    if state is not None:
        initial = {n: b.detach().cpu().numpy() for n, b in module.named_buffers() if n in state_names}
        fresh_runner.reset()
        start = fresh_runner.state() or {}
        for name in state_names:
            if name in start and name in initial and not compare(
                initial[name], start[name], DETERMINISM_TOLERANCE, name=name
            ):
                details.append(f"initial value of {name!r} differs from the module's")
    if _approximate(case, target) and not details:
        check = _metric_check(
            case, what, _frames(case, eager.outputs), _frames(case, actual.outputs), "ok: starts from the initial state"
        )
        if check:
            return check
    first = _first_divergence(case, target, eager.outputs, actual.outputs)
    if first is None and not details:
        return Check(what, True, "ok: starts from the initial state")
    advanced = eager_stream(module, head, case=case, preroll=tuple(case.example_inputs()))
    if first is not None and state_names and _reproduces(case, target, advanced, actual.outputs):
        return Check(
            what,
            False,
            "state advanced by export: the artifact starts where one forward call with the example input "
            "left the state (torch.jit.trace runs forward while tracing; reset the buffers after tracing)",
            tuple(details),
        )
    if details:
        return Check(what, False, "does not start from the initial state: " + details[0], tuple(details))
    assert first is not None
    return Check(
        what,
        False,
        f"first chunk differs from eager's: {first[1].summary()}; the start state is not shown to be the "
        "cause (no state hypothesis reproduces it): see equivalence",
    )


def check_reset(case: ModelCase, target: str, fresh_runner: Runner, calls: Calls) -> Check:
    """After ``reset()``, replaying a stream gives what the freshly loaded artifact gave."""
    what = f"{target} reset"
    first = target_stream(fresh_runner, calls, reset=False, case=case)
    fresh_runner.reset()
    replay = target_stream(fresh_runner, calls, reset=False, case=case)
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


def whole_signal(case: ModelCase, calls: Calls) -> Call:
    """The stream as one call: time inputs joined along their axes; static inputs (a sample
    rate) and explicit state (its initial value) as the first call has them."""
    spec = _spec(case)
    axes = spec.time_axes(case.input_names)
    joined = []
    for i, name in enumerate(case.input_names):
        if name in axes:
            joined.append(torch.cat([call[i] for call in calls], dim=axes[name]))
        else:
            joined.append(calls[0][i])
    return tuple(joined)


def rechunk(case: ModelCase, calls: Calls, chunk: int) -> list[Call]:
    """The same signal cut into calls of ``chunk`` time steps (a ragged tail is dropped); only
    time inputs are cut, the others are passed as the first call has them."""
    spec = _spec(case)
    axes = spec.time_axes(case.input_names)
    whole = whole_signal(case, calls)
    first_time = next(i for i, name in enumerate(case.input_names) if name in axes)
    length = whole[first_time].shape[axes[case.input_names[first_time]]]
    return [
        tuple(
            t.narrow(axes[name], start, chunk).contiguous() if name in axes else t
            for name, t in zip(case.input_names, whole)
        )
        for start in range(0, length - chunk + 1, chunk)
    ]


def _framed_outputs(case: ModelCase) -> list[str]:
    """Outputs that are frames over time (explicit next-state outputs are not)."""
    spec = _spec(case)
    state_outputs = set(spec.state.values())
    return [name for name in case.output_names if name not in state_outputs]


def _frames(case: ModelCase, per_call: PerCall) -> dict[str, np.ndarray]:
    spec = _spec(case)
    framed = set(_framed_outputs(case))
    return {
        name: np.concatenate([out[i] for out in per_call], axis=spec.frame_axis(name))
        for i, name in enumerate(case.output_names)
        if name in framed
    }


def _compare_frames(case: ModelCase, target: str, expected: dict, actual: dict, what: str) -> Check:
    spec = _spec(case)
    if _approximate(case, target):
        return _metric_check(case, what, expected, actual, "ok")
    comparisons = []
    for name in _framed_outputs(case):
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
    reference = _frames(case, target_stream(runner, calls, case=case).outputs)
    for chunk in spec.other_chunks:
        other_calls = rechunk(case, calls, chunk)
        try:
            other = _frames(case, target_stream(runner, other_calls, case=case).outputs)
        except (InputSignatureError, TargetRunError) as exc:
            kind, line = describe_exception(exc)
            fixed_because = runner.artifact.meta.get("chunk_fixed_because")
            if fixed_because:
                why = f"the exporter refused a dynamic chunk, so it is fixed at {spec.chunk} ({fixed_because})"
            elif runner.artifact.meta.get("chunk_dynamic"):
                why = "exported with a dynamic chunk, yet the runtime rejects this size"
            elif runner.artifact.meta.get("user_file") and isinstance(exc, InputSignatureError):
                why = (
                    f"your file states no dynamic chunk, so the harness takes it at chunk {spec.chunk}; if it takes "
                    "other sizes, give its input shapes in the sidecar's `inputs` (docs/sidecar.schema.json)"
                )
            else:
                why = f"exported at chunk {spec.chunk} with static shapes?"
            return Check(what, False, f"artifact rejects chunk {chunk} ({why}): {kind}: {line}")
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
    try:
        out = module_step(offline)(whole_signal(case, calls))
    except HarnessError as exc:
        source = "the case's offline model" if spec.offline else "the case's module (no offline model declared)"
        raise HarnessError(
            f"{source} cannot take the whole signal in one call ({exc}); declare StreamingSpec(offline=...)"
        ) from exc
    framed = set(_framed_outputs(case))
    return {name: o for name, o in zip(case.output_names, out) if name in framed}


def check_offline(
    case: ModelCase, target: str, runner: Runner, module_factory: Callable[[], torch.nn.Module], calls: Calls
) -> Check:
    """Streamed output matches whole-signal (offline) output after the warm-up frames."""
    spec = _spec(case)
    what = f"{target} streamed vs offline"
    offline = _offline_reference(case, module_factory, calls)
    streamed = _frames(case, target_stream(runner, calls, case=case).outputs)
    aligned_streamed, aligned_offline = {}, {}
    for name in _framed_outputs(case):
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
    _require_varying(case, aligned_offline, what)
    if spec.offline_metric is not None:
        result = spec.offline_metric(aligned_offline, aligned_streamed)
        return Check(what, bool(result), result.summary(), metric=result)
    check = _compare_frames(case, target, aligned_offline, aligned_streamed, what)
    return check


def _altered_rows(case: ModelCase, calls: Calls) -> list[Call]:
    """The same calls with every batch row but the first of each time input replaced by other data."""
    axes = _spec(case).time_axes(case.input_names)
    altered = []
    for call in calls:
        new = []
        for name, tensor in zip(case.input_names, call):
            if name in axes and tensor.dim() > 0:
                t = tensor.clone()
                t[1:] = torch.flip(t[1:], dims=[-1]) * -0.7 + 0.05
                new.append(t)
            else:
                new.append(tensor)
        altered.append(tuple(new))
    return altered


def check_batch_isolation(case: ModelCase, target: str, runner: Runner, calls: Calls) -> Check:
    """Batch rows are independent streams: changing the other rows leaves row 0 unchanged."""
    what = f"{target} batch isolation"
    base = target_stream(runner, calls, case=case).outputs
    changed = target_stream(runner, _altered_rows(case, calls), case=case).outputs
    framed = set(_framed_outputs(case))
    for index, (a, b) in enumerate(zip(base, changed)):
        for name, x, y in zip(case.output_names, a, b):
            if name not in framed:
                continue
            comparison = compare(x[:1], y[:1], DETERMINISM_TOLERANCE, name=name)
            if not comparison:
                return Check(
                    what,
                    False,
                    f"batch rows share state: changing rows 1.. changed row 0's {name!r} from chunk {index}",
                    (comparison.summary(),),
                )
    return Check(what, True, f"ok: row 0 unchanged over {len(calls)} chunks")
