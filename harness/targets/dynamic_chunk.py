"""Exports with every size the case declares dynamic (its dynamic dimensions, a streaming case's
chunk), or the exporter's reason why not, at the example's sizes."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import torch

from ..core.case import ModelCase
from ..core.errors import constraint_line, describe_exception, full_message, root_cause
from ..core.shapes import chunk_axes, fixed_dim_entry, torch_dynamic_shapes

__all__ = ["export_with_dynamic_chunk", "refuses_dynamic_range"]


def export_with_dynamic_chunk(
    case: ModelCase, example: tuple[torch.Tensor, ...], export: Callable[[Any], Any], *, chunk: bool = True
) -> tuple[Any, dict[str, Any]]:
    """Run ``export(dynamic_shapes)`` with the case's declared dynamic dimensions and a streaming
    case's chunk dynamic over the sizes they admit; where the exporter refuses a dynamic range,
    export at the example's sizes instead and say why in the metadata.

    Returns ``(what export returned, meta)``: ``meta["chunk_dynamic"]`` (absent for a case with
    one chunk size) and, when the chunk stayed fixed, ``meta["chunk_fixed_because"]``; when the
    declared dynamic dimensions stayed at the example's sizes, ``meta["dims_fixed"]`` (by
    dimension name: input, axis, size, declared range), ``meta["dims_fixed_because"]`` (the
    exporter's refusal in one line) and ``meta["dims_fixed_refusal"]`` (its whole message). A refusal that is not about a dynamic range (a data-dependent branch)
    is raised as it is: the fixed-shape export would refuse it too. ``chunk=False``: the chunk
    stays fixed (a target that takes no dynamic chunk), the declared dimensions fall back alike.
    """
    if not case.dynamic_axes():
        return _export_chunk(case, example, export, declared=False, chunk=chunk)
    try:
        return _export_chunk(case, example, export, declared=True, chunk=chunk)
    except Exception as exc:  # the exporter refused; a refused range still has a fixed export
        if not refuses_dynamic_range(exc):
            raise
        reason = "the exporter refused the range, so it was exported at the example's sizes: " + ": ".join(
            describe_exception(exc)
        )
        refusal = full_message(exc, limit=8000)
    result, meta = _export_chunk(case, example, export, declared=False, chunk=chunk)
    fixed = {}
    for d in case.dynamic_axes():
        fixed.setdefault(d.dim, fixed_dim_entry(d, example[d.index].shape[d.axis]))
    return result, {**meta, "dims_fixed": fixed, "dims_fixed_because": reason, "dims_fixed_refusal": refusal}


def _export_chunk(
    case: ModelCase,
    example: tuple[torch.Tensor, ...],
    export: Callable[[Any], Any],
    *,
    declared: bool,
    chunk: bool,
) -> tuple[Any, dict[str, Any]]:
    """The export with a dynamic chunk where the case streams with several chunk sizes (and
    ``chunk``), else (or where the chunk is refused) with the chunk fixed; ``declared``: the
    case's dynamic dimensions dynamic too."""
    if not chunk or not chunk_axes(case, example):
        return export(torch_dynamic_shapes(case, declared=declared)), {}
    reason = _CHUNK_REFUSALS.get((case.name, declared))
    if reason is None:
        try:
            shapes = torch_dynamic_shapes(case, example, chunk=True, declared=declared)
            return export(shapes), {"chunk_dynamic": True}
        except Exception as exc:  # any refusal of the dynamic chunk; the fixed export still has its say
            reason = f"{describe_exception(exc)[0]}: {constraint_line(exc)}"
            if type(root_cause(exc)).__name__ == "UserError":  # torch.export's own refusal
                _CHUNK_REFUSALS[(case.name, declared)] = reason
    shapes = torch_dynamic_shapes(case, declared=declared)
    return export(shapes), {"chunk_dynamic": False, "chunk_fixed_because": reason}


#: the exporters' words for a dynamic range they refuse: torch.export's (``Constraints violated
#: (h)!``, a guard that holds on part of the range, a dimension specialised to the example's
#: size), and litert_torch's lowering, which meets a dynamic dimension as the int64 minimum
#: (``broadcast_in_dim shape must have every element be nonnegative, got (-9223372036854775808,
#: 1, 1, 64)``)
_RANGE_REFUSAL = re.compile(
    r"constraints violated|satisfy the generated guard|specialized it to be a constant"
    r"|not all values of .* in the specified range"
    r"|must have every element be nonnegative, got \([^)]*-9223372036854775808",
    re.IGNORECASE,
)


def refuses_dynamic_range(exc: BaseException) -> bool:
    """Whether an export failed because a declared dynamic range was refused (then an export at
    the example's sizes is made instead), not for another reason."""
    current: BaseException | None = exc
    seen: set[int] = set()
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _RANGE_REFUSAL.search(str(current)):
            return True
        current = current.__cause__
    return False


#: (case, with its declared dynamic dimensions) whose dynamic chunk torch.export refused in this
#: process (every torch.export-based target traces the same module: one refusal is not retraced
#: by each of them)
_CHUNK_REFUSALS: dict[tuple[str, bool], str] = {}
