"""Dynamic dimensions: what exporters are told, and the sizes the suite tries."""

from __future__ import annotations

from typing import Any

import torch

from .case import Call, ModelCase

__all__ = ["resize_call", "sizes_to_try", "torch_dynamic_shapes"]


def torch_dynamic_shapes(case: ModelCase) -> tuple[dict[int, Any] | None, ...] | None:
    """``dynamic_shapes`` for torch.export / the dynamo ONNX exporter, or None when all static."""
    if not case.dynamic_dims:
        return None
    from torch.export import Dim

    shapes = []
    for name in case.input_names:
        axes = case.dynamic_dims.get(name, {})
        shapes.append(
            {axis: Dim(f"{name}_{axis}", min=lo, max=hi) for axis, (lo, hi) in axes.items()} or None
        )
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
