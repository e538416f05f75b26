"""Cost figures beside the benchmarks: FLOPs per call, a matmul peak, artifact sizes, and the
benchmark table (ratios against eager measured in the same run)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .case import Call, ModelCase

__all__ = ["artifact_size", "benchmark_table", "flops_per_call", "matmul_peak_gflops"]


def flops_per_call(case: ModelCase, module: torch.nn.Module, call: Call) -> int:
    """FLOPs of one eager call, counted by ``torch.utils.flop_counter`` (state restored after)."""
    from torch.utils.flop_counter import FlopCounterMode

    from .buffers import buffer_snapshot, restore_buffers

    initial = buffer_snapshot(module)
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            module(*call)
    finally:
        restore_buffers(module, initial)
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


def artifact_size(path: Path) -> int:
    """Bytes on disk of an artifact and the files it needs beside it (state, sidecars excluded)."""
    total = Path(path).stat().st_size
    state = Path(str(path) + ".state.npz")
    return total + (state.stat().st_size if state.is_file() else 0)


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def benchmark_table(records: Sequence[dict[str, Any]]) -> list[str]:
    """Markdown lines: one table per case, a row per target, ratios against eager in this run."""
    lines: list[str] = []
    peaks = [r["peak_gflops"] for r in records if r.get("peak_gflops")]
    run_peak = max(peaks) if peaks else None
    by_case: dict[str, dict[str, dict[str, Any]]] = {}
    for record in records:
        by_case.setdefault(record["case"], {}).setdefault(record["target"], {}).update(record)
    for case_name, rows in sorted(by_case.items()):
        eager = rows.get("eager", {})
        lines += [
            f"**{case_name}** (one {'streaming step' if rows[next(iter(rows))].get('streaming') else 'call'}"
            f"; float32 matmul peak in this run {_fmt(run_peak, '.1f')} GFLOP/s)",
            "",
            "| target | step ms | speed-up vs eager | real-time factor | cold start ms | size MB | size vs float | speed-up vs float | GFLOP/s | % of peak |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for target_name, row in rows.items():  # "-": no figure (not measured, or no float counterpart)
            step = row.get("step_s")
            speedup = eager.get("step_s") / step if step and eager.get("step_s") else None
            rtf = step / row["chunk_seconds"] if step and row.get("chunk_seconds") else None
            gflops = row["flops"] / step / 1e9 if step and row.get("flops") else None
            peak = run_peak
            float_row = rows.get(row.get("float_counterpart") or "", {})
            size_ratio = (
                row["size_bytes"] / float_row["size_bytes"]
                if row.get("size_bytes") and float_row.get("size_bytes")
                else None
            )
            float_speedup = float_row["step_s"] / step if step and float_row.get("step_s") else None
            lines.append(
                f"| {target_name} | {_fmt(step and step * 1e3, '.3f')} | {_fmt(speedup, '.2f')}x"
                f" | {_fmt(rtf, '.4f')} | {_fmt(row.get('cold_s') and row['cold_s'] * 1e3, '.1f')}"
                f" | {_fmt(row.get('size_bytes') and row['size_bytes'] / 1e6, '.2f')}"
                f" | {_fmt(size_ratio, '.2f')} | {_fmt(float_speedup, '.2f')}"
                f" | {_fmt(gflops, '.2f')} | {_fmt(gflops and peak and 100 * gflops / peak, '.1f')} |"
            )
        lines.append("")
    return lines
