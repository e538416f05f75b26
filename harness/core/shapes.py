"""Dynamic dimensions: what exporters are told, and the sizes the suite tries."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from .case import Call, DynamicAxis, ModelCase

__all__ = [
    "CHUNK_DIM",
    "InputSignatureError",
    "chunk_axes",
    "check_call_signature",
    "describe_fixed_dims",
    "dims_fixed_in_file",
    "fixed_dim_entry",
    "input_signature",
    "unadmitted_input",
    "resize_call",
    "sizes_to_try",
    "torch_dynamic_shapes",
]


class InputSignatureError(TypeError):
    """Inputs that do not fit the artifact's signature (wrong dtype, rank or size), raised before
    the runtime sees them; the message names the artifact, the input and the dimension."""


#: The name of the streaming chunk dimension in exports and signatures.
CHUNK_DIM = "chunk"


def chunk_axes(case: ModelCase, example: Call) -> list[DynamicAxis]:
    """The time axes of a streaming case's time inputs as one dynamic dimension over the chunk
    sizes it admits (``chunk`` and ``other_chunks``); none for a case with one chunk size."""
    spec = case.streaming
    if spec is None or not spec.other_chunks:
        return []
    sizes = (spec.chunk, *spec.other_chunks)
    declared = {(d.input, d.axis) for d in case.dynamic_axes()}
    time_axes = spec.time_axes(case.input_names)
    axes = []
    for index, (name, x) in enumerate(zip(case.input_names, example)):
        if name not in time_axes:
            continue
        axis = time_axes[name] % x.dim()
        if (name, axis) not in declared and (name, axis - x.dim()) not in declared:
            axes.append(DynamicAxis(name, index, axis, min(sizes), max(sizes), CHUNK_DIM))
    return axes


def input_signature(
    case: ModelCase,
    example: Call,
    *,
    fixed_shapes: bool = True,
    chunk_dynamic: bool = False,
    fixed_dims: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """What the exported graph takes: per input its name, dtype and shape, where a dynamic axis
    is ``[min, max, dim name]`` and a fixed one its size (stored in the artifact's sidecar).

    ``fixed_shapes=False`` (eager, traced TorchScript: any size the layers accept runs) records
    undeclared axes as ``None``, so only dtype, rank and declared ranges are checked.
    ``chunk_dynamic``: the export took the streaming chunk as a dynamic dimension (``chunk_axes``).
    ``fixed_dims``: declared dynamic dimensions the artifact holds at one size (``dims_fixed`` in
    its metadata, by dimension name), recorded as that size.
    """
    extra = chunk_axes(case, example) if chunk_dynamic else []
    fixed = fixed_dims or {}
    dynamic = {(d.input, d.axis): d for d in [*case.dynamic_axes(), *extra] if d.dim not in fixed}
    signature = []
    for name, x in zip(case.input_names, example):
        shape: list[Any] = []
        for axis, size in enumerate(x.shape):
            d = dynamic.get((name, axis)) or dynamic.get((name, axis - x.dim()))
            shape.append([d.low, d.high, d.dim] if d else int(size) if fixed_shapes else None)
        signature.append({"name": name, "dtype": str(x.dtype).removeprefix("torch."), "shape": shape})
    return signature


def _describe(entry: dict[str, Any]) -> str:
    dims = [
        f"{d[2]} in [{d[0]}, {d[1]}]" if isinstance(d, list) else "any" if d is None else str(d)
        for d in entry["shape"]
    ]
    return f"{entry['dtype']} ({', '.join(dims)})"


def check_call_signature(signature: list[dict[str, Any]], inputs: Call, where: str) -> None:
    """Raise InputSignatureError naming the first input that does not fit ``signature``."""
    shared: dict[str, tuple[str, int]] = {}
    for entry, x in zip(signature, inputs):
        name, want = entry["name"], entry["shape"]
        dtype = str(x.dtype).removeprefix("torch.")
        problem = None
        if dtype != entry["dtype"]:
            problem = f"is {dtype}"
        elif x.dim() != len(want):
            problem = f"has rank {x.dim()} (shape {tuple(x.shape)})"
        else:
            for axis, (size, spec) in enumerate(zip(x.shape, want)):
                if isinstance(spec, list):
                    low, high, dim = spec
                    if not low <= size <= high:
                        problem = f"dimension {axis} is {size}, outside the exported range [{low}, {high}]"
                        break
                    other = shared.setdefault(dim, (name, size))
                    if other[1] != size:
                        problem = (
                            f"dimension {axis} is {size} but {other[0]!r} has {other[1]} on the same "
                            f"dimension {dim!r}"
                        )
                        break
                elif spec is not None and size != spec:
                    problem = (
                        f"dimension {axis} is {size} where the graph has {spec} (shape {tuple(x.shape)})"
                    )
                    break
        if problem:
            raise InputSignatureError(
                f"{where}: input {name!r} {problem}; the artifact takes {_describe(entry)}"
            )


def torch_dynamic_shapes(
    case: ModelCase, example: Call | None = None, *, chunk: bool = False, declared: bool = True
) -> tuple[dict[int, Any] | None, ...] | None:
    """``dynamic_shapes`` for torch.export / the dynamo ONNX exporter, or None when all static.

    ``chunk=True`` (with the example the export traces) also makes a streaming case's chunk
    dynamic over the sizes it admits (``chunk_axes``); ``declared=False`` leaves the case's
    declared dynamic dimensions at the example's sizes (the fixed-shape fallback)."""
    axes = [
        *(case.dynamic_axes() if declared else []),
        *(chunk_axes(case, example) if chunk and example is not None else []),
    ]
    if not axes:
        return None
    from torch.export import Dim

    dims: dict[str, Any] = {}
    shapes: list[dict[int, Any] | None] = [None] * len(case.input_names)
    for d in axes:
        dim = dims.setdefault(d.dim, Dim(d.dim, min=d.low, max=d.high))
        shapes[d.index] = {**(shapes[d.index] or {}), d.axis: dim}
    return tuple(shapes)


def sizes_to_try(low: int, high: int, example: int) -> list[int]:
    """1 (where allowed), the bounds, the example size and sizes unlike it."""
    wanted = {1, low, high, example, example + 1, (low + high) // 2, max(low, example - 1)}
    return sorted(s for s in wanted if low <= s <= high)


def resize_call(call: Call, input_index: int, axis: int, size: int, *, seed: int = 0) -> Call:
    """The call with one input's axis resized: tiled from the original data, then a seeded
    perturbation so rows are not copies of each other."""
    tensors = list(call)
    x = tensors[input_index]
    repeats = -(-size // x.shape[axis])
    tiled = torch.cat([x] * repeats, dim=axis).narrow(axis, 0, size)
    if x.is_floating_point():
        noise = (
            torch.randn(tiled.shape, generator=torch.Generator().manual_seed(seed)) * 0.1 * (x.std() + 1e-3)
        )
        tiled = tiled + noise.to(tiled.dtype)
    tensors[input_index] = tiled.contiguous()
    return tuple(tensors)


def fixed_dim_entry(axis: DynamicAxis, size: int) -> dict[str, Any]:
    """A declared dynamic dimension held at one size, as an artifact's ``dims_fixed`` records it."""
    return {"input": axis.input, "axis": axis.axis, "size": int(size), "low": axis.low, "high": axis.high}


def dims_fixed_in_file(
    case: ModelCase, example: Call, shapes: Sequence[tuple[str, Sequence[int | None]]] | None
) -> dict[str, dict[str, Any]]:
    """The declared dynamic dimensions a written artifact holds at a fixed size, read from its
    own input shapes (``Target.input_shapes``: None for a dynamic dimension), by dimension name;
    empty where the format does not say or every declared dimension stayed dynamic."""
    if not shapes:
        return {}
    by_name = {name: list(dims) for name, dims in shapes}
    if not all(n in by_name for n in case.input_names):  # other names: match by position
        if len(shapes) < len(case.input_names):
            return {}
        by_name = {n: list(dims) for n, (_, dims) in zip(case.input_names, shapes)}
    fixed: dict[str, dict[str, Any]] = {}
    for d in case.dynamic_axes():
        dims = by_name[d.input]
        axis = d.axis % max(example[d.index].dim(), 1)
        if axis < len(dims) and isinstance(dims[axis], int) and d.dim not in fixed:
            fixed[d.dim] = fixed_dim_entry(d, dims[axis])
    return fixed


def describe_fixed_dims(fixed: Mapping[str, Mapping[str, Any]]) -> str:
    """``'length' (input 'tokens' axis 1) fixed at 9, declared 2-40`` for each fixed dimension."""
    return "; ".join(
        f"{dim!r} (input {e['input']!r} axis {e['axis']}) fixed at {e['size']}, declared {e['low']}-{e['high']}"
        for dim, e in fixed.items()
    )


def unadmitted_input(
    fixed: Mapping[str, Mapping[str, Any]], input_names: Sequence[str], calls: Sequence[Call]
) -> str | None:
    """Why an artifact that holds declared dynamic dimensions at one size (``fixed``) cannot take
    these calls: the first dimension whose size differs, named; None where every call fits."""
    index = {name: i for i, name in enumerate(input_names)}
    for number, call in enumerate(calls):
        for dim, entry in fixed.items():
            position = index.get(entry["input"])
            if position is None or position >= len(call):
                continue
            x = call[position]
            axis = entry["axis"] % max(x.dim(), 1)
            if axis < x.dim() and x.shape[axis] != entry["size"]:
                where = f" at call {number}" if len(calls) > 1 else ""
                return (
                    f"the artifact holds dimension {dim!r} (input {entry['input']!r} axis {entry['axis']}) "
                    f"at {entry['size']} (declared {entry['low']}-{entry['high']}); this input has "
                    f"{x.shape[axis]}{where}"
                )
    return None
