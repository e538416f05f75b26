"""Golden outputs: eager's outputs on every canonical input, each target's on the primary input.

Eager snapshots catch drift across torch versions; target snapshots catch runtime regressions.
Snapshots live in ``golden/snapshots``; ``--snapshot-update`` is the only way to change them.
"""

from __future__ import annotations

import pytest

from harness.checks.golden import TensorSnapshot, snapshot_verdict, tensor_snapshot_extension


def _assert_matches_snapshot(conformance, snapshot, outputs) -> None:
    if conformance.updating_snapshots():
        problem = conformance.target.recording_problem()
        if problem:  # e.g. OpenVINO at bf16: its snapshots are recorded at f32, to hold at any precision
            conformance.not_applicable(problem)
    conformance.require_snapshot(snapshot)
    case, target = conformance.case, conformance.target.name
    provenance = {
        "case": case.name,
        "target": target,
        "input": conformance.cell.input_name,
        "inputs_from": "seeded synthesis in the case's fixtures module",
        **conformance.target.runtime_settings(),
    }
    # the cell's judge: int8 outputs are not bit-stable across runtime versions, so an approximate
    # target's contract is the task metric
    extension = tensor_snapshot_extension(conformance.judge(reference="snapshot"), conformance.golden_root())
    # a mismatch is a verdict on the export (fail, localised), never a harness error
    conformance.verdict(
        snapshot_verdict(snapshot.use_extension(extension), TensorSnapshot(outputs, provenance))
    )


@pytest.mark.conformance("golden", targets=("eager",))
def test_golden_eager(conformance, snapshot):
    """Eager outputs match their snapshot (catches drift across torch and library versions)."""
    _assert_matches_snapshot(conformance, snapshot, conformance.reference())


@pytest.mark.conformance("golden", skip_targets=("eager",))
def test_golden_target(conformance, snapshot):
    """Each target's outputs match their snapshot (catches runtime regressions)."""
    _assert_matches_snapshot(conformance, snapshot, conformance.evidence().outputs())
