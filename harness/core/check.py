"""The one verdict type every check returns: truthy on pass, a one-line diagnosis, the details,
and what it was judged on (the per-output comparisons and the task metric)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .case import MetricResult
    from .compare import Comparison

__all__ = ["Check"]


@dataclass(frozen=True)
class Check:
    """Outcome of one check; ``summary()`` is the diagnosis in words, ``report()`` adds details.

    ``comparisons`` and ``metric`` are what a :class:`~harness.judge.Judge` decided on;
    ``judged_by_metric`` says the metric alone decided (an approximate target: the tensor
    comparisons are informative).
    """

    what: str
    passed: bool
    diagnosis: str
    details: tuple[str, ...] = field(default_factory=tuple)
    metric: MetricResult | None = None
    comparisons: tuple[Comparison, ...] = field(default_factory=tuple)
    judged_by_metric: bool = False
    #: False: the check does not apply to this artifact (its diagnosis says why); the cell is a
    #: skip that is no verdict, e.g. stream-chunks on a file fixed at one chunk size
    applies: bool = True

    def __bool__(self) -> bool:
        return self.passed

    def summary(self) -> str:
        return f"{self.what}: {self.diagnosis}"

    def report(self) -> str:
        return "\n".join([self.summary(), *(f"  {d}" for d in self.details)])

    @property
    def failing(self) -> list[Comparison]:
        """The comparisons that decided a failure (none where the metric alone judged)."""
        return [] if self.judged_by_metric else [c for c in self.comparisons if not c]

    def caused_by(self, cause: str) -> Check:
        """The same failure with its cause in front (e.g. the weight audit's finding)."""
        return replace(self, diagnosis=f"{cause} | {self.diagnosis}")

    def retitled(self, what: str, diagnosis: str | None = None) -> Check:
        """The same verdict under another name (and diagnosis), details and figures kept."""
        return replace(self, what=what, diagnosis=self.diagnosis if diagnosis is None else diagnosis)
