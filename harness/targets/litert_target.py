"""LiteRT (TFLite), the runtime most Android apps embed: ``litert``, ``litert-stateful``, ``litert-int8``.

- ``litert``: ``litert_torch.convert(module, example)`` as a user calls it, written to a
  ``.tflite`` file, run with ``ai_edge_litert``'s interpreter on the CPU with its default op
  resolver (the XNNPACK delegate applied, as on a phone). The converter goes through
  ``torch.export``, and drops a mutated buffer's update without a word (measured on PESTO: pitch
  flat at 58.29 MIDI); ``stream-continuity`` says so. It refuses a dynamic dimension
  (``broadcast_in_dim shape must have every element be nonnegative``), so every file is written at
  the example's sizes and says so (``dims_fixed``).
- ``litert-stateful``: the same conversion of ``LiftedState(module)``: the state buffers as
  explicit signature inputs and outputs, fed back by the runner, as ``onnx-stateful`` does.
- ``litert-int8``: ``ai_edge_quantizer``'s first recipe, dynamic int8
  (``recipe.dynamic_wi8_afp32()``: int8 weights, float activations), of the lifted file, judged by
  the case's task metric like the other int8 targets.

A ``.tflite`` signature names its tensors by position (``args_0``, ``output_0``): the case's
inputs, outputs and state are matched by their order, and a user's lifted-state file names its
state inputs and outputs in a sidecar. ``litert_torch`` and ``ai_edge_litert`` are imported only
here, when a target of this module exports or loads.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.case import ModelCase
from ..core.state import LiftedState, mutated_buffer_names
from .artifact import Artifact, ArtifactError, read_initial_state
from .base import ProgramBeside, Runner, Target, TensorDecl, export_with_dynamic_chunk, to_numpy
from .formats import describe_format
from .taps import Tap, Taps

__all__ = [
    "LiteRtInt8Target",
    "LiteRtRunner",
    "LiteRtTappedRunner",
    "LiteRtTarget",
    "LiftedLiteRtTarget",
    "in_eager_layout",
    "module_of_tensor",
]

#: litert_torch's signature names: ``args_N`` for inputs, ``output_N`` for outputs
_POSITIONAL = re.compile(r"^(args|output)_(\d+)$")
_REQUIRES = ("litert_torch", "ai_edge_litert")


@contextlib.contextmanager
def _quiet_converter() -> Iterator[None]:
    """litert_torch prints a progress tree on stdout for every conversion; a test run's output is
    not the place for it (``LITERT_TORCH_SHOW_PROGRESS`` as the user set it is restored)."""
    before = os.environ.get("LITERT_TORCH_SHOW_PROGRESS")
    os.environ["LITERT_TORCH_SHOW_PROGRESS"] = "n"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("LITERT_TORCH_SHOW_PROGRESS", None)
        else:
            os.environ["LITERT_TORCH_SHOW_PROGRESS"] = before


def convert_to_tflite(
    module: torch.nn.Module, args: tuple[torch.Tensor, ...], path: Path, shapes: Any
) -> None:
    """``litert_torch.convert`` as a user calls it, written to ``path``."""
    import litert_torch

    with _quiet_converter():
        edge = litert_torch.convert(module, args, dynamic_shapes=shapes)
        edge.export(str(path))


def _positional_order(names: Sequence[str]) -> list[str]:
    """Signature names in the order the converter gave them: ``args_N`` / ``output_N`` by N
    (the interpreter lists them as strings, where ``args_10`` sorts before ``args_2``)."""
    if names and all(_POSITIONAL.match(n) for n in names):
        return sorted(names, key=lambda n: int(_POSITIONAL.match(n).group(2)))  # type: ignore[union-attr]
    return list(names)


def _signature(interpreter: Any, path: Path) -> tuple[str, list[str], list[str]]:
    """The file's one signature (``serving_default`` where there are several): key, input names,
    output names, in order."""
    signatures = interpreter.get_signature_list()
    if not signatures:
        raise ArtifactError(f"{path}: a .tflite file without a signature (convert it with a signature)")
    key = "serving_default" if "serving_default" in signatures else next(iter(signatures))
    if len(signatures) > 1 and key != "serving_default":
        raise ArtifactError(
            f"{path}: the file has {len(signatures)} signatures {sorted(signatures)} and no serving_default: "
            "which one is the model's?"
        )
    entry = signatures[key]
    return key, _positional_order(entry["inputs"]), _positional_order(entry["outputs"])


def _dims(detail: Mapping[str, Any]) -> list[int | None]:
    shape = detail.get("shape_signature")
    if shape is None or len(shape) != len(detail["shape"]):
        shape = detail["shape"]
    return [None if int(d) < 0 else int(d) for d in shape]


class LiteRtRunner(Runner):
    """One interpreter and its signature runner; a lifted file's state fed back between calls.
    ``reset`` makes a new interpreter: the tensors and any resource variables are allocated
    again (and a lifted state starts from its initial value)."""

    def __init__(
        self,
        artifact: Artifact,
        *,
        threads: int | None = None,
        preserve_all_tensors: bool = False,
        delegate: bool = True,
    ) -> None:
        super().__init__(artifact)
        meta = artifact.meta
        self.threads = threads
        self.preserve_all_tensors = preserve_all_tensors
        self.delegate = delegate
        self.state_names: list[str] = list(meta.get("state_names", []))
        self.state_inputs: list[str] = list(meta.get("state_inputs", []))
        self.state_outputs: list[str] = list(meta.get("state_outputs", []))
        if not (len(self.state_names) == len(self.state_inputs) == len(self.state_outputs)):
            raise ArtifactError(f"{artifact.path}: state metadata lists differ in length")
        self._open()
        signature_inputs = [n for n in self.signature_inputs if n not in set(self.state_inputs)]
        signature_outputs = [n for n in self.signature_outputs if n not in set(self.state_outputs)]
        absent = [n for n in self.state_inputs if n not in self.signature_inputs] + [
            n for n in self.state_outputs if n not in self.signature_outputs
        ]
        if absent:
            raise ArtifactError(f"{artifact.path}: the signature has no state inputs/outputs named {absent}")
        self.feed_names = _match(signature_inputs, artifact.input_names, "inputs", artifact.path)
        self.fetch_names = _match(signature_outputs, artifact.output_names, "outputs", artifact.path)
        self._initial = read_initial_state(artifact, self.state_names) if self.state_names else {}
        self._state = {k: v.copy() for k, v in self._initial.items()}

    def _open(self) -> None:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        resolver = OpResolverType.AUTO if self.delegate else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        self.interpreter = Interpreter(
            model_path=str(self.artifact.path),
            num_threads=self.threads,
            experimental_op_resolver_type=resolver,
            experimental_preserve_all_tensors=self.preserve_all_tensors,
        )
        key, self.signature_inputs, self.signature_outputs = _signature(self.interpreter, self.artifact.path)
        self.signature = self.interpreter.get_signature_runner(key)
        self._dtypes = {name: d["dtype"] for name, d in self.signature.get_input_details().items()}

    def _feed(self, name: str, value: np.ndarray) -> np.ndarray:
        """The value as the signature's dtype: the converter writes int64 inputs and state as
        int32 (its default, ``enable_x64=False``), which a caller on the device passes (a Python
        counter carried as a buffer starts as int64 in the initial-state file)."""
        want = self._dtypes.get(name)
        if want is not None and value.dtype != want and np.issubdtype(value.dtype, np.integer):
            return value.astype(want)
        return np.ascontiguousarray(value)

    def _run_impl(self, inputs: tuple[torch.Tensor, ...]) -> Sequence[Any]:
        feed = {name: self._feed(name, to_numpy(x)) for name, x in zip(self.feed_names, inputs)}
        for name, graph_input in zip(self.state_names, self.state_inputs):
            feed[graph_input] = self._feed(graph_input, self._state[name])
        outputs = self.signature(**feed)
        for name, graph_output in zip(self.state_names, self.state_outputs):
            self._state[name] = np.array(outputs[graph_output], copy=True)
        return [np.array(outputs[name], copy=True) for name in self.fetch_names]

    def _reset_impl(self) -> None:
        self._open()
        self._state = {k: v.copy() for k, v in self._initial.items()}

    def state(self) -> dict[str, np.ndarray] | None:
        if not self.state_names:
            return None
        return {k: v.copy() for k, v in self._state.items()}


def _match(signature: list[str], case: Sequence[str], kind: str, path: Path) -> list[str]:
    """The signature's names for the case's, in the case's order: by name where the file uses
    the case's names, else by position (litert_torch's ``args_N``)."""
    if sorted(signature) == sorted(case):
        return list(case)
    if len(signature) != len(case):
        raise ArtifactError(
            f"{path}: its signature has {len(signature)} {kind} {signature}, the case declares {len(case)} {list(case)}"
        )
    return list(signature)


def module_of_tensor(name: str, known: set[str]) -> str | None:
    """The eager module a LiteRT tensor name places a value in, resolved against ``known``.

    litert_torch names an op's result after the module stack that made it,
    ``<root class>/<class>_<attribute>/...;N`` (``harness.core.state.LiftedState/
    fixtures.toys.CachedConv_module/torch.nn.modules.conv.Conv1d_conv;3``). The attribute follows
    the class's last dotted part after an underscore (attributes may hold underscores, so each
    split is tried against the eager modules); a wrapper's prefix (``module.`` of the lifted
    state) is dropped where the rest is a known module. None for constants and signature tensors."""
    base = name.split(";", 1)[0]
    segments = base.split("/")
    if len(segments) < 1 or "." not in segments[0] or base.startswith(("serving_default", "arith.")):
        return None
    options: list[list[str]] = [[]]
    for segment in segments[1:]:
        tail = segment.rsplit(".", 1)[-1]
        cuts = [i for i, c in enumerate(tail) if c == "_" and 0 < i < len(tail) - 1]
        attributes = [tail[i + 1 :] for i in cuts] or [tail]
        options = [[*path, attribute] for path in options for attribute in attributes]
    for parts in options:
        for start in range(len(parts) + 1):
            candidate = ".".join(parts[start:])
            if candidate in known:
                return candidate
    return None


def in_eager_layout(value: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``value`` in the layout of an eager output of ``shape``, where it holds the same elements in
    LiteRT's own: the converter computes convolutions channels-last (a ``[1, 6, 32]`` output is
    kept as ``[1, 1, 32, 6]``). Size-one axes are dropped, the channels-last axis moved to the
    front where that gives eager's axes, else axes matched by size in order. ``value`` itself
    (unchanged) where the shapes already agree or no such move exists."""
    if value.shape == shape or value.size != int(np.prod(shape)) or value.size <= 1:
        return value
    have = [d for d in value.shape if d != 1]
    want = [d for d in shape if d != 1]
    squeezed = value.reshape(have)
    if len(have) >= 2 and have[-1] == want[0] and have[:-1] == want[1:]:
        return np.moveaxis(squeezed, -1, 0).reshape(shape)
    if sorted(have) != sorted(want):
        return value
    order, used = [], set()
    for size in want:
        axis = next(i for i, d in enumerate(have) if d == size and i not in used)
        used.add(axis)
        order.append(axis)
    return np.transpose(squeezed, order).reshape(shape)


class LiteRtTappedRunner(ProgramBeside, LiteRtRunner):
    """The file run twice per call: as the target runs it (its answer), and on the reference
    kernels without the XNNPACK delegate, every intermediate tensor preserved (the taps; a
    delegate hides the values inside it). How far the two runs are apart is said with the taps."""

    def __init__(self, artifact: Artifact, program: LiteRtRunner) -> None:
        super().__init__(artifact, threads=program.threads, preserve_all_tensors=True, delegate=False)
        self.program = program

    def _run_impl(self, inputs: tuple[torch.Tensor, ...]) -> Sequence[Any]:
        return self._beside(super()._run_impl(inputs), inputs)

    def taps(self, eager: Sequence[Any]) -> Any:
        known = {r.module_path for r in eager}
        shapes: dict[str, tuple[int, ...]] = {}
        for record in eager:
            shapes.setdefault(record.module_path, tuple(record.value.shape))
        taps, relaid, fused = [], 0, {}
        for detail in self.interpreter.get_tensor_details():
            if detail["dtype"] not in (np.float32, np.float16, np.float64):
                continue
            try:
                value = self.interpreter.get_tensor(detail["index"])
            except ValueError:  # a tensor the interpreter did not keep (a constant folded away)
                continue
            if value is None or not value.size:
                continue
            module = module_of_tensor(detail["name"], known)
            # a fused op names every module it computes (``ReLU_3;;...Conv1d_2;``): the value is the
            # first-named module's output, the others' are not kept on their own
            inside = [module_of_tensor(part, known) for part in detail["name"].split(";;")[1:]]
            for other in inside:
                if module is not None and other is not None and other != module:
                    fused.setdefault(other, module)
            value = np.array(value, copy=True)
            if module is not None and module in shapes:
                laid = in_eager_layout(value, shapes[module])
                relaid += laid is not value
                value = laid
            taps.append(Tap(detail["name"], module, value))
        scoped = sum(t.module is not None for t in taps)
        return Taps(
            taps,
            f"{len(taps)} LiteRT tensors kept by the interpreter (experimental_preserve_all_tensors, reference "
            f"kernels without the XNNPACK delegate); {scoped} placed in modules by litert_torch's tensor names",
            notes=[
                f"the reference kernels' outputs differ from the XNNPACK run's by {self.gap:.3g} relative on this call",
                *(
                    [
                        f"{relaid} values moved from LiteRT's channels-last layout into their module's (NCW/NCHW)"
                    ]
                    if relaid
                    else []
                ),
                *(
                    [
                        "fused by the converter, their outputs not kept on their own: "
                        + ", ".join(f"{a or '(model)'} into {b or '(model)'}" for a, b in fused.items())
                    ]
                    if fused
                    else []
                ),
            ],
        )


class LiteRtTarget(Target):
    """``litert_torch.convert`` of the module as built, on the ai_edge_litert interpreter."""

    name = "litert"
    standalone = "litert_program"
    suffix = ".tflite"
    via_torch_export = True
    requires = _REQUIRES
    description = "litert_torch.convert to .tflite, ai_edge_litert interpreter on CPU (XNNPACK delegate)"
    #: a .tflite signature names tensors by position (args_0, output_0), not by the case's names
    io_names_are_positions = True

    def __init__(self) -> None:
        self._threads: int | None = None

    def _export_impl(self, module, example, case, path):
        _, meta = export_with_dynamic_chunk(
            case, example, lambda shapes: convert_to_tflite(module, example, path, shapes)
        )
        return meta

    def _load_impl(self, artifact: Artifact) -> Runner:
        return LiteRtRunner(artifact, threads=self._threads)

    def tapped_runner(self, artifact: Artifact, case: ModelCase) -> Runner:
        return LiteRtTappedRunner(artifact, LiteRtRunner(artifact, threads=self._threads))

    def configure(self, options: Mapping[str, Any]) -> None:
        threads = options.get("threads")
        self._threads = int(threads) if threads else None

    def runtime_settings(self) -> dict[str, str]:
        if self.missing_runtime():
            return {}
        return {
            "litert_op_resolver": "AUTO (XNNPACK delegate)",
            "litert_threads": str(self._threads or "default"),
        }

    def format_problem(self, path: Path, example: object = None) -> str | None:
        kind = describe_format(path)
        if kind != "a LiteRT (TFLite) flatbuffer":
            return f"is {kind}, not a LiteRT (.tflite) model (no 'TFL3' identifier at byte 4)"
        return None

    def _details(self, path: Path) -> tuple[list[TensorDecl], list[TensorDecl]]:
        from ai_edge_litert.interpreter import Interpreter

        try:
            interpreter = Interpreter(model_path=str(path))
            key, inputs, outputs = _signature(interpreter, path)
            runner = interpreter.get_signature_runner(key)
            in_details, out_details = runner.get_input_details(), runner.get_output_details()
        except ArtifactError:
            raise
        except Exception as exc:
            raise ArtifactError(
                f"{path}: not a readable .tflite model ({type(exc).__name__}: {exc})"
            ) from exc

        def describe(names: list[str], details: Mapping[str, Any]) -> list[TensorDecl]:
            return [(n, np.dtype(details[n]["dtype"]).name, _dims(details[n])) for n in names]

        return describe(inputs, in_details), describe(outputs, out_details)

    def io_signature(self, path: Path) -> tuple[list[TensorDecl], list[TensorDecl]] | None:
        return self._details(path)

    def input_shapes(self, path: Path) -> list[tuple[str, list[int | None]]] | None:
        try:
            inputs, _ = self._details(path)
        except ArtifactError:  # format_problem and the loader say what is wrong with the file
            return None
        return [(name, dims) for name, _, dims in inputs]


def _with_static_state(shapes: tuple | None, n_state: int) -> tuple | None:
    """LiftedState.forward takes ``*args``: its dynamic shapes are one tuple for ``args``."""
    return None if shapes is None else ((*shapes, *([None] * n_state)),)


class LiftedLiteRtTarget(LiteRtTarget):
    """``litert_torch.convert`` of ``LiftedState(module)``: state as explicit signature I/O."""

    name = "litert-stateful"
    suffix = ".stateful.tflite"
    lifted_state = True
    carries_state = True
    description = (
        "litert_torch.convert with mutated buffers lifted to signature inputs/outputs, fed back by the runner"
    )

    def _export_impl(self, module, example, case, path):
        state_names = mutated_buffer_names(module, example)
        lifted = LiftedState(module, state_names).eval()
        initial = lifted.initial_state()
        n_in, n_out = len(case.input_names), len(case.output_names)
        _, meta = export_with_dynamic_chunk(
            case,
            example,
            lambda shapes: convert_to_tflite(
                lifted, (*example, *initial), path, _with_static_state(shapes, len(state_names))
            ),
        )
        state_file = path.with_name(path.name + ".state.npz")
        np.savez(state_file, **{n: t.numpy() for n, t in zip(state_names, initial)})
        return {
            "state_names": state_names,
            "state_inputs": [f"args_{n_in + i}" for i in range(len(state_names))],
            "state_outputs": [f"output_{n_out + i}" for i in range(len(state_names))],
            "state_file": state_file.name,
            **meta,
        }


class LiteRtInt8Target(LiftedLiteRtTarget):
    """``ai_edge_quantizer`` dynamic int8 (``dynamic_wi8_afp32``) of the lifted-state file."""

    name = "litert-int8"
    suffix = ".int8.tflite"
    description = "lifted-state .tflite, ai_edge_quantizer dynamic int8 (int8 weights, float activations)"
    approximate = True
    float_counterpart = "litert-stateful"
    #: TORCH_EXPORT_TARGETS names the float exports (cases declare the int8 targets' failures by name)
    via_torch_export = False
    requires = (*_REQUIRES, "ai_edge_quantizer")

    def _export_impl(self, module, example, case, path):
        from ai_edge_quantizer import quantizer, recipe

        float_path = path.with_name(path.name.replace(".int8.tflite", ".float.tflite"))
        meta = super()._export_impl(module, example, case, float_path)
        quantized = quantizer.Quantizer(str(float_path))
        quantized.load_quantization_recipe(recipe.dynamic_wi8_afp32())
        quantized.quantize().export_model(str(path), overwrite=True)
        float_path.unlink()
        state = float_path.with_name(meta["state_file"])
        meta["state_file"] = path.name + ".state.npz"
        state.rename(path.with_name(meta["state_file"]))
        return {
            **meta,
            "quantization": "ai_edge_quantizer dynamic_wi8_afp32: int8 weights, float activations",
        }
