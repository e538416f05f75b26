"""export-conformance: does an exported PyTorch model still compute what the eager model computes?"""

from __future__ import annotations

from .case import (
    STREAM_SUITES,
    SUITES,
    TORCH_EXPORT_TARGETS,
    ExpectedFailure,
    Metric,
    MetricResult,
    ModelCase,
    StreamingSpec,
    expect_failures,
)
from .compare import Comparison, Tolerance, compare, tol
from .registry import CaseError, case, cases, register
from .shapes import InputSignatureError
from .state import LiftedState, StateBuffer, audit_state
from .targets import (
    Artifact,
    ArtifactError,
    ExportError,
    Runner,
    RuntimeMissing,
    Target,
    register_target,
    target,
    targets,
)

__all__ = [
    "TORCH_EXPORT_TARGETS",
    "STREAM_SUITES",
    "expect_failures",
    "SUITES",
    "LiftedState",
    "StateBuffer",
    "StreamingSpec",
    "audit_state",
    "Artifact",
    "ArtifactError",
    "CaseError",
    "Comparison",
    "ExpectedFailure",
    "ExportError",
    "InputSignatureError",
    "Metric",
    "MetricResult",
    "ModelCase",
    "Runner",
    "RuntimeMissing",
    "Target",
    "Tolerance",
    "case",
    "cases",
    "compare",
    "register",
    "register_target",
    "target",
    "targets",
    "tol",
]
