"""Targets that stay in PyTorch: eager (the reference), TorchScript trace, torch.export."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.buffers import buffer_snapshot, restore_buffers
from ..core.case import ModelCase
from ..core.pristine import built, fresh_copy
from ..core.registry import case as find_case
from .base import EAGER, Artifact, Runner, Target, export_with_dynamic_chunk
from .formats import describe_format
from .taps import Tap, Taps, first_tensor

__all__ = [
    "EagerTarget",
    "ModuleRunner",
    "NodeTappedRunner",
    "ReplayTappedRunner",
    "TorchExportTarget",
    "TorchScriptTarget",
]


class ModuleRunner(Runner):
    """Runs any callable torch module; reset returns it to its state when loaded.

    An eager module may keep state anywhere (tensor attributes, numbers, buffers it creates on
    its first call): it is reset to a copy of itself as loaded. A TorchScript or torch.export
    module keeps only its buffers (exporters froze the rest as constants): those are put back.
    """

    def __init__(self, artifact: Artifact, module: Any) -> None:
        super().__init__(artifact)
        self.module = module
        self._initial = buffer_snapshot(module)
        exported = isinstance(module, (torch.jit.ScriptModule, torch.fx.GraphModule))
        self._as_loaded = None if exported else fresh_copy(module)

    def _run_impl(self, inputs: tuple[torch.Tensor, ...]) -> Sequence[Any]:
        with torch.no_grad():
            out = self.module(*inputs)
        return tuple(out) if isinstance(out, (tuple, list)) else (out,)

    def _reset_impl(self) -> None:
        if self._as_loaded is not None:
            self.module = fresh_copy(self._as_loaded)
        else:
            restore_buffers(self.module, self._initial)

    def state(self) -> dict[str, np.ndarray] | None:
        return {name: buf.detach().cpu().numpy().copy() for name, buf in self.module.named_buffers()}


def _leaf_records(eager: Sequence[Any]) -> list[Any]:
    """Eager records of modules with no recorded module inside them (where replay is exact)."""
    paths = [r.module_path for r in eager]
    return [
        r
        for r in eager
        if r.path == r.module_path
        and not any(p != r.path and (r.path == "" or p.startswith(r.path + ".")) for p in paths)
    ]


class ReplayTappedRunner(ModuleRunner):
    """TorchScript: a loaded module keeps eager's submodule names but no hooks, so each leaf
    module is *replayed* on the inputs eager gave it, with the state it had before that call:
    the errors are local to each module (where a module starts to compute something else), not
    the error carried from upstream."""

    def __init__(self, artifact: Artifact, module: Any) -> None:
        super().__init__(artifact, module)
        self._before = buffer_snapshot(module)

    def _run_impl(self, inputs: tuple[torch.Tensor, ...]) -> Sequence[Any]:
        self._before = buffer_snapshot(self.module)
        return super()._run_impl(inputs)

    def taps(self, eager: Sequence[Any]) -> Any:
        after = buffer_snapshot(self.module)
        submodules = dict(self.module.named_modules())
        taps, missing = [], []
        for record in _leaf_records(eager):
            sub = submodules.get(record.path)
            if sub is None or not record.inputs:
                missing.append(record.path)
                continue
            restore_buffers(self.module, self._before)
            try:
                with torch.no_grad():
                    value = first_tensor(sub(*record.inputs))
            except Exception:  # traced away (an Identity keeps no forward of its own)
                missing.append(record.path)
                continue
            if value is not None:
                taps.append(Tap(record.path, record.path, value.detach().numpy().copy()))
        restore_buffers(self.module, after)
        notes = (
            [
                f"{len(missing)} leaf module(s) not replayable in the TorchScript module (absent or traced away)"
            ]
            if missing
            else []
        )
        return Taps(
            taps,
            "TorchScript submodules replayed one by one on eager's inputs (local errors; "
            "containers are not replayed)",
            local=True,
            notes=notes,
        )


def _module_of(node: torch.fx.Node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return ""
    path = list(stack.values())[-1][0]
    return path.removeprefix("L__self__").lstrip("._")


class NodeTappedRunner(ModuleRunner):
    """torch.export: the unlifted graph run node by node; each node's ``nn_module_stack`` names
    the eager module it belongs to."""

    def __init__(self, artifact: Artifact, module: torch.fx.GraphModule) -> None:
        super().__init__(artifact, module)
        self._taps: list[Any] = []

    def _run_impl(self, inputs: tuple[torch.Tensor, ...]) -> Sequence[Any]:
        values: list[Any] = []

        class Recorder(torch.fx.Interpreter):
            def run_node(self, node: torch.fx.Node) -> Any:
                result = super().run_node(node)
                if (
                    node.op == "call_function"
                    and isinstance(result, torch.Tensor)
                    and result.is_floating_point()
                ):
                    values.append(Tap(node.name, _module_of(node), result.detach().numpy().copy()))
                return result

        with torch.no_grad():
            out = Recorder(self.module).run(*inputs)
        self._taps = values
        return tuple(out) if isinstance(out, (tuple, list)) else (out,)

    def taps(self, eager: Sequence[Any]) -> Any:
        return Taps(list(self._taps), "torch.export graph run node by node, modules from nn_module_stack")


class EagerTarget(Target):
    """The reference: the case's own module, rebuilt and loaded from a saved state_dict."""

    name = EAGER
    fixed_shapes = False
    quick = True
    suffix = ".eager.pt"
    description = "the eager nn.Module (reference)"

    def _export_impl(self, module, example, case, path):
        torch.save(module.state_dict(), path)
        return None

    def _load_impl(self, artifact: Artifact) -> Runner:
        module = built(find_case(artifact.case).build)
        state = torch.load(artifact.path, map_location="cpu", weights_only=True)
        module.load_state_dict(state)
        return ModuleRunner(artifact, module.eval())


class TorchScriptTarget(Target):
    """``torch.jit.trace``; buffers are restored after tracing, since tracing runs forward once."""

    name = "torchscript"
    standalone = "torch_program"
    fixed_shapes = False
    quick = True
    suffix = ".ts.pt"
    description = "torch.jit.trace, saved with torch.jit.save"
    reset_state_after_trace = True

    def standalone_options(self) -> dict[str, Any]:
        return {"loader": "jit"}

    def _export_impl(self, module, example, case: ModelCase, path: Path):
        initial = buffer_snapshot(module)
        traced = torch.jit.trace(module, example, check_trace=False)
        if self.reset_state_after_trace:
            restore_buffers(traced, initial)
        torch.jit.save(traced, str(path))
        return {"state_reset_after_trace": self.reset_state_after_trace}

    def _load_impl(self, artifact: Artifact) -> Runner:
        return ModuleRunner(artifact, torch.jit.load(str(artifact.path), map_location="cpu"))

    def tapped_runner(self, artifact: Artifact, case: ModelCase) -> Runner:
        return ReplayTappedRunner(artifact, torch.jit.load(str(artifact.path), map_location="cpu"))

    def weights(self, artifact: Artifact) -> dict[str, np.ndarray] | None:
        return {k: v.numpy() for k, v in torch.jit.load(str(artifact.path)).state_dict().items()}

    def format_problem(self, path: Path, example: object = None) -> str | None:
        kind = describe_format(path)
        return (
            None
            if kind == "a TorchScript archive"
            else f"is {kind}, not a TorchScript archive (torch.jit.save)"
        )


class TorchExportTarget(Target):
    """``torch.export.export`` saved as .pt2 and run as a module (``ExportedProgram.module()``)."""

    name = "torch-export"
    standalone = "torch_program"
    suffix = ".pt2"
    via_torch_export = True
    carries_state = True
    quick = True
    description = "torch.export.export, run via ExportedProgram.module()"

    def standalone_options(self) -> dict[str, Any]:
        return {"loader": "export"}

    def _export_impl(self, module, example, case, path):
        program, meta = export_with_dynamic_chunk(
            case,
            example,
            lambda shapes: torch.export.export(module, example, dynamic_shapes=shapes, strict=False),
        )
        torch.export.save(program, str(path))
        return meta

    def _load_impl(self, artifact: Artifact) -> Runner:
        program = torch.export.load(str(artifact.path))
        return ModuleRunner(artifact, program.module())

    def tapped_runner(self, artifact: Artifact, case: ModelCase) -> Runner:
        return NodeTappedRunner(artifact, torch.export.load(str(artifact.path)).module())

    def weights(self, artifact: Artifact) -> dict[str, np.ndarray] | None:
        program = torch.export.load(str(artifact.path))
        return {k: v.detach().numpy() for k, v in program.state_dict.items()}

    def input_shapes(self, path: Path) -> list[tuple[str, list[int | None]]] | None:
        try:
            program = torch.export.load(str(path))
        except Exception:  # format_problem and the loader say what is wrong with the file
            return None
        user_inputs = [s.arg.name for s in program.graph_signature.input_specs if s.kind.name == "USER_INPUT"]
        nodes = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
        shapes = []
        for name in user_inputs:
            value = nodes[name].meta.get("val") if name in nodes else None
            if value is None or not hasattr(value, "shape"):
                return None
            shapes.append((name, [d if isinstance(d, int) else None for d in value.shape]))
        return shapes

    def format_problem(self, path: Path, example: object = None) -> str | None:
        kind = describe_format(path)
        return None if kind == "a torch.export archive" else f"is {kind}, not a torch.export archive (.pt2)"
