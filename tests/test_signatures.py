"""Input signatures: every way a call can misfit an artifact is one clear error."""

from __future__ import annotations

import pytest
import torch

import harness
from harness import ModelCase, tol
from harness.core.shapes import InputSignatureError, check_call_signature, input_signature

WHERE = "exports/model.onnx"


def _case(**dims) -> ModelCase:
    return ModelCase(
        name="pair",
        build=lambda: torch.nn.Identity().eval(),
        example_inputs=lambda: (torch.zeros(1, 4, 10), torch.zeros(1, 10, dtype=torch.int64)),
        input_names=("features", "ids"),
        output_names=("y",),
        inputs={"z": lambda: [(torch.zeros(1, 4, 10), torch.zeros(1, 10, dtype=torch.int64))]},
        tolerance={"default": tol(0.0)},
        dynamic_dims=dims or {"features": {2: (2, 32, "time")}, "ids": {1: (2, 32, "time")}},
    )


def _signature(fixed_shapes: bool = True):
    case = _case()
    return input_signature(case, case.example_inputs(), fixed_shapes=fixed_shapes)


def test_a_fitting_call_passes_at_any_size_in_range():
    check_call_signature(_signature(), (torch.zeros(1, 4, 32), torch.zeros(1, 32, dtype=torch.int64)), WHERE)


@pytest.mark.parametrize(
    "call, message",
    [
        (
            (torch.zeros(1, 4, 10), torch.zeros(1, 10)),
            "input 'ids' is float32; the artifact takes int64 (1, time in [2, 32])",
        ),
        ((torch.zeros(4, 10), torch.zeros(1, 10, dtype=torch.int64)), "input 'features' has rank 2"),
        (
            (torch.zeros(1, 3, 10), torch.zeros(1, 10, dtype=torch.int64)),
            "input 'features' dimension 1 is 3 where the graph has 4",
        ),
        (
            (torch.zeros(1, 4, 40), torch.zeros(1, 40, dtype=torch.int64)),
            "input 'features' dimension 2 is 40, outside the exported range [2, 32]",
        ),
        (
            (torch.zeros(1, 4, 10), torch.zeros(1, 12, dtype=torch.int64)),
            "input 'ids' dimension 1 is 12 but 'features' has 10 on the same dimension 'time'",
        ),
    ],
)
def test_each_misfit_is_named(call, message):
    with pytest.raises(InputSignatureError) as caught:
        check_call_signature(_signature(), call, WHERE)
    assert str(caught.value).startswith(f"{WHERE}: ")
    assert message in str(caught.value)


def test_targets_that_run_any_size_check_only_dtype_rank_and_declared_ranges():
    loose = _signature(fixed_shapes=False)
    check_call_signature(loose, (torch.zeros(1, 3, 10), torch.zeros(1, 10, dtype=torch.int64)), WHERE)
    with pytest.raises(InputSignatureError, match="outside the exported range"):
        check_call_signature(loose, (torch.zeros(1, 3, 40), torch.zeros(1, 40, dtype=torch.int64)), WHERE)


def test_a_shared_dimension_declared_with_two_ranges_is_rejected():
    case = _case(features={2: (2, 32, "time")}, ids={1: (2, 64, "time")})
    problems = "\n".join(case.check_declarations([t.name for t in harness.targets()]))
    assert "shared dimension 'time' has different bounds on 'ids'" in problems


def test_shared_dimensions_are_one_torch_export_dim():
    from harness.core.shapes import torch_dynamic_shapes

    features, ids = torch_dynamic_shapes(_case())
    assert features[2] is ids[1]
