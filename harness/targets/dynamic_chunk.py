"""Streaming exports with every chunk size the case admits, or the exporter's reason why not."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..core.case import ModelCase
from ..core.errors import constraint_line, describe_exception, root_cause
from ..core.shapes import chunk_axes, torch_dynamic_shapes

__all__ = ["export_with_dynamic_chunk"]


def export_with_dynamic_chunk(
    case: ModelCase, example: tuple[torch.Tensor, ...], export: Callable[[Any], Any]
) -> tuple[Any, dict[str, Any]]:
    """Run ``export(dynamic_shapes)`` with a streaming case's chunk dynamic over the sizes it admits;
    where the exporter refuses that, export the fixed chunk and say why in the metadata.

    Returns ``(what export returned, meta)``: ``meta["chunk_dynamic"]`` (absent for a case with
    one chunk size) and, when the chunk stayed fixed, ``meta["chunk_fixed_because"]``.
    """
    if not chunk_axes(case, example):
        return export(torch_dynamic_shapes(case)), {}
    reason = _CHUNK_REFUSALS.get(case.name)
    if reason is None:
        try:
            return export(torch_dynamic_shapes(case, example, chunk=True)), {"chunk_dynamic": True}
        except Exception as exc:  # any refusal of the dynamic chunk; the fixed export still has its say
            reason = f"{describe_exception(exc)[0]}: {constraint_line(exc)}"
            if type(root_cause(exc)).__name__ == "UserError":  # torch.export's own refusal
                _CHUNK_REFUSALS[case.name] = reason
    return export(torch_dynamic_shapes(case)), {"chunk_dynamic": False, "chunk_fixed_because": reason}


#: Cases whose dynamic chunk torch.export refused in this process (every torch.export-based
#: target traces the same module: one refusal is not retraced by each of them)
_CHUNK_REFUSALS: dict[str, str] = {}
