"""The committed conformance baseline: the expected status of every observed cell.

A run whose observed status differs from the baseline (worse or better), a cell the baseline
does not know, or a baseline cell whose case or target no longer exists fails the run until the
baseline is rewritten on purpose with ``--conformance-baseline-update``.

The ``benchmark`` suite is not in the baseline: its cells report figures, not a verdict on the
export, and their status depends on the tools of the run (``skip`` under pytest-xdist, which
times nothing; ``--benchmark-skip``), so the ``pytest -n 2`` run and the ``pytest -p no:xdist -k
benchmark`` run would each disagree with any one status. A benchmark that fails still fails the
run through pytest (a declared expected failure is strict), so nothing goes ungated.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["UNGATED_SUITES", "Baseline", "BaselineChange", "SCHEMA", "gated"]

SCHEMA = "export-conformance/baseline/1"
#: (case, target, suite, input) -> status
Cells = dict[tuple[str, str, str, str], str]
#: Suites whose cells the baseline neither records nor compares (see the module's docstring).
UNGATED_SUITES = frozenset({"benchmark"})


def gated(cells: Mapping[tuple[str, str, str, str], Any]) -> dict[tuple[str, str, str, str], Any]:
    """The cells the baseline judges: those of every suite but ``UNGATED_SUITES``."""
    return {cell: value for cell, value in cells.items() if cell[2] not in UNGATED_SUITES}


@dataclass(frozen=True)
class BaselineChange:
    """One cell whose status is not what the baseline says."""

    cell: tuple[str, str, str, str]
    before: str | None  # None: the baseline does not know the cell
    after: str | None  # None: the cell's case or target is gone
    reason: str = ""

    def line(self) -> str:
        case, target, suite, input_name = self.cell
        before = self.before or "(new cell)"
        after = self.after or "(removed: case or target no longer registered)"
        text = f"{case} / {target} / {suite} [{input_name}]: {before} -> {after}"
        return f"{text}: {self.reason}" if self.reason else text


class Baseline:
    """Reads, compares against and rewrites ``golden/conformance-baseline.json``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def exists(self) -> bool:
        return self.path.is_file()

    def _body(self) -> dict[str, Any]:
        try:
            body = json.loads(self.path.read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"{self.path}: cannot read the conformance baseline ({exc})") from exc
        if body.get("schema") != SCHEMA:
            raise ValueError(
                f"{self.path}: not a conformance baseline (schema {body.get('schema')!r}, want {SCHEMA!r})"
            )
        return body

    def environment(self) -> dict[str, dict[str, str]]:
        """The libraries and machine the baseline was written on ({} for a baseline that predates
        the record)."""
        recorded = self._body().get("environment") or {}
        return {k: dict(v) for k, v in recorded.items() if isinstance(v, dict)}

    def load(self) -> Cells:
        body = self._body()
        cells: Cells = {}
        for case, targets in body["cells"].items():
            for target, suites in targets.items():
                for suite, inputs in suites.items():
                    for input_name, status in inputs.items():
                        cells[(case, target, suite, input_name)] = status
        return cells

    def compare(
        self,
        observed: Mapping[tuple[str, str, str, str], tuple[str, str]],
        known_cases: Iterable[str],
        known_targets: Iterable[str],
    ) -> list[BaselineChange]:
        """Changed, new and removed cells; cells not observed in this run are left alone, and so
        are the cells of ``UNGATED_SUITES`` (on either side)."""
        expected = gated(self.load())
        changes = [
            BaselineChange(cell, expected.get(cell), status, reason)
            for cell, (status, reason) in sorted(gated(observed).items())
            if expected.get(cell) != status
        ]
        cases, targets = set(known_cases), set(known_targets)
        changes += [
            BaselineChange(cell, status, None)
            for cell, status in sorted(expected.items())
            if cell[0] not in cases or cell[1] not in targets
        ]
        return changes

    def write(
        self,
        observed: Mapping[tuple[str, str, str, str], tuple[str, str]],
        known_cases: Iterable[str],
        known_targets: Iterable[str],
        environment: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        """Record the observed statuses, keeping unobserved cells of cases and targets that still
        exist (never a cell of ``UNGATED_SUITES``), and the environment they were observed in."""
        cases, targets = set(known_cases), set(known_targets)
        cells = gated(self.load()) if self.exists() else {}
        cells = {k: v for k, v in cells.items() if k[0] in cases and k[1] in targets}
        cells.update({cell: status for cell, (status, _) in gated(observed).items()})
        nested: dict = {}
        for (case, target, suite, input_name), status in sorted(cells.items()):
            nested.setdefault(case, {}).setdefault(target, {}).setdefault(suite, {})[input_name] = status
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = {
            "schema": SCHEMA,
            "regenerate": "pytest --conformance-baseline-update (review the diff before committing)",
            "cells": nested,
        }
        if environment:
            body["environment"] = {k: dict(v) for k, v in environment.items()}
        self.path.write_text(json.dumps(body, indent=2, sort_keys=True) + "\n")
