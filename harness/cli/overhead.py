"""What the harness costs beyond the work its verdicts need, measured in one run.

``python -m harness overhead CASE`` runs two processes from a warm export cache, each with one
compute thread, and compares their CPU time (user + system, children of this process):

* **the harness**: ``pytest suites -p no:xdist -k "CASE and not benchmark"`` (every suite's
  cells for the case, as CI runs them, the benchmarks left out: they time, they do not judge);
* **the least work** those verdicts need, timed without the harness (``--bare``): every target
  the run has cells for, loaded once, fed every canonical input once from its initial state,
  plus one replay of the primary input (determinism and reset), the primary input in every
  other chunk size (stream-chunks), eager's whole-signal call (stream-offline) and the generated
  examples of the hypothesis profile through eager and the target. Eager is fed the same.

Both pay for starting Python and importing torch and the runtimes. The ratio is the harness's
overhead; the README states both figures from this command.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["least_work", "main"]

#: One compute thread in both processes: a spinning thread pool would be counted as work.
_ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "EXPORT_CONFORMANCE_ORT_THREADS": "1"}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed_child(command: list[str], env: dict[str, str]) -> tuple[float, float, subprocess.CompletedProcess]:
    cpu, wall = _children_cpu(), time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    return _children_cpu() - cpu, time.perf_counter() - wall, done


def least_work(case_name: str, *, tier: str, examples: int) -> dict[str, Any]:
    """CPU seconds per target of the runs the verdicts need (see the module's docstring)."""
    import torch
    from hypothesis import HealthCheck, given, settings

    from ..__main__ import _load_cases, project_config
    from ..checks.framing import rechunk, whole_signal
    from ..core import registry
    from ..plugin.suites import pair_runs
    from ..run.cache import ExportCache
    from ..run.eager import run_module
    from ..run.target_runs import target_stream
    from ..targets import EAGER, ExportError, RuntimeMissing, targets

    torch.set_num_threads(1)
    _load_cases()
    case = registry.case(case_name)
    config_file, ini = project_config()
    rootdir = Path(config_file).parent if config_file else Path.cwd()
    cache = ExportCache(rootdir / (ini.get("conformance_export_cache") or ".export-cache"))
    primary = list(case.inputs[case.main_input]())
    inputs = {name: list(make()) for name, make in case.inputs.items()}
    generated: list[Any] = []
    if case.strategy is not None:

        @settings(max_examples=examples, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
        @given(case.strategy())
        def draw(calls: Any) -> None:
            generated.append(list(calls))

        draw()
    figures: dict[str, float] = {}
    module = case.build().eval()

    def eager_feed(calls: list) -> None:
        run_module(module, calls, case=case)

    for target in targets():
        if not pair_runs(case, target.name, streaming=False, quick=tier == "ci"):
            continue
        start = time.process_time()
        if target.name == EAGER:
            feed = eager_feed
        else:
            try:
                target.require_runtime()
                runner = target.load(cache.get(case, target))
            except (RuntimeMissing, ExportError):  # a missing runtime or an export error: no run needed
                continue

            def feed(calls: list, runner: Any = runner) -> None:
                target_stream(runner, calls, case=case, record_state=False)

        for calls in inputs.values():
            feed(calls)
        feed(primary)  # the replay: determinism and reset
        spec = case.streaming
        if spec is not None and pair_runs(case, target.name, streaming=True, quick=tier == "ci"):
            for chunk in spec.other_chunks:
                try:
                    feed(rechunk(case, primary, chunk))
                except Exception:  # a fixed-chunk export refuses other sizes: the refusal is the verdict
                    pass
        for calls in generated:
            try:
                feed(calls)
            except Exception:  # an export that rejects a generated input: that is its verdict
                pass
        figures[target.name] = time.process_time() - start
    if case.streaming is not None:
        start = time.process_time()
        run_module(module, [whole_signal(case, primary)])  # offline reference
        figures["eager"] = figures.get("eager", 0.0) + time.process_time() - start
    return {"case": case_name, "tier": tier, "examples": len(generated), "per_target_cpu_s": figures}


def measure(case: str, *, tier: str = "ci", examples: int = 6, json_path: str | None = None) -> int:
    """Run both processes, print both CPU times and the overhead; 2 if either run broke."""
    env = {**os.environ, **_ONE_THREAD}
    harness_cmd = [
        sys.executable, "-m", "pytest", "suites", "-p", "no:xdist", "-q", "-p", "no:cacheprovider",
        "-k", f"{case} and not benchmark", f"--conformance-tier={tier}", "--conformance-ort-threads=1",
        "--conformance-report=reports/overhead",
    ]  # fmt: skip
    print("warming the export cache ...", file=sys.stderr)
    subprocess.run(harness_cmd, env=env, capture_output=True, text=True)
    print("timing the harness ...", file=sys.stderr)
    harness_cpu, harness_wall, run = _timed_child(harness_cmd, env)
    if run.returncode not in (0, 1):
        print(run.stdout[-3000:], run.stderr[-3000:], file=sys.stderr)
        return 2
    print("timing the least work ...", file=sys.stderr)
    bare_cmd = [sys.executable, "-m", "harness.cli.overhead", case, "--bare", f"--tier={tier}", f"--examples={examples}"]
    bare_cpu, bare_wall, bare = _timed_child(bare_cmd, env)
    if bare.returncode != 0:
        print(bare.stderr[-3000:], file=sys.stderr)
        return 2
    detail = json.loads(bare.stdout.strip().splitlines()[-1])
    summary_line = next((line for line in reversed(run.stdout.splitlines()) if " in " in line and "passed" in line), "")
    result = {
        "case": case,
        "tier": tier,
        "harness_cpu_s": round(harness_cpu, 1),
        "harness_wall_s": round(harness_wall, 1),
        "harness_cells": summary_line.strip("= "),
        "least_work_cpu_s": round(bare_cpu, 1),
        "least_work_wall_s": round(bare_wall, 1),
        "overhead": round(harness_cpu / bare_cpu - 1, 3),
        "least_work_per_target_cpu_s": {k: round(v, 2) for k, v in detail["per_target_cpu_s"].items()},
        "generated_examples": detail["examples"],
    }
    print(f"harness     {result['harness_cpu_s']:7.1f} CPU-s ({result['harness_cells']})")
    print(f"least work  {result['least_work_cpu_s']:7.1f} CPU-s (every target once over every input, one replay, "
          f"other chunk sizes, {detail['examples']} generated examples)")  # fmt: skip
    print(f"overhead    {100 * result['overhead']:+.0f}%")
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(result, indent=2) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m harness.cli.overhead CASE --bare``: the least work, measured in this process (the
    ``overhead`` command runs it as its second process)."""
    parser = argparse.ArgumentParser(prog="python -m harness.cli.overhead")
    parser.add_argument("case")
    parser.add_argument("--bare", action="store_true")
    parser.add_argument("--tier", default="ci", choices=("ci", "nightly"))
    parser.add_argument("--examples", type=int, default=6)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if args.bare:
        print(json.dumps(least_work(args.case, tier=args.tier, examples=args.examples)))
        return 0
    return measure(args.case, tier=args.tier, examples=args.examples, json_path=args.json)


if __name__ == "__main__":
    sys.exit(main())
