"""The one judge: how a cell's outputs are judged is decided once, and every check agrees."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import harness
from harness import Metric
from harness.core.errors import HarnessError, TargetRunError
from harness.core.judge import Judge
from harness.run.eager import stack_outputs


def _outputs(logits: np.ndarray) -> dict[str, np.ndarray]:
    return {"logits": logits[None]}


def test_an_exact_target_is_held_to_the_tolerances_and_the_task_metric():
    case = harness.case("conv_mlp")
    never = Metric("always over", "x", lambda e, a: 1.0, threshold=0.0)
    strict = dataclasses.replace(case, metric=never)
    same = _outputs(np.ones((2, 4), dtype=np.float32))
    onnx = harness.target("onnx")
    assert Judge.for_cell(case, onnx).judge(same, same, what="w")  # tolerances alone: equal passes
    verdict = Judge.for_cell(strict, onnx).judge(same, same, what="w")
    assert not verdict and "always over: OVER THRESHOLD" in verdict.diagnosis  # the metric has its say too
    assert not verdict.judged_by_metric and all(verdict.comparisons)


def test_an_approximate_target_is_judged_by_its_metric_alone_or_refused_without_one():
    case = harness.case("conv_mlp")
    loose = Metric("largest change", "logit", lambda e, a: float(abs(e["logits"] - a["logits"]).max()), 0.5)
    approx = dataclasses.replace(case, approximate_metric=loose)
    expected, actual = _outputs(np.zeros((2, 4), np.float32)), _outputs(np.full((2, 4), 0.1, np.float32))
    verdict = Judge.for_cell(approx, harness.target("onnx-int8")).judge(expected, actual, what="w")
    assert verdict and verdict.judged_by_metric and not all(verdict.comparisons)  # tensors informative
    with pytest.raises(HarnessError, match="declares no approximate_metric"):
        Judge.for_cell(dataclasses.replace(case, approximate_metric=None), harness.target("onnx-int8"))


def test_two_runs_of_one_export_are_judged_as_identical_up_to_reordering_noise():
    case = harness.case("conv_mlp")
    a = _outputs(np.ones((2, 4), np.float32))
    assert Judge.identical(case).judge(a, {"logits": a["logits"] + 5e-7}, what="w")
    assert not Judge.identical(case).judge(a, {"logits": a["logits"] + 1e-3}, what="w")


def test_calls_whose_outputs_change_shape_are_the_cases_error_on_eager_and_the_exports_on_a_target():
    per_call = [(np.zeros((3, 10)),), (np.zeros((1, 10)),)]
    with pytest.raises(HarnessError, match="every call of one input set must give outputs of one shape"):
        stack_outputs(per_call, ["logits"], "eager")
    with pytest.raises(TargetRunError, match="'logits' is \\(1, 10\\) at call 1"):
        stack_outputs(per_call, ["logits"], "model.onnx")


def test_first_divergence_is_the_first_call_any_output_leaves_its_reference():
    judge = Judge.identical(harness.case("conv_mlp"))
    calls = [(np.zeros(3, np.float32), np.zeros((2, 2), np.float32)) for _ in range(6)]
    assert judge.first_divergence(calls, calls, names=["a", "b"]) is None
    moved = [tuple(o.copy() for o in call) for call in calls]
    moved[4][0][1] = 1.0  # output a leaves at call 4
    moved[2][1][0, 1] = np.nan  # output b, earlier, by a NaN where eager is finite
    index, worst = judge.first_divergence(calls, moved, names=["a", "b"])
    assert (index, worst.name, worst.nonfinite_mismatches) == (2, "b", 1)
    ragged = [(np.zeros(n, np.float32),) for n in (1, 2, 3)]  # outputs whose size changes per call
    bent = [(np.zeros(1, np.float32),), (np.array([0, 5], np.float32),), (np.zeros(3, np.float32),)]
    assert judge.first_divergence(ragged, bent, names=["a"])[0] == 1
    with pytest.raises(ValueError, match="2 calls ran, 6 expected"):
        judge.first_divergence(calls, calls[:2], names=["a", "b"])


def _voiced_case(**extra):
    import torch

    return harness.ModelCase(
        name="voiced",
        build=lambda: torch.nn.Identity(),
        example_inputs=lambda: (torch.zeros(1, 4),),
        input_names=("x",),
        output_names=("pitch", "confidence"),
        inputs={"tone": lambda: [(torch.zeros(1, 4),)]},
        tolerance={"default": harness.tol(1e-3)},
        **extra,
    )


def test_an_output_judged_where_eager_says_it_means_something():
    """A pitch that moves on an unvoiced frame passes (the note says what was judged); the same
    change on a voiced frame fails; without the declaration it fails everywhere."""
    where = harness.JudgedWhere("where the frame is voiced", lambda o: o["confidence"] > 0.5)
    expected = {"pitch": np.array([[60.0, 61.0, 62.0]]), "confidence": np.array([[0.9, 0.06, 0.9]])}
    unvoiced = {**expected, "pitch": np.array([[60.0, 61.5, 62.0]])}
    voiced = {**expected, "pitch": np.array([[60.0, 61.0, 62.5]])}
    judged = Judge.for_cell(_voiced_case(judged_where={"pitch": where}), harness.target("eager"))
    passed = judged.judge(expected, unvoiced, what="t")
    assert passed and "pitch judged where the frame is voiced: 2 of 3 elements" in passed.report()
    failed = judged.judge(expected, voiced, what="t")
    assert not failed and "pitch: MISMATCH" in failed.diagnosis
    assert not Judge.for_cell(_voiced_case(), harness.target("eager")).judge(expected, unvoiced, what="t")
    assert (
        judged.first_divergence(
            [[expected["pitch"], expected["confidence"]]], [[unvoiced["pitch"], unvoiced["confidence"]]]
        )
        is None
    )
    with pytest.raises(ValueError, match="judged_where names outputs it does not declare"):
        _voiced_case(judged_where={"volume": where})


def test_eager_float_noise_is_a_floor_a_fault_is_not():
    """Within the declared multiple of eager's own float32 error (eager rerun in float64) an
    element agrees, and the reason quotes the floor; ten times further it fails; a case that
    declares no multiple is judged by its tolerance alone."""
    import torch

    from harness.run.eager import eager_reference

    torch.manual_seed(0)
    layer = torch.nn.Linear(64, 8).eval()
    signal = torch.randn(1, 64) * 100

    def case(multiple):
        return harness.ModelCase(
            name="linear",
            build=lambda: layer,
            example_inputs=lambda: (signal,),
            input_names=("x",),
            output_names=("y",),
            inputs={"loud": lambda: [(signal,)]},
            tolerance={"default": harness.tol(0.0)},
            noise_multiple=multiple,
        )

    eager = eager_reference(case(4.0))
    expected = eager.outputs()
    floor = eager.float_noise()["y"]
    assert floor.max() > 0  # float32 rounding on a 64-term sum of values near 100
    near = {"y": expected["y"] + 2.0 * floor}
    far = {"y": expected["y"] + 40.0 * floor}

    def judged(multiple, actual):  # as check_equivalence judges: the cell's judge, eager's noise
        judge = Judge.for_cell(case(multiple), harness.target("eager"))
        return judge.judge(expected, actual, what="eager vs eager", noise=eager.float_noise)

    within = judged(4.0, near)
    assert within and "within 4x eager's own float32 noise" in within.diagnosis
    assert not judged(4.0, far)
    assert not judged(None, near)
