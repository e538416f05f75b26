"""Equivalence: every target matches eager on every canonical input set, and is deterministic."""

from __future__ import annotations

import pytest

from harness.checks.equivalence import (
    check_batch_consistency,
    check_determinism,
    check_equivalence,
    run_calls,
)
from harness.checks.weights import artifact_weights, audit_weights
from harness.core.sequence import StateThreading


@pytest.mark.conformance("equivalence")
def test_equivalence(conformance):
    """The target's outputs match eager by the cell's judge (tolerances and task metric)."""
    expected, actual = conformance.reference(), conformance.outputs()
    conformance.record_traces(expected, actual)
    result = check_equivalence(conformance.case, conformance.target, expected, actual)
    if not result and not conformance.target.approximate:
        weights = artifact_weights(conformance.runner().artifact)
        if weights is not None:
            audit = audit_weights(conformance.eager_module(), weights)
            if not audit:
                result = result.caused_by(audit.diagnosis())
    conformance.verdict(result)


@pytest.mark.conformance("determinism")
def test_determinism(conformance):
    """Two runs of the same input from a reset state agree (a training-mode export does not):
    the run every check shares, and one replay."""
    case = conformance.case
    replay = run_calls(conformance.runner(), conformance.calls(), case.output_names, threading=StateThreading.of(case))
    conformance.verdict(check_determinism(case, conformance.outputs(), replay, what=conformance.target.name))


@pytest.mark.conformance("batch-consistency")
def test_batch_consistency(conformance):
    """Per-sample outputs are the same at batch 1 and at the case's batch size."""
    case = conformance.case
    conformance.verdict(
        check_batch_consistency(
            case, conformance.target, conformance.runner(), conformance.calls()[0], case.batch_consistency
        )
    )
