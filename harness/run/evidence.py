"""The evidence a cell is judged on: what each suite declares it needs, gathered once, typed.

A suite declares its needs (:class:`Need`: the canonical run, a freshly loaded runner's run,
its replay after ``reset()``, the input rechunked, its batch rows altered, the batch run
sample by sample, the dynamic sizes, the artifact's weights); :func:`gather` makes exactly
those runs, through the one owner of reset (:func:`~harness.run.target_runs.target_stream`),
and hands back one :class:`Evidence`. Every check is a function of an ``Evidence``: it runs
nothing on the target. The sequences each need feeds the target (:func:`target_feeds`) are
also what ``python -m harness overhead`` counts as the least work, so the overhead figure
follows any change to what a suite runs.

The eager side is part of the evidence as the cell's :class:`~harness.run.eager.EagerReference`
(computed once per process and shared by every target; a diagnosis replays eager under
state hypotheses on demand). Generated examples are gathered one at a time by the property
loop (:func:`run_example`): hypothesis decides which.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

import numpy as np
import torch

from ..core.case import Call, Calls, ModelCase
from ..core.errors import HarnessError
from ..core.framing import rechunk, streaming_spec
from ..core.judge import Judge
from ..core.shapes import resize_call, sizes_to_try
from ..targets import Runner, Target
from .eager import EagerReference, StreamRun, stack_outputs
from .target_runs import FreshRun, target_stream

__all__ = [
    "Attempt",
    "BatchedRuns",
    "Evidence",
    "LoadedRuns",
    "Need",
    "ResizedRun",
    "RunSource",
    "altered_rows",
    "batched_calls",
    "gather",
    "resized_calls",
    "run_example",
    "target_feeds",
]


class Need(Enum):
    """One kind of evidence a suite may declare."""

    #: the target fed the cell's input from its initial state (shared by every check on it)
    CANONICAL = "the target's run over the cell's input"
    #: a freshly loaded runner's first run over the input, as loaded (never reset before)
    FRESH = "a freshly loaded runner's first run"
    #: that runner's run after ``reset()``, and the state ``reset()`` left (where readable)
    REPLAY = "the run after reset()"
    #: the state ``reset()`` returns that runner to, where the runtime lets state be read (a
    #: replay is made for it only then; None elsewhere)
    START_STATE = "the state reset() returns to"
    #: the input in every other chunk size the case admits
    RECHUNKED = "the input in every other chunk size"
    #: the input with every batch row but the first replaced by other data
    ALTERED_ROWS = "the input with batch rows 1.. altered"
    #: the first call at the case's batch size, and each of its samples alone
    BATCHED = "the first call batched and sample by sample"
    #: the first call at each size to try of each declared dynamic dimension
    RESIZED = "the first call at other sizes"
    #: generated examples (gathered one by one by the property loop: :func:`run_example`)
    GENERATED = "generated examples"
    #: eager's whole-signal output (the eager side's, computed on demand)
    OFFLINE = "eager's whole-signal output"
    #: the artifact's weights by name (for the weight audit of a failing comparison)
    WEIGHTS = "the artifact's weights"


@dataclass(frozen=True)
class Attempt:
    """The target fed one call sequence: its run, or what it raised (a refusal is evidence)."""

    calls: Calls
    run: StreamRun | None = None
    error: Exception | None = None

    def outputs(self, names: Sequence[str], where: str) -> dict[str, np.ndarray]:
        if self.run is None:
            raise HarnessError(f"{where}: no outputs: the run raised {self.error!r}")
        return stack_outputs(self.run.outputs, names, where)


@dataclass(frozen=True)
class BatchedRuns:
    """The first call at ``batch`` rows, and each sample alone (outputs stacked over calls)."""

    batch: int
    together: dict[str, np.ndarray]
    alone: tuple[dict[str, np.ndarray], ...]


@dataclass(frozen=True)
class ResizedRun:
    """One declared dynamic dimension at one size: the resized call, eager's and the target's."""

    input: str
    axis: int
    size: int
    example_size: int
    call: Call
    attempt: Attempt


@dataclass(frozen=True)
class Evidence:
    """Everything one cell is judged on. Fields a suite did not declare are absent: asking for
    one is a harness error naming it, never a silent run."""

    case: ModelCase
    target: Target
    input_name: str
    judge: Judge
    eager: EagerReference
    #: the artifact's sidecar facts (``chunk_dynamic``, ``dims_fixed``, ``user_file``, ...)
    meta: Mapping[str, Any]
    declared: frozenset[Need]
    #: the declared dynamic dimensions the artifact holds at one size (by dimension name)
    fixed_dims: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    _found: Mapping[Need, Any] = field(default_factory=dict, repr=False)

    def _get(self, need: Need) -> Any:
        if need not in self.declared:
            raise HarnessError(
                f"the check asked for {need.value}, which its suite does not declare (Suite(evidence=...))"
            )
        return self._found[need]

    @property
    def calls(self) -> list[Call]:
        """The cell's input: the calls fed from the initial state."""
        return self.eager.calls

    @property
    def run(self) -> StreamRun:
        return self._get(Need.CANONICAL)

    def outputs(self) -> dict[str, np.ndarray]:
        """The canonical run's outputs stacked over calls."""
        return stack_outputs(self.run.outputs, self.case.output_names, self.target.name)

    @property
    def fresh(self) -> StreamRun:
        return self._get(Need.FRESH)

    @property
    def replay(self) -> StreamRun:
        return self._get(Need.REPLAY)[0]

    @property
    def start_state(self) -> dict[str, np.ndarray] | None:
        """The state ``reset()`` returned to (None where the runtime does not let it be read)."""
        return self._get(Need.START_STATE)

    @property
    def rechunked(self) -> Mapping[int, Attempt]:
        return self._get(Need.RECHUNKED)

    @property
    def altered_rows(self) -> StreamRun:
        return self._get(Need.ALTERED_ROWS)

    @property
    def batched(self) -> BatchedRuns:
        return self._get(Need.BATCHED)

    @property
    def resized(self) -> tuple[ResizedRun, ...]:
        return self._get(Need.RESIZED)

    @property
    def weights(self) -> dict[str, np.ndarray] | None:
        """The artifact's weights by name (None for formats that keep no names)."""
        return self._get(Need.WEIGHTS)()


class RunSource(Protocol):
    """Where a cell's target runs come from: the session's shared runs in a pytest run, a
    loaded runner in a script or a self-test. :func:`gather` asks it for nothing else."""

    def runner(self) -> Runner: ...
    def canonical(self) -> StreamRun: ...
    def fresh(self) -> FreshRun: ...


class LoadedRuns:
    """A :class:`RunSource` over one loaded runner and one input (scripts, self-tests): its first
    run as loaded is the canonical run, as the session makes the primary input's."""

    def __init__(self, runner: Runner, calls: Calls, case: ModelCase) -> None:
        self._runner, self._calls, self._case = runner, list(calls), case
        self._fresh: FreshRun | None = None

    def runner(self) -> Runner:
        return self._runner

    def fresh(self) -> FreshRun:
        if self._fresh is None:
            self._fresh = FreshRun(self._runner, self._calls, self._case)
        return self._fresh

    def canonical(self) -> StreamRun:
        return self.fresh().first


def altered_rows(case: ModelCase, calls: Calls) -> list[Call]:
    """The same calls with every batch row but the first of each time input replaced by other data."""
    axes = streaming_spec(case).time_axes(case.input_names)
    altered = []
    for call in calls:
        new = []
        for name, tensor in zip(case.input_names, call):
            if name in axes and tensor.dim() > 0:
                t = tensor.clone()
                t[1:] = torch.flip(t[1:], dims=[-1]) * -0.7 + 0.05
                new.append(t)
            else:
                new.append(tensor)
        altered.append(tuple(new))
    return altered


def batched_calls(call: Call, batch: int) -> tuple[Call, list[Call]]:
    """``call`` at ``batch`` rows (each input resized on axis 0), and each of its samples alone."""
    batched = call
    for index in range(len(call)):
        batched = resize_call(batched, index, 0, batch, seed=batch)
    return batched, [tuple(x[sample : sample + 1] for x in batched) for sample in range(batch)]


def resized_calls(
    case: ModelCase, call: Call, fixed: Mapping[str, Mapping[str, Any]]
) -> list[tuple[str, int, int, int, Call]]:
    """(input, axis, size, the example's size, the resized call) for every declared dynamic
    dimension the artifact does not hold fixed, at sizes 1, the bounds and sizes unlike the
    example; a dimension held fixed is kept at its size in every call."""
    for d in case.dynamic_axes():
        if d.dim in fixed and call[d.index].shape[d.axis] != fixed[d.dim]["size"]:
            call = resize_call(call, d.index, d.axis, int(fixed[d.dim]["size"]), seed=0)
    groups: dict[str, list] = {}
    for d in case.dynamic_axes():
        if d.dim not in fixed:
            groups.setdefault(d.dim, []).append(d)
    found = []
    for members in groups.values():
        first = members[0]
        example_size = call[first.index].shape[first.axis]
        for size in sizes_to_try(first.low, first.high, example_size):
            resized = call
            for member in members:  # a shared dimension changes on every input that has it
                resized = resize_call(resized, member.index, member.axis, size, seed=size)
            found.append((first.input, first.axis, size, example_size, resized))
    return found


def target_feeds(
    need: Need, case: ModelCase, calls: Calls, fixed: Mapping[str, Mapping[str, Any]] | None = None
) -> list[list[Call]]:
    """The call sequences ``need`` feeds the target beyond the canonical run (one owner: the
    gathering below and the overhead measurement's least work both read it)."""
    spec = case.streaming
    if need is Need.REPLAY:
        return [list(calls)]
    if need is Need.RECHUNKED and spec is not None:
        return [list(rechunk(case, calls, chunk)) for chunk in spec.other_chunks]
    if need is Need.ALTERED_ROWS and spec is not None:
        return [altered_rows(case, calls)]
    if need is Need.BATCHED and case.batch_consistency is not None:
        together, alone = batched_calls(calls[0], case.batch_consistency)
        return [[together], *([one] for one in alone)]
    if need is Need.RESIZED:
        return [[found[-1]] for found in resized_calls(case, calls[0], fixed or {})]
    return []


def run_example(runner: Runner, case: ModelCase | None, calls: Calls) -> Attempt:
    """The target fed ``calls`` from its initial state (explicit state threaded as ``case`` says;
    None: plain calls): a generated example, a rechunked input, a resized call. A refusal is the
    check's evidence, which it judges, not an error here."""
    try:
        return Attempt(calls, target_stream(runner, calls, case=case, record_state=case is not None))
    except Exception as exc:  # judged by the check (a rejected size, a refused chunk, an example)
        return Attempt(calls, error=exc)


def gather(
    case: ModelCase,
    target: Target,
    input_name: str,
    eager: EagerReference,
    runs: RunSource,
    needs: Iterable[Need],
    *,
    judge: Judge,
    fixed_dims: Mapping[str, Mapping[str, Any]] | None = None,
) -> Evidence:
    """Make the runs ``needs`` declares, in the order that keeps each one's meaning: a freshly
    loaded runner's first run before anything else on it, the canonical run, then the extra
    sequences (each after a reset). A canonical run that raises propagates (the target's
    runtime failed on the case's own input); an extra sequence's refusal is kept as evidence."""
    declared = frozenset(needs)
    calls = eager.calls
    fixed = dict(fixed_dims or {})
    found: dict[Need, Any] = {}
    if declared & {Need.FRESH, Need.REPLAY, Need.START_STATE}:
        fresh = runs.fresh()
        found[Need.FRESH] = fresh.first
        if Need.REPLAY in declared:
            found[Need.REPLAY] = fresh.replay()
        if Need.START_STATE in declared:  # a replay only where the state can be read at all
            found[Need.START_STATE] = fresh.replay()[1] if fresh.first.states else None
    if Need.CANONICAL in declared:
        found[Need.CANONICAL] = runs.canonical()
    runner = (
        runs.runner()
        if declared - {Need.FRESH, Need.REPLAY, Need.START_STATE, Need.CANONICAL, Need.OFFLINE}
        else None
    )
    if runner is not None:
        if Need.RECHUNKED in declared:
            spec = streaming_spec(case)
            found[Need.RECHUNKED] = {
                chunk: run_example(runner, case, feed)
                for chunk, feed in zip(spec.other_chunks, target_feeds(Need.RECHUNKED, case, calls))
            }
        if Need.ALTERED_ROWS in declared:
            (feed,) = target_feeds(Need.ALTERED_ROWS, case, calls)
            found[Need.ALTERED_ROWS] = target_stream(runner, feed, case=case)
        if Need.BATCHED in declared:
            found[Need.BATCHED] = _batched(runner, case, calls)
        if Need.RESIZED in declared:
            found[Need.RESIZED] = _resized(runner, case, calls, fixed)
        if Need.WEIGHTS in declared:  # read when a failing comparison asks (a diagnosis aid)
            found[Need.WEIGHTS] = functools.cache(lambda: _weights(target, runner))
    for need in declared - set(found):
        found[need] = None  # OFFLINE and GENERATED live on the eager side and in the property loop
    meta = dict(runs.runner().artifact.meta)
    return Evidence(case, target, input_name, judge, eager, meta, declared, fixed, found)


def _batched(runner: Runner, case: ModelCase, calls: Calls) -> BatchedRuns:
    batch = case.batch_consistency
    assert batch is not None, "a batch-consistency cell exists only where the case declares a batch"
    feeds = target_feeds(Need.BATCHED, case, calls)
    runs = [
        stack_outputs(target_stream(runner, feed).outputs, case.output_names, runner.where) for feed in feeds
    ]
    return BatchedRuns(batch, runs[0], tuple(runs[1:]))


def _resized(
    runner: Runner, case: ModelCase, calls: Calls, fixed: Mapping[str, Mapping[str, Any]]
) -> tuple[ResizedRun, ...]:
    found = []
    for name, axis, size, example_size, call in resized_calls(case, calls[0], fixed):
        attempt = run_example(runner, None, [call])
        found.append(ResizedRun(name, axis, size, example_size, call, attempt))
        if attempt.error is not None:  # the first size the export rejects is the verdict
            break
    return tuple(found)


def _weights(target: Target, runner: Runner) -> dict[str, np.ndarray] | None:
    try:
        return target.weights(runner.artifact)
    except Exception:  # the audit is a diagnosis aid; an unreadable file is reported elsewhere
        return None
