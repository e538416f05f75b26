"""Golden snapshots under subsets: a target subset exits 0 when all it selects passes, never
deletes the other targets' snapshots, and still reports a snapshot that belongs to no cell; a
cell without a snapshot says so instead of syrupy's bare ``assert [- snapshot] == [+ received]``."""

from __future__ import annotations

import pytest

from tests.test_gating import PLANTED  # the doubler case, planted in a temp project

pytestmark = pytest.mark.filterwarnings("ignore")

GOLDEN = ("test_golden",)


def test_target_subsets_keep_other_snapshots_and_report_orphans(inner_pytest, pytester):
    both = ("--conformance-targets=eager,torchscript", "-p", "no:xdist")
    recorded = inner_pytest(*both, "--snapshot-update", cases=PLANTED, suites=GOLDEN)
    recorded.assert_outcomes(passed=2)
    root = pytester.path / "golden" / "snapshots"
    stored = sorted(p.name for p in root.rglob("*.npz"))
    assert stored == [
        "test_golden_eager[doubler-eager-ramp].npz",
        "test_golden_target[doubler-torchscript-ramp].npz",
    ]

    subset = inner_pytest("--conformance-targets=eager", "-p", "no:xdist", cases=PLANTED, suites=GOLDEN)
    assert subset.ret == 0, subset.stdout.str()  # syrupy would call torchscript's snapshot unused
    updated = inner_pytest(
        "--conformance-targets=eager", "-p", "no:xdist", "--snapshot-update", cases=PLANTED, suites=GOLDEN
    )
    assert updated.ret == 0
    assert sorted(p.name for p in root.rglob("*.npz")) == stored  # nothing deleted

    first = next(root.rglob("*.npz"))
    orphan = first.parent / "test_golden_target[retired-onnx-ramp].npz"
    orphan.write_bytes(first.read_bytes())
    reported = inner_pytest("--conformance-targets=eager", "-p", "no:xdist", cases=PLANTED, suites=GOLDEN)
    assert reported.ret == pytest.ExitCode.TESTS_FAILED
    assert "golden snapshots that belong to no cell" in reported.stdout.str()
    assert "test_golden_target[retired-onnx-ramp].npz" in reported.stdout.str()


def test_a_cell_without_a_snapshot_says_so(inner_pytest):
    result = inner_pytest("--conformance-targets=eager", "-p", "no:xdist", cases=PLANTED, suites=GOLDEN)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    text = result.stdout.str()
    assert "no golden snapshot yet for doubler-eager-ramp: record it with --snapshot-update" in text
    assert "errors (the harness, the case or the input failed; no verdict on the export)" in text
