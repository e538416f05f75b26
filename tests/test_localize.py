"""Failure localisation names the module where an export starts to compute something else.

Faults are planted in real exports (ONNX on onnxruntime, an ExecuTorch program, a torch.export
program, TorchScript) and each runtime's intermediate values must name the planted module; a
correct export must name none, and a file stripped of its exporter metadata is matched by shape
and order and says so.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import harness
from harness import ModelCase, tol
from harness.checks.localize import localize
from harness.targets import target

pytestmark = pytest.mark.filterwarnings("ignore")


class ConvStack(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(1, 6, 5, padding=2),
            nn.ReLU(),
            nn.Conv1d(6, 5, 3, padding=1),
            nn.ReLU(),
            nn.Conv1d(5, 3, 3),
        )
        self.head = nn.Linear(3 * 30, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


def _conv_stack(planted: bool = False) -> nn.Module:
    torch.manual_seed(3)
    module = ConvStack().eval()
    if planted:
        with torch.no_grad():
            module.features[2].weight.mul_(1.5)  # the mid-network convolution
    return module


def _case(planted: bool = False) -> ModelCase:
    signal = torch.randn(1, 1, 32, generator=torch.Generator().manual_seed(5))
    return ModelCase(
        name="conv_stack",
        build=lambda: _conv_stack(planted),
        example_inputs=lambda: (signal,),
        input_names=("signal",),
        output_names=("logits",),
        inputs={"noise": lambda: [(signal,)]},
        tolerance={"default": tol(1e-4, 1e-4)},
    )


def _planted_export(target_name: str, folder: Path, planted: bool = True):
    return target(target_name).export(_case(planted), folder)


LOCALISED_TARGETS = ["onnx", "onnx-legacy", "torch-export", "torchscript", "executorch-portable"]


@pytest.mark.parametrize("target_name", LOCALISED_TARGETS)
def test_a_planted_weight_fault_is_named_on_every_runtime(target_name, tmp_path):
    found = localize(_case(), target(target_name), _planted_export(target_name, tmp_path))
    assert found.first is not None, found.render()
    assert found.first.path == "features.2", found.render()
    assert found.first.cls == "Conv1d"
    assert found.headline().startswith("first divergence: features.2 (Conv1d, torch/nn/modules/conv.py:")
    assert any(line.startswith("first divergence: features.2") for line in found.render().splitlines())
    upstream = {row.path: row for row in found.rows}
    assert not upstream["features.0"].diverges, "a module before the fault must agree with eager"
    assert not found.first.state, "a weight fault is not a state fault"


@pytest.mark.parametrize("target_name", ["onnx", "torch-export", "executorch-portable"])
def test_a_correct_export_names_no_divergence(target_name, tmp_path):
    found = localize(_case(), target(target_name), _planted_export(target_name, tmp_path, planted=False))
    assert found.first is None
    assert found.headline().startswith("first divergence: none"), found.headline()
    assert found.matched >= 5


def test_a_file_without_exporter_metadata_is_matched_by_shape_and_order(tmp_path):
    import onnx

    artifact = _planted_export("onnx", tmp_path)
    model = onnx.load(str(artifact.path))
    for index, node in enumerate(model.graph.node):
        del node.metadata_props[:]
        node.name = f"n{index}"
    onnx.save(model, str(artifact.path))
    found = localize(_case(), target("onnx"), artifact)
    assert "matched by shape and execution order" in found.how
    assert found.first is not None and found.first.path == "features.2", found.render()


def test_pesto_plain_onnx_names_the_cached_convolution_on_chunk_1(export_cache):
    case = harness.case("pesto")
    artifact = export_cache.get(case, target("onnx"))
    found = localize(case, target("onnx"), artifact, "c4_sine", chunk=1)
    assert found.call == 1
    assert found.first is not None, found.render()
    assert found.first.path == "hcqt.cqt_kernels.0.conv.cache"
    assert found.first.state == ("hcqt.cqt_kernels.0.conv.cache.pad",)
    assert "reads the streaming state" in found.headline()


def test_pesto_lifted_state_onnx_names_none(export_cache):
    case = harness.case("pesto")
    found = localize(
        case, target("onnx-stateful"), export_cache.get(case, target("onnx-stateful")), "c4_sine", chunk=1
    )
    assert found.first is None, found.render()
    assert found.matched > 20


def test_the_command_prints_the_first_divergence(tmp_path):
    artifact = _planted_export("onnx", tmp_path)
    del artifact  # the command exports itself; the planted file is judged through --artifact below
    done = subprocess.run(
        [sys.executable, "-m", "harness", "localize", "pesto", "nope"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert done.returncode == 2 and "no target named 'nope'" in done.stderr


def test_benchmark_localize_a_failing_pesto_cell(benchmark, export_cache):
    """What localising one failing PESTO cell costs (plain ONNX, state dropped, on the sung scale):
    the whole first-divergence search a failing cell pays once. Reported, never asserted."""
    case = harness.case("pesto")
    artifact = export_cache.get(case, target("onnx"))
    found = benchmark.pedantic(
        localize, args=(case, target("onnx"), artifact, "a_major_scale"), rounds=1, iterations=1
    )
    benchmark.extra_info["first_divergence"] = found.first.path if found.first else None
    assert found.first is not None and found.first.path == "hcqt.cqt_kernels.0.conv.cache"


def test_pesto_pt2e_int8_names_the_layers_where_the_error_jumps(export_cache):
    """The largest error jumps the localiser reports on the PT2E int8 program are where the error
    grows module by module, computed here independently: each eager leaf module against the last
    node the converted (reference-quantized) module computes inside it, in eager's order."""
    import numpy as np

    from harness.checks.localize import eager_module_outputs

    case = harness.case("pesto")
    int8 = target("executorch-xnnpack-int8")
    artifact = export_cache.get(case, int8)
    found = localize(case, int8, artifact, "a_major_scale")
    assert found.approximate and len(found.top_jumps) == 3, found.render()
    assert "PT2E-converted module" in found.how

    calls = list(case.inputs["a_major_scale"]())[: found.call + 1]
    eager = eager_module_outputs(case.build(), calls, None)
    converted = int8._prepare_module(case.build(), tuple(case.example_inputs()), case)
    values = {}

    class Recorder(torch.fx.Interpreter):
        def run_node(self, node):
            result = super().run_node(node)
            stack = node.meta.get("nn_module_stack")
            if stack and isinstance(result, torch.Tensor) and result.is_floating_point():
                values.setdefault(list(stack.values())[-1][0], []).append(result.detach().numpy().copy())
            return result

    with torch.no_grad():
        for call in calls:
            values.clear()
            Recorder(converted).run(*call)
    # modules that compute something themselves (the converted graph has nodes directly in them)
    leaves = [r for r in eager if r.path and r.path in values]
    growth, previous = {}, 0.0
    for record in leaves:
        same = [v for v in values.get(record.path, []) if v.shape == record.value.shape]
        if not same:
            continue
        scale = float(np.abs(record.value).max()) or 1.0
        relative = min(float(np.abs(v - record.value).max()) / scale for v in same)
        growth[record.path] = relative - previous
        previous = relative
    independent = sorted(growth, key=lambda p: -growth[p])
    reported = [r.path for r in found.top_jumps]
    assert reported[0] == independent[0], (reported, independent[:5])
    assert set(reported) <= set(independent[:5]) | {r.path for r in found.rows if r.path not in growth}, (
        reported,
        independent[:5],
    )


TOY_CASES = ["conv_mlp", "cached_conv", "lstm_stream", "branchy", "explicit_state_vad"]


@pytest.mark.parametrize(
    "target_name", ["torchscript", "torch-export", "onnx-stateful", "executorch-portable"]
)
@pytest.mark.parametrize("case_name", TOY_CASES)
def test_every_toy_localises_on_every_runtime_family(case_name, target_name, export_cache):
    """The command's answer shape on every toy (explicit state, a scalar input per call, two
    rows, a baked branch): a localisation or an export the exporter refuses, never a crash."""
    from harness.targets import ExportError

    case = harness.case(case_name)
    try:
        artifact = export_cache.get(case, target(target_name))
    except ExportError:
        pytest.skip(f"{target_name} does not export {case_name}")
    found = localize(case, target(target_name), artifact)
    assert found.headline().startswith("first divergence: ")
    assert found.modules >= 1 and found.as_dict()["rows"] is not None


def test_an_approximate_target_is_localised_where_its_task_metric_fails():
    """int8 PESTO: the call localised is a voiced frame more than 50 cents off, not the unvoiced
    frame with the largest raw pitch error (its pitch means nothing); refuted where every voiced
    frame is within 50 cents (nothing fails: the largest output error is shown, not failing)."""
    import numpy as np

    from harness.checks.localize import pick_call

    case, int8 = harness.case("pesto"), target("executorch-xnnpack-int8")

    def call(pitch: float, confidence: float) -> list[np.ndarray]:
        return [np.full((1, 1), pitch), np.full((1, 1), confidence), np.ones((1, 1)), np.zeros((1, 1, 8))]

    eager = [call(60.0, 0.1), call(60.0, 0.9), call(60.0, 0.9)]
    off = [call(65.0, 0.1), call(60.6, 0.9), call(60.1, 0.9)]  # unvoiced 5 st; voiced 60 and 10 cents
    assert pick_call(case, int8, eager, off) == (1, True)
    close = [call(65.0, 0.1), call(60.2, 0.9), call(60.1, 0.9)]
    assert pick_call(case, int8, eager, close) == (0, False)
