"""What the harness costs beyond the work its verdicts need, measured in one run.

``python -m harness overhead CASE`` warms the export cache, then runs two processes side by side,
each with one compute thread, and compares their CPU time (user + system of each process):

* **the harness**: ``pytest suites -p no:xdist -k "CASE and not benchmark"`` (every suite's
  cells for the case, as CI runs them, the benchmarks left out: they time, they do not judge);
* **the least work** those verdicts need, timed without the harness (``--bare``), read from
  the evidence each suite declares (``Suite.evidence``) for the cells the run has: every target
  with cells (eager's reloaded module, the eager column, among them) loaded once and fed every
  canonical input once from its initial state, then what each declared need feeds beyond that
  (``harness.run.evidence.target_feeds``: one replay, other chunk sizes, altered batch rows,
  the batch sample by sample, the dynamic sizes) and the generated examples of the hypothesis
  profile; and eager's reference over every sequence a target is judged on, plus the whole
  signal where stream-offline has cells. When a suite changes what it declares, this follows.

Run side by side on a two-core machine, both see the same machine: a runtime's speed drifts by
a tenth between runs minutes apart (ExecuTorch's portable kernels, most of PESTO's least work),
which would swamp the overhead measured one process after the other. ``--rounds`` pairs are run
and the median ratio reported. Both processes load :mod:`harness.cli.run_clock`, which times the
runtimes' runs and loads per target: what the processes spend outside them is what the harness
costs of its own. Both pay for starting Python and importing torch and the runtimes. The README
states the figures from this command.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ..core import registry
from ..core.case import ModelCase
from ..core.framing import whole_signal
from ..plugin.profiles import generation_seed
from ..plugin.suites import SUITE_REGISTRY, pair_runs
from ..run.cache import ExportCache
from ..run.eager import calls_key, run_module
from ..run.evidence import Need, target_feeds
from ..run.target_runs import target_stream
from ..targets import EAGER, ExportError, RuntimeMissing, Target, targets
from .project import load_cases, project_config
from .run_clock import CLOCK_ENV, EAGER_REFERENCE

__all__ = ["least_work", "main", "measure"]

#: One compute thread in both processes: a spinning thread pool would be counted as work.
_ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "EXPORT_CONFORMANCE_ORT_THREADS": "1"}


@dataclass
class _Process:
    """One timed child: its command, output files, CPU seconds and run clock once reaped."""

    name: str
    command: list[str]
    folder: Path
    popen: subprocess.Popen | None = None
    started: float = 0.0
    cpu_s: float = 0.0
    wall_s: float = 0.0
    returncode: int = 0

    def start(self, env: dict[str, str]) -> None:
        env = {**env, CLOCK_ENV: str(self.folder / f"{self.name}.clock.json")}
        self.started = time.perf_counter()
        with (
            open(self.folder / f"{self.name}.out", "w") as out,
            open(self.folder / f"{self.name}.err", "w") as err,
        ):
            self.popen = subprocess.Popen(self.command, env=env, stdout=out, stderr=err, text=True)

    def output(self, stream: str = "out") -> str:
        return (self.folder / f"{self.name}.{stream}").read_text()

    def clock(self) -> dict[str, Any]:
        return json.loads((self.folder / f"{self.name}.clock.json").read_text())


def _side_by_side(processes: list[_Process], env: dict[str, str]) -> None:
    """Start every process at once and reap each with its own resource usage (os.wait4)."""
    for process in processes:
        process.start(env)
    waiting = {p.popen.pid: p for p in processes if p.popen is not None}
    while waiting:
        pid, status, usage = os.wait4(-1, 0)
        process = waiting.pop(pid, None)
        if process is None:
            continue
        process.wall_s = time.perf_counter() - process.started
        process.cpu_s = usage.ru_utime + usage.ru_stime
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.popen is not None:
            process.popen.returncode = process.returncode


def _own(clock: dict[str, Any]) -> float:
    """CPU seconds a process spent outside the runtimes' runs, loads and resets."""
    return clock["process_cpu_s"] - sum(clock["runs_cpu_s"].values())


def least_work(case_name: str, *, tier: str, examples: int) -> dict[str, Any]:
    """CPU seconds per target of the runs the verdicts need, read from the suites' declared
    evidence (``Suite.evidence``, the sequences each need feeds: ``harness.run.evidence.target_feeds``)."""

    torch.set_num_threads(1)
    load_cases()
    case = registry.case(case_name)
    config_file, ini = project_config()
    rootdir = Path(config_file).parent if config_file else Path.cwd()
    cache = ExportCache(rootdir / (ini.get("conformance_export_cache") or ".export-cache"))
    primary = list(case.inputs[case.main_input]())
    inputs = {name: list(make()) for name, make in case.inputs.items()}
    generated: list[Any] = []
    if case.strategy is not None:
        # the harness's draw: the primary input first (its run is shared, not repeated), then the
        # profile's examples from the seed the hypothesis suite uses for this case
        @settings(
            max_examples=examples, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
        )
        @given(st.one_of(st.just(primary), case.strategy()))
        def draw(calls: Any) -> None:
            if calls is not primary:
                generated.append(list(calls))

        draw._hypothesis_internal_use_seed = generation_seed(f"{case.name}/generated")  # type: ignore[attr-defined]
        draw()
    figures: dict[str, float] = {}
    eager_feeds: dict[str, list[Any]] = {}  # eager's reference: every sequence some target is judged on
    module = case.build().eval()
    for target in targets():
        plan = work_plan(case, target, tier=tier)
        if not plan:
            continue
        start = time.process_time()
        try:
            target.require_runtime()
            artifact = cache.get(case, target)
            runner = target.load(artifact)
        except (RuntimeMissing, ExportError):  # a missing runtime or an export error: no run needed
            continue
        feeds = target_work(case, plan, inputs, generated, artifact.meta.get("dims_fixed") or {})
        for label, calls in feeds:
            try:
                target_stream(runner, calls, case=case, record_state=False)
            except Exception:  # a refusal (a fixed chunk, a rejected size or example) is its verdict
                pass
            if label != "replay":
                eager_feeds.setdefault(calls_key(calls), calls)
        figures[target.name] = time.process_time() - start
    start = time.process_time()
    for calls in eager_feeds.values():
        run_module(module, calls, case=case)
    if case.streaming is not None and any(Need.OFFLINE in needs for needs in _all_needs(case, tier)):
        offline = case.streaming.offline().eval() if case.streaming.offline is not None else module
        run_module(offline, [whole_signal(case, primary)])
    figures[EAGER_REFERENCE] = time.process_time() - start
    return {"case": case_name, "tier": tier, "examples": len(generated), "per_target_cpu_s": figures}


def work_plan(case: ModelCase, target: Target, *, tier: str) -> dict[str, frozenset[Need]]:
    """Input name -> the evidence the suites that have cells for this (case, target) declare on
    it (``generated`` is the primary input's cell of the generated-input suites)."""
    plan: dict[str, set[Need]] = {}
    for suite in SUITE_REGISTRY.values():
        if not suite.evidence or suite.reason_not_applied(case) is not None:
            continue
        if not pair_runs(case, target, streaming=suite.streaming, quick=tier == "ci"):
            continue
        for name in suite.input_names(case, eager=target.name == EAGER):
            plan.setdefault(case.main_input if name == "generated" else name, set()).update(suite.evidence)
    return {name: frozenset(needs) for name, needs in plan.items()}


def _all_needs(case: ModelCase, tier: str) -> list[frozenset[Need]]:
    return [needs for t in targets() for needs in work_plan(case, t, tier=tier).values()]


def target_work(
    case: ModelCase,
    plan: dict[str, frozenset[Need]],
    inputs: dict[str, list[Any]],
    generated: list[Any],
    fixed: dict[str, Any],
) -> list[tuple[str, list[Any]]]:
    """(label, calls) the target is fed for ``plan``: each input once from its initial state (a
    freshly loaded runner's first run is the primary input's, shared), then what each declared
    need feeds beyond it (``target_feeds``), the generated examples last."""
    feeds: list[tuple[str, list[Any]]] = []
    for name, needs in plan.items():
        calls = inputs[name]
        if needs & {Need.CANONICAL, Need.FRESH, Need.REPLAY, Need.START_STATE}:
            feeds.append((name, calls))
        for need in sorted(needs, key=lambda n: n.name):
            for extra in target_feeds(need, case, calls, fixed):
                feeds.append(("replay" if need is Need.REPLAY else need.name.lower(), extra))
        if Need.GENERATED in needs:
            feeds += [("generated", list(example)) for example in generated]
    return feeds


def measure(
    case: str, *, tier: str = "ci", examples: int = 6, rounds: int = 3, json_path: str | None = None
) -> int:
    """Warm the cache, run ``rounds`` side-by-side pairs, print the figures and the median
    overhead; 2 if a run broke."""
    env = {**os.environ, **_ONE_THREAD}
    harness_cmd = [
        sys.executable, "-m", "pytest", "suites", "-p", "no:xdist", "-q", "-p", "no:cacheprovider",
        "-p", "harness.cli.run_clock", "-k", f"{case} and not benchmark", f"--conformance-tier={tier}",
        "--conformance-ort-threads=1", "--conformance-report=reports/overhead",
    ]  # fmt: skip
    bare_cmd = [
        sys.executable,
        "-m",
        "harness.cli.overhead",
        case,
        "--bare",
        f"--tier={tier}",
        f"--examples={examples}",
    ]
    print("warming the export cache ...", file=sys.stderr)
    subprocess.run(harness_cmd, env=env, capture_output=True, text=True)
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        for index in range(rounds):
            print(
                f"round {index + 1}/{rounds}: the harness and the least work side by side ...",
                file=sys.stderr,
            )
            harness, bare = (
                _Process("harness", harness_cmd, Path(scratch)),
                _Process("bare", bare_cmd, Path(scratch)),
            )
            _side_by_side([harness, bare], env)
            if harness.returncode not in (0, 1) or bare.returncode != 0:
                broken = harness if harness.returncode not in (0, 1) else bare
                print(broken.output()[-3000:], broken.output("err")[-3000:], file=sys.stderr)
                return 2
            results.append(_round(harness, bare))
    result = _summary(case, tier, results)
    print(_text(result))
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(result, indent=2) + "\n")
    return 0


def _round(harness: _Process, bare: _Process) -> dict[str, Any]:
    detail = json.loads(bare.output().strip().splitlines()[-1])
    harness_clock, bare_clock = harness.clock(), bare.clock()
    summary_line = next(
        (line for line in reversed(harness.output().splitlines()) if " in " in line and "passed" in line), ""
    )
    return {
        "harness_cpu_s": round(harness.cpu_s, 2),
        "least_work_cpu_s": round(bare.cpu_s, 2),
        "overhead": round(harness.cpu_s / bare.cpu_s - 1, 4),
        "harness_wall_s": round(harness.wall_s, 1),
        "least_work_wall_s": round(bare.wall_s, 1),
        "harness_cells": summary_line.strip("= "),
        "harness_outside_runs_cpu_s": round(_own(harness_clock), 2),
        "least_work_outside_runs_cpu_s": round(_own(bare_clock), 2),
        "harness_runs_cpu_s": {k: round(v, 2) for k, v in harness_clock["runs_cpu_s"].items()},
        "least_work_runs_cpu_s": {k: round(v, 2) for k, v in bare_clock["runs_cpu_s"].items()},
        "harness_run_calls": harness_clock["calls"],
        "least_work_run_calls": bare_clock["calls"],
        "least_work_per_target_cpu_s": {k: round(v, 2) for k, v in detail["per_target_cpu_s"].items()},
        "generated_examples": detail["examples"],
    }


def _summary(case: str, tier: str, rounds: list[dict[str, Any]]) -> dict[str, Any]:
    ordered = sorted(rounds, key=lambda r: r["overhead"])
    median = ordered[len(ordered) // 2]  # an odd count has its middle; an even one its upper middle
    return {"case": case, "tier": tier, "rounds": rounds, "median_round": rounds.index(median), **median}


def _text(result: dict[str, Any]) -> str:
    rounds = result["rounds"]
    lines = [
        f"round {i + 1}: harness {r['harness_cpu_s']:.1f} CPU-s, least work {r['least_work_cpu_s']:.1f} CPU-s, "
        f"overhead {100 * r['overhead']:+.1f}%" for i, r in enumerate(rounds)
    ]  # fmt: skip
    lines += [
        f"harness     {result['harness_cpu_s']:7.1f} CPU-s ({result['harness_cells']})",
        f"least work  {result['least_work_cpu_s']:7.1f} CPU-s (what the suites' cells declare: every target once "
        f"over every input and the runs each need feeds, {result['generated_examples']} generated examples; "
        "eager's reference)",
        f"overhead    {100 * result['overhead']:+.1f}% (median of {len(rounds)} side-by-side rounds)",
        f"outside the runtimes' runs and loads: harness {result['harness_outside_runs_cpu_s']:.1f} CPU-s, "
        f"least work {result['least_work_outside_runs_cpu_s']:.1f} CPU-s",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m harness.cli.overhead CASE --bare``: the least work, measured in this process (the
    ``overhead`` command runs it as its second process)."""
    parser = argparse.ArgumentParser(prog="python -m harness.cli.overhead")
    parser.add_argument("case")
    parser.add_argument("--bare", action="store_true")
    parser.add_argument("--tier", default="ci", choices=("ci", "nightly"))
    parser.add_argument("--examples", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if args.bare:
        from . import run_clock  # noqa: F401 - times the runtimes' runs, as in the harness's process

        print(json.dumps(least_work(args.case, tier=args.tier, examples=args.examples)))
        return 0
    return measure(args.case, tier=args.tier, examples=args.examples, rounds=args.rounds, json_path=args.json)


if __name__ == "__main__":
    sys.exit(main())
