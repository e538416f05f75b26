"""The two suites driven by hypothesis: generated inputs judged one example at a time, and the
search for inputs that take every side of every data-dependent branch.

Hypothesis decides which examples run, so these loops live in the plugin (beside the profiles
that make them deterministic in CI); each example's verdict is a check of its evidence
(:func:`~harness.checks.input_space.check_generated_input`), and the coverage verdict is
:func:`~harness.core.branches.coverage_verdict`.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, target
from hypothesis import strategies as st

from ..checks.input_space import check_generated_input
from ..core.branches import BranchRecorder, coverage_verdict
from ..core.sequence import CallList
from ..run.eager import run_module
from .cell_context import CellContext
from .profiles import run_property, search_settings, statistics_for

__all__ = ["judge_generated_inputs", "search_branch_coverage"]


def judge_generated_inputs(conformance: CellContext, request: pytest.FixtureRequest) -> None:
    """Generated inputs agree between eager and the export; the canonical input is tried first
    (its run is the one every check on it shares); a failing input is shrunk, kept in the
    example database and replayed by every later run; the shrunk example is localised."""
    evidence = conformance.evidence()
    main = conformance.case.main_input
    canonical = CallList(evidence.calls)  # a failing example is reported in one line
    failed: list[Any] = []

    def body(calls: Any) -> None:
        if calls is canonical:
            result = check_generated_input(
                evidence, input_label=f"the canonical input {main!r} (tried first)"
            )
        else:
            result = check_generated_input(evidence, conformance.run_example(calls))
        if not result:
            failed.append(calls)  # hypothesis replays the shrunk example last
        conformance.verdict(result, localize=False)

    with conformance.localized_on(failed):
        run_property(
            st.one_of(st.just(canonical), conformance.case.strategy().map(CallList)),
            body,
            database_key=request.node.nodeid,
            database_path=conformance.hypothesis_database(),  # under the rootdir, wherever pytest runs
            generation_key=f"{conformance.case.name}/generated",  # every target sees the same inputs
            item=request.node,  # its statistics, for --hypothesis-show-statistics
        )


def search_branch_coverage(conformance: CellContext, request: pytest.FixtureRequest) -> None:
    """Search for generated inputs that take every side of every data-dependent branch of eager
    (steered towards sides not yet taken), and record the coverage."""
    module = conformance.eager_module()
    branches = conformance.branches()
    recorder = BranchRecorder(branches)
    strategy = conformance.case.strategy()

    @search_settings(database=None)  # coverage is searched afresh; the failure database is the suites'
    @given(data=st.data())
    def search(data: Any) -> None:
        calls = data.draw(strategy)
        seen_before = {b: dict(recorder.counts[b]) for b in branches}
        with recorder.watch():
            run_module(module, calls)
        novelty = sum(
            1
            for b in branches
            for side in (True, False)
            if recorder.counts[b][side] and not seen_before[b][side]
        )
        target(float(novelty), label="new branch sides")  # steer towards sides not yet taken

    if branches:
        with statistics_for(request.node, "branch search"):  # for --hypothesis-show-statistics
            search()
    conformance.record_branches(recorder.summary())
    conformance.verdict(coverage_verdict(recorder))
