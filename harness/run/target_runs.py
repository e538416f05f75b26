"""The target side: the one way a loaded runner is fed a call sequence. Both functions reset the
runner first; nothing else resets a runner before a sequence."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..core.case import Call, Calls, ModelCase
from ..core.sequence import StateThreading, run_sequence
from ..targets import Runner
from .eager import StreamRun, stack_outputs

__all__ = ["FreshRun", "run_calls", "target_stream"]


def target_stream(
    runner: Runner,
    calls: Calls,
    *,
    reset: bool = True,
    case: ModelCase | None = None,
    threading: StateThreading | None = None,
    record_state: bool = True,
) -> StreamRun:
    """The target fed ``calls`` (after a reset unless told otherwise; explicit state threaded as
    the case says), with its state after each call where the runtime lets it be read."""
    if reset:
        runner.reset()
    states: list[dict[str, np.ndarray]] | None = [] if record_state else None

    def step(call: Call) -> tuple[np.ndarray, ...]:
        nonlocal states
        out = runner.run(*call)
        if states is not None:
            state = runner.state()
            if state is None:
                states = None
            else:
                states.append(state)
        return out

    threading = (
        threading if threading is not None else (StateThreading.of(case) if case is not None else None)
    )
    return StreamRun(list(run_sequence(step, calls, threading)), states)


def run_calls(
    runner: Runner, calls: Calls, output_names: Sequence[str], *, threading: StateThreading | None = None
) -> dict[str, np.ndarray]:
    """Reset the runner, feed the calls in order (explicit state threaded), return outputs
    stacked on a leading call axis."""
    run = target_stream(runner, calls, threading=threading, record_state=False)
    return stack_outputs(run.outputs, output_names, str(runner.artifact.path))


class FreshRun:
    """A freshly loaded runner's run over one input (``first``), and on demand its ``replay()``
    after ``reset()``, with the state reset returned to (where the runtime lets it be read)."""

    def __init__(self, runner: Runner, calls: Calls, case: ModelCase) -> None:
        self.runner = runner
        self._calls, self._case = calls, case
        self.first = target_stream(runner, calls, reset=False, case=case)
        self._replay: tuple[StreamRun, dict[str, np.ndarray] | None] | None = None

    def replay(self) -> tuple[StreamRun, dict[str, np.ndarray] | None]:
        """(the run after ``reset()``, the state ``reset()`` left before it ran)."""
        if self._replay is None:
            self.runner.reset()
            start = self.runner.state()
            self._replay = (target_stream(self.runner, self._calls, reset=False, case=self._case), start)
        return self._replay
