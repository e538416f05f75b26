"""The user's files (``--conformance-artifact CASE:TARGET=PATH``): every file given is judged, or
the run says why not before anything runs; nothing of the repository is written from them.

- Two different files for one case and target are refused: the second would replace the first
  unjudged, and a broken file would pass with exit 0.
- A file for which no cell would be generated (a target left out by ``--conformance-targets``, a
  pair the tier does not run, an approximate target for a case with no task metric) is one
  usage error that says what to declare or pass.
- ``--snapshot-update`` with a user's file would record its outputs as the repository's golden
  snapshots: refused unless ``--conformance-snapshots-with-artifacts`` says so, as the baseline
  update is unless ``--conformance-baseline-with-artifacts``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import pytest

from ..core.case import ModelCase
from ..core.errors import HarnessError, describe_exception
from ..core.registry import CaseError
from ..core.registry import case as find_case
from ..run.external import ArtifactOverride, external_artifact, parse_artifact_option
from ..run.recorded import Recording, RecordingError
from ..targets import Artifact, ArtifactError, Target
from ..targets import target as find_target
from .suites import in_quick_tier, pair_runs

__all__ = ["check_writes_allowed", "take_recordings", "take_user_files", "unjudged_reason"]


def unjudged_reason(
    case: ModelCase, target: Target, *, selected: Sequence[str] | None, tier: str
) -> str | None:
    """Why no cell would judge a file for (case, target) in this run, or None when some would."""
    if selected is not None and target.name not in selected:
        return (
            f"--conformance-targets={','.join(selected)} leaves out {target.name}: add it to judge the file"
        )
    if tier == "ci" and not in_quick_tier(case, target):
        return (
            f"the ci tier does not run case {case.name!r} on {target.name} (the case's ci_targets / "
            "ci_costly_targets): run with --conformance-tier=nightly, or declare it there"
        )
    if not pair_runs(case, target, streaming=False, quick=tier == "ci"):
        if target.approximate and case.approximate_metric is None:
            note = target.judging_note()
            return (
                f"{target.name} is judged by the case's task metric ({note or target.description}), and case "
                f"{case.name!r} declares none: declare ModelCase.approximate_metric to gate such files"
            )
        return f"no suite applies to case {case.name!r} on {target.name}"
    return None


def take_user_files(
    values: Sequence[str], workdir: Path, *, selected: Sequence[str] | None, tier: str
) -> dict[tuple[str, str], Artifact]:
    """Every ``--conformance-artifact`` value as an adopted Artifact, keyed by (case, target);
    raises ``pytest.UsageError`` (one message naming the file) for a malformed value, a file
    that does not fit, two files for one pair, or a file no cell would judge."""
    given: dict[tuple[str, str], ArtifactOverride] = {}
    for value in values:
        try:
            override = parse_artifact_option(value)
        except ValueError as exc:
            raise pytest.UsageError(str(exc)) from exc
        key = (override.case, override.target)
        earlier = given.get(key)
        if earlier is not None and _same_file(earlier.path, override.path):
            continue  # the same file named twice: judged once
        if earlier is not None:
            raise pytest.UsageError(
                f"--conformance-artifact gives two files for {override.case}:{override.target} ({earlier.path} "
                f"and {override.path}): one file per case and target in a run (the second would replace the "
                "first unjudged); judge each in a run of its own"
            )
        reason = unjudged_reason(
            find_case(override.case), find_target(override.target), selected=selected, tier=tier
        )
        if reason:
            raise pytest.UsageError(f"{override.path}: no cell would judge this file: {reason}")
        given[key] = override
    artifacts = {}
    for key, override in given.items():
        try:
            artifacts[key] = external_artifact(override, workdir)
        except (ArtifactError, HarnessError) as exc:  # the file's misfit, or the case's own bug
            raise pytest.UsageError(str(exc)) from exc
        except Exception as exc:  # never an INTERNALERROR: one line naming the file
            kind, line = describe_exception(exc)
            raise pytest.UsageError(f"{override.path}: the file could not be taken ({kind}: {line})") from exc
    return artifacts


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:
        return a == b


def check_writes_allowed(config: pytest.Config, has_user_files: bool) -> None:
    """Refuse to write the repository's golden snapshots from a user's file (``--snapshot-update``
    with ``--conformance-artifact``) unless ``--conformance-snapshots-with-artifacts`` asks for it."""
    if not has_user_files or config.getoption("conformance_snapshots_with_artifacts", default=False):
        return
    if config.getoption("update_snapshots", default=False) or config.getoption(
        "update_new_snapshots_only", default=False
    ):
        raise pytest.UsageError(
            "--snapshot-update with --conformance-artifact would record a user's file's outputs as the "
            "golden snapshots; add --conformance-snapshots-with-artifacts if that is what you want"
        )


def take_recordings(
    values: Sequence[str],
    overrides: dict[tuple[str, str], Artifact],
    *,
    selected: Sequence[str] | None,
    tier: str,
) -> dict[tuple[str, str], Recording]:
    """Every ``--conformance-recorded CASE:TARGET=DIR`` as the device's recorded outputs, keyed by
    (case, target); the bundle's model file joins ``overrides`` as a user's file (strictly
    judged, no expected failure or baseline applied), described by the sidecar ``bundle`` wrote
    beside it (or the ``--conformance-artifact`` given for the pair): nothing is loaded here,
    the device ran it. Raises ``pytest.UsageError`` (one message naming the file) for a
    malformed value, an unreadable bundle or outputs, a bundle of another case or target, or a
    pair no cell would judge."""
    found: dict[tuple[str, str], Recording] = {}
    for value in values:
        head, sep, folder = value.partition("=")
        case_name, colon, target_name = head.partition(":")
        if not sep or not colon or not case_name or not target_name or not folder:
            raise pytest.UsageError(f"--conformance-recorded {value!r}: expected CASE:TARGET=DIR")
        try:
            recording = Recording.read(Path(folder))
        except RecordingError as exc:
            raise pytest.UsageError(str(exc)) from None
        manifest = recording.manifest
        key = (case_name, target_name)
        if (manifest.case, manifest.target) != key:
            raise pytest.UsageError(
                f"{Path(folder) / 'manifest.json'}: a bundle of {manifest.case}:{manifest.target}, not {case_name}:{target_name}"
            )
        try:
            case, target = find_case(case_name), find_target(target_name)
        except (CaseError, KeyError) as exc:
            raise pytest.UsageError(f"--conformance-recorded {value!r}: {exc}") from None
        reason = unjudged_reason(case, target, selected=selected, tier=tier)
        if reason:
            raise pytest.UsageError(f"{folder}: no cell would judge these outputs: {reason}")
        if key not in overrides:
            model = manifest.root / manifest.model
            try:
                described = Artifact.read_sidecar(model)
            except ArtifactError as exc:
                raise pytest.UsageError(str(exc)) from None
            overrides[key] = dataclasses.replace(described, meta={**described.meta, "user_file": str(model)})
        found[key] = recording
    return found
