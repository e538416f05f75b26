"""Checks over the input space: generated inputs, dynamic sizes, branch coverage."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..core.branches import Branch, BranchRecorder
from ..core.case import Calls, ModelCase, Outputs
from ..core.check import Check
from ..core.errors import HarnessError, describe_exception
from ..core.judge import Judge
from ..core.sequence import StateThreading
from ..core.shapes import (
    InputSignatureError,
    check_call_signature,
    input_signature,
    resize_call,
    sizes_to_try,
    unadmitted_input,
)
from ..run.eager import EagerReference, run_module
from ..targets import Runner
from .equivalence import run_calls

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
    target: object,
    runner: Runner,
    eager: EagerReference,
    calls: Calls,
    *,
    input_label: str = "a generated input",
    actual: Outputs | None = None,
) -> Check:
    """One generated input through eager and the export, by the cell's judge; a mismatch is
    diagnosed (baked branch). ``input_label`` names the input in the verdict (the canonical
    input hypothesis tries first); ``actual``, the target's outputs where they were computed
    already (the canonical input's shared run)."""
    case = eager.case
    judge = Judge.for_cell(case, target)
    what = f"{_name(target)} on {input_label}"
    fixed = runner.artifact.meta.get("dims_fixed")
    refused = unadmitted_input(fixed, case.input_names, calls) if fixed and actual is None else None
    if refused:  # judged only on inputs the artifact takes; dynamic-shapes reports the dimension
        return Check(what, True, f"not judged: {refused}")
    expected = eager.outputs_for(calls)
    if actual is None:
        try:
            actual = run_calls(runner, calls, case.output_names, threading=StateThreading.of(case))
        except InputSignatureError as exc:
            outside = _outside_the_case(case, calls)
            if outside:  # the case's strategy's fault, not the export's
                raise HarnessError(
                    f"case {case.name!r}: its strategy generated an input outside the shapes it declares "
                    f"(example_inputs, dynamic_dims, the streaming chunks): {outside}"
                ) from exc
            kind, line = describe_exception(exc)
            return Check(what, False, f"the export rejects this input: {kind}: {line}")
        except Exception as exc:
            kind, line = describe_exception(exc)
            return Check(what, False, f"the export rejects this input: {kind}: {line}")
    result = judge.judge(expected, actual, what=what, passed="ok", noise=lambda: eager.float_noise(calls))
    if result:
        return result
    baked = baked_branch(eager.module, eager.branches(), [tuple(case.example_inputs())], calls[:1])
    return result.caused_by(baked) if baked else result


def check_dynamic_shapes(
    target: object,
    runner: Runner,
    eager: EagerReference,
    call: tuple[torch.Tensor, ...] | None = None,
    *,
    fixed: Mapping[str, Mapping[str, Any]] | None = None,
) -> Check:
    """Every declared dynamic dimension at sizes 1, the bounds and sizes unlike the example
    (``call``, default: the first call of the eager side's input), each judged by the cell's judge.

    ``fixed``: declared dimensions the artifact holds at one size (``dims_fixed``, by name): they
    are held at that size and not tried (the caller reports them); the others are."""
    case = eager.case
    call = tuple(call) if call is not None else eager.calls[0]
    fixed = fixed or {}
    judge = Judge.for_cell(case, target)
    what = f"{_name(target)} dynamic sizes"
    tried = []
    groups: dict[str, list] = {}
    for d in case.dynamic_axes():
        if d.dim in fixed:
            if call[d.index].shape[d.axis] != fixed[d.dim]["size"]:
                call = resize_call(call, d.index, d.axis, int(fixed[d.dim]["size"]), seed=0)
            continue
        groups.setdefault(d.dim, []).append(d)
    if not groups:
        return Check(what, True, "no declared dimension is dynamic in the artifact")
    for members in groups.values():
        first = members[0]
        name, axis, low, high = first.input, first.axis, first.low, first.high
        example_size = call[first.index].shape[axis]
        for size in sizes_to_try(low, high, example_size):
            resized = call
            for member in members:  # a shared dimension changes on every input that has it
                resized = resize_call(resized, member.index, member.axis, size, seed=size)
            tried.append(f"{name}[{axis}]={size}")
            expected = eager.outputs_for([resized])
            try:
                actual = run_calls(runner, [resized], case.output_names)
            except Exception as exc:
                kind, line = describe_exception(exc)
                return Check(
                    what,
                    False,
                    f"shape specialised: the export rejects {name} dimension {axis} = {size} "
                    f"(the example has {example_size}): {kind}: {line}",
                )
            judged = judge.judge(expected, actual, what=what)
            if not judged:
                return judged.retitled(
                    what,
                    f"wrong at {name} dimension {axis} = {size} (the example has {example_size}): {judged.diagnosis}",
                )
    return Check(what, True, f"ok at {', '.join(tried)}")


def _name(target: object) -> str:
    return target if isinstance(target, str) else str(getattr(target, "name", target))
