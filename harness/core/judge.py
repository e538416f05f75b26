"""The one answer to "do these outputs match?": a :class:`Judge` per cell.

A cell's judge is decided once, here, from the case and the target: an exact target is held to
the case's tolerances *and* its task metric (where the case declares one); an approximate target
(int8, OpenVINO below f32) to the case's ``approximate_metric`` alone, the tensor comparisons
reported beside it. Determinism and reset use :meth:`Judge.identical`: two runs of one export
may differ by float reordering noise only. Every check (equivalence, input space, streaming,
golden) asks its judge; none compares outputs itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from .case import JudgedWhere, Metric, ModelCase, Outputs
from .check import Check
from .compare import Comparison, Tolerance, compare, disagreeing
from .errors import HarnessError

__all__ = ["DETERMINISM_TOLERANCE", "Judge", "JudgedTarget"]

#: Two runs of the same export on the same input may differ only by float reordering noise.
DETERMINISM_TOLERANCE = Tolerance(atol=1e-6, rtol=1e-6)

PerCall = Sequence[Sequence[np.ndarray]]


class JudgedTarget(Protocol):
    """What a judge reads of a target (:class:`~harness.targets.Target` is one): its name, for
    the case's per-target tolerances, and whether its outputs are approximate (int8, OpenVINO
    below f32)."""

    @property
    def name(self) -> str: ...

    @property
    def approximate(self) -> bool: ...


@dataclass(frozen=True)
class Judge:
    """Tolerances per output plus a task metric, or the metric alone (``by_metric``)."""

    #: what the judged outputs are compared with, in verdicts: "eager", "snapshot", "the first run"
    reference: str
    tolerances: Mapping[str, Tolerance]
    default_tolerance: Tolerance
    metric: Metric | None = None
    by_metric: bool = False
    output_names: tuple[str, ...] = field(default_factory=tuple)
    #: outputs compared only where eager's outputs say they mean something (``ModelCase.judged_where``)
    where: Mapping[str, JudgedWhere] = field(default_factory=dict)
    #: a target within this multiple of eager's own float noise agrees (``ModelCase.noise_multiple``)
    noise_multiple: float | None = None

    @classmethod
    def for_cell(
        cls,
        case: ModelCase,
        target: JudgedTarget,
        *,
        approximate: bool | None = None,
        reference: str = "eager",
    ) -> Judge:
        """The judge of ``case`` on ``target``.

        ``approximate`` overrides the target's own answer (the offline comparison of a stream
        with its own metric judges tensors too)."""
        name = target.name
        approx = bool(target.approximate) if approximate is None else approximate
        tolerances = {out: case.tolerance_for(out, name) for out in case.output_names}
        default = case.tolerance_for("default", name)
        if approx:
            if case.approximate_metric is None:
                raise HarnessError(
                    f"case {case.name!r} declares no approximate_metric, so approximate target {name!r} "
                    "cannot be judged: declare ModelCase(approximate_metric=...)"
                )
            return cls(
                reference,
                tolerances,
                default,
                case.approximate_metric,
                True,
                tuple(case.output_names),
                dict(case.judged_where),
            )
        return cls(
            reference,
            tolerances,
            default,
            case.metric,
            False,
            tuple(case.output_names),
            dict(case.judged_where),
            case.noise_multiple,
        )

    @classmethod
    def for_offline(cls, case: ModelCase, target: JudgedTarget) -> Judge:
        """Streamed frames against the whole signal's: the stream's ``offline_metric`` where the
        case declares one (streaming and offline differ by design at the edges), else the cell's."""
        spec = case.streaming
        if spec is not None and spec.offline_metric is not None:
            base = cls.for_cell(case, target, approximate=False, reference="offline")
            return cls(
                "offline",
                base.tolerances,
                base.default_tolerance,
                spec.offline_metric,
                True,
                base.output_names,
                base.where,
            )
        return cls.for_cell(case, target, reference="offline")

    @classmethod
    def identical(cls, case: ModelCase, *, reference: str = "the first run") -> Judge:
        """Two runs of one export: equal up to float reordering noise, no task metric."""
        return cls(reference, {}, DETERMINISM_TOLERANCE, None, False, tuple(case.output_names))

    @classmethod
    def tensors_only(
        cls, tolerances: Mapping[str, Tolerance], default: Tolerance, *, reference: str
    ) -> Judge:
        """A judge of tensors alone (a stored snapshot without a case at hand)."""
        return cls(reference, dict(tolerances), default)

    def tolerance(self, name: str) -> Tolerance:
        return self.tolerances.get(name, self.default_tolerance)

    def compare_one(self, name: str, expected: np.ndarray, actual: np.ndarray) -> Comparison:
        return compare(expected, actual, self.tolerance(name), name=name, reference=self.reference)

    def comparisons(
        self, expected: Outputs, actual: Outputs, names: Sequence[str] | None = None
    ) -> tuple[Comparison, ...]:
        names = list(names if names is not None else (self.output_names or expected))
        return tuple(
            self.compare_one(name, expected[name], self.judged_part(name, expected, actual[name]))
            for name in names
        )

    def judged_part(self, name: str, expected: Outputs, actual: np.ndarray) -> np.ndarray:
        """``actual`` with the elements its ``judged_where`` leaves unjudged set to eager's (so
        they compare equal, and a NaN there is no mismatch); unchanged for other outputs."""
        where = self.where.get(name)
        if where is None or np.shape(actual) != np.shape(expected[name]):
            return actual
        return np.where(where.mask(expected, name), actual, expected[name])

    def _within_noise(
        self, expected: Outputs, actual: Outputs, noise: Outputs, names: Sequence[str] | None
    ) -> tuple[dict[str, np.ndarray], list[str]]:
        """``actual`` with the elements outside the tolerance but within ``noise_multiple`` times
        eager's own noise set to eager's, and what that floor let pass, in words."""
        assert self.noise_multiple is not None
        judged, notes = dict(actual), []
        for name in names if names is not None else self.output_names:
            e, a = np.asarray(expected[name]), np.asarray(self.judged_part(name, expected, actual[name]))
            floor = noise.get(name)
            if floor is None or e.shape != a.shape or np.shape(floor) != e.shape:
                continue
            outside = disagreeing(e, a, self.tolerance(name))
            err = np.abs(a.astype(np.float64) - e)
            covered = outside & np.isfinite(err) & (err <= self.noise_multiple * floor)
            if covered.any():
                judged[name] = np.where(covered, e, a)
                notes.append(
                    f"{name}: {int(covered.sum())} elements outside {self.tolerance(name)} are within "
                    f"{self.noise_multiple:g}x eager's own float32 noise on their call (largest error there "
                    f"{float(err[covered].max()):.3g}, noise floor up to {float(floor[covered].max()):.3g})"
                )
        return judged, notes

    def where_notes(self, expected: Outputs, names: Sequence[str] | None = None) -> list[str]:
        """What each output with a ``judged_where`` was judged on, in words."""
        notes = []
        for name in names if names is not None else self.output_names:
            if name in self.where and name in expected:
                mask = self.where[name].mask(expected, name)
                notes.append(
                    f"{name} judged {self.where[name].description}: {int(mask.sum())} of {mask.size} elements"
                )
        return notes

    def judge(
        self,
        expected: Outputs,
        actual: Outputs,
        *,
        what: str,
        names: Sequence[str] | None = None,
        passed: str | None = None,
        notes: Sequence[str] = (),
        footnote: str | None = None,
        noise: Callable[[], Outputs | None] | None = None,
    ) -> Check:
        """The verdict on ``actual`` against ``expected`` (outputs by name, same shapes).

        ``passed`` replaces the default "ok (largest error ...)" wording of a pass; ``notes`` are
        added to the details, ``footnote`` ends them (e.g. what index 0 of every output is).
        ``noise`` gives eager's own float noise per element (asked only where a tensor fails and
        the judge has a ``noise_multiple``): elements within that multiple of it agree."""
        comparisons = self.comparisons(expected, actual, names)
        floor_notes: list[str] = []
        if noise is not None and self.noise_multiple and not self.by_metric and not all(comparisons):
            found = noise()
            if found is not None:
                actual, floor_notes = self._within_noise(expected, actual, found, names)
                comparisons = self.comparisons(expected, actual, names)
        notes = [*notes, *floor_notes]
        metric = self.metric(expected, actual) if self.metric is not None else None
        if self.by_metric:
            ok = metric is not None and bool(metric)
        else:
            ok = all(comparisons) and (metric is None or bool(metric))
        details = [c.summary() for c in comparisons] + self.where_notes(expected, names)
        if metric is not None:
            details.append(metric.summary())
        details += [f"note: {n}" for n in notes]
        if footnote:
            details.append(footnote)
        if ok:
            diagnosis = passed or self._passed_text(comparisons, metric)
            if floor_notes:
                diagnosis += f"; {'; '.join(floor_notes)}"
        else:
            diagnosis = self._failed_text(comparisons, metric)
        return Check(what, ok, diagnosis, tuple(details), metric, comparisons, self.by_metric)

    @staticmethod
    def _passed_text(comparisons: Sequence[Comparison], metric) -> str:
        text = "ok"
        if comparisons:
            worst = max(comparisons, key=lambda c: c.max_abs)
            text += f" (largest error {worst.name} {worst.max_abs:.3g})"
        if metric is not None:
            text += f"; {metric.name} {metric.value:.3g} {metric.unit}"
        return text

    def _failed_text(self, comparisons: Sequence[Comparison], metric) -> str:
        failing = [] if self.by_metric else [c for c in comparisons if not c]
        parts = [failing[0].summary()] if failing else []
        if len(failing) > 1:
            parts.append(f"{len(failing) - 1} more outputs differ ({', '.join(c.name for c in failing[1:])})")
        if metric is not None and not metric:
            parts.append(metric.summary())
        elif metric is None and self.by_metric:
            parts.append("no task metric to judge by")
        return " | ".join(parts)

    def first_divergence(
        self, expected: PerCall, actual: PerCall, names: Sequence[str] | None = None
    ) -> tuple[int, Comparison] | None:
        """The first call whose outputs differ beyond tolerance, with its worst comparison (the
        tensors, call by call: where a stream leaves its reference; the metric is not asked)."""
        names = list(names if names is not None else self.output_names)
        count = min(len(expected), len(actual))
        first = self._first_bad_call(expected, actual, names, count)
        if first is not None:
            call = dict(zip(names, expected[first]))
            failing = [
                c
                for c in (
                    self.compare_one(n, ev, self.judged_part(n, call, av))
                    for n, ev, av in zip(names, expected[first], actual[first])
                )
                if not c
            ]
            return first, max(failing, key=lambda c: (c.nonfinite_mismatches, c.max_abs))
        if len(expected) != len(actual):
            raise ValueError(f"{len(actual)} calls ran, {len(expected)} expected")
        return None

    def _first_bad_call(
        self, expected: PerCall, actual: PerCall, names: Sequence[str], count: int
    ) -> int | None:
        """The index of the first call with an element outside tolerance: every output's calls
        compared at once where they stack (one shape per output over the calls), else call by call."""
        worst: int | None = None
        stacked = self._stacked(expected[:count], names) if self.where else {}
        for position, name in enumerate(names):
            try:
                e = np.stack([np.asarray(call[position]) for call in expected[:count]])
                a = np.stack([np.asarray(call[position]) for call in actual[:count]])
            except (ValueError, IndexError):
                e = a = None
            if e is not None and name in self.where and len(stacked) == len(names):
                a = self.judged_part(name, stacked, a)
            if e is None or e.shape != a.shape:
                for index in range(count if worst is None else worst):
                    call = dict(zip(names, expected[index]))
                    judged = self.judged_part(name, call, actual[index][position])
                    if not self.compare_one(name, expected[index][position], judged):
                        worst = index
                        break
                continue
            if e.size == 0:
                continue
            bad = disagreeing(e, a, self.tolerance(name)).reshape(count, -1).any(axis=1)
            if bad.any():
                index = int(np.argmax(bad))
                worst = index if worst is None else min(worst, index)
        return worst

    @staticmethod
    def _stacked(per_call: PerCall, names: Sequence[str]) -> dict[str, np.ndarray]:
        """Outputs by name stacked over calls, where every output stacks (a mask needs them all)."""
        found = {}
        for position, name in enumerate(names):
            try:
                found[name] = np.stack([np.asarray(call[position]) for call in per_call])
            except (ValueError, IndexError):
                return {}
        return found

    def metric_fits_both_ways(self, a: Outputs, b: Outputs) -> bool:
        """The metric passes with either side as the reference (a metric that judges only the
        frames its reference selects, as PESTO's voiced frames, passes vacuously on a reference
        that selects none)."""
        assert self.metric is not None
        return bool(self.metric(a, b)) and bool(self.metric(b, a))
