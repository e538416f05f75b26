"""Where the plugin calls the hooks of :mod:`harness.plugin.hookspec`: the targets a conftest
adds, and a cell's judge. Loaded by the active plugin and the cell context, never by the light entry point."""

from __future__ import annotations

import dataclasses

import pytest

from ..core.judge import Judge
from ..run.session import Cell
from ..targets import Target, register_target

__all__ = ["cell_judge", "register_hook_targets"]


def register_hook_targets(config: pytest.Config) -> list[Target]:
    """Register the targets every ``pytest_conformance_targets`` implementation returns."""
    added: list[Target] = []
    for returned in config.hook.pytest_conformance_targets(config=config):
        for new_target in returned or ():
            if not isinstance(new_target, Target):
                raise pytest.UsageError(
                    f"pytest_conformance_targets returned {new_target!r}: expected harness.Target instances"
                )
            try:
                added.append(register_target(new_target))
            except ValueError as exc:
                raise pytest.UsageError(f"pytest_conformance_targets: {exc}") from None
    return added


def cell_judge(config: pytest.Config, cell: Cell, judge: Judge) -> Judge:
    """The judge of ``cell``: ``judge`` (the case's own, ``Judge.for_cell``), or what a
    ``pytest_conformance_judge`` implementation returns instead, compared with the same reference."""
    replaced = config.hook.pytest_conformance_judge(
        config=config, cell=cell, case=cell.case, target=cell.target, judge=judge
    )
    if replaced is None:
        return judge
    if not isinstance(replaced, Judge):
        raise pytest.UsageError(
            f"pytest_conformance_judge returned {replaced!r} for {cell.id} ({cell.suite}): expected a harness Judge"
        )
    if replaced.reference != judge.reference:
        replaced = dataclasses.replace(replaced, reference=judge.reference)
    return replaced
