"""An exported model on disk: ``Artifact`` (the file, its sidecar metadata and the files it needs)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import target as find_target  # the registry: targets/__init__ imports no target module

__all__ = ["Artifact", "ArtifactError", "read_initial_state"]


class ArtifactError(ValueError):
    """An artifact file that cannot be loaded or does not fit its case; names the file."""


@dataclass(frozen=True)
class Artifact:
    """An exported model on disk plus what is needed to load and check it."""

    path: Path
    target: str
    case: str
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def files(self) -> list[Path]:
        """The artifact file and the files it needs beside it: its format's companions (its
        target's ``companion_files``: an OpenVINO IR's weights, ONNX external data) and its initial
        state (``meta["state_file"]``); not the sidecar. Files may be absent (a broken export)."""
        try:
            companions = find_target(self.target).companion_files(Path(self.path))
        except KeyError:  # a target not registered in this process: no companions known
            companions = []
        state = self.meta.get("state_file")
        return [Path(self.path), *companions, *([Path(self.path).with_name(state)] if state else [])]

    def write_sidecar(self) -> Path:
        sidecar = self.path.with_name(self.path.name + ".json")
        body = {
            "path": self.path.name,
            "target": self.target,
            "case": self.case,
            "input_names": list(self.input_names),
            "output_names": list(self.output_names),
            "meta": self.meta,
        }
        sidecar.write_text(json.dumps(body, indent=2, sort_keys=True))
        return sidecar

    @classmethod
    def read_sidecar(cls, path: Path) -> Artifact:
        sidecar = path.with_name(path.name + ".json")
        try:
            body = json.loads(sidecar.read_text())
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"{sidecar}: cannot read artifact metadata ({exc})") from exc
        return cls(
            path=path,
            target=body["target"],
            case=body["case"],
            input_names=tuple(body["input_names"]),
            output_names=tuple(body["output_names"]),
            meta=body.get("meta", {}),
        )


def read_initial_state(artifact: Artifact, names: Sequence[str]) -> dict[str, np.ndarray]:
    """A lifted-state artifact's initial state by name, from the ``.state.npz`` file its sidecar
    names (``meta["state_file"]``, beside the artifact); ArtifactError naming that file where it
    cannot be read or lacks a name."""
    state_file = Path(artifact.path).with_name(artifact.meta.get("state_file", ""))
    try:
        with np.load(state_file) as stored:
            return {name: stored[name] for name in names}
    except (OSError, KeyError, ValueError) as exc:
        raise ArtifactError(f"{state_file}: cannot read the initial state ({exc})") from exc
