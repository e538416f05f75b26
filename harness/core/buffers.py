"""Snapshots of a module's buffers, to put a stateful module back where it was."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["buffer_snapshot", "preserved_buffers", "restore_buffers"]


def buffer_snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of every buffer, to return a stateful module to this point later."""
    return {name: buf.detach().clone() for name, buf in module.named_buffers()}


def restore_buffers(module: torch.nn.Module, snapshot: dict[str, torch.Tensor]) -> None:
    """Copy a snapshot back into the module's buffers (names not in the snapshot are left)."""
    with torch.no_grad():
        for name, buf in module.named_buffers():
            if name in snapshot:
                buf.copy_(snapshot[name])


@contextlib.contextmanager
def preserved_buffers(module: torch.nn.Module) -> Iterator[dict[str, torch.Tensor]]:
    """Run a block that may advance the module's state; its buffers are put back afterwards, and
    buffers the block registered (a lazy initialisation) are removed. Yields the snapshot taken on
    entry (the state the block started from)."""
    initial = buffer_snapshot(module)
    try:
        yield initial
    finally:
        restore_buffers(module, initial)
        for name in [n for n, _ in module.named_buffers() if n not in initial]:  # registered in the block
            owner, _, attribute = name.rpartition(".")
            delattr(module.get_submodule(owner) if owner else module, attribute)
