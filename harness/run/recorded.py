"""Outputs recorded elsewhere (a phone, a board), judged as the target's run.

``export-conformance bundle`` writes a case's canonical inputs and eager's outputs into a folder
in the runtime's own test format, with a ``manifest.json`` saying which canonical input and call
each test set is (:class:`Manifest`). A device runs the sets and writes what it computed under
``outputs/`` in the same folder; ``export-conformance judge`` reads them back here
(:class:`Recording`) and hands the suites a :class:`RecordedRunner` instead of a loaded runtime:
its ``run`` answers the recorded outputs of the call whose input bytes it is fed, in order, so
every cell judges the device's run with its own judge, as ``check --artifact`` judges a file.

What the device did not record is never answered: a call no recorded set has (another chunk
size, a generated example, altered rows) or a second run of a stream after ``reset()`` raises
:class:`NotRecorded`, a skip that says so, never a fail and never a silent pass. The suites whose
declared evidence (``Suite.evidence``) a recording cannot hold are skipped before they run
(:meth:`Recording.unrecorded`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from ..targets import Artifact, Runner
from .evidence import Need

__all__ = [
    "MANIFEST",
    "OUTPUTS",
    "RECORDED_NEEDS",
    "Manifest",
    "NotRecorded",
    "RecordedRunner",
    "Recording",
    "RecordingError",
    "TestSet",
    "call_key",
    "read_tensor_file",
]

#: The bundle's table of contents, at the top of its folder.
MANIFEST = "manifest.json"
#: Where a device writes what it computed, inside the bundle's folder.
OUTPUTS = "outputs"
FORMAT = "export-conformance bundle"
VERSION = 1

#: The evidence a recording holds: a freshly loaded program fed each bundled input once, from its
#: start (which also gives eager's offline output and the file's weights their meaning). A replay
#: after reset, other chunk sizes, altered rows, batches, resized calls and generated examples
#: are not recorded.
RECORDED_NEEDS = frozenset({Need.CANONICAL, Need.FRESH, Need.START_STATE, Need.OFFLINE, Need.WEIGHTS})


class RecordingError(ValueError):
    """A bundle folder or a device's outputs that cannot be read: names the file and the problem."""


class NotRecorded(pytest.skip.Exception):  # type: ignore[misc,name-defined]
    """A run the device did not record: the cell is a skip that says so (pytest's skip passes
    through the harness's ``except Exception`` around a target's runs, as it must)."""


@dataclass(frozen=True)
class TestSet:
    """One test set of a bundle: a folder, the canonical input it belongs to and its call."""

    __test__ = False  # not a pytest test class

    folder: str
    input: str
    call: int


@dataclass(frozen=True)
class Manifest:
    """What a bundle holds: the case and target, the model file, the graph's inputs and outputs as
    the test sets store them, which of them are the case's, and the sets in stream order."""

    root: Path
    case: str
    target: str
    model: str
    graph_inputs: tuple[str, ...]
    graph_outputs: tuple[str, ...]
    #: the graph inputs a call is matched by (the case's inputs but explicit or lifted state)
    matched_inputs: tuple[str, ...]
    #: the case's outputs, in the case's order (a lifted file's next_state outputs left out)
    case_outputs: tuple[str, ...]
    sets: tuple[TestSet, ...]
    extra: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "case": self.case,
            "target": self.target,
            "model": self.model,
            "graph_inputs": list(self.graph_inputs),
            "graph_outputs": list(self.graph_outputs),
            "matched_inputs": list(self.matched_inputs),
            "case_outputs": list(self.case_outputs),
            "sets": [{"folder": s.folder, "input": s.input, "call": s.call} for s in self.sets],
            **self.extra,
        }

    def write(self) -> Path:
        path = self.root / MANIFEST
        path.write_text(json.dumps(self.as_json(), indent=2) + "\n")
        return path

    @classmethod
    def read(cls, root: Path) -> Manifest:
        """The manifest of the bundle in ``root``; RecordingError naming the file otherwise."""
        path = Path(root) / MANIFEST
        if not Path(root).is_dir():
            raise RecordingError(f"{root}: not a folder (give the bundle's folder, with {MANIFEST} in it)")
        try:
            body = json.loads(path.read_text())
        except FileNotFoundError:
            raise RecordingError(
                f"{path}: no manifest (give the folder 'export-conformance bundle' wrote)"
            ) from None
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise RecordingError(f"{path}: not a readable JSON manifest ({exc})") from None
        if not isinstance(body, dict) or body.get("format") != FORMAT:
            raise RecordingError(f'{path}: not an {FORMAT} manifest (no "format": "{FORMAT}")')
        if body.get("version") != VERSION:
            raise RecordingError(
                f"{path}: manifest version {body.get('version')!r}, this harness reads {VERSION}"
            )
        try:
            names = {
                key: tuple(str(n) for n in body[key])
                for key in ("graph_inputs", "graph_outputs", "matched_inputs", "case_outputs")
            }
            sets = tuple(TestSet(str(s["folder"]), str(s["input"]), int(s["call"])) for s in body["sets"])
            fixed = {k: body[k] for k in ("case", "target", "model")}
        except (KeyError, TypeError, ValueError) as exc:
            raise RecordingError(f"{path}: malformed manifest ({type(exc).__name__}: {exc})") from None
        known = set(cls.__dataclass_fields__) | {"format", "version", "sets"}
        extra = {k: v for k, v in body.items() if k not in known}
        return cls(Path(root), **fixed, **names, sets=sets, extra=extra)  # type: ignore[arg-type]

    def streams(self) -> dict[str, list[TestSet]]:
        """The sets of each canonical input, in call order."""
        found: dict[str, list[TestSet]] = {}
        for entry in sorted(self.sets, key=lambda s: (s.input, s.call)):
            found.setdefault(entry.input, []).append(entry)
        return found


def read_tensor_file(path: Path) -> tuple[str, np.ndarray]:
    """(name, array) of one ONNX ``TensorProto`` file (``input_K.pb`` / ``output_K.pb``)."""
    import onnx
    from onnx import numpy_helper

    try:
        proto = onnx.TensorProto()
        proto.ParseFromString(path.read_bytes())
        return proto.name, numpy_helper.to_array(proto)
    except FileNotFoundError:
        raise RecordingError(f"{path}: missing") from None
    except Exception as exc:  # protobuf's DecodeError, a dtype numpy_helper cannot read
        raise RecordingError(f"{path}: not an ONNX TensorProto file ({type(exc).__name__}: {exc})") from None


def call_key(arrays: Sequence[Any]) -> str:
    """A call's identity: the exact bytes, dtypes and shapes of the inputs it is matched by."""
    digest = hashlib.sha256()
    for value in arrays:
        array = np.ascontiguousarray(
            value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value
        )
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class RecordedCall:
    key: str
    outputs: tuple[np.ndarray, ...]


class Recording:
    """A device's outputs for a bundle: per canonical input, its calls in order, each the key of
    the inputs it was fed and the case's outputs it gave."""

    def __init__(self, manifest: Manifest, streams: dict[str, list[RecordedCall]]) -> None:
        self.manifest = manifest
        self.streams = streams

    @classmethod
    def read(cls, root: Path) -> Recording:
        """The bundle in ``root`` with the outputs its ``outputs/`` folder holds: each test set as
        ``outputs/test_data_set_N/output_K.pb`` (named as the graph's outputs, as the bundle's own)
        or ``outputs/test_data_set_N.npz`` (keyed by output name or ``output_K``). Every set of
        the bundle must be there; RecordingError names the first file that is missing or wrong."""
        manifest = Manifest.read(root)
        outputs = manifest.root / OUTPUTS
        if not outputs.is_dir():
            raise RecordingError(
                f"{outputs}: no recorded outputs (write each test set's outputs as {OUTPUTS}/test_data_set_N/"
                f"output_K.pb or {OUTPUTS}/test_data_set_N.npz)"
            )
        streams: dict[str, list[RecordedCall]] = {}
        for name, entries in manifest.streams().items():
            for expected_call, entry in enumerate(entries):
                if entry.call != expected_call:
                    raise RecordingError(
                        f"{manifest.root / MANIFEST}: input {name!r} has no call {expected_call} (sets must "
                        "number each input's calls from 0)"
                    )
                key = call_key(cls._bundled_inputs(manifest, entry))
                streams.setdefault(name, []).append(RecordedCall(key, cls._recorded_outputs(manifest, entry)))
        return cls(manifest, streams)

    @staticmethod
    def _bundled_inputs(manifest: Manifest, entry: TestSet) -> list[np.ndarray]:
        folder = manifest.root / entry.folder
        arrays = []
        for name in manifest.matched_inputs:
            index = manifest.graph_inputs.index(name)
            found, array = read_tensor_file(folder / f"input_{index}.pb")
            if found and found != name:
                raise RecordingError(
                    f"{folder / f'input_{index}.pb'}: holds {found!r}, the manifest says {name!r}"
                )
            arrays.append(array)
        return arrays

    @staticmethod
    def _recorded_outputs(manifest: Manifest, entry: TestSet) -> tuple[np.ndarray, ...]:
        base = manifest.root / OUTPUTS / entry.folder
        npz = base.with_name(base.name + ".npz")
        wanted = [(manifest.graph_outputs.index(name), name) for name in manifest.case_outputs]
        if npz.is_file():
            try:
                with np.load(npz, allow_pickle=False) as stored:
                    held = {key: stored[key] for key in stored.files}
            except Exception as exc:  # a truncated zip, a pickled object
                raise RecordingError(f"{npz}: not a readable .npz ({type(exc).__name__}: {exc})") from None
            found = []
            for index, name in wanted:
                value = held.get(name, held.get(f"output_{index}"))
                if value is None:
                    raise RecordingError(
                        f"{npz}: no output {name!r} (keys: {', '.join(held) or 'none'}; name them as the "
                        f"graph's outputs or output_K)"
                    )
                found.append(value)
            return tuple(found)
        if not base.is_dir():
            raise RecordingError(
                f"{base}: missing (test set {entry.folder}, call {entry.call} of {entry.input!r}: write "
                f"{base.name}/output_K.pb or {npz.name})"
            )
        found = []
        for index, name in wanted:
            stored_name, value = read_tensor_file(base / f"output_{index}.pb")
            if stored_name and stored_name != name:
                raise RecordingError(
                    f"{base / f'output_{index}.pb'}: holds {stored_name!r}, graph output {index} is {name!r}"
                )
            found.append(value)
        return tuple(found)

    def unrecorded(self, needs: frozenset[Need], input_name: str, *, generated: bool = False) -> str | None:
        """Why a cell that declares ``needs`` on ``input_name`` cannot be judged from this
        recording (None: it can): evidence beyond a fresh run of each bundled input, or an input
        the bundle does not hold."""
        if not needs:
            return "not recorded on the device: this suite runs the runtime itself (timings, traces)"
        missing = [need.value for need in sorted(needs - RECORDED_NEEDS, key=lambda n: n.name)]
        if missing:
            return f"not recorded on the device: {', '.join(missing)}"
        if not generated and input_name not in self.streams:
            return f"not recorded on the device: input {input_name!r} is not in the bundle"
        return None


class RecordedRunner(Runner):
    """Answers the device's recorded outputs for the call it is fed, matched by the exact bytes
    of the inputs that identify a call (``Manifest.matched_inputs``), in order from the start of
    a recorded stream. Each stream is answered once per runner: the device recorded a freshly
    loaded program's run, and a run after ``reset()`` is not that (determinism and reset are
    then not judged, never passed)."""

    def __init__(self, artifact: Artifact, recording: Recording) -> None:
        super().__init__(artifact)
        self.recording = recording
        matched = recording.manifest.matched_inputs
        self._positions = [
            artifact.input_names.index(name) for name in matched if name in artifact.input_names
        ]
        self._names = list(recording.streams)
        self._used: set[str] = set()
        self._candidates = list(self._names)
        self._position = 0

    def _run_impl(self, inputs: tuple[torch.Tensor, ...]) -> Sequence[Any]:
        key = call_key([inputs[i] for i in self._positions])
        p = self._position
        streams = self.recording.streams
        matching = [n for n in self._candidates if p < len(streams[n]) and streams[n][p].key == key]
        if not matching:
            again = [n for n in self._used if p < len(streams[n]) and streams[n][p].key == key]
            if again:
                raise NotRecorded(
                    f"not recorded on the device: a second run of {again[0]!r} (the device recorded one run "
                    "of each input on a freshly loaded program)"
                )
            raise NotRecorded(
                f"not recorded on the device: call {p} of this run matches no recorded call of "
                f"{self.recording.manifest.root} (recorded inputs: {', '.join(self._names) or 'none'})"
            )
        self._candidates = matching
        self._position += 1
        return [np.array(o, copy=True) for o in streams[matching[0]][p].outputs]

    def _reset_impl(self) -> None:
        if self._position:
            self._used.update(self._candidates)
        self._candidates = [n for n in self._names if n not in self._used]
        self._position = 0
