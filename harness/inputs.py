"""Checks over the input space: generated inputs, dynamic sizes, branch coverage."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .branches import Branch, BranchRecorder
from .case import Calls, ModelCase
from .check import Check
from .compare import compare
from .equivalence import check_equivalence, eager_outputs, run_calls
from .sequence import StateThreading
from .shapes import resize_call, sizes_to_try
from .streaming import eager_stream
from .targets import Runner
from .targets.base import describe_exception

__all__ = ["baked_branch", "check_dynamic_shapes", "check_generated_input"]


def baked_branch(
    module: torch.nn.Module, branches: Sequence[Branch], example: Calls, failing: Calls
) -> str | None:
    """The branch the failing input takes the other way from the example, if any."""
    if not branches:
        return None
    recorder = BranchRecorder(branches)
    with recorder.watch() as example_sides:
        eager_stream(module, example)  # the outputs are not needed, only the sides taken
    with recorder.watch() as failing_sides:
        eager_stream(module, failing)
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


def check_generated_input(
    case: ModelCase,
    target: str,
    runner: Runner,
    module: torch.nn.Module,
    calls: Calls,
    branches: Sequence[Branch],
    *,
    approximate: bool = False,
    input_label: str = "a generated input",
) -> Check:
    """One generated input through eager and the export; a mismatch is diagnosed (baked branch).
    ``input_label`` names the input in the verdict (the canonical input hypothesis tries first)."""
    what = f"{target} on {input_label}"
    threading = StateThreading.of(case)
    expected = eager_outputs(module, calls, case.output_names, threading=threading)
    try:
        actual = run_calls(runner, calls, case.output_names, threading=threading)
    except Exception as exc:
        kind, line = describe_exception(exc)
        return Check(what, False, f"the export rejects this input: {kind}: {line}")
    result = check_equivalence(case, target, expected, actual, approximate=approximate)
    if result:
        return Check(what, True, "ok", metric=result.metric)
    baked = baked_branch(module, branches, [tuple(case.example_inputs())], calls[:1])
    diagnosis = f"{baked}; {result.summary()}" if baked else result.summary()
    return Check(what, False, diagnosis, tuple(result.report().splitlines()), metric=result.metric)


def check_dynamic_shapes(
    case: ModelCase,
    target: str,
    runner: Runner,
    module: torch.nn.Module,
    call: tuple[torch.Tensor, ...],
    *,
    approximate: bool = False,
) -> Check:
    """Every declared dynamic dimension at sizes 1, the bounds and sizes unlike the example
    (an approximate target is judged at each size by the case's approximate metric)."""
    what = f"{target} dynamic sizes"
    tried = []
    groups: dict[str, list] = {}
    for d in case.dynamic_axes():
        groups.setdefault(d.dim, []).append(d)
    for members in groups.values():
        first = members[0]
        name, axis, low, high = first.input, first.axis, first.low, first.high
        example_size = call[first.index].shape[axis]
        for size in sizes_to_try(low, high, example_size):
            resized = call
            for member in members:  # a shared dimension changes on every input that has it
                resized = resize_call(resized, member.index, member.axis, size, seed=size)
            tried.append(f"{name}[{axis}]={size}")
            expected = eager_outputs(module, [resized], case.output_names)
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
            if approximate:
                judged = check_equivalence(case, target, expected, actual, approximate=True)
                if not judged:
                    return Check(
                        what, False, f"wrong at {name} dimension {axis} = {size}: {judged.summary()}"
                    )
                continue
            for out in case.output_names:
                comparison = compare(expected[out], actual[out], case.tolerance_for(out, target), name=out)
                if not comparison:
                    return Check(
                        what,
                        False,
                        f"wrong at {name} dimension {axis} = {size} (the example has {example_size}): {comparison.summary()}",
                    )
    return Check(what, True, f"ok at {', '.join(tried)}")
