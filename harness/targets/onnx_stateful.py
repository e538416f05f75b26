"""ONNX with the streaming state lifted into explicit inputs and outputs (``onnx-stateful``).

The exported graph takes ``(*inputs, *state)`` and returns ``(*outputs, *next_state)``; the
runner keeps the state between calls and feeds it back, so ``run`` and ``reset`` behave like the
stateful module. Nothing here is specific to a model: the state is whatever buffers forward
mutates (``harness.audit_state``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..core.state import LiftedState, mutated_buffer_names
from .artifact import read_initial_state
from .base import Artifact, ArtifactError, Runner, Target, export_with_dynamic_chunk
from .onnx_files import (
    onnx_companion_files,
    onnx_format_problem,
    onnx_input_shapes,
    onnx_io,
    onnx_lifted_state_meta,
    onnx_weights,
)
from .onnx_target import OnnxRunner, OnnxRuntimeSettings, dynamo_onnx_export, onnx_tapped_runner

__all__ = ["LiftedOnnxRunner", "LiftedOnnxTarget"]


def _with_static_state(shapes: tuple | None, n_state: int) -> tuple | None:
    """LiftedState.forward takes ``*args``: its dynamic shapes are one tuple for ``args``."""
    return None if shapes is None else ((*shapes, *([None] * n_state)),)


class LiftedOnnxRunner(OnnxRunner):
    """Feeds each ``next_state.*`` output back into its ``state.*`` input on the next call."""

    def __init__(self, artifact: Artifact) -> None:
        meta = artifact.meta
        self.state_names: list[str] = list(meta.get("state_names", []))
        self.state_inputs: list[str] = list(meta.get("state_inputs", []))
        self.state_outputs: list[str] = list(meta.get("state_outputs", []))
        if not (len(self.state_names) == len(self.state_inputs) == len(self.state_outputs)):
            raise ArtifactError(f"{artifact.path}: state metadata lists differ in length")
        Runner.__init__(self, artifact)
        self._open_session(artifact, n_inputs=len(artifact.input_names) + len(self.state_inputs))
        graph_inputs = set(self.feed_names)
        graph_outputs = [o.name for o in self.session.get_outputs()]
        absent = [n for n in self.state_inputs if n not in graph_inputs] + [
            n for n in self.state_outputs if n not in graph_outputs
        ]
        if absent:
            raise ArtifactError(f"{artifact.path}: graph has no state inputs/outputs named {absent}")
        self._output_index = {name: i for i, name in enumerate(graph_outputs)}
        self._case_outputs = [
            i for i, name in enumerate(graph_outputs) if name not in set(self.state_outputs)
        ]
        self._initial = read_initial_state(artifact, self.state_names)
        self._state = {k: v.copy() for k, v in self._initial.items()}

    def _run_impl(self, inputs: tuple[torch.Tensor, ...]) -> Sequence[Any]:
        case_feeds = [n for n in self.feed_names if n not in set(self.state_inputs)]
        feed = {name: np.ascontiguousarray(x.detach().cpu().numpy()) for name, x in zip(case_feeds, inputs)}
        for name, graph_input in zip(self.state_names, self.state_inputs):
            feed[graph_input] = self._state[name]
        outputs = self.session.run(None, feed)
        for name, graph_output in zip(self.state_names, self.state_outputs):
            self._state[name] = outputs[self._output_index[graph_output]]
        return [outputs[i] for i in self._case_outputs]

    def _reset_impl(self) -> None:
        self._state = {k: v.copy() for k, v in self._initial.items()}

    def state(self) -> dict[str, np.ndarray] | None:
        return {k: v.copy() for k, v in self._state.items()}


class LiftedOnnxTarget(OnnxRuntimeSettings, Target):
    """``torch.onnx.export(dynamo=True)`` of ``LiftedState(module)``: state as explicit I/O."""

    name = "onnx-stateful"
    suffix = ".stateful.onnx"
    lifted_state = True
    via_torch_export = True
    carries_state = True
    quick = True
    requires = ("onnx", "onnxruntime", "onnxscript")
    description = "dynamo ONNX with mutated buffers lifted to inputs/outputs, state fed back by the runner"

    def _export_impl(self, module, example, case, path):
        state_names = mutated_buffer_names(module, example)
        lifted = LiftedState(module, state_names).eval()
        initial = lifted.initial_state()
        state_inputs = [f"state.{n}" for n in state_names]
        state_outputs = [f"next_state.{n}" for n in state_names]
        _, chunk_meta = export_with_dynamic_chunk(
            case,
            example,
            lambda shapes: dynamo_onnx_export(
                lifted,
                (*example, *initial),
                path,
                [*case.input_names, *state_inputs],
                [*case.output_names, *state_outputs],
                _with_static_state(shapes, len(state_names)),
            ),
        )
        state_file = path.with_name(path.name + ".state.npz")
        np.savez(state_file, **{n: t.numpy() for n, t in zip(state_names, initial)})
        return {
            "state_names": state_names,
            "state_inputs": state_inputs,
            "state_outputs": state_outputs,
            "state_file": state_file.name,
            **chunk_meta,
        }

    format_problem = staticmethod(onnx_format_problem)
    input_shapes = staticmethod(onnx_input_shapes)
    companion_files = staticmethod(onnx_companion_files)
    io_signature = staticmethod(onnx_io)
    weights = staticmethod(onnx_weights)
    lifted_state_meta = staticmethod(onnx_lifted_state_meta)

    def _load_impl(self, artifact: Artifact) -> Runner:
        return LiftedOnnxRunner(artifact)

    def tapped_runner(self, artifact: Artifact, case: Any) -> Runner:
        return onnx_tapped_runner(self, artifact)
