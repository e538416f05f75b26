"""``python -m harness overhead``: each process's CPU time is its own, and the least-work process
feeds every target what the harness's cells need, timing the runtimes' runs apart."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from harness.cli.overhead import _own, _Process, _side_by_side
from harness.cli.run_clock import CLOCK_ENV, EAGER_REFERENCE, LOADS
from harness.core import registry
from harness.run.cache import ExportCache
from harness.targets import target
from tests.conftest import REPO_ROOT

BURN = "import time\nend = time.process_time() + 0.6\nwhile time.process_time() < end: pass"
IDLE = "import time; time.sleep(0.6)"


def test_processes_run_side_by_side_are_each_charged_their_own_cpu(tmp_path):
    burner = _Process("burner", [sys.executable, "-c", BURN], tmp_path)
    sleeper = _Process("sleeper", [sys.executable, "-c", IDLE], tmp_path)
    _side_by_side([sleeper, burner], dict(os.environ))
    assert burner.returncode == sleeper.returncode == 0
    assert burner.cpu_s >= 0.6 and sleeper.cpu_s < 0.4  # not the pair's sum, not the other's
    assert sleeper.wall_s >= 0.6


def test_the_least_work_feeds_every_target_alike_and_times_the_runs_apart(tmp_path):
    clock = tmp_path / "clock.json"
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli.overhead", "conv_mlp", "--bare", "--examples=3"],
        cwd=REPO_ROOT, env={**os.environ, CLOCK_ENV: str(clock)}, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    measured = json.loads(clock.read_text())
    calls = measured["calls"]
    targets = [name for name in figures["per_target_cpu_s"] if name != EAGER_REFERENCE]
    assert "eager" in targets and len(targets) > 2
    # every target fed the same calls, except where its artifact holds a declared dynamic
    # dimension at one size: dynamic-shapes feeds it only the sizes it takes (as the suite does)
    cache = ExportCache(REPO_ROOT / ".export-cache")
    case = registry.case("conv_mlp")
    free = [name for name in targets if not cache.get(case, target(name)).meta.get("dims_fixed")]
    assert "eager" in free and len({calls[name] for name in free}) == 1, {n: calls[n] for n in targets}
    assert all(calls[name] <= calls["eager"] for name in targets)
    primary = calls["eager"] - calls[EAGER_REFERENCE]  # the reference is not replayed
    assert primary >= 1 and calls[LOADS] >= len(targets)
    assert 0 <= _own(measured) <= measured["process_cpu_s"]
