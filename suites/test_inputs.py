"""The input space: generated inputs (hypothesis), dynamic sizes, and branch coverage."""

from __future__ import annotations

import pytest

from harness.checks.input_space import check_dynamic_shapes
from harness.plugin.generated import judge_generated_inputs, search_branch_coverage


@pytest.mark.conformance("hypothesis")
def test_hypothesis(conformance, request):
    """Generated inputs agree between eager and the export; a failing input is shrunk and kept
    in golden/hypothesis, and replayed by every later run."""
    judge_generated_inputs(conformance, request)


@pytest.mark.conformance("dynamic-shapes")
def test_dynamic_shapes(conformance):
    """Sizes 1, the bounds and sizes unlike the example; a shape-specialised export is named. An
    artifact that holds a declared dimension at one size (the exporter refused its range, or fixed
    it without a word) is judged on the others, then reported once here, naming it."""
    result = check_dynamic_shapes(conformance.evidence())
    if result:
        conformance.refuse_fixed_dims()  # raises where a declared dimension is fixed
    conformance.verdict(result)


@pytest.mark.conformance("branch-coverage", targets=("eager",))
def test_branch_coverage(conformance, request):
    """Every side of every data-dependent branch is taken by some generated input."""
    search_branch_coverage(conformance, request)
