"""Export targets and runners: a target exports a case to a file; loading it gives a Runner."""

from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from ..core.case import ModelCase
from ..core.errors import (
    HarnessError,
    TargetRunError,
    describe_exception,
    first_meaningful_line,
    full_message,
    whole_message,
)
from ..core.pristine import built, case_fault
from ..core.shapes import check_call_signature, describe_fixed_dims, dims_fixed_in_file, input_signature
from ..core.state import audit_state, state_in_buffers
from .adopt import adopt_file
from .artifact import Artifact, ArtifactError
from .dynamic_chunk import export_with_dynamic_chunk
from .options import RuntimeOption

__all__ = [
    "EAGER",
    "Artifact",
    "ArtifactError",
    "ExportError",
    "ProgramBeside",
    "Runner",
    "RuntimeMissing",
    "Target",
    "TensorDecl",
    "export_with_dynamic_chunk",
    "first_meaningful_line",
    "to_numpy",
]


class ExportError(RuntimeError):
    """The exporter refused the model; the cell is an ``export-error``, not a crash.

    ``message``'s first line is the cause in one line (the exporter's headline and its salient
    lines: guard, user source line, unsupported operator); the lines after it, where there are
    any, are the exporter's whole message (kept in the cell's record and the JSON report)."""

    def __init__(self, target: str, case: str, exc_type: str, message: str) -> None:
        self.target = target
        self.case = case
        self.exc_type = exc_type
        self.message = message
        super().__init__(f"export-error: {target} could not export {case}: {exc_type}: {message}")

    @classmethod
    def of(cls, target: str, case: str, exc: BaseException) -> ExportError:
        """The refusal ``exc`` as an ExportError: its cause in one line, then its whole message."""
        kind, line = describe_exception(exc)
        whole = full_message(exc)
        return cls(target, case, kind, f"{line}\n{whole}" if "\n" in whole else line)


#: The reference target's name: the case's own module, which every other target is compared with.
EAGER = "eager"

#: A graph input or output as a file declares it: name, dtype (numpy's name), dimensions (None: dynamic).
TensorDecl = tuple[str, str, list[int | None]]


class RuntimeMissing(RuntimeError):
    """The runtime a target needs is not installed; the cell is skipped with this reason."""


def to_numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().contiguous().numpy().copy()
    return np.array(value, copy=True)


class Runner(ABC):
    """Runs one loaded artifact. Same interface for every runtime; a context manager.

    ``run`` and ``reset`` are final: they validate, then call ``_run_impl`` / ``_reset_impl``.
    A runner is in its initial state when loaded; ``reset`` of a runner that has not run since
    (loaded or reset) does nothing, so a reset that reloads a program (ExecuTorch, AOTInductor)
    costs a load only where a state was advanced.
    """

    #: no call has run since the runner was loaded or reset
    _pristine: bool = True
    #: some call has run since the runner was loaded
    _has_run: bool = False

    @property
    def has_run(self) -> bool:
        """Whether any call has run since the runner was loaded (its next run is then not the
        freshly loaded artifact's)."""
        return self._has_run

    def __init__(self, artifact: Artifact) -> None:
        self.artifact = artifact

    @property
    def where(self) -> str:
        """The file messages name: a user's own file (given with ``--artifact``), not its private copy."""
        return str(self.artifact.meta.get("user_file") or self.artifact.path)

    def run(self, *inputs: torch.Tensor | np.ndarray) -> tuple[np.ndarray, ...]:
        """Run one call; returns the outputs as numpy arrays in ``output_names`` order."""
        expected = len(self.artifact.input_names)
        if len(inputs) != expected:
            raise TypeError(
                f"{self.where}: expects {expected} inputs {self.artifact.input_names}, got {len(inputs)}"
            )
        tensors = tuple(torch.as_tensor(x) for x in inputs)
        signature = self.artifact.meta.get("inputs")
        if signature:
            check_call_signature(signature, tensors, self.where)
        self._pristine = False
        self._has_run = True
        try:
            outputs = self._run_impl(tensors)
        except Exception as exc:
            kind, line = describe_exception(exc)
            described = ", ".join(f"{tuple(t.shape)} {str(t.dtype).removeprefix('torch.')}" for t in tensors)
            if self.artifact.target == EAGER:
                raise HarnessError(
                    f"the case's own module rejects its inputs ({described}): {kind}: {line}; "
                    "fix the case's inputs, no export is at fault"
                ) from exc
            whole = full_message(exc)
            raise TargetRunError(
                f"{self.where}: the {self.artifact.target} runtime raised on inputs eager accepts "
                f"({described}): {kind}: {line}" + (f"\n{whole}" if "\n" in whole else "")
            ) from exc
        return tuple(to_numpy(o) for o in outputs)

    def reset(self) -> None:
        """Return a stateful model to its initial state (a no-op for stateless runtimes, and for a
        runner that has not run since it was loaded or reset)."""
        if self._pristine:
            return
        self._reset_impl()
        self._pristine = True

    def state(self) -> dict[str, np.ndarray] | None:
        """The current streaming state by buffer name, where the runtime lets it be read.

        None where it cannot (onnxruntime without lifted state, ExecuTorch): diagnoses then rest
        on outputs alone.
        """
        return None

    def close(self) -> None:
        """Release the runtime's resources (nothing to release by default)."""
        return None

    @abstractmethod
    def _run_impl(self, inputs: tuple[torch.Tensor, ...]) -> Sequence[Any]: ...

    @abstractmethod
    def _reset_impl(self) -> None: ...

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class ProgramBeside:
    """For a tapped runner that reads its intermediate values from a mirror of the program (a
    converted module, reference kernels) and answers with the program's own outputs: run the
    program beside the mirror (``_beside``), keep how far apart they are (``gap``: the largest
    relative difference of an output, said with the taps), reset and close both."""

    program: Runner
    gap: float = 0.0

    def _beside(self, mirrored: Sequence[Any], inputs: tuple[torch.Tensor, ...]) -> tuple[np.ndarray, ...]:
        actual = self.program.run(*inputs)
        gap = 0.0
        for m, a in zip((to_numpy(x) for x in mirrored), actual):
            scale = float(np.abs(a).max()) if a.size else 0.0
            if scale > 0 and m.shape == a.shape:
                gap = max(gap, float(np.abs(m - a).max()) / scale)
        self.gap = gap
        return actual

    def _reset_impl(self) -> None:
        super()._reset_impl()  # type: ignore[misc]
        self.program.reset()

    def close(self) -> None:
        self.program.close()


#: The package extra that installs each optional runtime (pyproject.toml's optional-dependencies).
_EXTRAS = {
    "onnx": "onnx",
    "onnxruntime": "onnx",
    "onnxscript": "onnx",
    "executorch": "executorch",
    "openvino": "openvino",
    "litert_torch": "litert",
    "ai_edge_litert": "litert",
    "ai_edge_quantizer": "litert",
}


def _raise_if_the_case_is_at_fault(case: ModelCase) -> None:
    """An export that failed because of the case's own bug is a HarnessError, never an ExportError."""
    fault = case_fault(case)
    if fault:
        raise HarnessError(fault) from None


class Target(ABC):
    """An export target: ``export(case, outdir) -> Artifact`` and ``load(artifact) -> Runner``.

    Subclasses set ``name``, ``suffix`` and ``requires`` (modules the runtime needs) and implement
    ``_export_impl`` / ``_load_impl``. ``export`` and ``load`` are final.
    """

    name: str
    suffix: str
    requires: tuple[str, ...] = ()
    description: str = ""
    #: Quantized and other lossy targets: judged by the case's approximate_metric, not tolerances.
    approximate: bool = False
    #: Whether the artifact's input sizes are fixed where no dynamic dimension was declared
    #: (False for eager and traced TorchScript, which run any size their layers accept).
    fixed_shapes: bool = True
    #: The float target an approximate one is compared with for size and speed.
    float_counterpart: str | None = None
    #: Whether the artifact takes the streaming state as explicit inputs and outputs that the
    #: runner feeds back (a user's file then needs state names, from a sidecar or by convention).
    lifted_state: bool = False
    #: Whether an approximate target runs the streaming suites, judged by the case's task metric
    #: (the int8 targets do not: their state handling is the float export's, checked there).
    streams_when_approximate: bool = False
    #: Whether its export costs minutes (a C++ compile): the quick ``ci`` tier then runs it only on
    #: the cases that name it in ``ModelCase.ci_costly_targets`` (the nightly tier on every case).
    #: Which cases those are is the cases' own declaration, never the target's.
    costly: bool = False
    #: Whether the export goes through ``torch.export``: it refuses what torch.export refuses
    #: (``TORCH_EXPORT_TARGETS``, which cases name in their expected failures).
    via_torch_export: bool = False
    #: Whether its exporter keeps buffer state between calls (torch.export's buffer mutation, a
    #: lifted state): the harness then registers the model's tensor-attribute state as buffers
    #: for its own export (``module_for_export``); a user's export is judged as it is.
    carries_state: bool = False
    #: Whether its exports take seconds, not minutes (``QUICK_TARGETS``: the targets large
    #: cases run on in the quick ``ci`` tier, through ``ModelCase.ci_targets``).
    quick: bool = False
    #: Whether the format names a graph's inputs and outputs by position (a .tflite signature's
    #: ``args_0``, ``output_0``), not by the case's names: a user's file is then matched by order.
    io_names_are_positions: bool = False
    #: The command-line options this target takes (``harness.targets.options.RuntimeOption``):
    #: the plugin adds a built-in target's to the ``conformance`` option group and hands their
    #: values to ``configure``. Declare them in a module that imports no runtime (the pytest
    #: entry point reads the built-in ones without importing torch).
    runtime_options: ClassVar[tuple[RuntimeOption, ...]] = ()
    #: The module of ``harness.targets.standalone`` that runs this target's file with the runtime
    #: alone (a reproducer's program); None: no reproducer can be written for it.
    standalone: ClassVar[str | None] = None

    def standalone_options(self) -> dict[str, Any]:
        """The runtime settings in force that change what the file computes (onnxruntime's graph
        optimisation, OpenVINO's precision), for a reproducer to use the same."""
        return {}

    def missing_runtime(self) -> str | None:
        """Why this target cannot run here, or None when its runtime is installed."""
        for module in self.requires:
            try:
                found = importlib.util.find_spec(module) is not None
            except (ImportError, ValueError):
                found = False
            if not found:
                extra = _EXTRAS.get(module.split(".")[0])
                hint = f" (pip install 'export-conformance[{extra}]')" if extra else ""
                return f"{self.name}: the optional runtime {module!r} is not installed{hint}"
        return None

    def require_runtime(self) -> None:
        reason = self.missing_runtime()
        if reason:
            raise RuntimeMissing(reason)

    def export(self, case: ModelCase, outdir: Path) -> Artifact:
        """Export ``case`` into ``outdir``; raises ExportError when the exporter refuses it."""
        self.require_runtime()
        outdir.mkdir(parents=True, exist_ok=True)
        path = outdir / f"{case.name}{self.suffix}"
        module = built(case.build)
        if module.training:
            raise ValueError(f"case {case.name!r}: build() returned a module in training mode; call .eval()")
        example = tuple(case.example_inputs())
        module, carried = self.module_for_export(module, example)
        try:
            with torch.no_grad():
                meta = {**carried, **(self._export_impl(module, example, case, path) or {})}
        except Exception as exc:  # exporters raise anything; the cell reports it
            _raise_if_the_case_is_at_fault(case)
            raise ExportError.of(self.name, case.name, exc) from exc
        meta.update(self._dims_the_file_fixed(case, example, path, meta))
        meta.setdefault(
            "inputs",
            input_signature(
                case,
                example,
                fixed_shapes=self.fixed_shapes,
                chunk_dynamic=bool(meta.get("chunk_dynamic")),
                fixed_dims=meta.get("dims_fixed"),
            ),
        )
        artifact = Artifact(path, self.name, case.name, case.input_names, case.output_names, meta)
        artifact.write_sidecar()
        return artifact

    def _dims_the_file_fixed(
        self, case: ModelCase, example: tuple[torch.Tensor, ...], path: Path, meta: Mapping[str, Any]
    ) -> dict[str, Any]:
        """``dims_fixed`` / ``dims_fixed_because`` for the declared dynamic dimensions the written
        file holds at one size (its own input shapes, ``input_shapes``), beyond those the export
        already fell back on: an exporter can fix a declared dimension without a word (the dynamo
        ONNX exporter fixes a GRU's sequence length at the example's)."""
        if not case.dynamic_axes():
            return {}
        known = dict(meta.get("dims_fixed") or {})
        found = {
            dim: entry
            for dim, entry in dims_fixed_in_file(case, example, self.input_shapes(path)).items()
            if dim not in known
        }
        if not found:
            return {}
        said = meta.get("dims_fixed_because")
        silent = f"the {self.name} exporter wrote {describe_fixed_dims(found)}, without an error" + (
            f" ({meta['dims_fixed_note']})" if meta.get("dims_fixed_note") else ""
        )
        return {
            "dims_fixed": {**known, **found},
            "dims_fixed_because": f"{said}; {silent}" if said else silent,
        }

    def module_for_export(
        self, module: torch.nn.Module, example: tuple[torch.Tensor, ...]
    ) -> tuple[torch.nn.Module, dict[str, list[str]]]:
        """The freshly built, never-called module this target exports, and notes for the sidecar.

        A target that ``carries_state`` (its exporter keeps buffer state between calls) gets
        the model's state outside buffers (tensor attributes, numbers) registered as buffers,
        where the model computes the same that way (``state_registered_as_buffers``), and the
        state it cannot carry named (``state_not_carried``); others export the module as built,
        as a user's own export would."""
        if not self.carries_state:
            return module, {}
        items = audit_state(module, example)
        if all(item.is_buffer for item in items):
            return module, {}
        converted, carried = state_in_buffers(module, example, items)
        return converted, carried.notes()

    def format_problem(self, path: Path, example: tuple[torch.Tensor, ...] | None = None) -> str | None:
        """Why a user's file is not this target's format, in a few words (None: it may be).

        Called on files given with ``--artifact`` before anything loads them; targets override
        it with what their format's bytes must look like (and may run ``example``, the case's
        example input, in isolation where the runtime can crash the process).
        """
        return None

    def input_shapes(self, path: Path) -> list[tuple[str, list[int | None]]] | None:
        """A user's file's inputs as its format states them, in order: (name, dimensions, None
        for a dynamic one); None where the format does not say. Lets ``--artifact`` take a file's
        dynamic chunk without a sidecar."""
        return None

    def recording_problem(self) -> str | None:
        """Why this run must not record the target's outputs as golden snapshots (None: it may)."""
        return None

    def configure(self, options: Mapping[str, Any]) -> None:
        """Take this run's runtime options: the values of the target's own ``runtime_options``
        by ``dest`` (``ort_threads``, ``openvino_precision``, ...: their default, None, where not
        given) and ``threads``, the compute threads each worker may use (None: the runtime's
        default). Called once per process on every registered target."""
        return None

    def runtime_settings(self) -> dict[str, str]:
        """Settings of this run that change what the target computes (recorded in reports and
        beside golden snapshots); empty where there are none or the runtime is absent."""
        return {}

    def judging_note(self) -> str | None:
        """One line for the terminal when this run's settings change how the target is judged."""
        return None

    def takes_lifted_state(self, path: Path) -> bool:
        """Whether a user's file at ``path`` carries the streaming state as explicit inputs and
        outputs (then named by its sidecar or by the ``state.X`` / ``next_state.X`` convention)."""
        return self.lifted_state

    def tapped_runner(self, artifact: Artifact, case: ModelCase) -> Runner | None:
        """A runner that also shows the runtime's intermediate values (a ``harness.targets.taps.TappedRunner``),
        used only to localise a failure; None where this runtime shows none."""
        return None

    def companion_files(self, path: Path) -> list[Path]:
        """Files the artifact at ``path`` needs beside it (ONNX external data); copied with it."""
        return []

    def weights(self, artifact: Artifact) -> dict[str, np.ndarray] | None:
        """The artifact's weights by name, where its format keeps names (for the weight audit);
        None where it does not. May raise on an unreadable file (the audit then says nothing)."""
        return None

    def io_signature(self, path: Path) -> tuple[list[TensorDecl], list[TensorDecl]] | None:
        """A user's file's graph inputs and outputs as its format declares them (weights left
        out), checked by name, order, dtype and fixed dimensions against the case; None where
        the format does not say (the file is then loaded and run on the case's example input).
        Raises ArtifactError for a file that cannot be read."""
        return None

    def lifted_state_meta(self, path: Path, case: ModelCase, declared: dict[str, Any]) -> dict[str, Any]:
        """For a user's file that ``takes_lifted_state``: the state metadata (``state_names``,
        ``state_inputs``, ``state_outputs``) to add to ``declared``, its sidecar's meta, after
        checking what the sidecar declares against the file. Raises ArtifactError naming ``path``."""
        if not declared.get("state_inputs"):
            raise ArtifactError(
                f"{path}: name its state inputs and outputs in a sidecar's meta.state_names / "
                "meta.state_inputs / meta.state_outputs (see docs/sidecar.schema.json)"
            )
        return {}

    def adopt(self, path: Path, case: ModelCase, workdir: Path) -> Artifact:
        """A user's file (``--artifact CASE:TARGET=PATH``) as this target's artifact for ``case``:
        its format checked (``format_problem``), its sidecar and state read, a private copy with
        its companions made under ``workdir``, its signature checked against the case. Raises
        ArtifactError naming ``path``. The per-format steps are the methods above."""
        return adopt_file(self, path, case, workdir)

    def load(self, artifact: Artifact) -> Runner:
        """Load an artifact; a missing, truncated or foreign file raises ArtifactError naming it."""
        self.require_runtime()
        path = Path(artifact.path)
        if not path.is_file():
            raise ArtifactError(f"{path}: artifact file does not exist")
        if path.stat().st_size == 0:
            raise ArtifactError(f"{path}: artifact file is empty")
        try:
            return self._load_impl(artifact)
        except ArtifactError:
            raise
        except Exception as exc:
            raise ArtifactError(
                f"{path}: not a loadable {self.name} artifact ({type(exc).__name__}: {whole_message(exc)})"
            ) from exc

    @abstractmethod
    def _export_impl(
        self, module: torch.nn.Module, example: tuple[torch.Tensor, ...], case: ModelCase, path: Path
    ) -> dict[str, Any] | None: ...

    @abstractmethod
    def _load_impl(self, artifact: Artifact) -> Runner: ...

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"
