"""Golden outputs: eager's outputs on every canonical input, each target's on the primary input.

Eager snapshots catch drift across torch versions; target snapshots catch runtime regressions.
Snapshots live in ``golden/snapshots``; ``--snapshot-update`` is the only way to change them.
"""

from __future__ import annotations

import pytest

from harness.equivalence import run_calls
from harness.golden import TensorSnapshot, snapshot_verdict, tensor_snapshot_extension
from harness.sequence import StateThreading


def _assert_matches_snapshot(conformance, snapshot, outputs) -> None:
    if conformance.updating_snapshots():
        problem = conformance.target.recording_problem()
        if problem:  # e.g. OpenVINO at bf16: its snapshots are recorded at f32, to hold at any precision
            conformance.not_applicable(problem)
    conformance.require_snapshot(snapshot)
    case, target = conformance.case, conformance.target.name
    tolerances = {name: case.tolerance_for(name, target) for name in case.output_names}
    provenance = {
        "case": case.name,
        "target": target,
        "input": conformance.cell.input_name,
        "inputs_from": "seeded synthesis in the case's fixtures module",
        **conformance.target.runtime_settings(),
    }
    # int8 outputs are not bit-stable across runtime versions: the task metric is their contract
    metric = case.approximate_metric if conformance.target.approximate else None
    extension = tensor_snapshot_extension(tolerances, metric=metric)
    # a mismatch is a verdict on the export (fail, localised), never a harness error
    conformance.verdict(snapshot_verdict(snapshot.use_extension(extension), TensorSnapshot(outputs, provenance)))


@pytest.mark.conformance("golden", targets=("eager",))
def test_golden_eager(conformance, snapshot):
    """Eager outputs match their snapshot (catches drift across torch and library versions)."""
    _assert_matches_snapshot(conformance, snapshot, conformance.reference())


@pytest.mark.conformance("golden", inputs="primary", skip_targets=("eager",))
def test_golden_target(conformance, snapshot):
    """Each target's outputs match their snapshot (catches runtime regressions)."""
    runner = conformance.runner()
    _assert_matches_snapshot(
        conformance, snapshot, run_calls(runner, conformance.calls(), conformance.case.output_names, threading=StateThreading.of(conformance.case))
    )
