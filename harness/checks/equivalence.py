"""The equivalence, determinism and batch checks, each a function of the cell's evidence."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..core.case import Calls, ModelCase
from ..core.check import Check
from ..core.judge import DETERMINISM_TOLERANCE, Judge
from ..core.pristine import fresh_copy
from ..core.sequence import StateThreading, run_sequence
from ..run.eager import module_step, run_module, stack_outputs
from ..run.evidence import Evidence, Need
from ..run.target_runs import run_calls
from .weights import audit_weights

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


def check_equivalence(evidence: Evidence) -> Check:
    """The target's canonical run against eager's outputs, by the cell's judge (tolerances and
    task metric; an approximate target by its task metric alone, tensor comparisons reported),
    eager's own float noise allowed for a case with a ``noise_multiple``. A tensor mismatch is
    explained by the weight audit where the suite declared the artifact's weights."""
    result = evidence.judge.judge(
        evidence.eager.outputs(),
        evidence.outputs(),
        what=f"{evidence.target.name} vs eager",
        footnote=CALL_AXIS_NOTE,
        noise=evidence.eager.float_noise,
    )
    if result or result.judged_by_metric or Need.WEIGHTS not in evidence.declared or evidence.weights is None:
        return result
    audit = audit_weights(evidence.eager.module, evidence.weights)
    return result if audit else result.caused_by(audit.diagnosis())


def check_determinism(evidence: Evidence) -> Check:
    """Two runs of the same input from a reset state must agree (a training-mode export does not):
    a freshly loaded runner's first run and its replay after ``reset()``."""
    case, what = evidence.case, evidence.target.name
    first = stack_outputs(evidence.fresh.outputs, case.output_names, what)
    second = stack_outputs(evidence.replay.outputs, case.output_names, what)
    result = Judge.identical(case).judge(first, second, what=f"{what} run twice", footnote=CALL_AXIS_NOTE)
    if result:
        return result
    hint = "dropout or batch statistics live?"
    if case.streaming is not None:
        hint += " or reset() does not return to the initial state (see stream-reset)"
    return result.caused_by(f"outputs change between identical runs: {hint}")


def check_batch_consistency(evidence: Evidence) -> Check:
    """Each sample of a batch of the case's ``batch_consistency`` must come out as it does alone,
    by the cell's judge, on the first call of the cell's input: a model whose output for one
    image depends on the others in the batch (BatchNorm using batch statistics, as in a
    training-mode export; activation scales computed over the batch, as dynamic quantization
    does) fails."""
    case, judge, runs = evidence.case, evidence.judge, evidence.batched
    batch = runs.batch
    what = f"{evidence.target.name} batch {batch} vs batch 1"
    worst = None
    for sample, alone in enumerate(runs.alone):
        in_batch = {out: runs.together[out][:, sample : sample + 1] for out in case.output_names}
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
