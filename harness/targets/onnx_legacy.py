"""The TorchScript-based ONNX exporter (``dynamo=False``), as many teams still export today."""

from __future__ import annotations

import warnings

import torch

from .base import Artifact, Runner, Target
from .onnx_files import onnx_companion_files, onnx_format_problem, onnx_input_shapes, onnx_io, onnx_weights
from .onnx_target import OnnxRunner, OnnxRuntimeSettings, onnx_tapped_runner

__all__ = ["LegacyOnnxTarget"]


class LegacyOnnxTarget(OnnxRuntimeSettings, Target):
    """``torch.onnx.export(..., dynamo=False, opset_version=17, do_constant_folding=True)`` with
    dynamic axes for the case's declared dynamic dimensions; run on onnxruntime like ``onnx``."""

    name = "onnx-legacy"
    suffix = ".legacy.onnx"
    quick = True
    requires = ("onnx", "onnxruntime")
    description = "torch.onnx.export(dynamo=False), opset 17, constant folding, dynamic axes"
    opset = 17

    def _export_impl(self, module, example, case, path):
        dynamic_axes = {
            name: {d.axis: d.dim for d in case.dynamic_axes() if d.input == name}
            for name in case.dynamic_dims
        }
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.onnx.export(
                module,
                example,
                str(path),
                dynamo=False,
                opset_version=self.opset,
                do_constant_folding=True,
                input_names=list(case.input_names),
                output_names=list(case.output_names),
                dynamic_axes=dynamic_axes or None,
                training=torch.onnx.TrainingMode.EVAL,
            )
        tracer = sorted(
            {
                f"{w.filename}:{w.lineno}: {w.message}"
                for w in caught
                if w.category.__name__ == "TracerWarning"
            }
        )
        return {"opset": self.opset, "dynamic_axes": dynamic_axes, "tracer_warnings": tracer}

    format_problem = staticmethod(onnx_format_problem)
    input_shapes = staticmethod(onnx_input_shapes)
    companion_files = staticmethod(onnx_companion_files)
    io_signature = staticmethod(onnx_io)
    weights = staticmethod(onnx_weights)

    def _load_impl(self, artifact: Artifact) -> Runner:
        return OnnxRunner(artifact)

    def tapped_runner(self, artifact: Artifact, case: object) -> Runner:
        return onnx_tapped_runner(self, artifact)
