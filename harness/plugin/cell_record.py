"""What one cell tells the controller: one typed record, written by the cell's context on the
worker and read by the matrix collector (xdist carries it as one plain dict).

The status of a cell comes from this record: the plugin classifies the exception a cell raised
(a verdict ``fail``, an exporter refusal ``export-error``, anything else ``error``) and notes a
strict expected failure that passed (``xpass``). pytest's own outcome decides only what pytest
alone knows: skipped, expected to fail.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

__all__ = ["RECORD_PROPERTY", "CellRecord", "Outcome"]

#: The one ``user_properties`` key a cell's record travels under.
RECORD_PROPERTY = "conformance"


@dataclass
class Outcome:
    """Who is at fault for what a cell raised, or ``xpass``: ``fail`` (the export), ``export-error``
    (the exporter), ``error`` (the harness, the case or the user's input), with a reason."""

    status: str
    reason: str = ""


@dataclass(frozen=True)
class CellRecord:
    """Everything a cell reports beyond pass/fail, in one place: made once per report, from the
    cell's identity, the plugin's outcome and what the cell's context noted
    (:func:`harness.plugin.cell_context.record_of`)."""

    case_name: str
    target_name: str
    input_name: str
    suite: str
    #: a user's file (``--artifact``) was judged, and which: path and sha256 prefix
    external: bool = False
    artifact: dict[str, str] | None = None
    #: the verdict's one-line summary, its task metric and the failure's localisation
    summary: str | None = None
    metric: dict[str, Any] | None = None
    localization: dict[str, Any] | None = None
    #: set when the cell raised or passed against a strict expected failure
    outcome: Outcome | None = None
    #: the check does not apply to this case (a skip that is not a user's file left unjudged)
    not_applicable: bool = False
    #: skipped because the target's runtime is not installed here: an environment's fact, not a
    #: status, so the baseline neither records nor compares the cell in this run
    runtime_missing: bool = False
    #: what the report shows beside the matrix
    state: list[str] | None = None
    trace: dict[str, Any] | None = None
    branches: str | None = None
    benchmark: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def cell(self) -> dict[str, Any]:
        """The cell's identity as the report keys it."""
        return {
            "case_name": self.case_name,
            "target_name": self.target_name,
            "input_name": self.input_name,
            "suite": self.suite,
            "external": self.external,
            **({"artifact": self.artifact} if self.artifact else {}),
        }

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CellRecord:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if isinstance(values.get("outcome"), dict):
            values["outcome"] = Outcome(**values["outcome"])
        return cls(**values)

    def result(self) -> dict[str, Any]:
        """The verdict's part the matrix keeps per input: summary, metric, localisation."""
        return {
            k: v
            for k, v in (
                ("summary", self.summary),
                ("metric", self.metric),
                ("localization", self.localization),
            )
            if v is not None
        }
