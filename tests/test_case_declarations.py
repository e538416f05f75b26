"""ModelCase validation, tolerance lookup and the registry."""

from __future__ import annotations

import pytest
import torch

import harness
from harness import ExpectedFailure, ModelCase, tol


def _case(**overrides) -> ModelCase:
    fields = dict(
        name="tiny",
        build=lambda: torch.nn.Identity().eval(),
        example_inputs=lambda: (torch.zeros(1),),
        input_names=("x",),
        output_names=("y", "z"),
        inputs={"zeros": lambda: [(torch.zeros(1),)]},
    )
    fields.update(overrides)
    return ModelCase(**fields)


def test_tolerance_lookup_prefers_target_override_then_output_then_default():
    case = _case(
        tolerance={"default": tol(1.0), "y": tol(2.0)},
        target_tolerance={"onnx": {"y": tol(3.0), "default": tol(4.0)}},
    )
    assert case.tolerance_for("y", "eager") == tol(2.0)
    assert case.tolerance_for("z", "eager") == tol(1.0)
    assert case.tolerance_for("y", "onnx") == tol(3.0)
    assert case.tolerance_for("z", "onnx") == tol(4.0)


def test_tolerance_naming_an_unknown_output_is_rejected():
    with pytest.raises(ValueError, match="unknown outputs"):
        _case(tolerance={"nope": tol(1.0)})


def test_declarations_that_match_nothing_are_reported():
    case = _case(
        expected=(
            ExpectedFailure("onnxx", "equivalence", "typo in target"),
            ExpectedFailure("onnx", "equivalance", "typo in suite"),
            ExpectedFailure("onnx", "equivalence", "typo in input", inputs=("zeroes",)),
            ExpectedFailure("onnx", "equivalence", "  "),
        ),
        target_tolerance={"tflite": {"default": tol(1.0)}},
    )
    problems = case.check_declarations([t.name for t in harness.targets()])
    text = "\n".join(problems)
    assert "unknown target 'onnxx'" in text
    assert "unknown suite 'equivalance'" in text
    assert "unknown input set 'zeroes'" in text
    assert "gives no reason" in text
    assert "target_tolerance names unknown target 'tflite'" in text


def test_export_expected_failure_covers_every_suite_of_its_target():
    expected = ExpectedFailure("onnx", "export", "exporter refuses")
    assert expected.matches("onnx", "equivalence", "any")
    assert expected.matches("onnx", "determinism", "any")
    assert not expected.matches("torchscript", "equivalence", "any")


def test_registry_rejects_a_second_case_with_the_same_name():
    case = harness.register(_case(name="tiny_registry_test"))
    try:
        assert harness.case("tiny_registry_test") is case
        with pytest.raises(harness.CaseError, match="already registered"):
            harness.register(_case(name="tiny_registry_test"))
    finally:
        harness.core.registry.unregister("tiny_registry_test")
    with pytest.raises(harness.CaseError, match="no case named"):
        harness.case("tiny_registry_test")


def test_builtin_targets_are_registered_in_order():
    assert [t.name for t in harness.targets()][:10] == [
        "eager",
        "torchscript",
        "torch-export",
        "aoti",
        "onnx",
        "onnx-legacy",
        "onnx-stateful",
        "executorch-xnnpack",
        "executorch-portable",
        "openvino",
    ]
