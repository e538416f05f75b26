"""The input space: generated inputs (hypothesis), dynamic sizes, and branch coverage."""

from __future__ import annotations

import pytest
from hypothesis import given, target
from hypothesis import strategies as st

from harness.checks.input_space import check_dynamic_shapes, check_generated_input
from harness.core.branches import BranchRecorder
from harness.core.check import Check
from harness.core.sequence import CallList
from harness.plugin.profiles import run_property, search_settings, statistics_for
from harness.run.eager import run_module


@pytest.mark.conformance("hypothesis")
def test_hypothesis(conformance, request):
    """Generated inputs agree between eager and the export; a failing input is shrunk and kept
    in golden/hypothesis, and replayed by every later run."""
    runner = conformance.runner()
    main = conformance.case.main_input
    eager = conformance.eager(main)  # eager's runs of every example are shared by every target
    # the primary canonical input is the simplest example, so hypothesis tries it first
    canonical = CallList(conformance.calls(main))  # a failing example is reported in one line
    seed = st.just(canonical)
    failed = []

    def body(calls):
        first = calls is canonical
        result = check_generated_input(
            conformance.target,
            runner,
            eager,
            calls,
            input_label=f"the canonical input {main!r} (tried first)" if first else "a generated input",
            actual=conformance.outputs(main) if first else None,  # the run every check on it shares
        )
        if not result:
            failed.append(calls)  # hypothesis replays the shrunk example last
        conformance.verdict(result, localize=False)

    with conformance.localized_on(failed):
        run_property(
            st.one_of(seed, conformance.case.strategy().map(CallList)),
            body,
            database_key=request.node.nodeid,
            database_path=conformance.hypothesis_database(),  # under the rootdir, wherever pytest runs
            generation_key=f"{conformance.case.name}/generated",  # every target sees the same inputs
            item=request.node,  # its statistics, for --hypothesis-show-statistics
        )


@pytest.mark.conformance("dynamic-shapes")
def test_dynamic_shapes(conformance):
    """Sizes 1, the bounds and sizes unlike the example; a shape-specialised export is named. An
    artifact that holds a declared dimension at one size (the exporter refused its range, or fixed
    it without a word) is judged on the others, then reported once here, naming it."""
    runner, fixed = conformance.runner(), conformance.fixed_dims()
    result = check_dynamic_shapes(conformance.target, runner, conformance.eager(), fixed=fixed)
    if result:
        conformance.refuse_fixed_dims()  # raises where a declared dimension is fixed
    conformance.verdict(result)


@pytest.mark.conformance("branch-coverage", targets=("eager",))
def test_branch_coverage(conformance, request):
    """Every side of every data-dependent branch is taken by some generated input."""
    module = conformance.eager_module()
    branches = conformance.branches()
    recorder = BranchRecorder(branches)
    strategy = conformance.case.strategy()

    @search_settings(database=None)  # coverage is searched afresh; the failure database is the suites'
    @given(data=st.data())
    def search(data):
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
    unreached = recorder.unreached()
    if unreached:
        missing = "; ".join(f"the {str(side).lower()} side of {b.describe()}" for b, side in unreached)
        result = Check("branch coverage", False, f"never exercised by the generated inputs: {missing}")
    else:
        result = Check("branch coverage", True, f"covered: {recorder.summary()}")
    conformance.record_branches(recorder.summary())
    conformance.verdict(result)
