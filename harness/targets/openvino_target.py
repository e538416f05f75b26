"""OpenVINO (``openvino``): the project's ONNX export read by OpenVINO, CPU plugin, default settings.

The export is the lifted-state ONNX graph (``onnx-stateful``) converted with
``openvino.convert_model``; where the case streams, the lifted state is turned back into
OpenVINO's own state (``ReadValue``/``Assign`` variables, ``MakeStateful``), so the runtime keeps
it between calls and ``InferRequest.reset_state()`` is the runner's reset. The IR is saved with
float32 weights (``save_model(compress_to_fp16=False)``; the default would store them in fp16).

The model is compiled as a user compiles it: CPU, default settings. On CPUs with bf16 or fp16
units the CPU plugin's default ``INFERENCE_PRECISION_HINT`` is not f32 (measured on an AMX CPU:
bf16, a float32 Conv1d off by 5.7e-3), and the target is then judged by the case's task metric
like a quantized one. ``--openvino-precision=f32`` (or ``EXPORT_CONFORMANCE_OPENVINO_PRECISION``)
sets the hint, and the target is then held to the tensor tolerances.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.case import ModelCase
from .base import Artifact, ArtifactError, Runner, Target, TensorDecl
from .formats import describe_format
from .onnx_files import onnx_format_problem, onnx_input_shapes, onnx_io, onnx_lifted_state_meta, onnx_weights
from .onnx_stateful import LiftedOnnxTarget
from .onnx_target import ORT_THREADS_ENV
from .openvino_settings import OPENVINO_OPTIONS, OPENVINO_PRECISION_ENV, PRECISIONS

__all__ = ["OPENVINO_PRECISION_ENV", "OpenVinoRunner", "OpenVinoTarget", "openvino_precision"]


def requested_precision() -> str | None:
    """The precision hint the user asked for (None: the plugin's default)."""
    value = os.environ.get(OPENVINO_PRECISION_ENV, "").strip().lower() or "default"
    if value not in PRECISIONS:
        raise ValueError(f"{OPENVINO_PRECISION_ENV}={value!r}: expected one of {', '.join(PRECISIONS)}")
    return None if value == "default" else value


@functools.cache
def _plugin_default_precision() -> str:
    import openvino as ov

    return ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()


def openvino_precision() -> str:
    """The inference precision the CPU plugin will use: the hint asked for, else its default."""
    return requested_precision() or _plugin_default_precision()


def _lifted_pairs(model: Any, artifact: Artifact) -> dict[str, str]:
    """Lifted state inputs -> outputs still in the graph (a user's lifted ONNX file, by its
    sidecar or by the ``state.X`` / ``next_state.X`` convention)."""
    inputs = {i.get_any_name() for i in model.inputs}
    outputs = {name for o in model.outputs for name in o.get_names()}
    meta = artifact.meta
    pairs = dict(zip(meta.get("state_inputs", []), meta.get("state_outputs", [])))
    if not pairs:
        pairs = {n: "next_" + n for n in inputs if n.startswith("state.")}
    return {i: o for i, o in pairs.items() if i in inputs and o in outputs}


class OpenVinoRunner(Runner):
    """One compiled model and one infer request; the request holds the streaming state."""

    def __init__(self, artifact: Artifact) -> None:
        super().__init__(artifact)
        import openvino as ov
        from openvino._offline_transformations import apply_make_stateful_transformation

        path = Path(artifact.path)
        if path.suffix == ".xml" and not path.with_suffix(".bin").is_file():
            raise ArtifactError(
                f"{path}: its weights file {path.with_suffix('.bin').name} is missing "
                "(an OpenVINO IR is an .xml with its .bin beside it)"
            )
        core = ov.Core()
        model = core.read_model(str(path))
        pairs = _lifted_pairs(model, artifact)
        if pairs:
            apply_make_stateful_transformation(model, pairs)
        names = [i.get_any_name() for i in model.inputs]
        if sorted(names) != sorted(artifact.input_names):
            raise ArtifactError(
                f"{path}: the model's inputs are {names}, the case's are {list(artifact.input_names)} "
                "(an IR of another model?)"
            )
        config: dict[str, Any] = {}
        precision = requested_precision()
        if precision:
            config["INFERENCE_PRECISION_HINT"] = precision
        threads = int(os.environ.get(ORT_THREADS_ENV, "0") or 0)
        if threads > 0:  # one compute thread per xdist worker, as for onnxruntime
            config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = core.compile_model(model, "CPU", config)
        self.precision = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        self.request = self.compiled.create_infer_request()
        self._outputs = self._output_order(path)
        self._variables = self._variable_names(artifact, pairs)
        self._initial = self._initial_state(artifact)
        self._reset_impl()

    def _output_order(self, path: Path) -> list[Any]:
        outputs = list(self.compiled.outputs)
        by_name = {name: o for o in outputs for name in o.get_names()}
        if all(n in by_name for n in self.artifact.output_names):
            return [by_name[n] for n in self.artifact.output_names]
        if len(outputs) != len(self.artifact.output_names):
            raise ArtifactError(
                f"{path}: the model has {len(outputs)} outputs, the case declares "
                f"{len(self.artifact.output_names)} {list(self.artifact.output_names)}"
            )
        return outputs

    def _variable_names(self, artifact: Artifact, pairs: dict[str, str]) -> dict[str, str]:
        """OpenVINO variable id -> the case's buffer name (MakeStateful names a variable after the
        input and output it replaced); unknown variables keep their own name."""
        meta = artifact.meta
        known = zip(meta.get("state_inputs", []), meta.get("state_outputs", []), meta.get("state_names", []))
        names = {f"{i}{o}": name for i, o, name in known}
        return {**{f"{i}{o}": i.removeprefix("state.") for i, o in pairs.items()}, **names}

    def _initial_state(self, artifact: Artifact) -> dict[str, np.ndarray]:
        """Non-zero initial values from the export's state file: MakeStateful's variables start at
        zero, so the runner sets any other start after each reset."""
        state_file = artifact.meta.get("state_file")
        if not state_file:
            return {}
        try:
            with np.load(Path(artifact.path).with_name(state_file)) as stored:
                values = {name: stored[name] for name in stored.files}
        except (OSError, ValueError) as exc:
            raise ArtifactError(
                f"{artifact.path}: cannot read the initial state {state_file} ({exc})"
            ) from exc
        return {name: v for name, v in values.items() if np.any(v)}

    def _run_impl(self, inputs: tuple[torch.Tensor, ...]) -> Sequence[Any]:
        feed = {
            name: x.detach().cpu().contiguous().numpy() for name, x in zip(self.artifact.input_names, inputs)
        }
        result = self.request.infer(feed)
        return [np.array(result[o], copy=True) for o in self._outputs]

    def _reset_impl(self) -> None:
        self.request.reset_state()
        if self._initial:
            import openvino as ov

            for variable in self.request.query_state():
                value = self._initial.get(self._variables.get(variable.name, variable.name))
                if value is not None:
                    variable.state = ov.Tensor(np.ascontiguousarray(value))

    def state(self) -> dict[str, np.ndarray] | None:
        return {
            self._variables.get(v.name, v.name): np.array(v.state.data, copy=True)
            for v in self.request.query_state()
        }


class OpenVinoTarget(Target):
    """The lifted-state ONNX export converted to an OpenVINO IR (state made internal again)."""

    name = "openvino"
    standalone = "openvino_program"

    def standalone_options(self) -> dict[str, Any]:
        precision = requested_precision()
        return {"precision": precision} if precision else {}

    suffix = ".openvino.xml"
    via_torch_export = True
    carries_state = True
    requires = ("openvino", "onnx", "onnxruntime", "onnxscript")
    description = "OpenVINO IR from the lifted-state ONNX export, stateful, CPU plugin with default settings"
    #: OpenVINO keeps the state itself (ReadValue/Assign): streamed at any precision
    streams_when_approximate = True
    runtime_options = OPENVINO_OPTIONS  # --conformance-openvino-precision, read in configure

    @property
    def approximate(self) -> bool:  # type: ignore[override]
        """Judged by the task metric where the CPU plugin computes in less than f32."""
        if self.missing_runtime():
            return False
        return openvino_precision() != "f32"

    def _export_impl(self, module, example, case, path):
        import openvino as ov
        from openvino._offline_transformations import apply_make_stateful_transformation

        onnx_path = path.with_name(path.name.removesuffix(".xml") + ".onnx")
        meta = LiftedOnnxTarget()._export_impl(module, example, case, onnx_path)
        model = ov.convert_model(str(onnx_path))
        pairs = dict(zip(meta["state_inputs"], meta["state_outputs"]))
        if pairs:
            apply_make_stateful_transformation(model, pairs)
        ov.save_model(model, str(path), compress_to_fp16=False)
        state_file = onnx_path.with_name(onnx_path.name + ".state.npz")
        kept = path.with_name(path.name + ".state.npz")
        state_file.replace(kept)
        onnx_path.unlink()
        return {**meta, "state_file": kept.name, "ir_weights": "float32"}

    def _load_impl(self, artifact: Artifact) -> Runner:
        return OpenVinoRunner(artifact)

    def input_shapes(self, path: Path) -> list[tuple[str, list[int | None]]] | None:
        if path.suffix == ".onnx":
            return onnx_input_shapes(path)
        try:
            import openvino as ov

            model = ov.Core().read_model(str(path))
        except Exception:  # format_problem and the loader say what is wrong with the file
            return None
        return [
            (i.get_any_name(), [None if d.is_dynamic else d.get_length() for d in i.get_partial_shape()])
            for i in model.inputs
        ]

    def recording_problem(self) -> str | None:
        precision = openvino_precision()
        if precision == "f32":
            return None
        return (
            f"openvino computes in {precision} in this run; its golden snapshots are recorded at f32 so that "
            "they hold at any precision: rerun with --openvino-precision=f32 --snapshot-update"
        )

    def configure(self, options: Mapping[str, Any]) -> None:
        if options.get("openvino_precision"):
            os.environ[OPENVINO_PRECISION_ENV] = str(options["openvino_precision"])

    def runtime_settings(self) -> dict[str, str]:
        if self.missing_runtime():
            return {}
        source = "--openvino-precision" if requested_precision() else "CPU plugin default"
        return {"openvino_precision": openvino_precision(), "openvino_precision_source": source}

    def judging_note(self) -> str | None:
        settings = self.runtime_settings()
        if not settings:
            return None
        precision = settings["openvino_precision"]
        judged = (
            "held to the tensor tolerances"
            if precision == "f32"
            else "judged by each case's task metric (--openvino-precision=f32 for the tensor tolerances)"
        )
        return f"{self.name} computed in {precision} ({settings['openvino_precision_source']}): {judged}"

    def takes_lifted_state(self, path: Path) -> bool:
        """A lifted-state ONNX file (``state.X`` inputs): its state is made internal at load."""
        if path.suffix != ".onnx":
            return False
        import onnx

        try:
            graph = onnx.load(str(path), load_external_data=False).graph
        except Exception:  # not readable: format_problem has said why
            return False
        return any(i.name.startswith("state.") for i in graph.input)

    def companion_files(self, path: Path) -> list[Path]:
        return [path.with_suffix(".bin")] if path.suffix == ".xml" else []

    def io_signature(self, path: Path) -> tuple[list[TensorDecl], list[TensorDecl]] | None:
        """An ONNX file's declared inputs and outputs; an IR is loaded and run instead."""
        return onnx_io(path) if path.suffix == ".onnx" else None

    def weights(self, artifact: Artifact) -> dict[str, np.ndarray] | None:
        """An ONNX file's initializers; an IR's weights are not audited by name."""
        return onnx_weights(artifact) if Path(artifact.path).suffix == ".onnx" else None

    def lifted_state_meta(self, path: Path, case: ModelCase, declared: dict[str, Any]) -> dict[str, Any]:
        """A lifted-state ONNX file's state, as for ``onnx-stateful``."""
        return onnx_lifted_state_meta(path, case, declared)

    def format_problem(self, path: Path, example: object = None) -> str | None:
        if path.suffix == ".onnx":
            return onnx_format_problem(path)
        if path.suffix != ".xml":
            return f"is {describe_format(path)}, not an OpenVINO IR (.xml with its .bin) or an ONNX model"
        head = path.read_bytes()[:4096].decode("utf-8", errors="replace")
        if "<net" not in head:
            return f"is {describe_format(path)}, not an OpenVINO IR (no <net> element)"
        if not path.with_suffix(".bin").is_file():
            return f"its weights file {path.with_suffix('.bin').name} is missing (an OpenVINO IR is an .xml with its .bin)"
        return None
