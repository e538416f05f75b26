"""The benchmark and hypothesis suites work with their tools: pytest-benchmark's ``extra_info``
and ``--benchmark-json`` carry the harness's figures, xdist (which times nothing) makes benchmark
cells ``skip`` with the reason, the baseline does not gate the benchmark suite, and
``--hypothesis-show-statistics`` prints the statistics of ``@given`` run inside a test."""

from __future__ import annotations

import json

import pytest

from harness.reports.baseline import Baseline
from harness.reports.benchmarks import XDIST_SKIP_REASON, benchmark_extra_info

TOYS = ("fixtures.toys",)
BRIEF = ("--benchmark-max-time=0.01", "--benchmark-min-rounds=1", "--benchmark-warmup=off")


def test_extra_info_derives_the_tables_figures_from_earlier_records():
    eager = {
        "case": "m",
        "target": "eager",
        "kind": "step",
        "step_s": 0.004,
        "median_s": 0.004,
        "flops": 4e6,
        "peak_gflops": 10.0,
        "size_bytes": 8e6,
        "chunk_seconds": 0.01,
    }
    onnx = {**eager, "target": "onnx", "step_s": 0.002, "median_s": 0.002, "peak_gflops": 8.0}
    int8 = {
        **onnx,
        "target": "onnx-int8",
        "step_s": 0.001,
        "median_s": 0.001,
        "size_bytes": 2e6,
        "float_counterpart": "onnx",
        "chunk_seconds": None,
    }
    info = benchmark_extra_info(int8, [eager, onnx])
    assert info["speedup_vs_eager"] == pytest.approx(4.0)
    assert info["speedup_vs_float"] == pytest.approx(2.0)
    assert info["size_vs_float"] == pytest.approx(0.25)
    assert info["gflops_per_s"] == pytest.approx(4.0)
    assert info["percent_of_peak"] == pytest.approx(40.0)  # the best peak measured so far
    assert "chunk_seconds" not in info and "real_time_factor" not in info  # no null figures
    assert benchmark_extra_info(eager, [])["real_time_factor"] == pytest.approx(0.4)
    assert "speedup_vs_eager" not in benchmark_extra_info(onnx, [])  # eager not benchmarked yet
    cold = {"case": "m", "target": "onnx", "kind": "cold", "median_s": 0.05, "cold_s": 0.05}
    assert benchmark_extra_info(cold, [eager]) == cold


def test_the_baseline_neither_compares_nor_records_benchmark_cells(tmp_path):
    baseline = Baseline(tmp_path / "baseline.json")
    observed = {
        ("m", "onnx", "equivalence", "x"): ("pass", ""),
        ("m", "onnx", "benchmark", "x"): ("skip", XDIST_SKIP_REASON),
    }
    baseline.write(observed, ["m"], ["onnx"])
    cells = json.loads(baseline.path.read_text())["cells"]
    assert cells == {"m": {"onnx": {"equivalence": {"x": "pass"}}}}
    assert (
        baseline.compare({**observed, ("m", "onnx", "benchmark", "x"): ("pass", "")}, ["m"], ["onnx"]) == []
    )
    # an older baseline that still lists benchmark cells: ignored, and dropped when rewritten
    body = json.loads(baseline.path.read_text())
    body["cells"]["m"]["onnx"]["benchmark"] = {"x": "pass"}
    baseline.path.write_text(json.dumps(body))
    assert baseline.compare(observed, ["m"], ["onnx"]) == []
    baseline.write(observed, ["m"], ["onnx"])
    assert "benchmark" not in json.loads(baseline.path.read_text())["cells"]["m"]["onnx"]


def test_benchmark_json_carries_the_harness_figures(inner_pytest, pytester):
    out = pytester.path / "bench.json"
    result = inner_pytest(
        "-p",
        "no:xdist",
        "-k",
        "conv_mlp and step",
        "--conformance-targets=eager,onnx",
        f"--benchmark-json={out}",
        *BRIEF,
        modules=TOYS,
        suites=("test_benchmarks",),
    )
    result.assert_outcomes(passed=2)
    extra = {b["extra_info"]["target"]: b["extra_info"] for b in json.loads(out.read_text())["benchmarks"]}
    assert set(extra) == {"eager", "onnx"}
    for figures in extra.values():
        assert figures["case"] == "conv_mlp" and figures["kind"] == "step"
        assert figures["flops"] > 0 and figures["size_bytes"] > 0 and figures["peak_gflops"] > 0
        assert figures["gflops_per_s"] > 0 and 0 < figures["percent_of_peak"]
    assert extra["onnx"]["speedup_vs_eager"] == pytest.approx(
        extra["eager"]["step_s"] / extra["onnx"]["step_s"]
    )
    # the harness's own report is still written, in its own format
    records = json.loads((pytester.path / "reports" / "benchmarks.json").read_text())
    assert {r["target"] for r in records} == {"eager", "onnx"}
    for record in records:  # extra_info: the same figures (but no nulls), and what is derived from them
        assert {k: v for k, v in record.items() if v is not None}.items() <= extra[record["target"]].items()


def test_under_xdist_benchmark_cells_are_skip_with_the_reason(inner_pytest, pytester):
    result = inner_pytest(
        "-p",
        "xdist",
        "-n",
        "1",
        "-k",
        "conv_mlp and step",
        "--conformance-targets=onnx",
        modules=TOYS,
        suites=("test_benchmarks",),
    )
    result.assert_outcomes(skipped=1)
    matrix = json.loads((pytester.path / "reports" / "conformance.json").read_text())
    (row,) = matrix["rows"]
    cell = row["suites"]["benchmark"]["inputs"]["noise"]
    assert cell == {"metric": None, "reason": XDIST_SKIP_REASON, "status": "skip"}
    assert not (pytester.path / "reports" / "benchmarks.json").exists()


def test_hypothesis_show_statistics_reports_the_suites_given(inner_pytest):
    result = inner_pytest(
        "-p",
        "no:xdist",
        "--hypothesis-show-statistics",
        "-k",
        "conv_mlp and hypothesis",
        "--conformance-targets=onnx",
        modules=TOYS,
        suites=("test_inputs",),
    )
    result.assert_outcomes(passed=1)
    out = result.stdout.str()
    section = out[out.index("Hypothesis Statistics") :]
    assert "test_hypothesis[conv_mlp-onnx-generated] (generated):" in section
    assert "passing, 0 failing" in section and "Stopped because" in section


def test_sizes_count_the_files_an_artifact_needs(tmp_path):
    """``Artifact.files``: the file, its format's companions (an IR's weights) and its initial
    state, never the sidecar; ``artifact_size`` counts them from the Artifact or its path."""
    from harness.reports.benchmarks import artifact_size
    from harness.targets import Artifact

    path = tmp_path / "m.openvino.xml"
    sizes = {path: 10, path.with_suffix(".bin"): 200, tmp_path / "m.openvino.xml.state.npz": 3000}
    for file, size in sizes.items():
        file.write_bytes(b"x" * size)
    artifact = Artifact(path, "openvino", "m", ("x",), ("y",), {"state_file": "m.openvino.xml.state.npz"})
    assert artifact.files == list(sizes)
    assert artifact_size(artifact) == 3210
    artifact.write_sidecar()
    assert artifact_size(path) == 3210  # the sidecar's artifact; the sidecar itself not counted
    plain = Artifact(tmp_path / "p.pt2", "torch-export", "p", ("x",), ("y",))
    plain.path.write_bytes(b"x" * 7)
    assert plain.files == [plain.path] and artifact_size(plain) == 7
