"""The declarative model case: one ``ModelCase`` per model, every suite is generated from it."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from .compare import Tolerance

__all__ = [
    "SUITES",
    "Calls",
    "ExpectedFailure",
    "Metric",
    "MetricResult",
    "ModelCase",
    "Outputs",
]

#: Suite names that expected failures may name. ``export`` means "the exporter itself fails",
#: which covers every suite of that target.
SUITES: tuple[str, ...] = ("export", "equivalence", "determinism")

#: One call of the model: the positional inputs of ``forward``.
Call = tuple[torch.Tensor, ...]
#: A canonical input set: the sequence of calls fed to a fresh (reset) model, in order.
#: A stateless model gets one call; a streaming model gets one call per chunk.
Calls = Sequence[Call]
#: Outputs of a sequence of calls, by output name, stacked over calls on a new leading axis.
Outputs = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class MetricResult:
    """A task-metric value, truthy when it is within the metric's threshold."""

    name: str
    value: float
    threshold: float
    unit: str

    def __bool__(self) -> bool:
        return bool(np.isfinite(self.value) and self.value <= self.threshold)

    def summary(self) -> str:
        verdict = "ok" if self else "OVER THRESHOLD"
        return (
            f"{self.name}: {verdict}: {self.value:.4g} {self.unit} (threshold {self.threshold:g} {self.unit})"
        )


@dataclass(frozen=True)
class Metric:
    """A task metric computed from eager and target outputs (e.g. pitch error in cents).

    ``compute(expected, actual)`` takes stacked outputs by name and returns one number where
    lower is better; NaN or Inf counts as over the threshold.
    """

    name: str
    unit: str
    compute: Callable[[Outputs, Outputs], float]
    threshold: float

    def __call__(self, expected: Outputs, actual: Outputs) -> MetricResult:
        return MetricResult(self.name, float(self.compute(expected, actual)), self.threshold, self.unit)


@dataclass(frozen=True)
class ExpectedFailure:
    """A cell known to fail, applied as a strict xfail: an unexpected pass fails the run.

    ``suite="export"`` declares that the exporter itself refuses the model. ``inputs`` limits the
    declaration to some canonical input sets (empty: all of them).
    """

    target: str
    suite: str
    reason: str
    inputs: tuple[str, ...] = ()

    def matches(self, target: str, suite: str, input_name: str) -> bool:
        if self.target != target:
            return False
        if self.suite not in (suite, "export"):
            return False
        return not self.inputs or input_name in self.inputs


def _default_tolerance() -> Mapping[str, Tolerance]:
    return {"default": Tolerance()}


@dataclass(frozen=True, kw_only=True)
class ModelCase:
    """One model under test, declared once; suites, targets and reports are derived from it.

    Args:
        name: short id used in test ids (``-k NAME`` selects it).
        build: returns a fresh module in eval mode with deterministic weights.
        example_inputs: the canonical input tuple used for export.
        input_names / output_names: names of forward's inputs and outputs, in order.
        inputs: named canonical input sets; each returns the calls fed to a freshly reset model.
        tolerance: per output name, with a ``"default"`` key for the others.
        target_tolerance: per target, a mapping like ``tolerance`` that overrides it.
        metric: optional task metric (e.g. pitch error in cents) with its threshold.
        expected: declared expected failures, applied as strict xfail.
        tags: free-form labels (``stateful``, ``audio``...).
    """

    name: str
    build: Callable[[], torch.nn.Module]
    example_inputs: Callable[[], Call]
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    inputs: Mapping[str, Callable[[], Calls]]
    tolerance: Mapping[str, Tolerance] = field(default_factory=_default_tolerance)
    target_tolerance: Mapping[str, Mapping[str, Tolerance]] = field(default_factory=dict)
    metric: Metric | None = None
    expected: tuple[ExpectedFailure, ...] = ()
    tags: frozenset[str] = frozenset()
    #: The input set used where one is enough (determinism); defaults to the first of ``inputs``.
    primary_input: str | None = None

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("_", "").isalnum():
            raise ValueError(f"case name must be alphanumeric with underscores, got {self.name!r}")
        if not self.inputs:
            raise ValueError(f"case {self.name!r} declares no canonical input sets")
        for input_name in self.inputs:
            if not input_name.replace("_", "").isalnum():
                raise ValueError(f"case {self.name!r}: input set name {input_name!r} must be alphanumeric")
        if "default" not in self.tolerance:
            object.__setattr__(self, "tolerance", {"default": Tolerance(), **self.tolerance})
        if self.primary_input is not None and self.primary_input not in self.inputs:
            raise ValueError(f"case {self.name!r}: primary_input {self.primary_input!r} is not an input set")
        unknown = set(self.tolerance) - set(self.output_names) - {"default"}
        if unknown:
            raise ValueError(f"case {self.name!r}: tolerance names unknown outputs {sorted(unknown)}")

    @property
    def main_input(self) -> str:
        return self.primary_input or next(iter(self.inputs))

    def tolerance_for(self, output: str, target: str) -> Tolerance:
        """The tolerance for one output on one target, overrides first."""
        override = self.target_tolerance.get(target, {})
        for table in (override, self.tolerance):
            if output in table:
                return table[output]
        return override.get("default", self.tolerance["default"])

    def expected_failure(self, target: str, suite: str, input_name: str) -> ExpectedFailure | None:
        """The declared expected failure covering this cell, if any."""
        for expected in self.expected:
            if expected.matches(target, suite, input_name):
                return expected
        return None

    def check_declarations(self, known_targets: Sequence[str]) -> list[str]:
        """Problems with the expected failures and overrides: names that match nothing."""
        problems = []
        for expected in self.expected:
            if expected.target not in known_targets:
                problems.append(f"expected failure names unknown target {expected.target!r}")
            if expected.suite not in SUITES:
                problems.append(
                    f"expected failure names unknown suite {expected.suite!r} (known: {', '.join(SUITES)})"
                )
            for input_name in expected.inputs:
                if input_name not in self.inputs:
                    problems.append(f"expected failure names unknown input set {input_name!r}")
            if not expected.reason.strip():
                problems.append(f"expected failure for ({expected.target}, {expected.suite}) gives no reason")
        for target in self.target_tolerance:
            if target not in known_targets:
                problems.append(f"target_tolerance names unknown target {target!r}")
        return [f"case {self.name!r}: {p}" for p in problems]
