"""The declarative model case: one ``ModelCase`` per model, every suite is generated from it."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .compare import Tolerance
from .errors import HarnessError

__all__ = [
    "STREAM_SUITES",
    "SUITES",
    "StreamingSpec",
    "expect_failures",
    "Calls",
    "DynamicAxis",
    "ExpectedFailure",
    "JudgedWhere",
    "Metric",
    "MetricResult",
    "ModelCase",
    "Outputs",
]

#: Suite names that expected failures may name. ``export`` means "the exporter itself fails",
#: which covers every suite of that target. The ``stream-*`` suites run on cases with a
#: streaming spec only.
STREAM_SUITES: tuple[str, ...] = (
    "stream-continuity",
    "stream-offline",
    "stream-chunks",
    "stream-reset",
    "stream-batch",
    "stream-initial",
)
INPUT_SUITES: tuple[str, ...] = ("hypothesis", "dynamic-shapes", "branch-coverage")
SUITES: tuple[str, ...] = (
    "export",
    "equivalence",
    "determinism",
    "batch-consistency",
    *STREAM_SUITES,
    *INPUT_SUITES,
    "golden",
    "benchmark",
)

#: One call of the model: the positional inputs of ``forward``.
Call = tuple[torch.Tensor, ...]
#: A canonical input set: the sequence of calls fed to a fresh (reset) model, in order.
#: A stateless model gets one call; a streaming model gets one call per chunk.
Calls = Sequence[Call]
#: Outputs of a sequence of calls, by output name, stacked over calls on a new leading axis.
Outputs = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class MetricResult:
    """A task-metric value, truthy when it is within the metric's threshold."""

    name: str
    value: float
    threshold: float
    unit: str
    #: the field's other figures beside the judged one (e.g. raw pitch accuracy, octave errors)
    figures: Mapping[str, float] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(np.isfinite(self.value) and self.value <= self.threshold)

    def summary(self) -> str:
        verdict = "ok" if self else "OVER THRESHOLD"
        text = (
            f"{self.name}: {verdict}: {self.value:.4g} {self.unit} (threshold {self.threshold:g} {self.unit})"
        )
        if self.figures:
            text += " [" + ", ".join(f"{k} {v:.4g}" for k, v in self.figures.items()) + "]"
        return text


@dataclass(frozen=True)
class JudgedWhere:
    """The elements of one output that mean something only where eager's outputs say so: a
    pitch where the confidence calls the frame voiced. Elsewhere the output is not compared (a
    pitch on silence is noise of the model, not of the export); the other outputs still are.

    ``select`` takes eager's outputs by name (stacked over calls) and returns a boolean mask of
    the output's shape (or one that broadcasts to it); ``description`` says it in words.
    """

    description: str
    select: Callable[[Outputs], np.ndarray]

    def mask(self, expected: Outputs, name: str) -> np.ndarray:
        target = np.shape(expected[name])
        try:
            found = np.broadcast_to(np.asarray(self.select(expected), dtype=bool), target)
        except Exception as exc:
            raise HarnessError(
                f"judged_where[{name!r}] ({self.description}) gives no mask of {name}'s shape "
                f"{list(target)}: {type(exc).__name__}: {exc}"
            ) from exc
        return found


@dataclass(frozen=True)
class Metric:
    """A task metric computed from eager and target outputs (e.g. pitch error in cents).

    ``compute(expected, actual)`` takes stacked outputs by name and returns one number where
    lower is better (NaN or Inf counts as over the threshold), or ``(number, figures)`` with the
    field's other figures by name, reported beside the judged one.
    """

    name: str
    unit: str
    compute: Callable[[Outputs, Outputs], float]
    threshold: float

    def __call__(self, expected: Outputs, actual: Outputs) -> MetricResult:
        value = self.compute(expected, actual)
        figures: Mapping[str, float] = {}
        if isinstance(value, tuple):
            value, figures = value
        return MetricResult(self.name, float(value), self.threshold, self.unit, dict(figures))


@dataclass(frozen=True)
class ExpectedFailure:
    """A cell known to fail, applied as a strict xfail: an unexpected pass fails the run.

    ``suite="export"`` declares that the exporter itself refuses the model. ``inputs`` limits the
    declaration to some canonical input sets (empty: all of them).
    """

    target: str
    suite: str
    reason: str
    inputs: tuple[str, ...] = ()

    def matches(self, target: str, suite: str, input_name: str) -> bool:
        if self.target != target:
            return False
        if self.suite not in (suite, "export"):
            return False
        return not self.inputs or input_name in self.inputs


def expect_failures(
    targets: Sequence[str], suites: Sequence[str], reason: str, inputs: tuple[str, ...] = ()
) -> tuple[ExpectedFailure, ...]:
    """The same expected failure for several targets and suites (one reason, declared once)."""
    return tuple(ExpectedFailure(t, s, reason, inputs) for t in targets for s in suites)


@dataclass(frozen=True, kw_only=True)
class StreamingSpec:
    """How a stateful model streams: the chunking of its inputs and the framing of its outputs.

    Args:
        chunk: time steps per call in the canonical input sets.
        other_chunks: other chunk sizes the model admits (checked for chunk-size invariance).
        input_time_axis: the time axis of every input.
        output_time_axis: the frame axis of the outputs (one int, or per output name).
        warmup: leading streamed frames left out of the comparison with offline output.
        latency: streamed frame ``k + latency`` corresponds to offline frame ``k``.
        offline: builds the whole-signal (non-streaming) model; default: the case's own module
            fed the whole signal in one call from its initial state.
        offline_metric: judges streamed against offline output; default: the case's tolerances.
        batch_rows: independent streams per call along axis 0 (1: not batched).
        steps_per_second: time steps per second (the sample rate), for the real-time factor.
        time_inputs: the inputs streamed along time, by name, with their time axis. Default
            (None): every input that is neither static nor state, on ``input_time_axis``.
        static_inputs: inputs passed unchanged on every call (a sample rate, a speaker id, a
            language id): never split, joined or rechunked.
        state: explicit state in the signature, ``(x, state, ...) -> (y, new_state)``: input
            name -> the output fed back as that input on the next call. The first call's value of
            a state input is the initial state; the harness threads the state itself, through
            eager and every target, and ignores the value later calls carry.
    """

    chunk: int
    other_chunks: tuple[int, ...] = ()
    input_time_axis: int = -1
    output_time_axis: int | Mapping[str, int] = 1
    warmup: int = 0
    latency: int = 0
    offline: Callable[[], torch.nn.Module] | None = None
    offline_metric: Metric | None = None
    batch_rows: int = 1
    #: time steps per second of signal (the sample rate for audio): gives the real-time factor
    steps_per_second: float | None = None
    time_inputs: Mapping[str, int] | None = None
    static_inputs: tuple[str, ...] = ()
    state: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.chunk <= 0 or any(c <= 0 for c in self.other_chunks):
            raise ValueError(f"chunk sizes must be positive, got {self.chunk} and {self.other_chunks}")
        if self.warmup < 0 or self.latency < 0 or self.batch_rows < 1:
            raise ValueError("warmup and latency must be >= 0 and batch_rows >= 1")

    def time_axes(self, input_names: Sequence[str]) -> dict[str, int]:
        """The inputs streamed along time, with their axis (input order)."""
        if self.time_inputs is not None:
            return {n: self.time_inputs[n] for n in input_names if n in self.time_inputs}
        return {
            n: self.input_time_axis
            for n in input_names
            if n not in self.static_inputs and n not in self.state
        }

    def frame_axis(self, output: str) -> int:
        if isinstance(self.output_time_axis, int):
            return self.output_time_axis
        return self.output_time_axis.get(output, 1)


@dataclass(frozen=True)
class DynamicAxis:
    """One dynamic axis of one input; axes with the same ``dim`` always have the same size."""

    input: str
    index: int
    axis: int
    low: int
    high: int
    dim: str


def _default_tolerance() -> Mapping[str, Tolerance]:
    return {"default": Tolerance()}


@dataclass(frozen=True, kw_only=True)
class ModelCase:
    """One model under test, declared once; suites, targets and reports are derived from it.

    Args:
        name: short id used in test ids (``-k NAME`` selects it).
        build: returns a fresh module in eval mode with deterministic weights.
        example_inputs: the canonical input tuple used for export.
        input_names / output_names: names of forward's inputs and outputs, in order.
        inputs: named canonical input sets; each returns the calls fed to a freshly reset model.
        tolerance: per output name, with a ``"default"`` key for the others.
        target_tolerance: per target, a mapping like ``tolerance`` that overrides it.
        metric: optional task metric (e.g. pitch error in cents) with its threshold.
        expected: declared expected failures, applied as strict xfail.
        tags: free-form labels (``stateful``, ``audio``...).
        streaming: how the model streams, for stateful cases (enables the ``stream-*`` suites).
        dynamic_dims: input name -> axis -> (min, max) for dimensions that vary at run time;
            ``(min, max, "dim")`` names a dimension that several inputs share (a sequence length).
        strategy: returns a hypothesis strategy of call sequences for the hypothesis suite.
        approximate_metric: the task metric that judges quantized targets (e.g. median pitch
            error); cases without one are not run on approximate targets.
        batch_consistency: a batch size whose per-sample outputs must equal batch-1 outputs.
        ci_targets: the targets the quick ``ci`` tier runs this case on (None: all but the costly).
        ci_costly_targets: costly targets (``Target.costly``) the ``ci`` tier runs this case on too.
        depends_on: distributions whose versions key this case's exports (its weights' package).
        judged_where: outputs compared only where eager's outputs say they mean something
            (:class:`JudgedWhere`: a pitch on the frames the confidence calls voiced).
        noise_multiple: an element within this multiple of eager's own float32 noise on its call
            (eager rerun in float64) agrees, where the tolerance alone would fail it.
    """

    name: str
    build: Callable[[], torch.nn.Module]
    example_inputs: Callable[[], Call]
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    inputs: Mapping[str, Callable[[], Calls]]
    tolerance: Mapping[str, Tolerance] = field(default_factory=_default_tolerance)
    target_tolerance: Mapping[str, Mapping[str, Tolerance]] = field(default_factory=dict)
    metric: Metric | None = None
    expected: tuple[ExpectedFailure, ...] = ()
    tags: frozenset[str] = frozenset()
    #: The input set used where one is enough (determinism); defaults to the first of ``inputs``.
    primary_input: str | None = None
    streaming: StreamingSpec | None = None
    #: Dynamic dimensions: input name -> axis -> (min, max). Exports are made with them, and
    #: the dynamic-shapes suite tries sizes 1, the bounds and sizes unlike the example.
    dynamic_dims: Mapping[str, Mapping[int, tuple[int, int] | tuple[int, int, str]]] = field(
        default_factory=dict
    )
    #: Hypothesis strategy of call sequences (the inputs the hypothesis suite generates).
    strategy: Callable[[], Any] | None = None
    #: Judges approximate (quantized) targets instead of the tensor tolerances; without it the
    #: case is not run on them.
    approximate_metric: Metric | None = None
    #: Axis 0 of every input and output is the batch: per-sample outputs at batch 1 must match
    #: those at this batch size (BatchNorm with batch statistics, i.e. a training-mode export,
    #: breaks this). None: the check does not apply.
    batch_consistency: int | None = None
    #: The targets this case runs on in the quick ``ci`` tier (``--conformance-tier=ci``, what
    #: this repository's CI runs); None: every target. The ``nightly`` tier (the default for a
    #: project that sets no tier) runs every target.
    ci_targets: tuple[str, ...] | None = None
    #: Costly targets (``Target.costly``: AOTInductor's C++ compile) that the ``ci`` tier runs this
    #: case on too; the others run on it in the nightly tier only.
    ci_costly_targets: tuple[str, ...] = ()
    #: Distributions (PyPI names) whose versions key this case's cached exports, besides torch and
    #: the runtimes: the package its model and weights ship in, e.g. ``("my-model-weights",)``.
    depends_on: tuple[str, ...] = ()
    #: Outputs that mean something only where eager's outputs say so (output name ->
    #: :class:`JudgedWhere`): compared with their tolerance there only, e.g. a pitch on the frames
    #: the confidence calls voiced.
    judged_where: Mapping[str, JudgedWhere] = field(default_factory=dict)
    #: Eager's own float noise as a floor: an element a target gets wrong by more than the
    #: tolerance still agrees when within this multiple of eager's own float32 error on that call
    #: (``|eager float32 - eager float64|``, the largest over the call's elements of that output).
    #: None: no floor, the tolerance alone judges.
    noise_multiple: float | None = None

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("_", "").isalnum():
            raise ValueError(f"case name must be alphanumeric with underscores, got {self.name!r}")
        if not self.inputs:
            raise ValueError(f"case {self.name!r} declares no canonical input sets")
        for input_name in self.inputs:
            if not input_name.replace("_", "").isalnum():
                raise ValueError(f"case {self.name!r}: input set name {input_name!r} must be alphanumeric")
        unknown = sorted(set(self.judged_where) - set(self.output_names))
        if unknown:
            raise ValueError(f"case {self.name!r}: judged_where names outputs it does not declare: {unknown}")
        if "default" not in self.tolerance:
            object.__setattr__(self, "tolerance", {"default": Tolerance(), **self.tolerance})
        if self.primary_input is not None and self.primary_input not in self.inputs:
            raise ValueError(f"case {self.name!r}: primary_input {self.primary_input!r} is not an input set")
        unknown = set(self.tolerance) - set(self.output_names) - {"default"}
        if unknown:
            raise ValueError(f"case {self.name!r}: tolerance names unknown outputs {sorted(unknown)}")

    @property
    def main_input(self) -> str:
        return self.primary_input or next(iter(self.inputs))

    def tolerance_for(self, output: str, target: str) -> Tolerance:
        """The tolerance for one output on one target, overrides first."""
        override = self.target_tolerance.get(target, {})
        for table in (override, self.tolerance):
            if output in table:
                return table[output]
        return override.get("default", self.tolerance["default"])

    def dynamic_axes(self) -> list[DynamicAxis]:
        """Every declared dynamic axis, in input order; shared dimensions carry one ``dim`` name."""
        axes = []
        for index, name in enumerate(self.input_names):
            for axis, spec in sorted(self.dynamic_dims.get(name, {}).items()):
                low, high = spec[0], spec[1]
                dim = spec[2] if len(spec) > 2 else f"{name}_{axis}"
                axes.append(DynamicAxis(name, index, axis, low, high, dim))
        return axes

    def expected_failure(self, target: str, suite: str, input_name: str) -> ExpectedFailure | None:
        """The declared expected failure covering this cell, if any."""
        for expected in self.expected:
            if expected.matches(target, suite, input_name):
                return expected
        return None

    def check_declarations(self, known_targets: Sequence[str]) -> list[str]:
        """Problems with the expected failures and overrides: names that match nothing."""
        problems = []
        for field_name in ("ci_targets", "ci_costly_targets"):
            for name in getattr(self, field_name) or ():
                if name not in known_targets:
                    problems.append(f"{field_name} names unknown target {name!r}")
        for expected in self.expected:
            if expected.target not in known_targets:
                problems.append(f"expected failure names unknown target {expected.target!r}")
            if expected.suite not in SUITES:
                problems.append(
                    f"expected failure names unknown suite {expected.suite!r} (known: {', '.join(SUITES)})"
                )
            for input_name in expected.inputs:
                if input_name not in self.inputs:
                    problems.append(f"expected failure names unknown input set {input_name!r}")
            if not expected.reason.strip():
                problems.append(f"expected failure for ({expected.target}, {expected.suite}) gives no reason")
        for expected in self.expected:
            if expected.suite in STREAM_SUITES and self.streaming is None:
                problems.append(
                    f"expected failure for ({expected.target}, {expected.suite}) but the case has no streaming spec"
                )
        if self.streaming is not None:
            spec = self.streaming
            roles = [*(spec.time_inputs or {}), *spec.static_inputs, *spec.state]
            for name in roles:
                if name not in self.input_names:
                    problems.append(f"streaming spec names unknown input {name!r}")
            for name in spec.state.values():
                if name not in self.output_names:
                    problems.append(f"streaming state names unknown output {name!r}")
            if len(set(roles)) != len(roles):
                problems.append("streaming spec gives an input more than one role (time, static, state)")
            if not spec.time_axes(self.input_names):
                problems.append("streaming spec leaves no input streamed along time")
        for name in self.dynamic_dims:
            if name not in self.input_names:
                problems.append(f"dynamic_dims names unknown input {name!r}")
        bounds_by_dim: dict[str, tuple[int, int]] = {}
        for dim in self.dynamic_axes():
            if not 1 <= dim.low <= dim.high:
                problems.append(
                    f"dynamic_dims {dim.input!r} axis {dim.axis}: need 1 <= min <= max, got ({dim.low}, {dim.high})"
                )
            if bounds_by_dim.setdefault(dim.dim, (dim.low, dim.high)) != (dim.low, dim.high):
                problems.append(
                    f"dynamic_dims: shared dimension {dim.dim!r} has different bounds on {dim.input!r}"
                )
        for target in self.target_tolerance:
            if target not in known_targets:
                problems.append(f"target_tolerance names unknown target {target!r}")
        return [f"case {self.name!r}: {p}" for p in problems]
