"""Latency and size benchmarks for every case x target (pytest-benchmark).

One step on the primary input's first call (one streaming step for stateful cases), and cold
start (load plus first call). Ratios against eager come from the same run. The figures go to the
report (``benchmarks.md``, ``benchmarks.json``) and to pytest-benchmark's ``extra_info`` (so
``--benchmark-json``, ``--benchmark-save`` and ``--benchmark-compare`` carry them). Under
pytest-xdist pytest-benchmark times nothing: the cells are ``skip`` (nothing is run); run
``pytest -p no:xdist -k benchmark`` for figures.
"""

from __future__ import annotations

import pytest

from harness.reports.benchmarks import (
    XDIST_SKIP_REASON,
    artifact_size,
    benchmark_extra_info,
    flops_per_call,
    matmul_peak_gflops,
    run_records,
    timing_disabled_by_xdist,
)


def _require_timing(benchmark, request) -> None:
    """Skip under xdist: a cell that times nothing is not a benchmark that passed."""
    if timing_disabled_by_xdist(benchmark, request.config):
        pytest.skip(XDIST_SKIP_REASON)


def _record(conformance, benchmark, request, **fields) -> None:
    stats = getattr(benchmark, "stats", None)
    if stats is None:  # --benchmark-disable: run once as a test, nothing was timed
        return
    record = conformance.record_benchmark(median_s=stats.stats.median, **fields)
    earlier = run_records(request.config)
    benchmark.extra_info.update(benchmark_extra_info(record, earlier))
    earlier.append(record)


@pytest.mark.conformance("benchmark")
def test_benchmark_step(conformance, benchmark, request):
    """Median latency of one call (one streaming step), with FLOPs, size and real-time factor."""
    _require_timing(benchmark, request)
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
        request,
        kind="step",
        flops=flops_per_call(case, conformance.eager_module(), call),
        peak_gflops=matmul_peak_gflops(),
        size_bytes=artifact_size(conformance.artifact()),
        chunk_seconds=chunk_seconds,
        streaming=spec is not None,
        float_counterpart=target.float_counterpart,
    )


@pytest.mark.conformance("benchmark")
def test_benchmark_cold_start(conformance, benchmark, request):
    """Loading the artifact and making the first call."""
    _require_timing(benchmark, request)
    conformance.runner()  # export first: cold start is load plus first call, not export
    call = conformance.calls()[0]
    benchmark.group = f"{conformance.case.name} cold start"

    def load_and_call() -> None:
        with conformance.fresh_runner() as runner:
            runner.run(*call)

    benchmark.pedantic(load_and_call, rounds=3, iterations=1, warmup_rounds=0)
    _record(conformance, benchmark, request, kind="cold")
