"""ONNX via the dynamo exporter, run on an onnxruntime CPU session with full graph optimisation."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.case import ModelCase
from ..core.errors import describe_exception
from ..core.shapes import CHUNK_DIM
from .base import Artifact, ArtifactError, Runner, Target, export_with_dynamic_chunk
from .onnx_files import onnx_companion_files, onnx_format_problem, onnx_input_shapes, onnx_io, onnx_weights
from .onnx_runtime import ORT_OPTIMIZATION_ENV, ORT_THREADS_ENV, OnnxRuntimeSettings
from .taps import Tap, Taps

__all__ = ["OnnxRunner", "OnnxTappedRunner", "OnnxTarget", "dynamo_onnx_export", "onnx_value_modules"]


class OnnxRunner(Runner):
    """An onnxruntime InferenceSession; stateless, so reset has nothing to do."""

    def __init__(
        self, artifact: Artifact, *, optimization: str | None = None, threads: int | None = None
    ) -> None:
        super().__init__(artifact)
        self._open_session(
            artifact, n_inputs=len(artifact.input_names), optimization=optimization, threads=threads
        )

    def _open_session(
        self,
        artifact: Artifact,
        *,
        n_inputs: int,
        optimization: str | None = None,
        threads: int | None = None,
    ) -> None:
        """Open the session. ``threads=None`` reads ORT_THREADS_ENV (the plugin sets 1 per xdist worker)."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        optimization = optimization or os.environ.get(ORT_OPTIMIZATION_ENV, "all")
        options.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[optimization]
        if threads is None:
            threads = int(os.environ.get(ORT_THREADS_ENV, "0"))
        options.intra_op_num_threads = threads
        if threads == 1:  # a single thread has no one to spin-wait for
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(artifact.path), options, providers=["CPUExecutionProvider"])
        self.feed_names = [i.name for i in self.session.get_inputs()]
        if len(self.feed_names) != n_inputs:
            raise ArtifactError(
                f"{artifact.path}: graph has inputs {self.feed_names}, expected {n_inputs} for {list(artifact.input_names)}"
            )

    def _run_impl(self, inputs: tuple[torch.Tensor, ...]) -> Sequence[Any]:
        feed = {
            name: np.ascontiguousarray(x.detach().cpu().numpy()) for name, x in zip(self.feed_names, inputs)
        }
        return self.session.run(None, feed)

    def _reset_impl(self) -> None:
        pass


def dynamo_onnx_export(
    module: torch.nn.Module,
    args: tuple[torch.Tensor, ...],
    path: Path,
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_shapes: Any = None,
) -> dict[str, str]:
    """``torch.onnx.export(dynamo=True)`` into one self-contained file, the way a user calls it.

    Returns notes for the sidecar: where the written graph holds a declared dynamic dimension at
    one size (the exporter does that without a word), ``dims_fixed_note`` says what torch.export
    itself says of that range."""
    if _chunk_requested(dynamic_shapes):
        # the exporter falls back to a static graph where torch.export refuses a dynamic chunk,
        # after a full export: ask torch.export first, so a refusal costs one trace and has a reason
        torch.export.export(module, args, dynamic_shapes=dynamic_shapes, strict=False)
    torch.onnx.export(
        module,
        args,
        str(path),
        dynamo=True,
        input_names=list(input_names),
        output_names=list(output_names),
        dynamic_shapes=dynamic_shapes,
        external_data=False,
        verbose=False,
    )
    fixed = _fixed_axes(path, input_names, dynamic_shapes, chunk=True)
    if fixed:
        # the exporter falls back to a static graph where torch.export refuses the dynamic chunk:
        # ask torch.export itself why, so the cell can say it
        try:
            torch.export.export(module, args, dynamic_shapes=dynamic_shapes, strict=False)
        except Exception as exc:
            raise RuntimeError(
                f"the ONNX exporter fixed {fixed}: torch.export refused the dynamic chunk"
            ) from exc
        raise RuntimeError(f"the ONNX exporter fixed {fixed} although torch.export accepts a dynamic chunk")
    if not _fixed_axes(path, input_names, dynamic_shapes, chunk=False):
        return {}
    # a declared dimension fixed in the graph: what torch.export says of the range (one trace)
    try:
        torch.export.export(module, args, dynamic_shapes=dynamic_shapes, strict=False)
    except Exception as exc:
        return {"dims_fixed_note": "torch.export refuses the range: " + ": ".join(describe_exception(exc))}
    return {"dims_fixed_note": "torch.export accepts the range"}


def _chunk_requested(dynamic_shapes: Any) -> bool:
    def dims(spec: Any) -> list[Any]:
        if isinstance(spec, dict):
            return list(spec.values())
        if isinstance(spec, (tuple, list)):
            return [d for s in spec for d in dims(s)]
        return []

    return any(getattr(d, "__name__", None) == CHUNK_DIM for d in dims(dynamic_shapes))


def _fixed_axes(path: Path, input_names: Sequence[str], dynamic_shapes: Any, *, chunk: bool) -> str:
    """The inputs whose dynamic axes (``chunk``: the streaming chunk; else the declared ones)
    the written graph holds at a fixed size ('' if none)."""
    if not dynamic_shapes:
        return ""
    wanted = (
        dynamic_shapes[0]
        if len(dynamic_shapes) == 1 and isinstance(dynamic_shapes[0], tuple)
        else dynamic_shapes
    )
    chosen = {
        (name, axis)
        for name, spec in zip(input_names, wanted)
        for axis, dim in (spec or {}).items()
        if (getattr(dim, "__name__", None) == CHUNK_DIM) == chunk
    }
    if not chosen:
        return ""
    import onnx

    graph_inputs = {i.name: i for i in onnx.load(str(path), load_external_data=False).graph.input}
    fixed = []
    for name, axis in sorted(chosen):
        dims = graph_inputs[name].type.tensor_type.shape.dim if name in graph_inputs else []
        if axis < len(dims) and dims[axis].HasField("dim_value"):
            fixed.append(f"input {name!r} axis {axis} at {dims[axis].dim_value}")
    return ", ".join(fixed)


_FLOAT_TYPES = (1, 10, 11, 16)  # onnx.TensorProto FLOAT, FLOAT16, DOUBLE, BFLOAT16


def onnx_value_modules(model: Any) -> dict[str, str]:
    """Value name -> the eager module path its producing node belongs to, from the exporter's
    metadata: the dynamo exporter's ``pkg.torch.onnx.name_scopes``, or the legacy exporter's
    node names (``/encoder/conv1/conv1.0/Conv``, scopes kept as written: ``legacy:`` prefix)."""
    import ast

    modules: dict[str, str] = {}
    for node in model.graph.node:
        props = {p.key: p.value for p in node.metadata_props}
        module = None
        scopes = props.get("pkg.torch.onnx.name_scopes")
        if scopes:
            try:
                parsed = ast.literal_eval(scopes)
                module = parsed[-2] if len(parsed) >= 2 else ""
            except (ValueError, SyntaxError):
                module = None
        elif node.name.startswith("/"):
            module = "legacy:" + "/".join(node.name.split("/")[1:-1])
        if module is not None:
            for out in node.output:
                if out:
                    modules[out] = module
    return modules


def resolve_legacy_scope(scope: str, known: set[str]) -> str:
    """A legacy exporter scope (``encoder/conv_layers/conv_layers.6``: each part named relative
    to an enclosing called module) as a qualified module path, resolved against ``known``."""
    resolved: list[str] = []
    for part in [p for p in scope.split("/") if p]:
        for ancestor in [*reversed(resolved), ""]:
            candidate = f"{ancestor}.{part}" if ancestor else part
            if candidate in known:
                resolved.append(candidate)
                break
        else:
            resolved.append(f"{resolved[-1]}.{part}" if resolved else part)
    return resolved[-1] if resolved else ""


class OnnxTappedRunner(Runner):
    """A copy of the ONNX model with every float tensor added as a graph output, run by the
    target's own runner class (state fed back as usual); the added outputs are the taps."""

    def __init__(self, artifact: Artifact, load: Any, folder: Path) -> None:
        import onnx

        super().__init__(artifact)
        model = onnx.load(str(artifact.path))
        self.value_modules = {**artifact.meta.get("value_modules", {}), **onnx_value_modules(model)}
        try:
            inferred = onnx.shape_inference.infer_shapes(model)
        except Exception:
            inferred = model
        types = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
        types.update({v.name: v.type.tensor_type.elem_type for v in inferred.graph.output})
        existing = {o.name for o in model.graph.output}
        state_outputs = set(artifact.meta.get("state_outputs", []))
        #: the graph's own outputs are values too (a last module's output is one of them)
        self.output_names = [o.name for o in model.graph.output if o.name not in state_outputs]
        self.tap_names: list[str] = []
        for node in model.graph.node:
            if node.op_type == "Constant":
                continue
            for out in node.output:
                if out and out not in existing and types.get(out) in _FLOAT_TYPES:
                    model.graph.output.append(onnx.helper.make_tensor_value_info(out, types[out], None))
                    self.tap_names.append(out)
                    existing.add(out)
        path = folder / artifact.path.name
        onnx.save(model, str(path))
        for extra in artifact.path.parent.glob(artifact.path.name + ".*"):
            if extra.suffix != ".json":
                (folder / extra.name).write_bytes(extra.read_bytes())
        self.inner = load(replace(artifact, path=path))
        self._last: list[Any] = []

    def _run_impl(self, inputs: tuple[torch.Tensor, ...]) -> Sequence[Any]:
        outputs = list(self.inner._run_impl(inputs))
        n = len(self.artifact.output_names)
        self._last = outputs
        return outputs[:n]

    def _reset_impl(self) -> None:
        self.inner.reset()

    def taps(self, eager: Sequence[Any]) -> Any:
        known = {r.module_path for r in eager}
        taps = []
        for name, value in zip([*self.output_names, *self.tap_names], self._last):
            module = self.value_modules.get(name)
            if module is not None and module.startswith("legacy:"):
                module = resolve_legacy_scope(module.removeprefix("legacy:"), known)
            taps.append(Tap(name, module, np.asarray(value)))
        scoped = sum(t.module is not None for t in taps)
        how = f"{len(self.tap_names)} ONNX tensors added as graph outputs of a copy, run on onnxruntime"
        if scoped:
            how += f"; {scoped} placed in modules by the exporter's scope metadata"
        return Taps(taps, how)


def onnx_tapped_runner(target: Target, artifact: Artifact) -> Runner:
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="conformance-taps-"))
    return OnnxTappedRunner(artifact, target._load_impl, folder)


class OnnxTarget(OnnxRuntimeSettings, Target):
    """``torch.onnx.export(..., dynamo=True)``, as a user would write it."""

    name = "onnx"
    suffix = ".onnx"
    via_torch_export = True
    quick = True
    requires = ("onnx", "onnxruntime", "onnxscript")
    description = "torch.onnx.export(dynamo=True) on onnxruntime CPU, ORT_ENABLE_ALL"

    def _export_impl(self, module, example, case, path):
        notes, meta = export_with_dynamic_chunk(
            case,
            example,
            lambda shapes: dynamo_onnx_export(
                module, example, path, case.input_names, case.output_names, shapes
            ),
        )
        return {**meta, **(notes or {})}

    def _load_impl(self, artifact: Artifact) -> Runner:
        return OnnxRunner(artifact)

    format_problem = staticmethod(onnx_format_problem)
    input_shapes = staticmethod(onnx_input_shapes)
    companion_files = staticmethod(onnx_companion_files)
    io_signature = staticmethod(onnx_io)
    weights = staticmethod(onnx_weights)

    def tapped_runner(self, artifact: Artifact, case: ModelCase) -> Runner:
        return onnx_tapped_runner(self, artifact)
