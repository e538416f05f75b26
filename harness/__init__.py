"""export-conformance: does an exported PyTorch model still compute what the eager model computes?"""

from __future__ import annotations

from .case import SUITES, ExpectedFailure, Metric, MetricResult, ModelCase
from .compare import Comparison, Tolerance, compare, tol
from .registry import CaseError, case, cases, register
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
    "SUITES",
    "Artifact",
    "ArtifactError",
    "CaseError",
    "Comparison",
    "ExpectedFailure",
    "ExportError",
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
