"""Running a target over call sequences, and the equivalence, determinism and batch checks."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from ..core.case import Calls, ModelCase, Outputs
from ..core.check import Check
from ..core.judge import DETERMINISM_TOLERANCE, Judge
from ..core.pristine import fresh_copy
from ..core.sequence import StateThreading, run_sequence
from ..core.shapes import resize_call
from ..run.eager import EagerReference, module_step, run_module, stack_outputs
from ..run.target_runs import run_calls
from ..targets import Runner

__all__ = [
    "DETERMINISM_TOLERANCE",
    "check_batch_consistency",
    "check_determinism",
    "check_equivalence",
    "eager_outputs",
    "module_step",
    "run_calls",
]

#: What index 0 of every stacked output is, said under every equivalence report.
CALL_AXIS_NOTE = "(index 0 of every output is the call, i.e. the chunk number for a stream)"


def eager_outputs(
    module: torch.nn.Module,
    calls: Calls,
    output_names: Sequence[str],
    *,
    threading: StateThreading | None = None,
    case: ModelCase | None = None,
) -> dict[str, np.ndarray]:
    """The reference: the eager module fed the calls from its current state, which is then
    restored (explicit state threaded as the case, or ``threading``, says)."""
    if case is None and threading is not None:
        per_call = run_sequence(
            module_step(fresh_copy(module)), calls, threading
        )  # a bare threading, no case
        return stack_outputs(per_call, output_names, "eager")
    return stack_outputs(run_module(module, calls, case=case).outputs, output_names, "eager")


def check_equivalence(
    case: ModelCase,
    target: object,
    expected: Outputs,
    actual: Outputs,
    *,
    approximate: bool | None = None,
    noise: Callable[[], Outputs | None] | None = None,
) -> Check:
    """A target's stacked outputs against eager's, by the cell's judge (tolerances and task
    metric; an approximate target by its task metric alone, tensor comparisons reported).
    ``noise``: eager's own float noise on these calls, for a case with a ``noise_multiple``."""
    judge = Judge.for_cell(case, target, approximate=approximate)
    name = target if isinstance(target, str) else target.name  # type: ignore[attr-defined]
    return judge.judge(expected, actual, what=f"{name} vs eager", footnote=CALL_AXIS_NOTE, noise=noise)


def check_determinism(case: ModelCase, first: Outputs, second: Outputs, *, what: str) -> Check:
    """Two runs of the same input from a reset state must agree (a training-mode export does not)."""
    result = Judge.identical(case).judge(first, second, what=f"{what} run twice", footnote=CALL_AXIS_NOTE)
    if result:
        return result
    hint = "dropout or batch statistics live?"
    if case.streaming is not None:
        hint += " or reset() does not return to the initial state (see stream-reset)"
    return result.caused_by(f"outputs change between identical runs: {hint}")


def check_batch_consistency(
    target: object, runner: Runner, eager: EagerReference, batch: int | None = None
) -> Check:
    """Each sample of a batch of ``batch`` (default: the case's ``batch_consistency``) must come
    out as it does alone, by the cell's judge, on the first call of the eager side's input: a
    model whose output for one image depends on the others in the batch (BatchNorm using batch
    statistics, as in a training-mode export; activation scales computed over the batch, as
    dynamic quantization does) fails."""
    case, call = eager.case, eager.calls[0]
    batch = batch if batch is not None else case.batch_consistency
    judge = Judge.for_cell(case, target)
    name = target if isinstance(target, str) else target.name  # type: ignore[attr-defined]
    what = f"{name} batch {batch} vs batch 1"
    batched = call
    for index in range(len(call)):
        batched = resize_call(batched, index, 0, batch, seed=batch)
    together = run_calls(runner, [batched], case.output_names)
    worst = None
    for sample in range(batch):
        alone = run_calls(runner, [tuple(x[sample : sample + 1] for x in batched)], case.output_names)
        in_batch = {out: together[out][:, sample : sample + 1] for out in case.output_names}
        judged = judge.judge(alone, in_batch, what=what)
        if not judged:
            cause = (
                "activation scales computed over the whole batch, as dynamic quantization does?"
                if judge.by_metric
                else "BatchNorm using batch statistics: exported in training mode?"
            )
            return judged.retitled(
                what,
                f"sample {sample} differs between batch {batch} and batch 1: {judged.diagnosis}; "
                f"the output depends on the other samples in the batch ({cause})",
            )
        largest = max(judged.comparisons, key=lambda c: c.max_abs, default=None)
        if largest is not None and (worst is None or largest.max_abs > worst.max_abs):
            worst = largest
    largest_text = f" (largest difference {worst.name} {worst.max_abs:.3g})" if worst else ""
    return Check(what, True, f"every sample as it is alone{largest_text}")
