"""Running call sequences and judging a target's outputs against eager's."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from .buffers import buffer_snapshot, restore_buffers
from .case import Calls, MetricResult, ModelCase, Outputs
from .check import Check
from .compare import Comparison, Tolerance, compare
from .errors import HarnessError
from .sequence import StateThreading, run_sequence
from .shapes import resize_call
from .targets import Runner
from .targets.base import describe_exception

__all__ = [
    "DETERMINISM_TOLERANCE",
    "EquivalenceResult",
    "check_batch_consistency",
    "check_determinism",
    "check_equivalence",
    "eager_outputs",
    "run_calls",
]

#: Two runs of the same export on the same input may differ only by float reordering noise.
DETERMINISM_TOLERANCE = Tolerance(atol=1e-6, rtol=1e-6)


def _stack(
    per_call: Sequence[Sequence[np.ndarray]], names: Sequence[str], where: str
) -> dict[str, np.ndarray]:
    for index, outputs in enumerate(per_call):
        if len(outputs) != len(names):
            raise ValueError(
                f"{where}: call {index} returned {len(outputs)} outputs, the case declares {len(names)} {tuple(names)}"
            )
    return {name: np.stack([np.asarray(o[i]) for o in per_call]) for i, name in enumerate(names)}


def run_calls(
    runner: Runner, calls: Calls, output_names: Sequence[str], *, threading: StateThreading | None = None
) -> dict[str, np.ndarray]:
    """Reset the runner, feed the calls in order (explicit state threaded), return outputs
    stacked on a leading call axis."""
    runner.reset()
    per_call = run_sequence(lambda call: runner.run(*call), calls, threading)
    return _stack(per_call, output_names, str(runner.artifact.path))


def module_step(module: torch.nn.Module) -> Callable[[tuple[torch.Tensor, ...]], tuple[np.ndarray, ...]]:
    """One call of an eager module, outputs as numpy arrays (the module's own errors are the
    case's: :class:`HarnessError`)."""

    def step(call: tuple[torch.Tensor, ...]) -> tuple[np.ndarray, ...]:
        try:
            with torch.no_grad():
                out = module(*call)
        except Exception as exc:
            kind, line = describe_exception(exc)
            raise HarnessError(f"the case's eager module raised on its own inputs: {kind}: {line}") from exc
        out = tuple(out) if isinstance(out, (tuple, list)) else (out,)
        return tuple(o.detach().cpu().numpy().copy() for o in out)

    return step


def eager_outputs(
    module: torch.nn.Module,
    calls: Calls,
    output_names: Sequence[str],
    *,
    threading: StateThreading | None = None,
) -> dict[str, np.ndarray]:
    """The reference: the eager module fed the calls from its current state, which is then restored."""
    initial = buffer_snapshot(module)
    try:
        per_call = run_sequence(module_step(module), calls, threading)
    finally:
        restore_buffers(module, initial)
    return _stack(per_call, output_names, "eager")


@dataclass(frozen=True)
class EquivalenceResult:
    """Per-output comparisons plus the task metric; truthy when everything is within bounds."""

    what: str
    comparisons: tuple[Comparison, ...]
    metric: MetricResult | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)
    #: True for approximate (quantized) targets: the metric decides, tensor errors are informative
    judged_by_metric: bool = False
    #: Why it failed, where something beyond the outputs says so (e.g. the weight audit)
    diagnosis: str | None = None

    def __bool__(self) -> bool:
        if self.judged_by_metric:
            return self.metric is not None and bool(self.metric)
        return all(self.comparisons) and (self.metric is None or bool(self.metric))

    @property
    def failing(self) -> list[Comparison]:
        return [] if self.judged_by_metric else [c for c in self.comparisons if not c]

    def summary(self) -> str:
        """One line: the diagnosis of the first failure, or what passed."""
        if self:
            worst = max(self.comparisons, key=lambda c: c.max_abs)
            text = f"{self.what}: ok (largest error {worst.name} {worst.max_abs:.3g})"
            if self.metric is not None:
                text += f"; {self.metric.name} {self.metric.value:.3g} {self.metric.unit}"
            return text
        failing = self.failing
        parts = [self.diagnosis] if self.diagnosis else []
        parts += [failing[0].summary()] if failing else []
        if len(failing) > 1:
            parts.append(f"{len(failing) - 1} more outputs differ ({', '.join(c.name for c in failing[1:])})")
        if self.metric is not None and not self.metric:
            parts.append(self.metric.summary())
        return f"{self.what}: " + " | ".join(parts)

    def report(self) -> str:
        """Every output's comparison, one per line, then the metric and notes."""
        lines = [self.summary(), ""]
        lines += [f"  {c.summary()}" for c in self.comparisons]
        if self.metric is not None:
            lines.append(f"  {self.metric.summary()}")
        lines += [f"  note: {n}" for n in self.notes]
        lines.append("  (index 0 of every output is the call, i.e. the chunk number for a stream)")
        return "\n".join(lines)


def check_equivalence(
    case: ModelCase, target: str, expected: Outputs, actual: Outputs, *, approximate: bool = False
) -> EquivalenceResult:
    """Compare a target's stacked outputs with eager's, with the case's tolerances and metric.

    An approximate target (a quantized export) is judged by the case's ``approximate_metric``
    alone; the tensor comparisons are still reported.
    """
    comparisons = tuple(
        compare(expected[name], actual[name], case.tolerance_for(name, target), name=name)
        for name in case.output_names
    )
    if approximate:
        if case.approximate_metric is None:
            raise ValueError(f"case {case.name!r} declares no approximate_metric to judge {target}")
        metric = case.approximate_metric(expected, actual)
        return EquivalenceResult(f"{target} vs eager", comparisons, metric, judged_by_metric=True)
    metric = case.metric(expected, actual) if case.metric is not None else None
    return EquivalenceResult(f"{target} vs eager", comparisons, metric)


def check_determinism(case: ModelCase, first: Outputs, second: Outputs, *, what: str) -> EquivalenceResult:
    """Two runs of the same input from a reset state must agree (a training-mode export does not)."""
    comparisons = tuple(
        compare(first[name], second[name], DETERMINISM_TOLERANCE, name=name) for name in case.output_names
    )
    notes = (
        ()
        if all(comparisons)
        else ("outputs change between identical runs: dropout or batch statistics live?",)
    )
    return EquivalenceResult(f"{what} run twice", comparisons, None, notes)


def check_batch_consistency(
    case: ModelCase,
    target: str,
    runner: Runner,
    call: tuple[torch.Tensor, ...],
    batch: int,
    *,
    approximate: bool = False,
) -> Check:
    """Each sample of a batch of ``batch`` must come out as it does alone, within the case's
    tolerances: a model whose output for one image depends on the others in the batch
    (BatchNorm using batch statistics, as in a training-mode export) fails. An approximate
    (quantized) target is judged per sample by the case's approximate metric."""
    what = f"{target} batch {batch} vs batch 1"
    batched = call
    for index in range(len(call)):
        batched = resize_call(batched, index, 0, batch, seed=batch)
    together = run_calls(runner, [batched], case.output_names)
    worst = None
    for sample in range(batch):
        alone = run_calls(runner, [tuple(x[sample : sample + 1] for x in batched)], case.output_names)
        if approximate and case.approximate_metric is not None:
            in_batch = {name: together[name][:, sample : sample + 1] for name in case.output_names}
            judged = case.approximate_metric(alone, in_batch)
            if not judged:
                return Check(
                    what,
                    False,
                    f"sample {sample} differs between batch {batch} and batch 1: {judged.summary()}; "
                    "the output depends on the other samples in the batch (activation scales "
                    "computed over the whole batch, as dynamic quantization does?)",
                )
            continue
        for name in case.output_names:
            comparison = compare(
                together[name][:, sample : sample + 1],
                alone[name],
                case.tolerance_for(name, target),
                name=name,
            )
            if not comparison:
                return Check(
                    what,
                    False,
                    f"sample {sample} differs between batch {batch} and batch 1: {comparison.summary()}; "
                    "the output depends on the other samples in the batch (BatchNorm using batch "
                    "statistics: exported in training mode?)",
                )
            if worst is None or comparison.max_abs > worst.max_abs:
                worst = comparison
    largest = f" (largest difference {worst.name} {worst.max_abs:.3g})" if worst else ""
    return Check(what, True, f"every sample as it is alone{largest}")
