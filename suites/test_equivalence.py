"""Equivalence: every target matches eager on every canonical input set, and is deterministic."""

from __future__ import annotations

from dataclasses import replace

import pytest

from harness.equivalence import check_batch_consistency, check_determinism, check_equivalence, run_calls
from harness.sequence import StateThreading
from harness.weights import artifact_weights, audit_weights


@pytest.mark.conformance("equivalence")
def test_equivalence(conformance):
    """The target's outputs match eager within the case's tolerance (and task metric)."""
    runner = conformance.runner()
    actual = run_calls(runner, conformance.calls(), conformance.case.output_names, threading=StateThreading.of(conformance.case))
    conformance.record_traces(conformance.reference(), actual)
    result = check_equivalence(
        conformance.case,
        conformance.target.name,
        conformance.reference(),
        actual,
        approximate=conformance.target.approximate,
    )
    if not result and not conformance.target.approximate:
        weights = artifact_weights(runner.artifact)
        if weights is not None:
            audit = audit_weights(conformance.eager_module(), weights)
            if not audit:
                result = replace(result, diagnosis=audit.diagnosis())
    conformance.verdict(result)


@pytest.mark.conformance("determinism", inputs="primary")
def test_determinism(conformance):
    """Two runs of the same input from a reset state agree (a training-mode export does not)."""
    runner = conformance.runner()
    calls = conformance.calls()
    first = run_calls(runner, calls, conformance.case.output_names, threading=StateThreading.of(conformance.case))
    second = run_calls(runner, calls, conformance.case.output_names, threading=StateThreading.of(conformance.case))
    conformance.verdict(check_determinism(conformance.case, first, second, what=conformance.target.name))


@pytest.mark.conformance("batch-consistency", inputs="primary", requires="batch")
def test_batch_consistency(conformance):
    """Per-sample outputs are the same at batch 1 and at the case's batch size."""
    case = conformance.case
    call = conformance.calls()[0]
    conformance.verdict(
        check_batch_consistency(
            case,
            conformance.target.name,
            conformance.runner(),
            call,
            case.batch_consistency,
            approximate=conformance.target.approximate,
        )
    )
