"""Equivalence: every target matches eager on every canonical input set, and is deterministic."""

from __future__ import annotations

import pytest

from harness.checks.equivalence import (
    check_batch_consistency,
    check_determinism,
    check_equivalence,
)
from harness.checks.weights import artifact_weights, audit_weights
from harness.run.eager import stack_outputs


@pytest.mark.conformance("equivalence")
def test_equivalence(conformance):
    """The target's outputs match eager by the cell's judge (tolerances and task metric)."""
    expected, actual = conformance.reference(), conformance.outputs()
    conformance.record_traces(expected, actual)
    result = check_equivalence(
        conformance.case, conformance.target, expected, actual, noise=conformance.eager().float_noise
    )
    if not result and not result.judged_by_metric:  # a weight audit explains tensor mismatches
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
    replay, _ = conformance.fresh_run().replay()  # shared with stream-reset
    second = stack_outputs(replay.outputs, case.output_names, conformance.target.name)
    conformance.verdict(check_determinism(case, conformance.outputs(), second, what=conformance.target.name))


@pytest.mark.conformance("batch-consistency")
def test_batch_consistency(conformance):
    """Per-sample outputs are the same at batch 1 and at the case's batch size."""
    conformance.verdict(
        check_batch_consistency(conformance.target, conformance.runner(), conformance.eager())
    )
