"""Every check must be able to fail: plant each fault in a real export, see it reported."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import harness
from harness import ArtifactError, ModelCase, tol
from harness.checks.equivalence import check_determinism, check_equivalence
from harness.plugin.suites import evidence_for
from harness.run.eager import eager_reference
from harness.targets import Artifact


def _mlp_case() -> ModelCase:
    return harness.case("conv_mlp")


class DropoutMlp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Dropout(0.4), nn.Linear(32, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@pytest.fixture(scope="module")
def dropout_case():
    torch.manual_seed(0)
    weights = DropoutMlp().state_dict()

    def build() -> nn.Module:
        module = DropoutMlp()
        module.load_state_dict(weights)
        return module.eval()

    x = torch.randn(8, 16, generator=torch.Generator().manual_seed(1))
    case = harness.register(
        ModelCase(
            name="planted_dropout",
            build=build,
            example_inputs=lambda: (x,),
            input_names=("x",),
            output_names=("logits",),
            inputs={"random": lambda: [(x,)]},
            tolerance={"default": tol(1e-5, 1e-5)},
        )
    )
    yield case
    harness.core.registry.unregister("planted_dropout")


def test_perturbed_onnx_weights_fail_equivalence_with_a_readable_report(export_cache, tmp_path):
    import onnx
    from onnx import numpy_helper

    case = _mlp_case()
    target = harness.target("onnx")
    good = export_cache.get(case, target)
    model = onnx.load(str(good.path))
    weight = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    values = numpy_helper.to_array(weight).copy()
    values += 1e-3  # every element of one weight, slightly
    weight.CopyFrom(numpy_helper.from_array(values, weight.name))
    planted = tmp_path / "perturbed.onnx"
    onnx.save(model, str(planted))

    calls = list(case.inputs["noise"]())
    reference = eager_reference(case, calls)
    with target.load(good) as runner:
        assert check_equivalence(evidence_for("equivalence", target, runner, reference))
    with target.load(Artifact(planted, "onnx", case.name, case.input_names, case.output_names)) as runner:
        result = check_equivalence(evidence_for("equivalence", target, runner, reference))
    assert not result
    report = result.report()
    assert report.splitlines()[0].startswith("onnx vs eager: logits: MISMATCH")
    assert "max abs err" in report and "would pass at atol=" in report and "elements outside" in report


def test_perturbed_torchscript_weights_fail_equivalence(tmp_path):
    case = _mlp_case()
    module = case.build()
    with torch.no_grad():
        next(module.parameters()).add_(1e-3)
    path = tmp_path / "perturbed.ts.pt"
    torch.jit.save(torch.jit.trace(module, case.example_inputs()), str(path))
    calls = list(case.inputs["noise"]())
    artifact = Artifact(path, "torchscript", case.name, case.input_names, case.output_names)
    target = harness.target("torchscript")
    with target.load(artifact) as runner:
        result = check_equivalence(evidence_for("equivalence", target, runner, eager_reference(case, calls)))
    assert not result
    assert "logits: MISMATCH" in result.summary()


# (torch.onnx.export(dynamo=True) of the same train-mode module emits an inference graph, measured
# here: its two runs agree, so it is not a planted fault for ONNX.)
@pytest.mark.parametrize("target_name", ["torchscript", "torch-export"])
def test_export_made_in_training_mode_fails_determinism(dropout_case, target_name, tmp_path):
    module = dropout_case.build().train()  # the fault: dropout left live at export
    example = dropout_case.example_inputs()
    path = tmp_path / f"train-mode-{target_name}"
    if target_name == "torchscript":
        torch.jit.save(torch.jit.trace(module, example, check_trace=False), str(path))
    else:
        torch.export.save(torch.export.export(module, example, strict=False), str(path))
    artifact = Artifact(path, target_name, dropout_case.name, ("x",), ("logits",))
    calls = list(dropout_case.inputs["random"]())
    target = harness.target(target_name)
    with target.load(artifact) as runner:
        result = check_determinism(
            evidence_for("determinism", target, runner, eager_reference(dropout_case, calls))
        )
    assert not result
    assert "run twice" in result.summary() and "logits: MISMATCH" in result.summary()
    assert "dropout" in result.report()


def test_eval_mode_export_of_the_same_model_is_deterministic(dropout_case, export_cache):
    target = harness.target("torchscript")
    calls = list(dropout_case.inputs["random"]())
    with target.load(export_cache.get(dropout_case, target)) as runner:
        assert check_determinism(
            evidence_for("determinism", target, runner, eager_reference(dropout_case, calls))
        )


def test_build_in_training_mode_is_refused_before_export(dropout_case, tmp_path):
    bad = ModelCase(
        name="planted_train_build",
        build=lambda: dropout_case.build().train(),
        example_inputs=dropout_case.example_inputs,
        input_names=("x",),
        output_names=("logits",),
        inputs=dict(dropout_case.inputs),
    )
    with pytest.raises(ValueError, match="training mode"):
        harness.target("torchscript").export(bad, tmp_path)


@pytest.mark.parametrize("damage", ["truncated", "random-bytes", "empty"])
@pytest.mark.parametrize("target_name", [t.name for t in harness.targets()])
def test_damaged_artifact_is_a_clear_error_naming_the_file(export_cache, tmp_path, target_name, damage):
    target = harness.target(target_name)
    if target.missing_runtime():
        pytest.skip(target.missing_runtime())
    good = export_cache.get(_mlp_case(), target)
    data = Path(good.path).read_bytes()
    planted = tmp_path / f"{damage}{target.suffix}"
    if damage == "truncated":
        planted.write_bytes(data[: len(data) // 2])
    elif damage == "random-bytes":
        planted.write_bytes(os.urandom(max(len(data), 256)))
    else:
        planted.write_bytes(b"")
    artifact = Artifact(planted, target.name, good.case, good.input_names, good.output_names)
    with pytest.raises(ArtifactError) as info:
        target.load(artifact).run(*_mlp_case().example_inputs())
    message = str(info.value)
    assert message.startswith(str(planted)), message
    assert "\n" not in message  # one clear line, not a runtime's traceback


def test_missing_artifact_file_is_a_clear_error(tmp_path):
    artifact = Artifact(tmp_path / "nowhere.onnx", "onnx", "conv_mlp", ("signal",), ("logits",))
    with pytest.raises(ArtifactError, match="nowhere.onnx: artifact file does not exist"):
        harness.target("onnx").load(artifact)
