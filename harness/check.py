"""The result every check returns: truthy on pass, a one-line diagnosis, the details."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Check"]


@dataclass(frozen=True)
class Check:
    """Outcome of one check (streaming, input space); ``summary()`` is the diagnosis in words."""

    what: str
    passed: bool
    diagnosis: str
    details: tuple[str, ...] = field(default_factory=tuple)
    metric: object | None = None

    def __bool__(self) -> bool:
        return self.passed

    def summary(self) -> str:
        return f"{self.what}: {self.diagnosis}"

    def report(self) -> str:
        return "\n".join([self.summary(), *(f"  {d}" for d in self.details)])
