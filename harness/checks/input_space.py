"""Checks over the input space: generated inputs, dynamic sizes, branch coverage."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..core.branches import Branch, BranchRecorder
from ..core.case import Calls, ModelCase
from ..core.check import Check
from ..core.errors import HarnessError, describe_exception
from ..core.shapes import InputSignatureError, check_call_signature, input_signature, unadmitted_input
from ..run.eager import run_module
from ..run.evidence import Attempt, Evidence

__all__ = ["baked_branch", "check_dynamic_shapes", "check_generated_input"]


def baked_branch(
    module: torch.nn.Module, branches: Sequence[Branch], example: Calls, failing: Calls
) -> str | None:
    """The branch the failing input takes the other way from the example, if any."""
    if not branches:
        return None
    recorder = BranchRecorder(branches)
    with recorder.watch() as example_sides:
        run_module(module, example)  # the outputs are not needed, only the sides taken
    with recorder.watch() as failing_sides:
        run_module(module, failing)
    for branch in branches:
        if (
            branch in example_sides
            and branch in failing_sides
            and example_sides[branch] != failing_sides[branch]
        ):
            return (
                f"branch baked: the export always takes the {str(example_sides[branch]).lower()} side of "
                f"{branch.describe()}, as the example input did; this input takes the "
                f"{str(failing_sides[branch]).lower()} side"
            )
    return None


def _outside_the_case(case: ModelCase, calls: Calls) -> str | None:
    """Why a call sequence does not fit the shapes the case itself declares (None: it fits)."""
    example = tuple(case.example_inputs())
    declared = input_signature(case, example, chunk_dynamic=case.streaming is not None)
    try:
        for call in calls:
            check_call_signature(declared, call, f"case {case.name!r}")
    except InputSignatureError as exc:
        return str(exc)
    return None


def check_generated_input(
    evidence: Evidence, example: Attempt | None = None, *, input_label: str = "a generated input"
) -> Check:
    """One generated input through eager and the export, by the cell's judge; a mismatch is
    diagnosed (baked branch). ``example``: the target's run of the generated calls
    (:func:`~harness.run.evidence.run_example`); None judges the cell's canonical run (the
    canonical input hypothesis tries first). ``input_label`` names the input in the verdict."""
    case, eager = evidence.case, evidence.eager
    what = f"{evidence.target.name} on {input_label}"
    if example is None:
        calls, actual = evidence.calls, evidence.outputs()
    else:
        calls = example.calls
        fixed = evidence.meta.get("dims_fixed")
        refused = unadmitted_input(fixed, case.input_names, calls) if fixed else None
        if refused:  # judged only on inputs the artifact takes; dynamic-shapes reports the dimension
            return Check(what, True, f"not judged: {refused}")
        if example.error is not None:
            exc = example.error
            outside = _outside_the_case(case, calls) if isinstance(exc, InputSignatureError) else None
            if outside:  # the case's strategy's fault, not the export's
                raise HarnessError(
                    f"case {case.name!r}: its strategy generated an input outside the shapes it declares "
                    f"(example_inputs, dynamic_dims, the streaming chunks): {outside}"
                ) from exc
            kind, line = describe_exception(exc)
            return Check(what, False, f"the export rejects this input: {kind}: {line}")
        actual = example.outputs(case.output_names, evidence.target.name)
    expected = eager.outputs_for(calls)
    result = evidence.judge.judge(
        expected, actual, what=what, passed="ok", noise=lambda: eager.float_noise(calls)
    )
    if result:
        return result
    baked = baked_branch(eager.module, eager.branches(), [tuple(case.example_inputs())], calls[:1])
    return result.caused_by(baked) if baked else result


def check_dynamic_shapes(evidence: Evidence) -> Check:
    """Every declared dynamic dimension at sizes 1, the bounds and sizes unlike the example (the
    first call of the cell's input), each judged by the cell's judge. Dimensions the artifact
    holds at one size (``Evidence.fixed_dims``) are held there and not tried: the caller
    reports them."""
    case, eager, judge = evidence.case, evidence.eager, evidence.judge
    what = f"{evidence.target.name} dynamic sizes"
    if not evidence.resized:
        return Check(what, True, "no declared dimension is dynamic in the artifact")
    tried = []
    for resized in evidence.resized:
        name, axis, size, example_size = resized.input, resized.axis, resized.size, resized.example_size
        tried.append(f"{name}[{axis}]={size}")
        if resized.attempt.error is not None:
            kind, line = describe_exception(resized.attempt.error)
            return Check(
                what,
                False,
                f"shape specialised: the export rejects {name} dimension {axis} = {size} "
                f"(the example has {example_size}): {kind}: {line}",
            )
        expected = eager.outputs_for([resized.call])
        actual = resized.attempt.outputs(case.output_names, evidence.target.name)
        judged = judge.judge(expected, actual, what=what)
        if not judged:
            return judged.retitled(
                what,
                f"wrong at {name} dimension {axis} = {size} (the example has {example_size}): {judged.diagnosis}",
            )
    return Check(what, True, f"ok at {', '.join(tried)}")
