"""The target registry: ``target(name)``, ``targets()``, ``register_target``."""

from __future__ import annotations

from .aoti_target import AotiTarget
from .base import Artifact, ArtifactError, ExportError, Runner, RuntimeMissing, Target
from .executorch_target import ExecuTorchTarget
from .onnx_legacy import LegacyOnnxTarget
from .onnx_stateful import LiftedOnnxTarget
from .onnx_target import OnnxTarget
from .openvino_target import OpenVinoTarget
from .quantized import ExecuTorchInt8Target, OnnxInt8Target
from .torch_targets import EagerTarget, TorchExportTarget, TorchScriptTarget

__all__ = [
    "Artifact",
    "ArtifactError",
    "ExportError",
    "Runner",
    "RuntimeMissing",
    "Target",
    "register_target",
    "target",
    "targets",
]

_TARGETS: dict[str, Target] = {}


def register_target(new_target: Target) -> Target:
    """Add a target; its name appears in test ids and the matrix, in registration order."""
    if new_target.name in _TARGETS and _TARGETS[new_target.name] is not new_target:
        raise ValueError(f"a target named {new_target.name!r} is already registered")
    _TARGETS[new_target.name] = new_target
    return new_target


def target(name: str) -> Target:
    """The registered target called ``name``."""
    try:
        return _TARGETS[name]
    except KeyError:
        raise KeyError(f"no target named {name!r} (registered: {', '.join(_TARGETS)})") from None


def targets() -> list[Target]:
    """All registered targets, in registration order (eager first)."""
    return list(_TARGETS.values())


for _builtin in (
    EagerTarget(),
    TorchScriptTarget(),
    TorchExportTarget(),
    AotiTarget(),
    OnnxTarget(),
    LegacyOnnxTarget(),
    LiftedOnnxTarget(),
    ExecuTorchTarget("xnnpack"),
    ExecuTorchTarget("portable"),
    OpenVinoTarget(),
    OnnxInt8Target(),
    ExecuTorchInt8Target(),
):
    register_target(_builtin)
