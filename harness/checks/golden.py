"""Golden-output snapshots of tensors for syrupy: ``.npz`` data, a readable ``.json`` sidecar,
compared with the case's tolerance rather than byte equality.

``--snapshot-update`` is the only way a snapshot changes (syrupy's rule); a mismatch fails with a
readable diff: per output, the max error, where, and how many elements are off.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from syrupy.extensions.single_file import SingleFileSnapshotExtension
from syrupy.location import PyTestLocation

from ..core.check import Check
from ..core.compare import Tolerance
from ..core.environment import library_versions
from ..core.judge import Judge

__all__ = [
    "TensorSnapshot",
    "TensorSnapshotExtension",
    "snapshot_verdict",
    "tensor_snapshot_extension",
    "unreadable_snapshot",
]

_PROVENANCE = "__provenance__"


@dataclass(frozen=True)
class TensorSnapshot:
    """Outputs by name plus where they came from (case, target, input set, versions)."""

    outputs: Mapping[str, np.ndarray]
    provenance: Mapping[str, Any] = field(default_factory=dict)


def _to_npz(snapshot: TensorSnapshot) -> bytes:
    buffer = io.BytesIO()
    provenance = {**snapshot.provenance, "versions": library_versions()}
    arrays = {name: np.asarray(value) for name, value in snapshot.outputs.items()}
    np.savez_compressed(buffer, **arrays, **{_PROVENANCE: np.array(json.dumps(provenance, sort_keys=True))})
    return buffer.getvalue()


def _from_npz(data: bytes) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    with np.load(io.BytesIO(bytes(data)), allow_pickle=False) as stored:
        arrays = {k: stored[k] for k in stored.files if k != _PROVENANCE}
        provenance = json.loads(str(stored[_PROVENANCE])) if _PROVENANCE in stored.files else {}
    return arrays, provenance


def unreadable_snapshot(path: Path) -> str | None:
    """Why the stored snapshot at ``path`` cannot be read as one (None: it reads)."""
    try:
        arrays, _ = _from_npz(path.read_bytes())
    except Exception as exc:  # zipfile, numpy, JSON: all "unreadable"
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'not an .npz'}"
    if not arrays:
        return "it holds no outputs"
    return None


def _sidecar(data: bytes) -> dict[str, Any]:
    arrays, provenance = _from_npz(data)
    summary = {}
    for name, value in arrays.items():
        finite = value[np.isfinite(value)] if value.dtype.kind == "f" else value
        summary[name] = {
            "shape": list(value.shape),
            "dtype": str(value.dtype),
            "min": float(finite.min()) if finite.size else None,
            "max": float(finite.max()) if finite.size else None,
            "mean": float(finite.mean()) if finite.size else None,
            "std": float(finite.std()) if finite.size else None,
            "nonfinite": int(value.size - finite.size),
        }
    return {
        "outputs": summary,
        "provenance": provenance,
        "regenerate": "pytest -k golden --snapshot-update (never edit by hand)",
    }


class TensorSnapshotExtension(SingleFileSnapshotExtension):
    """Stores a :class:`TensorSnapshot` as ``.npz`` with a ``.json`` sidecar; compares with tolerances.

    Use :func:`tensor_snapshot_extension` to get a subclass bound to one case's tolerances.
    """

    file_extension = "npz"
    #: Where snapshots live: bound per run by :func:`tensor_snapshot_extension` (the session's
    #: ``<rootdir>/golden/snapshots``); None: beside the test file, as syrupy keeps them.
    golden_root: ClassVar[Path | None] = None
    #: The cell's judge (bound by :func:`tensor_snapshot_extension`); None: default tolerances.
    judge: ClassVar[Judge | None] = None

    def serialize(self, data: Any, **kwargs: Any) -> bytes:
        if isinstance(data, TensorSnapshot):
            return _to_npz(data)
        if isinstance(data, Mapping):
            return _to_npz(TensorSnapshot(dict(data)))
        raise TypeError(
            f"tensor snapshots take a TensorSnapshot or a mapping of arrays, got {type(data).__name__}"
        )

    #: One folder for every project's golden cells, whatever file imports the suite (a project's
    #: own test_conformance.py, ``pytest --pyargs harness.suites`` and ``export-conformance check`` agree).
    FOLDER: ClassVar[str] = "test_golden"

    @classmethod
    def dirname(cls, *, test_location: PyTestLocation) -> str:
        if cls.golden_root is None:
            return super().dirname(test_location=test_location)
        return str(cls.golden_root / cls.FOLDER)

    @classmethod
    def stored_path(cls, test_name: str, golden_root: Path | None = None) -> Path | None:
        """Where the snapshot of the test named ``test_name`` is stored under ``golden_root``
        (default: the class's own; None: no golden root)."""
        root = golden_root or cls.golden_root
        return root / cls.FOLDER / f"{test_name}.npz" if root else None

    @classmethod
    def discovery_dirname(cls, *, test_location: PyTestLocation) -> str:
        return str(Path(cls.dirname(test_location=test_location)).parent)

    def _verdict(self, serialized_data: Any, snapshot_data: Any) -> Check:
        """The judge's verdict on the outputs now (actual) against the stored ones (expected)."""
        actual, _ = _from_npz(serialized_data)
        expected, _ = _from_npz(snapshot_data)
        judge = self.judge or Judge.tensors_only({}, Tolerance(), reference="snapshot")
        missing = [f"{n}: in the snapshot, not produced now" for n in sorted(set(expected) - set(actual))]
        extra = [f"{n}: produced now, not in the snapshot" for n in sorted(set(actual) - set(expected))]
        if missing or extra:
            return Check("golden", False, (missing + extra)[0], tuple(missing + extra))
        return judge.judge(expected, actual, what="golden", names=sorted(expected))

    def matches(self, *, serialized_data: Any, snapshot_data: Any) -> bool:
        try:
            return bool(self._verdict(serialized_data, snapshot_data))
        except (ValueError, OSError, KeyError, TypeError):
            return False  # an unreadable snapshot never matches; diff_lines says why

    def diff_lines(self, serialized_data: Any, snapshot_data: Any) -> Iterator[str]:
        if not snapshot_data:
            return  # syrupy has said the snapshot does not exist
        try:
            verdict = self._verdict(serialized_data, snapshot_data)
        except (ValueError, OSError, KeyError, TypeError) as exc:
            yield f"the stored snapshot cannot be read as .npz ({type(exc).__name__}: {exc})"
            return
        problems = [c.summary() for c in verdict.comparisons if not c] or [
            d for d in verdict.details if not verdict.comparisons
        ]
        if verdict.judged_by_metric and verdict.metric is not None:
            yield f"approximate target: judged by its task metric: {verdict.metric.summary()}"
            yield "tensor differences (informative):"
        else:
            yield "tensor snapshot differs beyond tolerance (snapshot = expected, now = actual):"
            if verdict.metric is not None and not verdict.metric:
                yield f"  {verdict.metric.summary()}"
        yield from (f"  {p}" for p in problems)
        yield "  (rerun with --snapshot-update only if the change is intended)"

    @classmethod
    def write_snapshot_collection(cls, *, snapshot_collection: Any, name_order: Any = None) -> None:
        super().write_snapshot_collection(snapshot_collection=snapshot_collection, name_order=name_order)
        data = next(iter(snapshot_collection)).data
        sidecar = Path(str(snapshot_collection.location) + ".json")
        sidecar.write_text(json.dumps(_sidecar(data), indent=2, sort_keys=True) + "\n")

    def delete_snapshots(self, *, snapshot_location: str, snapshot_names: set[str]) -> None:
        super().delete_snapshots(snapshot_location=snapshot_location, snapshot_names=snapshot_names)
        Path(snapshot_location + ".json").unlink(missing_ok=True)


_BOUND: dict[tuple, type[TensorSnapshotExtension]] = {}


def tensor_snapshot_extension(judge: Judge, golden_root: Path | None = None) -> type[TensorSnapshotExtension]:
    """A TensorSnapshotExtension subclass whose snapshots are judged by ``judge`` (the cell's:
    tolerances and task metric, or the metric alone for an approximate target) and stored under
    ``golden_root`` (the run's ``<rootdir>/golden/snapshots``; None: beside the test file)."""
    key = (
        golden_root,
        tuple(sorted((k, v.atol, v.rtol) for k, v in judge.tolerances.items())),
        judge.default_tolerance,
        id(judge.metric),
        judge.by_metric,
    )
    if key not in _BOUND:
        _BOUND[key] = type(
            "BoundTensorSnapshotExtension",
            (TensorSnapshotExtension,),
            {"judge": judge, "golden_root": golden_root},
        )
    return _BOUND[key]


def snapshot_verdict(assertion: Any, value: TensorSnapshot) -> Check:
    """Compare ``value`` with syrupy's stored snapshot (``--snapshot-update`` writes it instead)."""
    if assertion == value:
        return Check("golden", True, "matches its golden snapshot")
    diff = tuple(str(line) for line in assertion.get_assert_diff())
    mismatch = next((line.strip() for line in diff if "MISMATCH" in line or "OVER" in line), "")
    return Check(
        "golden", False, "differs from its golden snapshot" + (f": {mismatch}" if mismatch else ""), diff
    )
