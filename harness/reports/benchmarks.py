"""Cost figures beside the benchmarks: FLOPs per call, a matmul peak, artifact sizes, and the
benchmark table (ratios against eager measured in the same run)."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch

from ..core.case import Call, ModelCase
from ..core.pristine import fresh_copy
from ..targets import EAGER, Artifact
from ..targets.adopt import STATE_FILE_SUFFIX

__all__ = [
    "XDIST_SKIP_REASON",
    "artifact_size",
    "benchmark_extra_info",
    "benchmark_figures",
    "benchmark_table",
    "flops_per_call",
    "matmul_peak_gflops",
    "run_records",
    "timing_disabled_by_xdist",
]

#: Why a benchmark cell is ``skip`` under pytest-xdist: pytest-benchmark disables itself there.
XDIST_SKIP_REASON = "pytest-benchmark times nothing under xdist: run `pytest -p no:xdist -k benchmark`"

#: This process's benchmark records so far (for the ratios in ``extra_info``).
_RUN_RECORDS = pytest.StashKey[list]()


def flops_per_call(case: ModelCase, module: torch.nn.Module, call: Call) -> int:
    """FLOPs of one eager call, counted by ``torch.utils.flop_counter`` on a copy of the module."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fresh_copy(module)(*call)
    return int(counter.get_total_flops())


def matmul_peak_gflops(size: int = 512, repeats: int = 10) -> float:
    """Float32 matrix-multiply GFLOP/s on this machine with torch's current threads (best of 3).

    Measured beside every step benchmark; the table takes the best over the run, since a single
    measurement taken while the machine is busy reads low.
    """
    a = torch.randn(size, size)
    b = torch.randn(size, size)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeats):
            torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 * repeats / best / 1e9


def artifact_size(artifact: Artifact | Path, companions: Sequence[Path] = ()) -> int:
    """Bytes on disk of an artifact and the files it needs beside it (``Artifact.files``: its
    format's companions and its initial state; sidecars excluded).

    Given a path (with its target's companion files), the artifact its sidecar describes; a
    user's file adopted without one counts the companions given and a state file by the
    adoption's naming."""
    if isinstance(artifact, Artifact):
        files = artifact.files
    elif Path(str(artifact) + ".json").is_file():
        files = Artifact.read_sidecar(Path(artifact)).files
    else:
        path = Path(artifact)
        files = [path, *companions, path.with_name(path.name + STATE_FILE_SUFFIX)]
    main, *others = files
    return Path(main).stat().st_size + sum(Path(p).stat().st_size for p in others if Path(p).is_file())


def timing_disabled_by_xdist(benchmark: Any, config: pytest.Config) -> bool:
    """Whether pytest-benchmark turned itself off because xdist is active (it then runs each
    benchmarked function once, untimed). ``--benchmark-disable`` alone is the user's choice: the
    benchmarks then run once as ordinary tests."""
    session = getattr(config, "_benchmarksession", None)
    if session is not None and hasattr(session, "xdist_warning"):
        return bool(session.xdist_warning)
    xdist = bool(os.environ.get("PYTEST_XDIST_WORKER")) or config.getoption("dist", "no") != "no"
    return xdist and bool(getattr(benchmark, "disabled", False))


def run_records(config: pytest.Config) -> list[dict[str, Any]]:
    """The benchmark records of this process so far (the report's table gets them all)."""
    return config.stash.setdefault(_RUN_RECORDS, [])


def benchmark_extra_info(record: dict[str, Any], earlier: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The figures of one benchmark record for pytest-benchmark's ``extra_info`` (and so for
    ``--benchmark-json``, ``--benchmark-save`` and ``--benchmark-compare``).

    The record's own figures, and what ``benchmark_table`` derives from them: GFLOP/s, real-time
    factor, % of peak (against the best matmul peak measured so far in this process), and the
    ratios against eager and the float counterpart when their benchmark ran earlier in this
    process (targets run in registration order, eager first). Figures that cannot be had are
    left out, never written as null.
    """
    info = {k: v for k, v in record.items() if v is not None}
    if record.get("kind") == "cold" or not record.get("step_s"):
        return info
    timed = [r for r in earlier if r.get("kind") != "cold" and r.get("step_s")]
    derived: dict[str, Any] = {}
    for case_name, _, run_peak, figures in benchmark_figures([*timed, record]):
        if case_name != record.get("case"):
            continue
        row = next(f for f in figures if f["target"] == record.get("target"))
        derived = {name: row[key] for key, name in _EXTRA_INFO_NAMES.items() if row[key] is not None}
        if "percent_of_peak" in derived:
            derived["run_peak_gflops"] = run_peak
    return {**info, **derived}


#: benchmark_figures' keys -> the names they get in pytest-benchmark's extra_info
_EXTRA_INFO_NAMES = {
    "gflops": "gflops_per_s",
    "peak_percent": "percent_of_peak",
    "rtf": "real_time_factor",
    "speedup": "speedup_vs_eager",
    "float_speedup": "speedup_vs_float",
    "size_ratio": "size_vs_float",
}


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def benchmark_figures(
    records: Sequence[dict[str, Any]],
) -> list[tuple[str, bool, float | None, list[dict[str, Any]]]]:
    """Per case (sorted): its name, whether one step is a streaming step, the run's matmul peak
    and one dict of figures per target (None: not measured, or no float counterpart)."""
    peaks = [r["peak_gflops"] for r in records if r.get("peak_gflops")]
    run_peak = max(peaks) if peaks else None
    by_case: dict[str, dict[str, dict[str, Any]]] = {}
    for record in records:
        by_case.setdefault(record["case"], {}).setdefault(record["target"], {}).update(record)
    cases = []
    for case_name, rows in sorted(by_case.items()):
        eager = rows.get(EAGER, {})
        figures = []
        for target_name, row in rows.items():
            step = row.get("step_s")
            gflops = row["flops"] / step / 1e9 if step and row.get("flops") else None
            float_row = rows.get(row.get("float_counterpart") or "", {})
            figures.append(
                {
                    "target": target_name,
                    "step_ms": None if step is None else step * 1e3,
                    "speedup": eager.get("step_s") / step if step and eager.get("step_s") else None,
                    "rtf": step / row["chunk_seconds"] if step and row.get("chunk_seconds") else None,
                    "cold_ms": row["cold_s"] * 1e3 if row.get("cold_s") is not None else None,
                    "size_mb": row["size_bytes"] / 1e6 if row.get("size_bytes") is not None else None,
                    "size_ratio": (
                        row["size_bytes"] / float_row["size_bytes"]
                        if row.get("size_bytes") and float_row.get("size_bytes")
                        else None
                    ),
                    "float_speedup": float_row["step_s"] / step if step and float_row.get("step_s") else None,
                    "gflops": gflops,
                    "peak_percent": 100 * gflops / run_peak if gflops and run_peak else None,
                }
            )
        cases.append((case_name, bool(rows[next(iter(rows))].get("streaming")), run_peak, figures))
    return cases


def benchmark_table(records: Sequence[dict[str, Any]]) -> list[str]:
    """Markdown lines: one table per case, a row per target, ratios against eager in this run."""
    lines: list[str] = []
    for case_name, streaming, run_peak, figures in benchmark_figures(records):
        lines += [
            f"**{case_name}** (one {'streaming step' if streaming else 'call'}"
            f"; float32 matmul peak in this run {_fmt(run_peak, '.1f')} GFLOP/s)",
            "",
            "| target | step ms | speed-up vs eager | real-time factor | cold start ms | size MB | size vs float | speed-up vs float | GFLOP/s | % of peak |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for f in figures:  # "-": no figure (not measured, or no float counterpart)
            lines.append(
                f"| {f['target']} | {_fmt(f['step_ms'], '.3f')} | {_fmt(f['speedup'], '.2f')}x"
                f" | {_fmt(f['rtf'], '.4f')} | {_fmt(f['cold_ms'], '.1f')}"
                f" | {_fmt(f['size_mb'], '.2f')}"
                f" | {_fmt(f['size_ratio'], '.2f')} | {_fmt(f['float_speedup'], '.2f')}"
                f" | {_fmt(f['gflops'], '.2f')} | {_fmt(f['peak_percent'], '.1f')} |"
            )
        lines.append("")
    return lines
