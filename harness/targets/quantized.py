"""Quantized targets: judged by the case's task metric, compared with their float counterparts.

- ``onnx-int8``: the lifted-state ONNX export, then onnxruntime dynamic quantization (int8
  weights, activations quantized at run time). Lifting makes it correct for stateful models too.
- ``executorch-xnnpack-int8``: PT2E static quantization with the XNNPACK quantizer, calibrated on
  the case's canonical inputs, lowered to XNNPACK.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch

from ..core.buffers import buffer_snapshot, restore_buffers
from ..core.pristine import built
from .base import ProgramBeside, Runner
from .dynamic_chunk import export_with_dynamic_chunk
from .executorch_target import ExecuTorchTarget
from .onnx_stateful import LiftedOnnxTarget
from .onnx_target import onnx_value_modules
from .taps import Taps
from .torch_targets import NodeTappedRunner

__all__ = ["ConvertedTappedRunner", "ExecuTorchInt8Target", "OnnxInt8Target"]


class ConvertedTappedRunner(ProgramBeside, NodeTappedRunner):
    """The PT2E-converted module run node by node beside the program itself: ``run`` answers
    with the program's outputs, the taps come from the converted module, and how far the two
    are apart on the localised call is said with them."""

    def __init__(self, artifact: Any, converted: torch.fx.GraphModule, program: Runner) -> None:
        super().__init__(artifact, converted)
        self.program = program

    def _run_impl(self, inputs: tuple[torch.Tensor, ...]) -> Sequence[Any]:
        return self._beside(super()._run_impl(inputs), inputs)

    def taps(self, eager: Sequence[Any]) -> Any:
        found = super().taps(eager)
        return Taps(
            found.taps,
            "the PT2E-converted module the .pte was lowered from (XNNPACK delegates hide the "
            "program's own intermediate values), run node by node, modules from nn_module_stack",
            notes=[
                f"the converted module's outputs differ from the .pte's by {self.gap:.3g} relative on this "
                "call (XNNPACK's int8 kernels against the reference quantized ops)"
            ],
        )


class OnnxInt8Target(LiftedOnnxTarget):
    """``onnxruntime.quantization.quantize_dynamic`` of the lifted-state ONNX export."""

    name = "onnx-int8"
    suffix = ".int8.onnx"
    description = "lifted-state ONNX, onnxruntime dynamic int8 quantization"
    approximate = True
    float_counterpart = "onnx-stateful"
    #: TORCH_EXPORT_TARGETS names the float exports (cases declare the int8 targets' failures by name)
    via_torch_export = False
    quick = False

    def _export_impl(self, module, example, case, path):
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic

        float_path = path.with_name(path.name.replace(".int8.onnx", ".float.onnx"))
        meta = super()._export_impl(module, example, case, float_path)
        model = onnx.load(str(float_path))
        # quantization renames the nodes it rewrites and drops their scope metadata, but keeps
        # the float graph's value names: the float graph's value -> module map localises int8 files
        value_modules = onnx_value_modules(model)
        # the dynamo exporter leaves value_info entries that break quantize_dynamic's shape
        # inference (measured on PESTO); they are optional, so drop them
        del model.graph.value_info[:]
        onnx.save(model, str(float_path))
        quantize_dynamic(str(float_path), str(path), weight_type=QuantType.QInt8)
        float_path.unlink()
        state = float_path.with_name(meta["state_file"])
        meta["state_file"] = path.name + ".state.npz"
        state.rename(path.with_name(meta["state_file"]))
        return {**meta, "quantization": "onnxruntime dynamic, int8 weights", "value_modules": value_modules}


class ExecuTorchInt8Target(ExecuTorchTarget):
    """PT2E int8 (XNNPACKQuantizer, per-channel symmetric), calibrated on the canonical inputs."""

    approximate = True
    float_counterpart = "executorch-xnnpack"
    via_torch_export = False  # as for onnx-int8

    def __init__(self) -> None:
        super().__init__("xnnpack")
        self.name = "executorch-xnnpack-int8"
        self.suffix = ".xnnpack-int8.pte"
        self.description = "ExecuTorch .pte, XNNPACK, PT2E int8 calibrated on the canonical inputs"
        self.dynamic_chunk = False

    def _prepare_module(self, module, example, case):
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
            XNNPACKQuantizer,
            get_symmetric_quantization_config,
        )
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

        initial = buffer_snapshot(module)
        # the declared dynamic dimensions, or the example's sizes where torch.export refuses them
        program, fixed = export_with_dynamic_chunk(
            case,
            example,
            lambda shapes: torch.export.export(module, example, dynamic_shapes=shapes, strict=False),
            chunk=False,
        )
        captured = program.module()
        quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            prepared = prepare_pt2e(captured, quantizer)
            with torch.no_grad():
                for input_name in case.inputs:
                    calls = case.inputs[input_name]()
                    if fixed.get("dims_fixed") and any(
                        tuple(x.shape) != tuple(e.shape) for c in calls for x, e in zip(c, example)
                    ):
                        continue  # a fixed-shape capture calibrates on the inputs it takes
                    restore_buffers(prepared, initial)  # each calibration stream starts fresh
                    for call in calls:
                        prepared(*call)
            converted = convert_pt2e(prepared)
        restore_buffers(converted, initial)  # calibration advanced the streaming state
        return converted

    def _export_impl(self, module, example, case, path):
        meta = super()._export_impl(self._prepare_module(module, example, case), example, case, path)
        return {**meta, "quantization": "PT2E int8, XNNPACKQuantizer per-channel symmetric"}

    def tapped_runner(self, artifact, case):
        """XNNPACK delegates hide an int8 program's intermediate values, so a program this target
        exported is localised on the PT2E-converted module it was lowered from (re-derived from
        the case, deterministically: same calibration), whose outputs are checked against the
        file's on every call; a file made elsewhere falls back to its ETDump."""
        if not artifact.meta.get("instruction_modules"):
            return super().tapped_runner(artifact, case)
        example = tuple(case.example_inputs())
        converted = self._prepare_module(built(case.build), example, case)
        return ConvertedTappedRunner(artifact, converted, self.load(artifact))
