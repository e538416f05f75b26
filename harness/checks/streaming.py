"""Streaming checks for stateful cases, each with a diagnosis in words.

Every check is a function of the cell's :class:`~harness.run.evidence.Evidence` (the eager
side, computed once per worker, and the target's runs its suite declares); it runs nothing and
returns a :class:`Check`: truthy on pass,
``summary()`` one line saying what went wrong (state dropped, state advanced by export, buffers
swapped, batch rows sharing state, a reset that does not reset, a chunk size the artifact
rejects), ``report()`` the details. Outputs are judged by the cell's :class:`Judge`; causes are
found by :mod:`harness.checks.stream_diagnosis`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from ..core.case import ModelCase
from ..core.check import Check
from ..core.errors import HarnessError, TargetRunError, describe_exception
from ..core.framing import framed_outputs, frames, streaming_spec
from ..core.judge import Judge
from ..core.shapes import InputSignatureError
from ..run.eager import EagerReference, StreamRun
from ..run.evidence import Evidence
from .stream_diagnosis import advanced_by_export, explain_divergence, metric_state_cause

__all__ = [
    "check_batch_isolation",
    "check_chunk_sizes",
    "check_continuity",
    "check_initial_state",
    "check_offline",
    "check_reset",
]


def _judge_frames(
    judge: Judge, case: ModelCase, expected: dict, actual: dict, what: str, passed: str | None = None
) -> Check:
    """Framed outputs judged over the frames both sides have."""
    spec = streaming_spec(case)
    names = framed_outputs(case)
    e_cut, a_cut = {}, {}
    for name in names:
        axis = spec.frame_axis(name)
        n = min(expected[name].shape[axis], actual[name].shape[axis])
        e_cut[name] = np.take(expected[name], range(n), axis=axis)
        a_cut[name] = np.take(actual[name], range(n), axis=axis)
    return judge.judge(e_cut, a_cut, what=what, names=names, passed=passed)


def _require_varying(case: ModelCase, framed: dict[str, np.ndarray], what: str) -> None:
    """A streaming check on an input where eager's output is constant could pass a constant
    export (PESTO's pitch on a steady tone): refuse such an input, it cannot judge."""
    spec = streaming_spec(case)
    flat = [
        name
        for name, value in framed.items()
        if value.size
        and np.ptp(np.nan_to_num(np.moveaxis(value, spec.frame_axis(name), 0), nan=0.0), axis=0).max() == 0
    ]
    if flat:
        raise HarnessError(
            f"{what}: eager's {', '.join(repr(n) for n in flat)} is constant over the frames of this input, "
            "so a constant export would pass: give the streaming checks an input on which every output "
            "varies (the case's primary_input)"
        )


def check_continuity(evidence: Evidence) -> Check:
    """Chunk by chunk, the target matches eager fed the same chunks from the initial state."""
    case, calls, eager, judge = evidence.case, evidence.calls, evidence.eager, evidence.judge
    what = f"{evidence.target.name} streamed vs eager streamed"
    expected = eager.stream()
    _require_varying(case, frames(case, expected.outputs), what)
    actual = evidence.run
    passed = f"ok over {len(calls)} chunks"
    if judge.by_metric:
        verdict = _judge_frames(
            judge, case, frames(case, expected.outputs), frames(case, actual.outputs), what, passed
        )
        cause = None if verdict else metric_state_cause(judge, eager, actual)
        return verdict.retitled(what, f"{cause} ({verdict.diagnosis})") if cause else verdict
    first = judge.first_divergence(expected.outputs, actual.outputs)
    if first is None:  # every chunk within tolerance: the task metric has its say over the frames
        return _judge_frames(
            judge, case, frames(case, expected.outputs), frames(case, actual.outputs), what, passed
        )
    diagnosis, details = explain_divergence(judge, eager, actual, first)
    return Check(what, False, diagnosis, tuple(details))


def _advice(eager: EagerReference) -> str:
    """How to keep tracing from advancing the state, for where the state is kept."""
    outside = [item.name for item in eager.state_items() if not item.is_buffer]
    if outside:
        return (
            f"{', '.join(outside)} not a buffer, so the trace's own call advances the constant it keeps; "
            "register the state as buffers and reset them after tracing"
        )
    return "reset the buffers after tracing"


def check_initial_state(evidence: Evidence) -> Check:
    """A freshly loaded artifact starts from the module's initial state (export consumed none).

    Only evidence about the state counts: a readable initial state that differs from the
    module's, or a first chunk that eager reproduces from the advanced state. A first chunk
    that differs for any other reason (other weights, swapped or constant outputs) is reported
    as such, never as a start-state problem. Judged: the first call of a freshly loaded
    runner's run, and the state ``reset()`` returns it to (where the runtime lets it be read).
    """
    case, eager, judge = evidence.case, evidence.eager, evidence.judge
    state_names = eager.state_names()
    what = f"{evidence.target.name} freshly loaded"
    first = evidence.fresh
    actual = StreamRun(first.outputs[:1], first.states[:1] if first.states is not None else None)
    expected = eager.stream(head=True)
    details = []
    state = actual.states[0] if actual.states else None
    if state is not None:
        initial = {n: b.detach().cpu().numpy() for n, b in eager.module.named_buffers() if n in state_names}
        start = evidence.start_state or {}
        same = Judge.identical(case, reference="the module's initial state")
        for name in state_names:
            if name in start and name in initial and not same.compare_one(name, initial[name], start[name]):
                details.append(f"initial value of {name!r} differs from the module's")
    passed = "ok: starts from the initial state"
    verdict = _judge_frames(
        judge, case, frames(case, expected.outputs), frames(case, actual.outputs), what, passed
    )
    if verdict and not details:
        return verdict
    first = judge.first_divergence(expected.outputs, actual.outputs)
    if first is not None and advanced_by_export(judge, eager, actual, head=True):
        return Check(
            what,
            False,
            "state advanced by export: the artifact starts where one forward call with the example input "
            f"left the state ({eager.describe_state(state_names)}; torch.jit.trace runs forward while tracing: "
            f"{_advice(eager)})",
            tuple(details),
        )
    if details:
        return Check(what, False, "does not start from the initial state: " + details[0], tuple(details))
    differs = first[1].summary() if first is not None else verdict.diagnosis
    return Check(
        what,
        False,
        f"first chunk differs from eager's: {differs}; the start state is not shown to be the "
        "cause (no state hypothesis reproduces it): see equivalence",
        verdict.details,
        verdict.metric,
    )


def check_reset(evidence: Evidence) -> Check:
    """After ``reset()``, replaying a stream gives what the freshly loaded artifact gave."""
    case, calls = evidence.case, evidence.calls
    what = f"{evidence.target.name} reset"
    divergence = Judge.identical(case).first_divergence(evidence.fresh.outputs, evidence.replay.outputs)
    if divergence is None:
        return Check(what, True, f"ok: replay after reset identical over {len(calls)} chunks")
    index, comparison = divergence
    return Check(
        what,
        False,
        f"reset() did not return to the initial state: the replay differs from the first run at chunk {index}",
        (comparison.summary(),),
    )


def _refused_chunk_reason(meta: Mapping[str, Any], chunk: int, exc: Exception) -> str:
    fixed_because = meta.get("chunk_fixed_because")
    if fixed_because:
        return f"the exporter refused a dynamic chunk, so it is fixed at {chunk} ({fixed_because})"
    if meta.get("chunk_dynamic"):
        return "exported with a dynamic chunk, yet the runtime rejects this size"
    if meta.get("user_file") and isinstance(exc, InputSignatureError):
        return (
            f"your file states no dynamic chunk, so the harness takes it at chunk {chunk}; if it takes "
            "other sizes, give its input shapes in the sidecar's `inputs` (docs/sidecar.schema.json)"
        )
    return f"exported at chunk {chunk} with static shapes?"


def check_chunk_sizes(evidence: Evidence) -> Check:
    """The same signal in every admitted chunk size gives the same frames as the main chunk."""
    case, meta = evidence.case, evidence.meta
    spec = streaming_spec(case)
    judge = replace(evidence.judge, reference=f"chunk {spec.chunk}")
    what = f"{evidence.target.name} chunk sizes {[spec.chunk, *spec.other_chunks]}"
    reference = frames(case, evidence.run.outputs)
    not_admitted = []
    for chunk, attempt in evidence.rechunked.items():
        try:
            if attempt.error is not None:
                raise attempt.error
            assert attempt.run is not None
            other = frames(case, attempt.run.outputs)
        except InputSignatureError as exc:
            # a file whose own shapes fix the chunk is judged on what it takes (a user's file whose
            # format states no shapes was only assumed fixed: that fails, saying how to declare them)
            if not meta.get("chunk_dynamic") and (not meta.get("user_file") or meta.get("shapes_stated")):
                not_admitted.append(chunk)
                continue
            kind, line = describe_exception(exc)
            return Check(
                what,
                False,
                f"artifact rejects chunk {chunk} ({_refused_chunk_reason(meta, spec.chunk, exc)}): {kind}: {line}",
            )
        except TargetRunError as exc:
            kind, line = describe_exception(exc)
            why = _refused_chunk_reason(meta, spec.chunk, exc)
            return Check(what, False, f"artifact rejects chunk {chunk} ({why}): {kind}: {line}")
        result = _judge_frames(judge, case, reference, other, what, "ok")
        if not result:
            return result.retitled(
                what, f"chunk {chunk} gives other frames than chunk {spec.chunk}: {result.diagnosis}"
            )
    if not_admitted:
        fixed = f"fixed at a chunk of {spec.chunk}: only {spec.chunk} admitted"
        why = meta.get("chunk_fixed_because") or (
            "its input shapes state one chunk size"
            if meta.get("user_file")
            else "exported with static shapes"
        )
        refused = ", ".join(map(str, not_admitted))
        if len(not_admitted) == len(spec.other_chunks):
            return Check(what, True, f"{fixed} (chunk {refused} is not: {why})", applies=False)
        return Check(
            what,
            True,
            f"ok: same frames for every chunk size the file admits; chunk {refused} is not admitted ({why})",
        )
    return Check(what, True, "ok: same frames for every admitted chunk size")


def check_offline(evidence: Evidence) -> Check:
    """Streamed output matches whole-signal (offline) output after the warm-up frames."""
    case, eager = evidence.case, evidence.eager
    spec = streaming_spec(case)
    what = f"{evidence.target.name} streamed vs offline"
    try:
        offline = frames(case, eager.offline())
    except HarnessError as exc:
        source = (
            "the case's offline model" if spec.offline else "the case's module (no offline model declared)"
        )
        raise HarnessError(
            f"{source} cannot take the whole signal in one call ({exc}); declare StreamingSpec(offline=...)"
        ) from exc
    streamed = frames(case, evidence.run.outputs)
    aligned_streamed, aligned_offline = {}, {}
    for name in framed_outputs(case):
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
    judge = Judge.for_offline(case, evidence.target)
    return _judge_frames(judge, case, aligned_offline, aligned_streamed, what)


def check_batch_isolation(evidence: Evidence) -> Check:
    """Batch rows are independent streams: changing the other rows leaves row 0 unchanged."""
    case, calls = evidence.case, evidence.calls
    what = f"{evidence.target.name} batch isolation"
    same = Judge.identical(case, reference="row 0 before")
    base, changed = evidence.run.outputs, evidence.altered_rows.outputs
    framed = set(framed_outputs(case))
    for index, (a, b) in enumerate(zip(base, changed)):
        for name, x, y in zip(case.output_names, a, b):
            if name not in framed:
                continue
            comparison = same.compare_one(name, x[:1], y[:1])
            if not comparison:
                return Check(
                    what,
                    False,
                    f"batch rows share state: changing rows 1.. changed row 0's {name!r} from chunk {index}",
                    (comparison.summary(),),
                )
    return Check(what, True, f"ok: row 0 unchanged over {len(calls)} chunks")
