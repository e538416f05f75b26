"""The committed conformance baseline: the expected status of every observed cell.

A run whose observed status differs from the baseline (worse or better), a cell the baseline
does not know, or a baseline cell whose case or target no longer exists fails the run until the
baseline is rewritten on purpose with ``--conformance-baseline-update``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Baseline", "BaselineChange", "SCHEMA"]

SCHEMA = "export-conformance/baseline/1"
#: (case, target, suite, input) -> status
Cells = dict[tuple[str, str, str, str], str]


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

    def load(self) -> Cells:
        try:
            body = json.loads(self.path.read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"{self.path}: cannot read the conformance baseline ({exc})") from exc
        if body.get("schema") != SCHEMA:
            raise ValueError(
                f"{self.path}: not a conformance baseline (schema {body.get('schema')!r}, want {SCHEMA!r})"
            )
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
        """Changed, new and removed cells; cells not observed in this run are left alone."""
        expected = self.load()
        changes = [
            BaselineChange(cell, expected.get(cell), status, reason)
            for cell, (status, reason) in sorted(observed.items())
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
    ) -> None:
        """Record the observed statuses, keeping unobserved cells of cases and targets that still exist."""
        cases, targets = set(known_cases), set(known_targets)
        cells = self.load() if self.exists() else {}
        cells = {k: v for k, v in cells.items() if k[0] in cases and k[1] in targets}
        cells.update({cell: status for cell, (status, _) in observed.items()})
        nested: dict = {}
        for (case, target, suite, input_name), status in sorted(cells.items()):
            nested.setdefault(case, {}).setdefault(target, {}).setdefault(suite, {})[input_name] = status
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = {
            "schema": SCHEMA,
            "regenerate": "pytest --conformance-baseline-update (review the diff before committing)",
            "cells": nested,
        }
        self.path.write_text(json.dumps(body, indent=2, sort_keys=True) + "\n")
