"""Element-wise comparison of an exported model's outputs with the eager reference."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

__all__ = ["Comparison", "Tolerance", "compare", "tol"]


@dataclass(frozen=True)
class Tolerance:
    """Allowed error: ``|actual - expected| <= atol + rtol * |expected|`` element-wise."""

    atol: float = 1e-5
    rtol: float = 1e-5

    def __post_init__(self) -> None:
        if self.atol < 0 or self.rtol < 0:
            raise ValueError(f"tolerances must be non-negative, got atol={self.atol} rtol={self.rtol}")

    def __str__(self) -> str:
        return f"atol={self.atol:g} rtol={self.rtol:g}"


def tol(atol: float, rtol: float = 0.0) -> Tolerance:
    """Return a :class:`Tolerance`; the short spelling used in case declarations."""
    return Tolerance(atol=atol, rtol=rtol)


@dataclass(frozen=True)
class Comparison:
    """Outcome of :func:`compare`; truthy when the actual output is within tolerance.

    ``needed_atol`` is the smallest atol that would have passed at the same rtol (None when no
    tolerance can pass: a shape mismatch, or NaN/Inf where the reference is finite).
    """

    name: str
    passed: bool
    tolerance: Tolerance
    shape: tuple[int, ...]
    max_abs: float
    max_rel: float
    worst_index: tuple[int, ...] | None
    expected_at_worst: float | None
    actual_at_worst: float | None
    mismatches: int
    total: int
    nonfinite_mismatches: int
    first_nonfinite_index: tuple[int, ...] | None
    needed_atol: float | None
    problem: str | None = None
    #: what the expected values are: eager's outputs, or a stored golden snapshot
    reference: str = "eager"

    def __bool__(self) -> bool:
        return self.passed

    def summary(self) -> str:
        """One line saying what differs, where, and what tolerance would have passed."""
        if self.problem:
            return f"{self.name}: {self.problem}"
        parts = []
        if self.nonfinite_mismatches:
            parts.append(
                f"{self.nonfinite_mismatches} NaN/Inf where eager is finite (first at {self.first_nonfinite_index})"
            )
        if self.mismatches or not parts:
            parts.append(
                f"max abs err {self.max_abs:.3g} (rel {self.max_rel:.3g}) at {self.worst_index}"
                f" [{self.reference} {self.expected_at_worst:.6g}, got {self.actual_at_worst:.6g}],"
                f" {self.mismatches}/{self.total} elements outside {self.tolerance}"
            )
        if self.needed_atol is not None and not self.passed:
            parts.append(f"would pass at atol={self.needed_atol:.3g}")
        elif not self.passed:
            parts.append("no tolerance passes")
        verdict = "ok" if self.passed else "MISMATCH"
        return f"{self.name}: {verdict}: " + "; ".join(parts)


def _shape_problem(expected: np.ndarray, actual: np.ndarray) -> str:
    text = f"shape {tuple(actual.shape)} {actual.dtype} does not match the reference's {tuple(expected.shape)} {expected.dtype}"
    if expected.ndim == actual.ndim:
        differing = [i for i, (e, a) in enumerate(zip(expected.shape, actual.shape)) if e != a]
        if len(differing) == 1:
            axis = differing[0]
            text += f" (axis {axis} is {actual.shape[axis]} where the reference's is {expected.shape[axis]})"
    return text


def _failed_shape(name: str, expected: np.ndarray, actual: np.ndarray, tolerance: Tolerance) -> Comparison:
    return Comparison(
        name=name,
        passed=False,
        tolerance=tolerance,
        shape=tuple(expected.shape),
        max_abs=float("inf"),
        max_rel=float("inf"),
        worst_index=None,
        expected_at_worst=None,
        actual_at_worst=None,
        mismatches=int(expected.size),
        total=int(expected.size),
        nonfinite_mismatches=0,
        first_nonfinite_index=None,
        needed_atol=None,
        problem=_shape_problem(expected, actual),
    )


def _elementwise(expected: np.ndarray, actual: np.ndarray, tolerance: Tolerance) -> tuple[np.ndarray, ...]:
    """The one rule of element-wise agreement: (e, a, both finite, non-finite disagreement,
    absolute error, finite elements outside ``atol + rtol * |e|``)."""
    e = expected.astype(np.float64, copy=False)
    a = actual.astype(np.float64, copy=False)
    e_finite = np.isfinite(e)
    a_finite = np.isfinite(a)
    # Non-finite values must agree exactly (NaN with NaN, +Inf with +Inf).
    same_nonfinite = (~e_finite & ~a_finite) & ((np.isnan(e) & np.isnan(a)) | (e == a))
    nonfinite_bad = (e_finite != a_finite) | (~e_finite & ~a_finite & ~same_nonfinite)
    both_finite = e_finite & a_finite
    abs_err = np.where(both_finite, np.abs(a - e), 0.0)
    allowed = tolerance.atol + tolerance.rtol * np.abs(np.where(both_finite, e, 0.0))
    outside = both_finite & (abs_err > allowed)
    return e, a, both_finite, nonfinite_bad, abs_err, outside


def disagreeing(expected: np.ndarray, actual: np.ndarray, tolerance: Tolerance) -> np.ndarray:
    """Where ``compare`` would count a failure, element by element (same shapes): outside the
    tolerance, or a non-finite value not matched exactly."""
    _, _, _, nonfinite_bad, _, outside = _elementwise(np.asarray(expected), np.asarray(actual), tolerance)
    return nonfinite_bad | outside


def compare(
    expected: np.ndarray,
    actual: np.ndarray,
    tolerance: Tolerance,
    *,
    name: str = "output",
    reference: str = "eager",
) -> Comparison:
    """Compare ``actual`` with the reference ``expected`` element-wise.

    NaN or Inf in ``actual`` where ``expected`` is finite is always a failure, whatever the
    tolerance; NaN in both at the same place counts as equal.
    """
    expected = np.asarray(expected)
    actual = np.asarray(actual)
    if expected.shape != actual.shape:
        return replace(_failed_shape(name, expected, actual, tolerance), reference=reference)
    e, a, both_finite, nonfinite_bad, abs_err, outside = _elementwise(expected, actual, tolerance)
    rel_err = np.where(both_finite, abs_err / np.maximum(np.abs(e), np.finfo(np.float64).tiny), 0.0)
    n_nonfinite = int(nonfinite_bad.sum())
    worst = None
    if abs_err.size:
        flat = int(np.argmax(abs_err))
        worst = tuple(int(i) for i in np.unravel_index(flat, abs_err.shape))
    first_bad = None
    if n_nonfinite:
        first_bad = tuple(int(i) for i in np.argwhere(nonfinite_bad)[0])
    needed = None
    if not n_nonfinite:
        excess = abs_err - tolerance.rtol * np.abs(np.where(both_finite, e, 0.0))
        needed = float(max(excess.max(initial=0.0), 0.0))
    return Comparison(
        name=name,
        passed=bool(not n_nonfinite and not outside.any()),
        tolerance=tolerance,
        shape=tuple(expected.shape),
        max_abs=float(abs_err.max(initial=0.0)),
        max_rel=float(rel_err.max(initial=0.0)),
        worst_index=worst,
        expected_at_worst=float(e[worst]) if worst is not None else None,
        actual_at_worst=float(a[worst]) if worst is not None else None,
        mismatches=int(outside.sum()),
        total=int(expected.size),
        nonfinite_mismatches=n_nonfinite,
        first_nonfinite_index=first_bad,
        needed_atol=needed,
        reference=reference,
    )
