"""The target registry: ``target(name)``, ``targets()``, ``register_target``; and the target
lists cases name, computed from the registered targets: ``TORCH_EXPORT_TARGETS`` (targets whose
``via_torch_export`` is set) and ``QUICK_TARGETS`` (``quick``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .aoti_target import AotiTarget
from .base import EAGER, Artifact, ArtifactError, ExportError, Runner, RuntimeMissing, Target, TensorDecl
from .executorch_target import ExecuTorchTarget
from .litert_target import LiftedLiteRtTarget, LiteRtInt8Target, LiteRtTarget
from .onnx_legacy import LegacyOnnxTarget
from .onnx_stateful import LiftedOnnxTarget
from .onnx_target import OnnxTarget
from .openvino_target import OpenVinoTarget
from .quantized import ExecuTorchInt8Target, OnnxInt8Target
from .torch_targets import EagerTarget, TorchExportTarget, TorchScriptTarget

__all__ = [
    "EAGER",
    "QUICK_TARGETS",
    "TORCH_EXPORT_TARGETS",
    "Artifact",
    "ArtifactError",
    "ExportError",
    "Runner",
    "RuntimeMissing",
    "Target",
    "TensorDecl",
    "quick_targets",
    "register_target",
    "target",
    "targets",
    "torch_export_targets",
]

if TYPE_CHECKING:
    TORCH_EXPORT_TARGETS: tuple[str, ...]
    QUICK_TARGETS: tuple[str, ...]

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


def torch_export_targets() -> tuple[str, ...]:
    """The registered targets built on torch.export (they refuse what it refuses), in order."""
    return tuple(t.name for t in _TARGETS.values() if t.via_torch_export)


def quick_targets() -> tuple[str, ...]:
    """The registered targets whose exports take seconds, not minutes, in order."""
    return tuple(t.name for t in _TARGETS.values() if t.quick)


def __getattr__(name: str) -> tuple[str, ...]:
    """``TORCH_EXPORT_TARGETS`` and ``QUICK_TARGETS``, from the targets registered when asked."""
    if name == "TORCH_EXPORT_TARGETS":
        return torch_export_targets()
    if name == "QUICK_TARGETS":
        return quick_targets()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    LiteRtTarget(),
    LiftedLiteRtTarget(),
    OnnxInt8Target(),
    ExecuTorchInt8Target(),
    LiteRtInt8Target(),
):
    register_target(_builtin)
