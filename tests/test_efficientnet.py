"""EfficientNet-B0: the layer structure a torchvision checkpoint needs."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import harness
from fixtures.efficientnet import EfficientNetB0, build
from harness.checks.equivalence import check_batch_consistency, check_determinism
from harness.plugin.suites import evidence_for
from harness.run.eager import eager_reference
from harness.targets import Artifact


def test_parameter_count_and_keys_match_torchvision_b0():
    net = EfficientNetB0(classes=1000, dropout=0.2)
    state = net.state_dict()
    # torchvision.models.efficientnet_b0(): 5,288,548 parameters, 360 state_dict entries
    assert sum(p.numel() for p in net.parameters()) == 5_288_548
    assert len(state) == 360
    assert "features.1.0.block.0.0.weight" in state  # expand ratio 1: no expansion conv
    assert "features.2.0.block.0.0.weight" in state and "features.2.0.block.3.1.running_var" in state
    assert "features.2.0.block.2.fc1.weight" in state and "classifier.1.weight" in state
    assert tuple(state["classifier.1.weight"].shape) == (1000, 1280)


def test_the_case_model_is_deterministic_in_eval_and_not_in_training():
    model = build()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model(x)[0], model(x)[0], rtol=0, atol=0)
        model.train()  # dropout 0.4 and stochastic depth live, batch statistics
        assert not torch.equal(model(x)[0], model(x)[0])


def _train_mode_export(tmp_path, target_name: str):
    """The planted fault: the classifier exported while still in training mode."""
    case = harness.case("efficientnet_b0")
    module = case.build().train()
    example = case.example_inputs()
    path = tmp_path / f"efficientnet-train-mode.{target_name}"
    if target_name == "torchscript":
        torch.jit.save(torch.jit.trace(module, example, check_trace=False), str(path))
    else:
        from torch.export import Dim

        program = torch.export.export(
            module, example, dynamic_shapes=({0: Dim("image_0", min=1, max=8)},), strict=False
        )
        torch.export.save(program, str(path))
    return case, Artifact(path, target_name, case.name, case.input_names, case.output_names)


@pytest.mark.slow
@pytest.mark.parametrize("target_name", ["torchscript", "torch-export"])
def test_training_mode_export_is_caught_by_batch_consistency(tmp_path, target_name):
    case, artifact = _train_mode_export(tmp_path, target_name)
    call = case.inputs["gradient"]()[0]
    eager = eager_reference(dataclasses.replace(case, batch_consistency=8), [call])
    target = harness.target(target_name)
    with target.load(artifact) as runner:
        result = check_batch_consistency(evidence_for("batch-consistency", target, runner, eager))
    assert not result
    assert "differs between batch 8 and batch 1" in result.diagnosis
    assert "BatchNorm using batch statistics: exported in training mode?" in result.diagnosis


@pytest.mark.slow
def test_training_mode_export_is_not_deterministic_either(tmp_path):
    case, artifact = _train_mode_export(tmp_path, "torch-export")
    calls = list(case.inputs["noise"]())
    target = harness.target("torch-export")
    with target.load(artifact) as runner:
        result = check_determinism(evidence_for("determinism", target, runner, eager_reference(case, calls)))
    assert not result and "dropout or batch statistics live" in result.report()


@pytest.mark.slow
def test_the_eval_mode_export_passes_batch_consistency(export_cache):
    case = harness.case("efficientnet_b0")
    target = harness.target("torch-export")
    eager = eager_reference(dataclasses.replace(case, batch_consistency=8), case.inputs["gradient"]())
    with target.load(export_cache.get(case, target)) as runner:
        result = check_batch_consistency(evidence_for("batch-consistency", target, runner, eager))
    assert result, result.summary()
