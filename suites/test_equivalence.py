"""Equivalence: every target matches eager on every canonical input set, and is deterministic."""

from __future__ import annotations

import pytest

from harness.equivalence import check_determinism, check_equivalence, run_calls


@pytest.mark.conformance("equivalence")
def test_equivalence(conformance):
    """The target's outputs match eager within the case's tolerance (and task metric)."""
    runner = conformance.runner()
    actual = run_calls(runner, conformance.calls(), conformance.case.output_names)
    conformance.record_traces(conformance.reference(), actual)
    result = check_equivalence(
        conformance.case,
        conformance.target.name,
        conformance.reference(),
        actual,
        approximate=conformance.target.approximate,
    )
    conformance.verdict(result)


@pytest.mark.conformance("determinism", inputs="primary")
def test_determinism(conformance):
    """Two runs of the same input from a reset state agree (a training-mode export does not)."""
    runner = conformance.runner()
    calls = conformance.calls()
    first = run_calls(runner, calls, conformance.case.output_names)
    second = run_calls(runner, calls, conformance.case.output_names)
    conformance.verdict(check_determinism(conformance.case, first, second, what=conformance.target.name))
