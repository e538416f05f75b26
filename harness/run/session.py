"""Per-process state of a conformance run: export cache, loaded runners, eager references."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..core.branches import Branch, discover_branches
from ..core.case import Calls, ModelCase
from ..core.pristine import PristineModule
from ..core.registry import case as find_case
from ..core.state import StateBuffer, audit_state
from ..targets import Artifact, Runner, Target
from ..targets import target as find_target
from .cache import ExportCache
from .eager import EagerReference, StreamRun, calls_key, run_module, stack_outputs
from .recorded import RecordedRunner, Recording
from .target_runs import FreshRun, target_stream

__all__ = ["Cell", "ConformanceSession", "FreshRun"]

#: Eager outputs of generated or resized inputs kept per process (each target asks for the same).
_EAGER_OUTPUTS_KEPT = 256


@dataclass(frozen=True)
class Cell:
    """One generated test: a case on a target with one canonical input set, for one suite."""

    case_name: str
    target_name: str
    input_name: str
    suite: str

    @property
    def id(self) -> str:
        return f"{self.case_name}-{self.target_name}-{self.input_name}"

    @property
    def case(self) -> ModelCase:
        return find_case(self.case_name)

    @property
    def target(self) -> Target:
        return find_target(self.target_name)

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


class ConformanceSession:
    """Caches what is expensive within one process: artifacts, runners, eager modules, references."""

    def __init__(
        self,
        cache: ExportCache,
        overrides: dict[tuple[str, str], Artifact] | None = None,
        *,
        golden_root: Path | None = None,
        hypothesis_database: Path | None = None,
        recordings: dict[tuple[str, str], Recording] | None = None,
    ) -> None:
        self.cache = cache
        #: where golden snapshots and the hypothesis example database live (``<rootdir>/golden/...``)
        self.golden_root = golden_root
        self.hypothesis_database = hypothesis_database
        #: (case, target) -> an artifact made elsewhere (``--artifact``), used instead of exporting
        self.overrides = dict(overrides or {})
        #: (case, target) -> outputs recorded on a device (``--conformance-recorded``): its runs are
        #: answered from them instead of the runtime (``harness.run.recorded``)
        self.recordings = dict(recordings or {})
        self._runners: dict[tuple[str, str], Runner] = {}
        self._eager: dict[str, PristineModule] = {}
        self._calls: dict[tuple[str, str], Calls] = {}
        self._references: dict[tuple[str, str], EagerReference] = {}
        self._offline: dict[str, PristineModule] = {}
        self._target_runs: dict[tuple[str, str, str], StreamRun] = {}
        self._fresh_runs: dict[tuple[str, str, str], FreshRun] = {}
        self._eager_outputs: dict[tuple[str, str], dict[str, np.ndarray]] = {}
        self._state_audits: dict[str, list[StateBuffer]] = {}
        self._branches: dict[str, list[Branch]] = {}
        #: (case, target, input) -> a failing cell's localisation, made once per process by the
        #: plugin (``harness.checks.localize.localization_record``)
        self.localizations: dict[tuple[str, str, str], dict[str, object]] = {}

    def artifact(self, case: ModelCase, target: Target) -> Artifact:
        override = self.overrides.get((case.name, target.name))
        return override if override is not None else self.cache.get(case, target)

    def runner(self, case: ModelCase, target: Target) -> Runner:
        """The loaded runner for (case, target), one per process. Whoever feeds it a sequence
        resets it first (``run_calls``, ``target_stream``: the one owner of reset)."""
        key = (case.name, target.name)
        if key not in self._runners:
            self._runners[key] = self._load(case, target)
        return self._runners[key]

    def fresh_runner(self, case: ModelCase, target: Target) -> Runner:
        """A newly loaded runner, never reset: what a user gets from the artifact file."""
        return self._load(case, target)

    def _load(self, case: ModelCase, target: Target) -> Runner:
        """The artifact loaded by its target, or answered from a device's recorded outputs."""
        recording = self.recordings.get((case.name, target.name))
        if recording is not None:
            return RecordedRunner(self.artifact(case, target), recording)
        target.require_runtime()
        return target.load(self.artifact(case, target))

    def target_run(self, case: ModelCase, target: Target, input_name: str) -> StreamRun:
        """The target fed one canonical input from its initial state, once per process:
        equivalence, golden and the streaming checks on that input judge this one run. The
        primary input's run is the first run of a freshly loaded runner (``fresh_run``), which
        stream-initial, stream-reset and determinism judge too."""
        fresh = self.fresh_run(case, target, case.main_input)  # the runner's first run: the primary input
        if input_name == case.main_input:
            return fresh.first
        key = (case.name, target.name, input_name)
        if key not in self._target_runs:
            self._target_runs[key] = target_stream(
                self.runner(case, target), self.calls(case, input_name), case=case
            )
        return self._target_runs[key]

    def fresh_run(self, case: ModelCase, target: Target, input_name: str) -> FreshRun:
        """A newly loaded runner fed one canonical input as loaded (``first``); its ``replay()``
        resets it and feeds the input again. One load and at most two runs serve equivalence,
        golden, the streaming checks, stream-initial, stream-reset and determinism. The session's
        runner is that runner where nothing has run on it yet (one load per target)."""
        key = (case.name, target.name, input_name)
        if key not in self._fresh_runs:
            shared = self.runner(case, target)
            runner = shared if not shared.has_run else self.fresh_runner(case, target)
            self._fresh_runs[key] = FreshRun(runner, self.calls(case, input_name), case)
        return self._fresh_runs[key]

    def eager_outputs(self, case: ModelCase, calls: Calls) -> dict[str, np.ndarray]:
        """Eager's stacked outputs for any call sequence (a generated example, a resized input),
        cached by content: every target judged on the same example shares one eager run."""
        key = (case.name, calls_key(calls))
        if key not in self._eager_outputs:
            if len(self._eager_outputs) >= _EAGER_OUTPUTS_KEPT:
                self._eager_outputs.pop(next(iter(self._eager_outputs)))
            run = run_module(self.eager_module(case), calls, case=case)
            self._eager_outputs[key] = stack_outputs(run.outputs, case.output_names, "eager")
        return self._eager_outputs[key]

    def state_audit(self, case: ModelCase) -> list[StateBuffer]:
        """The buffers the case's forward mutates (cached per case)."""
        if case.name not in self._state_audits:
            self._state_audits[case.name] = audit_state(self.eager_module(case), case.example_inputs())
        return self._state_audits[case.name]

    def branches(self, case: ModelCase) -> list[Branch]:
        """Data-dependent branches of the case's forward (cached per case)."""
        if case.name not in self._branches:
            self._branches[case.name] = discover_branches(self.eager_module(case), case.example_inputs())
        return self._branches[case.name]

    def eager_module(self, case: ModelCase) -> torch.nn.Module:
        """The case's module, built once per process and never called: every eager run, the
        audit, branch discovery and localisation run copies of it (:mod:`harness.core.pristine`)."""
        if case.name not in self._eager:
            self._eager[case.name] = PristineModule(lambda: case.build().eval())
        return self._eager[case.name].module

    def offline_module(self, case: ModelCase) -> torch.nn.Module:
        """The whole-signal model of a streaming case: its declared offline model, else its module."""
        spec = case.streaming
        if spec is None or spec.offline is None:
            return self.eager_module(case)
        if case.name not in self._offline:
            self._offline[case.name] = PristineModule(lambda: spec.offline().eval())
        return self._offline[case.name].module

    def eager_reference(self, case: ModelCase, input_name: str) -> EagerReference:
        """The eager side of one canonical input (its runs, replays and offline output), once per
        process, shared by every target and check."""
        key = (case.name, input_name)
        if key not in self._references:
            self._references[key] = EagerReference(
                case,
                self.eager_module(case),
                self.calls(case, input_name),
                lambda: self.state_audit(case),
                lambda: self.offline_module(case),
                outputs_for=lambda calls: self.eager_outputs(case, calls),
                branches=lambda: self.branches(case),
            )
        return self._references[key]

    def calls(self, case: ModelCase, input_name: str) -> Calls:
        key = (case.name, input_name)
        if key not in self._calls:
            self._calls[key] = list(case.inputs[input_name]())
        return self._calls[key]

    def reference(self, case: ModelCase, input_name: str) -> dict[str, np.ndarray]:
        """Eager outputs for one canonical input set, from the initial state."""
        return self.eager_reference(case, input_name).outputs()

    def close(self) -> None:
        runners = {
            id(r): r for r in [*self._runners.values(), *(f.runner for f in self._fresh_runs.values())]
        }
        for runner in runners.values():
            runner.close()
        self._runners.clear()
        self._fresh_runs.clear()
