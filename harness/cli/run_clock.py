"""CPU time spent inside the runtimes, per target, for ``python -m harness overhead``.

Loaded in both of the command's processes (as a pytest plugin, ``-p harness.cli.run_clock``, in
the harness's; imported by the least-work process), it times every :meth:`Runner.run` (by
target), every :meth:`Target.load` and :meth:`Runner.reset`, and every call of an eager module
through :func:`harness.run.eager.module_step`, and writes the totals, with the process's whole
CPU time, as JSON to ``$EXPORT_CONFORMANCE_RUN_CLOCK`` at exit. The two processes then differ
only outside these runs: what the harness costs of its own. Nothing here is loaded by a normal
run.
"""

from __future__ import annotations

import atexit
import json
import os
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

from ..run import eager
from ..targets import base

__all__ = ["CLOCK_ENV", "EAGER_REFERENCE", "LOADS", "install"]

CLOCK_ENV = "EXPORT_CONFORMANCE_RUN_CLOCK"
EAGER_REFERENCE = "eager (reference)"
LOADS = "loads and resets"

_cpu: defaultdict[str, float] = defaultdict(float)
_calls: Counter[str] = Counter()
_installed: list[bool] = []


def _timed(label: Callable[..., str], function: Callable[..., Any]) -> Callable[..., Any]:
    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.process_time()
        try:
            return function(*args, **kwargs)
        finally:
            name = label(*args)
            _cpu[name] += time.process_time() - start
            _calls[name] += 1

    return timed


def install() -> None:
    """Wrap the run, load and reset methods once; the totals go to ``$EXPORT_CONFORMANCE_RUN_CLOCK``
    at exit."""
    if _installed:
        return
    _installed.append(True)
    base.Runner.run = _timed(lambda runner, *_: runner.artifact.target, base.Runner.run)  # type: ignore[method-assign]
    base.Runner.reset = _timed(lambda *_: LOADS, base.Runner.reset)  # type: ignore[method-assign]
    base.Target.load = _timed(lambda *_: LOADS, base.Target.load)  # type: ignore[method-assign]
    plain_step = eager.module_step

    def module_step(module: Any) -> Callable[..., Any]:
        return _timed(lambda *_: EAGER_REFERENCE, plain_step(module))

    eager.module_step = module_step  # type: ignore[assignment]
    atexit.register(_write, os.environ[CLOCK_ENV])


def _write(path: str) -> None:
    figures = {"runs_cpu_s": dict(_cpu), "calls": dict(_calls), "process_cpu_s": time.process_time()}
    with open(path, "w") as handle:
        json.dump(figures, handle)


if os.environ.get(CLOCK_ENV):  # the command's child processes; importing it elsewhere changes nothing
    install()
