"""On-disk export cache, safe under pytest-xdist: one exporter per key, atomic publication.

The key covers the case, the target, library versions, the source of the case and of the
target, and the model's weights, so a second run exports nothing and any change re-exports.
Export errors are cached too (a refusal is as deterministic as a success).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import shutil
import time
import uuid
from pathlib import Path

import torch
from filelock import FileLock

from ..core import buffers, pristine, shapes, state
from ..core.case import ModelCase
from ..core.environment import library_versions
from ..targets import Artifact, ExportError, Target

__all__ = ["ExportCache", "cache_key"]

_DIGESTS: dict[str, str] = {}
_HELPERS_KEY = "<export helpers>"  # not a case name


def _file_digest(obj: object) -> str:
    try:
        source = inspect.getsourcefile(obj)  # type: ignore[arg-type]
    except TypeError:
        source = None
    if not source:
        return "unknown"
    return hashlib.sha256(Path(source).read_bytes()).hexdigest()


def _case_digest(case: ModelCase) -> str:
    """Digest of the case's source, the built module's class source and its weights."""
    if case.name in _DIGESTS:
        return _DIGESTS[case.name]
    module = case.build()
    h = hashlib.sha256()
    h.update(_file_digest(case.build).encode())
    h.update(_file_digest(type(module)).encode())
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(tensor.shape)).encode() + str(tensor.dtype).encode())
        h.update(
            tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        )  # 0-dim too
    for tensor in case.example_inputs():
        h.update(str(tuple(tensor.shape)).encode() + str(tensor.dtype).encode())
    _DIGESTS[case.name] = h.hexdigest()
    return _DIGESTS[case.name]


def _export_helpers_digest() -> str:
    """The harness's own export code (every target module and the helpers they import: a target
    class's file alone misses ``dynamo_onnx_export`` that several targets share)."""
    if _HELPERS_KEY not in _DIGESTS:
        folder = Path(__file__).parent.parent / "targets"
        files = [
            *sorted(folder.glob("*.py")),
            *(Path(m.__file__) for m in (buffers, pristine, shapes, state)),
        ]
        h = hashlib.sha256()
        for file in files:
            h.update(file.name.encode() + file.read_bytes())
        _DIGESTS[_HELPERS_KEY] = h.hexdigest()
    return _DIGESTS[_HELPERS_KEY]


def cache_key(case: ModelCase, target: Target) -> str:
    body = {
        "case": case.name,
        "target": target.name,
        "target_class": f"{type(target).__module__}.{type(target).__qualname__}",
        # the target's class and every harness base class it inherits export code from
        # every class in the target's hierarchy that is not Python's or the abc module's: the
        # harness's own and a user's Target subclass defined anywhere (its code change re-exports)
        "target_source": [
            _file_digest(cls) for cls in type(target).__mro__ if cls.__module__ not in ("builtins", "abc")
        ],
        "target_state": {k: repr(v) for k, v in sorted(vars(target).items())},
        # what every export is told: dynamic dimensions and the lifted streaming state
        "export_helpers": _export_helpers_digest(),
        # the runtimes' versions and those of the distributions the case says it depends on
        # (the package its weights ship in: ModelCase.depends_on)
        "versions": library_versions(case.depends_on),
        "case_digest": _case_digest(case),
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:20]


class ExportCache:
    """Exports a (case, target) once and hands out the cached artifact afterwards.

    Args:
        root: cache folder (shared by xdist workers).
        fresh: re-export entries not made in this session (``session_id``).
    """

    def __init__(self, root: Path, *, fresh: bool = False, session_id: str = "") -> None:
        self.root = Path(root)
        self.fresh = fresh
        self.session_id = session_id or uuid.uuid4().hex
        self.exports_done = 0
        # (case, target) -> the artifact or the export error, once looked up in this process
        self._resolved: dict[tuple[str, str], Artifact | ExportError] = {}

    def problem(self) -> str | None:
        """Why this cache folder cannot hold exports (None: it can): a file in its place, or a
        folder that cannot be created or written (checked up front, so a run never ends in
        one error per cell)."""
        if self.root.exists() and not self.root.is_dir():
            return f"{self.root}: the export cache folder is a file, not a folder"
        probe = self.root / f".write-probe-{uuid.uuid4().hex[:8]}"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            return f"{self.root}: the export cache folder cannot be written ({exc.strerror or exc})"
        return None

    def entry_dir(self, case: ModelCase, target: Target) -> Path:
        return self.root / case.name / f"{target.name}-{cache_key(case, target)}"

    def get(self, case: ModelCase, target: Target) -> Artifact:
        """The artifact for (case, target), exporting it if needed; raises the cached ExportError.

        Resolved once per process: the key hashes sources and versions, which need not be redone.
        """
        key = (case.name, target.name)
        if key not in self._resolved:
            try:
                self._resolved[key] = self._get(case, target)
            except ExportError as exc:
                self._resolved[key] = exc
        resolved = self._resolved[key]
        if isinstance(resolved, ExportError):
            raise resolved
        return resolved

    def _get(self, case: ModelCase, target: Target) -> Artifact:
        entry = self.entry_dir(case, target)
        entry.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(entry) + ".lock"):
            result = self._read(entry)
            stale = result is not None and self.fresh and result.get("session") != self.session_id
            # an entry whose files changed since it was published (by hand, a disk fault, a
            # half-copied restore) is rebuilt, never judged
            if result is None or stale or not self._intact(entry, result):
                result = self._export(case, target, entry)
        if result["status"] == "export-error":
            raise ExportError(target.name, case.name, result["exc_type"], result["message"])
        artifact = Artifact.read_sidecar(entry / result["file"])
        return artifact

    #: a staging folder older than this was left by a killed export (no export takes an hour)
    STAGING_ABANDONED_S = 3600.0

    @classmethod
    def _remove_abandoned_staging(cls, folder: Path) -> None:
        """Staging folders of exports that were killed before publishing (they are never reused)."""
        now = time.time()
        for staging in folder.glob(".staging-*"):
            try:
                if now - staging.stat().st_mtime > cls.STAGING_ABANDONED_S:
                    shutil.rmtree(staging, ignore_errors=True)
            except OSError:
                pass

    @staticmethod
    def _read(entry: Path) -> dict | None:
        try:
            return json.loads((entry / "result.json").read_text())
        except (OSError, ValueError):
            return None

    @staticmethod
    def _contents(folder: Path) -> dict[str, str]:
        """sha256 of every file of an entry but its result.json, by path within the entry."""
        digests = {}
        for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "result.json"):
            h = hashlib.sha256()
            with path.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            digests[path.relative_to(folder).as_posix()] = h.hexdigest()
        return digests

    @classmethod
    def _intact(cls, entry: Path, result: dict) -> bool:
        """Whether the entry's files are those it was published with (an export error has none)."""
        if result.get("status") == "export-error":
            return True
        recorded = result.get("contents")
        try:
            return isinstance(recorded, dict) and bool(recorded) and cls._contents(entry) == recorded
        except OSError:
            return False

    def _export(self, case: ModelCase, target: Target, entry: Path) -> dict:
        self._remove_abandoned_staging(entry.parent)
        staging = entry.with_name(f".staging-{uuid.uuid4().hex}")
        staging.mkdir(parents=True)
        result: dict = {"session": self.session_id, "versions": library_versions()}
        try:
            artifact = target.export(case, staging)
            result.update(status="ok", file=artifact.path.name, contents=self._contents(staging))
        except ExportError as exc:
            result.update(status="export-error", exc_type=exc.exc_type, message=exc.message)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        (staging / "result.json").write_text(json.dumps(result, indent=2, sort_keys=True))
        self.exports_done += 1
        if entry.exists():
            shutil.rmtree(entry)
        staging.rename(entry)
        return result
