"""Gating an export made elsewhere: ``--artifact CASE:TARGET=PATH`` runs every suite on the user's file.

This module parses the option and hands the file to its target (``Target.adopt``), which checks
its format and its signature against the case before anything runs: a misfit is one clear
error naming the user's file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..core.registry import CaseError
from ..core.registry import case as find_case
from ..targets import Artifact, ArtifactError
from ..targets import target as find_target
from ..targets.adopt import check_signature

__all__ = ["ArtifactOverride", "check_signature", "external_artifact", "parse_artifact_option"]


@dataclass(frozen=True)
class ArtifactOverride:
    case: str
    target: str
    path: Path


def parse_artifact_option(value: str) -> ArtifactOverride:
    """Parse ``CASE:TARGET=PATH``; unknown cases or targets are a clear error."""
    head, sep, path = value.partition("=")
    case_name, colon, target_name = head.partition(":")
    if not sep or not colon or not case_name or not target_name or not path:
        raise ValueError(
            f"--conformance-artifact {value!r}: expected CASE:TARGET=PATH, a registered case and target and the "
            "exported file (`export-conformance list` names the cases and targets)"
        )
    try:
        find_case(case_name)
    except CaseError as exc:
        raise ValueError(f"--conformance-artifact {value!r}: {exc}") from None
    try:
        find_target(target_name)
    except KeyError as exc:
        raise ValueError(f"--conformance-artifact {value!r}: {exc.args[0]}") from None
    return ArtifactOverride(case_name, target_name, Path(path))


def external_artifact(override: ArtifactOverride, workdir: Path) -> Artifact:
    """The user's file as an Artifact of its target, checked against its case (``Target.adopt``,
    its private copy made under ``workdir``); raises ArtifactError naming the file on any misfit."""
    case, target = find_case(override.case), find_target(override.target)
    given = override.path
    try:
        return target.adopt(given, case, workdir)
    except ArtifactError as exc:
        message = str(exc)
        if str(given) in message or str(given.resolve().parent) in message:
            raise  # names the file, its sidecar or its state (which lie beside it)
        # a message that names no file of the user's (a target's own adopt): the file as given
        raise ArtifactError(f"{given}: {message}") from exc
