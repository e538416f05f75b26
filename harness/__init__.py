"""export-conformance: does an exported PyTorch model still compute what the eager model computes?

Public names are imported on first use (PEP 562), so ``import harness`` (and the pytest entry
point, which every test run in the environment loads) does not import torch until a name that
needs it is used.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

#: public name -> the submodule that defines it
_EXPORTS = {
    "STREAM_SUITES": "core.case",
    "SUITES": "core.case",
    "ExpectedFailure": "core.case",
    "JudgedWhere": "core.case",
    "Metric": "core.case",
    "MetricResult": "core.case",
    "ModelCase": "core.case",
    "StreamingSpec": "core.case",
    "expect_failures": "core.case",
    "Comparison": "core.compare",
    "Tolerance": "core.compare",
    "compare": "core.compare",
    "tol": "core.compare",
    "CaseError": "core.registry",
    "case": "core.registry",
    "cases": "core.registry",
    "register": "core.registry",
    "InputSignatureError": "core.shapes",
    "LiftedState": "core.state",
    "StateBuffer": "core.state",
    "audit_state": "core.state",
    "Artifact": "targets",
    "ArtifactError": "targets",
    "QUICK_TARGETS": "targets",
    "TORCH_EXPORT_TARGETS": "targets",
    "ExportError": "targets",
    "Runner": "targets",
    "RuntimeMissing": "targets",
    "Target": "targets",
    "register_target": "targets",
    "target": "targets",
    "targets": "targets",
    "ConformanceFailure": "core.errors",
    "HarnessError": "core.errors",
    "TargetRunError": "core.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'harness' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


class _Package(types.ModuleType):
    """Keeps the public function ``targets`` when the ``harness.targets`` subpackage is imported
    (importing it would otherwise rebind ``harness.targets`` to the package)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and name in _EXPORTS:
            return  # the public function of that name, resolved by __getattr__
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
