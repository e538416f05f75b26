"""Snapshots of a module's buffers, to put an exported module (TorchScript, torch.export) back
where it was: exporters keep state only in buffers. An eager module is never put back; runs use
copies of it (:mod:`harness.core.pristine`)."""

from __future__ import annotations

import torch

__all__ = ["buffer_snapshot", "restore_buffers"]


def buffer_snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of every buffer, to return a stateful module to this point later."""
    return {name: buf.detach().clone() for name, buf in module.named_buffers()}


def restore_buffers(module: torch.nn.Module, snapshot: dict[str, torch.Tensor]) -> None:
    """Copy a snapshot back into the module's buffers (names not in the snapshot are left)."""
    with torch.no_grad():
        for name, buf in module.named_buffers():
            if name in snapshot:
                buf.copy_(snapshot[name])
