"""Latency and size benchmarks for every case x target (pytest-benchmark).

One step on the primary input's first call (one streaming step for stateful cases), and cold
start (load plus first call). Ratios against eager come from the same run. Under pytest-xdist
pytest-benchmark runs each function once without timing; run ``pytest -p no:xdist -k benchmark``
for figures.
"""

from __future__ import annotations

import pytest

from harness.benchmarks import artifact_size, flops_per_call, matmul_peak_gflops


def _record(conformance, benchmark, **fields) -> None:
    stats = getattr(benchmark, "stats", None)
    if stats is None:  # benchmarks disabled (xdist, --benchmark-disable): nothing was timed
        return
    conformance.record_benchmark(median_s=stats.stats.median, **fields)


@pytest.mark.conformance("benchmark", inputs="primary")
def test_benchmark_step(conformance, benchmark):
    """Median latency of one call (one streaming step), with FLOPs, size and real-time factor."""
    case, target = conformance.case, conformance.target
    runner = conformance.runner()
    call = conformance.calls()[0]
    benchmark.group = f"{case.name} step"
    benchmark(runner.run, *call)
    spec = case.streaming
    chunk_seconds = None
    if spec is not None and spec.steps_per_second:
        chunk_seconds = spec.chunk / spec.steps_per_second
    _record(
        conformance,
        benchmark,
        kind="step",
        flops=flops_per_call(case, conformance.eager_module(), call),
        peak_gflops=matmul_peak_gflops(),
        size_bytes=artifact_size(conformance.artifact_path()),
        chunk_seconds=chunk_seconds,
        streaming=spec is not None,
        float_counterpart=target.float_counterpart,
    )


@pytest.mark.conformance("benchmark", inputs="primary")
def test_benchmark_cold_start(conformance, benchmark):
    """Loading the artifact and making the first call."""
    conformance.runner()  # export first: cold start is load plus first call, not export
    call = conformance.calls()[0]
    benchmark.group = f"{conformance.case.name} cold start"

    def load_and_call() -> None:
        with conformance.fresh_runner() as runner:
            runner.run(*call)

    benchmark.pedantic(load_and_call, rounds=3, iterations=1, warmup_rounds=0)
    _record(conformance, benchmark, kind="cold")
