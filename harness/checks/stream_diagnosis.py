"""Why a stream diverges: hypotheses about the state, replayed on eager.

ONNX Runtime and ExecuTorch do not let us read their state, so a divergence is explained by
replaying eager under each hypothesis (state reset every chunk; state advanced by one example
call; two same-shaped buffers swapped between calls) and naming the one the target reproduces.
Where state is readable (torch targets, ``onnx-stateful``) the first diverging buffer is named.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

from ..core.compare import Comparison
from ..core.framing import frames
from ..core.judge import DETERMINISM_TOLERANCE, Judge
from ..run.eager import EagerReference, StreamRun

__all__ = ["explain_divergence", "metric_state_cause"]


def _reproduces(judge: Judge, hypothesis: StreamRun, actual: StreamRun) -> bool:
    """The hypothesis explains the target: it reproduces every call within tolerance. A target
    that is simply wrong (other weights, swapped or constant outputs, NaN) reproduces none."""
    return judge.first_divergence(hypothesis.outputs, actual.outputs) is None


def advanced_by_export(judge: Judge, eager: EagerReference, actual: StreamRun, *, head: bool = False) -> bool:
    """The target reproduces eager started from the state one example call leaves."""
    return bool(eager.state_names()) and _reproduces(judge, eager.replay(head=head, preroll=True), actual)


def _state_divergence(
    eager: StreamRun, actual: StreamRun, names: Sequence[str], output_index: int
) -> str | None:
    """A readable state that diverges *before* the outputs do (at the same chunk, outputs and
    state differ together, which any numerical fault does: no evidence about the state)."""
    if actual.states is None:
        return None
    same = Judge.tensors_only({}, DETERMINISM_TOLERANCE, reference="eager")
    for index, (e, a) in enumerate(zip(eager.states or [], actual.states)):
        if index >= output_index:
            return None
        for name in names:
            if name in e and name in a:
                comparison = same.compare_one(name, e[name], a[name])
                if not comparison:
                    return (
                        f"state buffer {name!r} first differs from eager's after chunk {index}, before any "
                        f"output does ({comparison.summary()})"
                    )
    return None


def _state_shapes(eager: EagerReference) -> dict[str, tuple[int, ...]]:
    case = eager.case
    shapes = {item.name: item.shape for item in eager.state_items()}
    example = tuple(case.example_inputs())
    for name in case.streaming.state if case.streaming is not None else ():
        shapes[name] = tuple(example[case.input_names.index(name)].shape)
    return shapes


def explain_divergence(
    judge: Judge, eager: EagerReference, actual: StreamRun, first: tuple[int, Comparison]
) -> tuple[str, list[str]]:
    """Which hypothesis about the state does the target reproduce? None: say what differs,
    without a cause."""
    index, comparison = first
    where = f"outputs diverge from eager at chunk {index} ({comparison.summary()})"
    details = [where]
    state_names = eager.state_names()
    if not state_names:
        return where, details
    if _reproduces(judge, eager.replay(reset_each_call=state_names), actual):
        dropped = state_names
        if len(state_names) > 1:
            dropped = [
                n for n in state_names if _reproduces(judge, eager.replay(reset_each_call=[n]), actual)
            ] or dropped
        return (
            f"state dropped: every chunk sees the initial value of {eager.describe_state(dropped)}; "
            f"first wrong output at chunk {index}",
            details + ["the target reproduces eager with the state reset before every chunk"],
        )
    if advanced_by_export(judge, eager, actual):
        return (
            "state advanced by export: the artifact starts from the state one forward call with the "
            f"example input leaves ({eager.describe_state(state_names)}); torch.jit.trace runs forward while tracing",
            details,
        )
    shapes = _state_shapes(eager)
    for a, b in combinations(state_names, 2):
        if shapes.get(a) == shapes.get(b) and _reproduces(
            judge, eager.replay(swap_after_each_call=(a, b)), actual
        ):
            return (
                f"state buffers swapped: {a!r} and {b!r} are fed back into each other's place between chunks",
                details,
            )
    state_note = _state_divergence(eager.stream(), actual, state_names, index)
    if state_note:
        details.append(state_note)
        return f"{where}; {state_note}", details
    details.append(
        "no state hypothesis (dropped, advanced by export, swapped) reproduces the target: the export "
        "computes something else from the first wrong chunk on"
    )
    return where, details


def metric_state_cause(judge: Judge, eager: EagerReference, actual: StreamRun) -> str | None:
    """For a target judged by the task metric: the state hypothesis whose eager replay the
    target matches by that metric (its own rounding hides a tensor-exact match). A hypothesis
    must fit both ways: PESTO's metric judges the frames its reference calls voiced, and a
    dropped state's replay (near silence) has none, so one way alone fits any target."""
    state_names = eager.state_names()
    if not state_names or judge.metric is None:
        return None
    case = eager.case
    observed = frames(case, actual.outputs)

    def fits(run: StreamRun) -> bool:
        return judge.metric_fits_both_ways(frames(case, run.outputs), observed)

    if fits(eager.replay(reset_each_call=state_names)):
        return f"state dropped: every chunk sees the initial value of {eager.describe_state(state_names)}"
    if fits(eager.replay(preroll=True)):
        return (
            f"state advanced by export: the artifact starts from the state one forward call with the example "
            f"input leaves ({eager.describe_state(state_names)})"
        )
    return None
