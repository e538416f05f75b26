"""Gating an export made elsewhere: ``--artifact CASE:TARGET=PATH`` runs every suite on the user's file.

Before anything runs, the file's signature is checked against the case: input and output names
(for ONNX, where names are the contract), their order, ranks, dtypes and fixed dimensions, and
state inputs for a lifted-state model. A mismatch is one clear error naming what differs.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .case import ModelCase
from .registry import CaseError
from .registry import case as find_case
from .shapes import input_signature
from .targets import Artifact, ArtifactError, Target
from .targets import target as find_target

__all__ = ["ArtifactOverride", "check_signature", "external_artifact", "parse_artifact_option"]


@dataclass(frozen=True)
class ArtifactOverride:
    case: str
    target: str
    path: Path


def parse_artifact_option(value: str) -> ArtifactOverride:
    """Parse ``CASE:TARGET=PATH``; unknown cases or targets are a clear error."""
    head, sep, path = value.partition("=")
    case_name, colon, target_name = head.partition(":")
    if not sep or not colon or not case_name or not target_name or not path:
        raise ValueError(
            f"--artifact {value!r}: expected CASE:TARGET=PATH, e.g. pesto:onnx-stateful=model.onnx"
        )
    try:
        find_case(case_name)
    except CaseError as exc:
        raise ValueError(f"--artifact {value!r}: {exc}") from None
    try:
        find_target(target_name)
    except KeyError as exc:
        raise ValueError(f"--artifact {value!r}: {exc.args[0]}") from None
    return ArtifactOverride(case_name, target_name, Path(path))


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


def _onnx_io(path: Path) -> tuple[list[tuple[str, str, list]], list[tuple[str, str, list]]]:
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ArtifactError(f"{path}: not a readable ONNX model ({type(exc).__name__})") from exc
    initializers = {i.name for i in model.graph.initializer}

    def describe(values) -> list[tuple[str, str, list]]:
        out = []
        for v in values:
            if v.name in initializers:
                continue
            t = v.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
            out.append((v.name, _ONNX_DTYPES.get(t.elem_type, f"onnx-type-{t.elem_type}"), dims))
        return out

    return describe(model.graph.input), describe(model.graph.output)


def _names_problem(kind: str, graph: list[str], declared: list[str]) -> str | None:
    if graph == declared:
        return None
    if sorted(graph) == sorted(declared):
        return f"{kind} are reordered: the graph has {graph}, the case declares {declared}"
    missing = [n for n in declared if n not in graph]
    extra = [n for n in graph if n not in declared]
    return f"{kind} differ: the graph has {graph}, the case declares {declared} (missing {missing}, unexpected {extra})"


def _eager_signature(case: ModelCase) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    module = case.build()
    example = list(case.example_inputs())
    with torch.no_grad():
        out = module(*example)
    return example, list(out) if isinstance(out, (tuple, list)) else [out]


def _tensor_problems(kind: str, names, graph, expected: list[torch.Tensor]) -> list[str]:
    problems = []
    for name, (_, dtype, dims), tensor in zip(names, graph, expected):
        want_dtype = str(tensor.dtype).removeprefix("torch.")
        if dtype != want_dtype:
            problems.append(f"{kind} {name!r} is {dtype} in the graph, {want_dtype} in the case")
        if len(dims) != tensor.dim():
            problems.append(f"{kind} {name!r} has rank {len(dims)} in the graph, {tensor.dim()} in the case")
            continue
        for axis, (got, want) in enumerate(zip(dims, tensor.shape)):
            if got is not None and got != want:
                problems.append(
                    f"{kind} {name!r} dimension {axis} is {got} in the graph, {want} in the case's example"
                )
    return problems


def check_signature(artifact: Artifact, case: ModelCase, target: Target) -> list[str]:
    """Problems that make ``artifact`` unfit for ``case`` (empty: it fits)."""
    example, outputs = _eager_signature(case)
    if artifact.path.suffix == ".onnx":
        inputs, graph_outputs = _onnx_io(artifact.path)
        state_in = list(artifact.meta.get("state_inputs", []))
        state_out = list(artifact.meta.get("state_outputs", []))
        case_in = [i for i in inputs if i[0] not in state_in]
        case_out = [o for o in graph_outputs if o[0] not in state_out]
        problems = [
            p
            for p in (
                _names_problem("inputs", [i[0] for i in case_in], list(case.input_names)),
                _names_problem("outputs", [o[0] for o in case_out], list(case.output_names)),
            )
            if p
        ]
        if problems:
            return problems
        return _tensor_problems("input", case.input_names, case_in, example) + _tensor_problems(
            "output", case.output_names, case_out, outputs
        )
    try:
        with target.load(artifact) as runner:
            got = runner.run(*example)
    except ArtifactError:
        raise
    except Exception as exc:
        return [
            f"does not accept the case's example input ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})"
        ]
    if len(got) != len(outputs):
        return [f"returns {len(got)} outputs, the case declares {len(outputs)} {list(case.output_names)}"]
    return [
        f"output {name!r} is {tuple(g.shape)} {g.dtype}, eager gives {tuple(e.shape)} {str(e.dtype).removeprefix('torch.')}"
        for name, g, e in zip(case.output_names, got, outputs)
        if tuple(g.shape) != tuple(e.shape) or str(g.dtype) != str(e.dtype).removeprefix("torch.")
    ]


def _lifted_state_meta(path: Path, case: ModelCase, workdir: Path) -> dict:
    """State metadata for a user's lifted-state ONNX file without a sidecar: ``state.NAME`` inputs
    and ``next_state.NAME`` outputs, starting from the case module's initial buffers."""
    inputs, outputs = _onnx_io(path)
    state_inputs = [n for n, _, _ in inputs if n not in case.input_names]
    state_outputs = [n for n, _, _ in outputs if n not in case.output_names]
    names = [n.removeprefix("state.") for n in state_inputs]
    if [f"next_state.{n}" for n in names] != state_outputs:
        raise ArtifactError(
            f"{path}: state inputs {state_inputs} and outputs {state_outputs} do not pair as state.NAME / next_state.NAME"
        )
    buffers = dict(case.build().named_buffers())
    unknown = [n for n in names if n not in buffers]
    if unknown:
        raise ArtifactError(f"{path}: state inputs name buffers the case's module does not have: {unknown}")
    workdir.mkdir(parents=True, exist_ok=True)
    state_file = workdir / (path.name + ".state.npz")
    np.savez(state_file, **{n: buffers[n].numpy() for n in names})
    return {
        "state_names": names,
        "state_inputs": state_inputs,
        "state_outputs": state_outputs,
        "state_file": state_file.name,
    }


def external_artifact(override: ArtifactOverride, workdir: Path) -> Artifact:
    """The user's file as an Artifact, checked against its case; raises ArtifactError on any misfit."""
    case, target = find_case(override.case), find_target(override.target)
    path = override.path.resolve()
    if not path.is_file():
        raise ArtifactError(f"{path}: artifact file does not exist")
    sidecar = path.with_name(path.name + ".json")
    meta = json.loads(sidecar.read_text()).get("meta", {}) if sidecar.is_file() else {}
    local = workdir / f"{case.name}-{target.name}"
    if target.name == "onnx-stateful" and not meta:
        meta = _lifted_state_meta(path, case, local)
    if meta.get("state_file"):
        # keep the user's folder untouched: read the state beside a private link to the file
        local.mkdir(parents=True, exist_ok=True)
        state = path.with_name(meta["state_file"])
        if state.is_file():
            shutil.copy(state, local / meta["state_file"])
        linked = local / path.name
        try:
            linked.symlink_to(path)
        except FileExistsError:  # another xdist worker made it
            pass
        path = linked
    meta.setdefault(
        "inputs", input_signature(case, tuple(case.example_inputs()), fixed_shapes=target.fixed_shapes)
    )
    artifact = Artifact(path, target.name, case.name, case.input_names, case.output_names, meta)
    problems = check_signature(artifact, case, target)
    if problems:
        raise ArtifactError(
            f"{override.path}: does not fit case {case.name!r} on {target.name}: " + "; ".join(problems)
        )
    return artifact
