"""What the ONNX-family targets read from a user's ``.onnx`` file without running it: its format,
external data, declared inputs and outputs, named weights and lifted state (``onnx`` imported lazily)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..core.case import ModelCase
from .artifact import Artifact, ArtifactError
from .base import TensorDecl
from .formats import describe_format

__all__ = [
    "onnx_companion_files",
    "onnx_external_data",
    "onnx_format_problem",
    "onnx_input_shapes",
    "onnx_io",
    "onnx_lifted_state_meta",
    "onnx_weights",
]

#: onnx.TensorProto element types -> numpy dtype names
_ONNX_DTYPES = {
    1: "float32",
    2: "uint8",
    3: "int8",
    5: "int16",
    6: "int32",
    7: "int64",
    9: "bool",
    10: "float16",
    11: "float64",
}


def onnx_external_data(path: Path) -> list[Path]:
    """The external-data files an ONNX model names (large exports keep weights in ``x.onnx.data``),
    relative to the model's folder, as the runtime will look for them."""
    import onnx
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    model = onnx.load(str(path), load_external_data=False)
    locations = {ExternalDataInfo(t).location for t in model.graph.initializer if uses_external_data(t)}
    return [path.parent / location for location in sorted(locations)]


def onnx_input_shapes(path: Path) -> list[tuple[str, list[int | None]]] | None:
    """The graph inputs' dimensions (None where symbolic), initializers left out."""
    import onnx

    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception:  # format_problem says what is wrong with the file
        return None
    initializers = {i.name for i in graph.initializer}
    return [
        (i.name, [d.dim_value if d.HasField("dim_value") else None for d in i.type.tensor_type.shape.dim])
        for i in graph.input
        if i.name not in initializers
    ]


def onnx_companion_files(path: Path) -> list[Path]:
    return onnx_external_data(path)


def onnx_format_problem(path: Path, example: object = None) -> str | None:
    """Why a file is not a usable ONNX model: another format, a protobuf that does not parse
    (corrupt or truncated), or a model without a graph."""
    kind = describe_format(path)
    if kind not in ("an ONNX-like protobuf", "unrecognised bytes"):
        return f"is {kind}, not an ONNX model"
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        return f"not an ONNX model: its protobuf does not parse, corrupt or truncated ({type(exc).__name__})"
    if not model.graph.node or not model.graph.output:
        return "an ONNX file without a graph (no nodes or no outputs): not an exported model"
    if not model.opset_import:
        return "an ONNX model that declares no opset: corrupt?"
    folder = path.parent.resolve()
    outside = [str(p) for p in onnx_external_data(path) if not p.resolve().is_relative_to(folder)]
    if outside:
        return (
            f"its external data lies outside the model's folder ({', '.join(outside)}): the ONNX format "
            "names external data relative to the model, beside it or below; move the files there"
        )
    missing = [str(p.name) for p in onnx_external_data(path) if not p.is_file()]
    if missing:
        return f"its weights live in external data files that are not beside it: {missing}"
    return None


def onnx_io(path: Path) -> tuple[list[TensorDecl], list[TensorDecl]]:
    """The graph's inputs and outputs (initializers left out) as (name, dtype, dimensions, None
    where symbolic); raises ArtifactError for a file that does not parse."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ArtifactError(f"{path}: not a readable ONNX model ({type(exc).__name__})") from exc
    initializers = {i.name for i in model.graph.initializer}

    def describe(values: Any) -> list[TensorDecl]:
        out = []
        for v in values:
            if v.name in initializers:
                continue
            t = v.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
            out.append((v.name, _ONNX_DTYPES.get(t.elem_type, f"onnx-type-{t.elem_type}"), dims))
        return out

    return describe(model.graph.input), describe(model.graph.output)


def onnx_weights(artifact: Artifact) -> dict[str, np.ndarray]:
    """The model's initializers by name (external data loaded)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(artifact.path))
    return {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}


def onnx_lifted_state_meta(path: Path, case: ModelCase, declared: dict[str, Any]) -> dict[str, Any]:
    """A user's lifted-state ONNX file: the state its sidecar declares, checked against the graph;
    without one, ``state.NAME`` inputs and ``next_state.NAME`` outputs (the initial state is then
    the case module's buffers)."""
    inputs, outputs = onnx_io(path)
    if declared.get("state_inputs"):
        absent = [n for n in declared["state_inputs"] if n not in {i[0] for i in inputs}]
        absent += [n for n in declared.get("state_outputs", []) if n not in {o[0] for o in outputs}]
        if absent:
            raise ArtifactError(
                f"{path}: the sidecar names state inputs/outputs the graph does not have: {absent} "
                "(a plain export given as onnx-stateful?)"
            )
        return {}
    state_inputs = [n for n, _, _ in inputs if n not in case.input_names]
    state_outputs = [n for n, _, _ in outputs if n not in case.output_names]
    if not state_inputs and not state_outputs:
        raise ArtifactError(
            f"{path}: has no state inputs or outputs besides the case's {list(case.input_names)}: "
            "a plain ONNX export? Give it for the onnx target (python -m harness check CASE --artifact onnx=PATH; "
            "pytest --conformance-artifact=CASE:onnx=PATH)"
        )
    names = [n.removeprefix("state.") for n in state_inputs]
    if [f"next_state.{n}" for n in names] != state_outputs:
        raise ArtifactError(
            f"{path}: state inputs {state_inputs} and outputs {state_outputs} do not pair as state.NAME / "
            "next_state.NAME (name the pairs in a sidecar's meta.state_inputs / meta.state_outputs, "
            "see docs/sidecar.schema.json)"
        )
    return {"state_names": names, "state_inputs": state_inputs, "state_outputs": state_outputs}
