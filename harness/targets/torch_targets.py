"""Targets that stay in PyTorch: eager (the reference), TorchScript trace, torch.export."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..buffers import buffer_snapshot, restore_buffers
from ..case import ModelCase
from ..shapes import torch_dynamic_shapes
from .base import Artifact, Runner, Target
from .formats import describe_format

__all__ = ["EagerTarget", "ModuleRunner", "TorchExportTarget", "TorchScriptTarget"]


class ModuleRunner(Runner):
    """Runs any callable torch module; reset restores the buffers it had when loaded."""

    def __init__(self, artifact: Artifact, module: Any) -> None:
        super().__init__(artifact)
        self.module = module
        self._initial = buffer_snapshot(module)

    def _run_impl(self, inputs: tuple[torch.Tensor, ...]) -> Sequence[Any]:
        with torch.no_grad():
            out = self.module(*inputs)
        return tuple(out) if isinstance(out, (tuple, list)) else (out,)

    def _reset_impl(self) -> None:
        restore_buffers(self.module, self._initial)

    def state(self) -> dict[str, np.ndarray] | None:
        return {name: buf.detach().cpu().numpy().copy() for name, buf in self.module.named_buffers()}


class EagerTarget(Target):
    """The reference: the case's own module, rebuilt and loaded from a saved state_dict."""

    name = "eager"
    fixed_shapes = False
    suffix = ".eager.pt"
    description = "the eager nn.Module (reference)"

    def _export_impl(self, module, example, case, path):
        torch.save(module.state_dict(), path)
        return None

    def _load_impl(self, artifact: Artifact) -> Runner:
        from ..registry import case as find_case

        module = find_case(artifact.case).build()
        state = torch.load(artifact.path, map_location="cpu", weights_only=True)
        module.load_state_dict(state)
        return ModuleRunner(artifact, module.eval())


class TorchScriptTarget(Target):
    """``torch.jit.trace``; buffers are restored after tracing, since tracing runs forward once."""

    name = "torchscript"
    fixed_shapes = False
    suffix = ".ts.pt"
    description = "torch.jit.trace, saved with torch.jit.save"
    reset_state_after_trace = True

    def _export_impl(self, module, example, case: ModelCase, path: Path):
        initial = buffer_snapshot(module)
        traced = torch.jit.trace(module, example, check_trace=False)
        if self.reset_state_after_trace:
            restore_buffers(traced, initial)
        torch.jit.save(traced, str(path))
        return {"state_reset_after_trace": self.reset_state_after_trace}

    def _load_impl(self, artifact: Artifact) -> Runner:
        return ModuleRunner(artifact, torch.jit.load(str(artifact.path), map_location="cpu"))

    def format_problem(self, path: Path, example: object = None) -> str | None:
        kind = describe_format(path)
        return None if kind == "a TorchScript archive" else f"is {kind}, not a TorchScript archive (torch.jit.save)"


class TorchExportTarget(Target):
    """``torch.export.export`` saved as .pt2 and run as a module (``ExportedProgram.module()``)."""

    name = "torch-export"
    suffix = ".pt2"
    description = "torch.export.export, run via ExportedProgram.module()"

    def _export_impl(self, module, example, case, path):
        program = torch.export.export(
            module, example, dynamic_shapes=torch_dynamic_shapes(case), strict=False
        )
        torch.export.save(program, str(path))
        return None

    def _load_impl(self, artifact: Artifact) -> Runner:
        program = torch.export.load(str(artifact.path))
        return ModuleRunner(artifact, program.module())

    def format_problem(self, path: Path, example: object = None) -> str | None:
        kind = describe_format(path)
        return None if kind == "a torch.export archive" else f"is {kind}, not a torch.export archive (.pt2)"
