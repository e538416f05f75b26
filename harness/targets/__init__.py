"""The target registry: ``target(name)``, ``targets()``, ``register_target``; and the target
lists cases name, computed from the registered targets: ``TORCH_EXPORT_TARGETS`` (targets whose
``via_torch_export`` is set) and ``QUICK_TARGETS`` (``quick``).

Importing this package imports no target module (PEP 562): the built-in targets are imported
and registered on first use of the registry, and the public classes on first access. The pytest
entry point reads the built-in targets' command-line options (``builtin_runtime_options``) from
light modules without importing torch or any runtime.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .options import RuntimeOption, unique_options

if TYPE_CHECKING:
    from .aoti_target import AotiTarget  # noqa: F401  (importable from here, loaded on first use)
    from .base import EAGER, Artifact, ArtifactError, ExportError, Runner, RuntimeMissing, Target, TensorDecl
    from .executorch_target import ExecuTorchTarget  # noqa: F401  (importable from here, loaded on first use)
    from .litert_target import LiftedLiteRtTarget, LiteRtInt8Target, LiteRtTarget  # noqa: F401  (importable from here, loaded on first use)
    from .onnx_legacy import LegacyOnnxTarget  # noqa: F401  (importable from here, loaded on first use)
    from .onnx_stateful import LiftedOnnxTarget  # noqa: F401  (importable from here, loaded on first use)
    from .onnx_target import OnnxTarget  # noqa: F401  (importable from here, loaded on first use)
    from .openvino_target import OpenVinoTarget  # noqa: F401  (importable from here, loaded on first use)
    from .quantized import ExecuTorchInt8Target, OnnxInt8Target  # noqa: F401  (importable from here, loaded on first use)
    from .torch_targets import EagerTarget, TorchExportTarget, TorchScriptTarget  # noqa: F401  (importable from here, loaded on first use)

    TORCH_EXPORT_TARGETS: tuple[str, ...]
    QUICK_TARGETS: tuple[str, ...]

__all__ = [
    "EAGER",
    "QUICK_TARGETS",
    "TORCH_EXPORT_TARGETS",
    "Artifact",
    "ArtifactError",
    "ExportError",
    "Runner",
    "RuntimeMissing",
    "RuntimeOption",
    "Target",
    "TensorDecl",
    "builtin_runtime_options",
    "quick_targets",
    "register_target",
    "target",
    "targets",
    "torch_export_targets",
]

#: name -> the submodule that defines it, imported when the name is first asked for
_LAZY = {
    **dict.fromkeys(
        (
            "EAGER",
            "Artifact",
            "ArtifactError",
            "ExportError",
            "Runner",
            "RuntimeMissing",
            "Target",
            "TensorDecl",
        ),
        "base",
    ),
    "AotiTarget": "aoti_target",
    "ExecuTorchTarget": "executorch_target",
    "LiftedLiteRtTarget": "litert_target",
    "LiteRtInt8Target": "litert_target",
    "LiteRtTarget": "litert_target",
    "LegacyOnnxTarget": "onnx_legacy",
    "LiftedOnnxTarget": "onnx_stateful",
    "OnnxTarget": "onnx_target",
    "OpenVinoTarget": "openvino_target",
    "ExecuTorchInt8Target": "quantized",
    "OnnxInt8Target": "quantized",
    "EagerTarget": "torch_targets",
    "TorchExportTarget": "torch_targets",
    "TorchScriptTarget": "torch_targets",
}

#: The built-in targets, in registration order (eager first): class name and arguments.
_BUILTINS: tuple[tuple[str, tuple[Any, ...]], ...] = (
    ("EagerTarget", ()),
    ("TorchScriptTarget", ()),
    ("TorchExportTarget", ()),
    ("AotiTarget", ()),
    ("OnnxTarget", ()),
    ("LegacyOnnxTarget", ()),
    ("LiftedOnnxTarget", ()),
    ("ExecuTorchTarget", ("xnnpack",)),
    ("ExecuTorchTarget", ("portable",)),
    ("OpenVinoTarget", ()),
    ("LiteRtTarget", ()),
    ("LiftedLiteRtTarget", ()),
    ("OnnxInt8Target", ()),
    ("ExecuTorchInt8Target", ()),
    ("LiteRtInt8Target", ()),
)

#: The light modules that declare the built-in targets' ``runtime_options`` (a module's
#: ``RUNTIME_OPTIONS``-like tuple named here); ``tests/test_hookspec.py`` checks that they are
#: exactly the options the built-in targets declare.
_OPTION_DECLARATIONS = (("onnx_runtime", "ORT_OPTIONS"), ("openvino_settings", "OPENVINO_OPTIONS"))

_TARGETS: dict[str, Target] = {}
_builtins_registered = False


def builtin_runtime_options() -> list[RuntimeOption]:
    """The command-line options of the built-in targets, once each, in order; imports neither
    torch nor a runtime (the pytest entry point adds them to its option group)."""
    declared = [
        option
        for module, name in _OPTION_DECLARATIONS
        for option in getattr(importlib.import_module(f".{module}", __name__), name)
    ]
    return unique_options(declared)


def _register_builtins() -> None:
    global _builtins_registered
    if _builtins_registered:
        return
    _builtins_registered = True  # before the imports: a target module that asks the registry is not a loop
    try:
        builtins = [__getattr__(cls)(*args) for cls, args in _BUILTINS]
    except BaseException:
        _builtins_registered = False
        raise
    for builtin in builtins:  # first: every registry function calls this before it adds or reads
        _TARGETS[builtin.name] = builtin


def register_target(new_target: Target) -> Target:
    """Add a target; its name appears in test ids and the matrix, in registration order."""
    _register_builtins()
    if new_target.name in _TARGETS and _TARGETS[new_target.name] is not new_target:
        raise ValueError(f"a target named {new_target.name!r} is already registered")
    _TARGETS[new_target.name] = new_target
    return new_target


def target(name: str) -> Target:
    """The registered target called ``name``."""
    _register_builtins()
    try:
        return _TARGETS[name]
    except KeyError:
        raise KeyError(f"no target named {name!r} (registered: {', '.join(_TARGETS)})") from None


def targets() -> list[Target]:
    """All registered targets, in registration order (eager first)."""
    _register_builtins()
    return list(_TARGETS.values())


def torch_export_targets() -> tuple[str, ...]:
    """The registered targets built on torch.export (they refuse what it refuses), in order."""
    return tuple(t.name for t in targets() if t.via_torch_export)


def quick_targets() -> tuple[str, ...]:
    """The registered targets whose exports take seconds, not minutes, in order."""
    return tuple(t.name for t in targets() if t.quick)


def __getattr__(name: str) -> Any:
    """The public classes on first access; ``TORCH_EXPORT_TARGETS`` and ``QUICK_TARGETS`` from
    the targets registered when asked."""
    if name == "TORCH_EXPORT_TARGETS":
        return torch_export_targets()
    if name == "QUICK_TARGETS":
        return quick_targets()
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
