"""``export-conformance bundle``: a case's canonical inputs and eager's outputs in the runtime's own
test format, for a device that the CI machine cannot reach.

The folder holds the model file (with its sidecar, companions and initial state, so ``judge``
adopts it as ``check --artifact`` does), ``test_data_set_N/input_K.pb`` and ``output_K.pb``
(ONNX ``TensorProto`` files named as the graph's inputs and outputs: what ``onnx_test_runner``
reads) and a ``manifest.json`` naming each set's canonical input and call
(:class:`harness.run.recorded.Manifest`). An ExecuTorch bundle also holds a BundledProgram
per canonical input (``program.INPUT.bpte``) with one test case per call, in order: the program's
mutable buffers carry the state from one call to the next, so its cases run in order on one
loaded method, and each input on a method of its own.

A file with the streaming state lifted into inputs and outputs (``state.*`` / ``next_state.*``)
gets eager's state: call N's state inputs are eager's state after call N-1 and the expected
``next_state`` outputs are eager's, so every set is judged on its own. Which format a target's
file is in is read from its file suffix (``.onnx``, ``.pte``), the targets' own.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..core.case import ModelCase
from ..core.errors import HarnessError
from ..core.pristine import PristineModule, fresh_copy
from ..core.sequence import StateThreading
from ..core.state import read_state
from ..run.eager import run_module
from ..run.recorded import OUTPUTS, Manifest, TestSet
from ..targets import Artifact, Target
from ..targets.artifact import read_initial_state

__all__ = ["BundleError", "bundle_format", "write_bundle"]

#: file suffix -> the bundle's format and its model file's name
_FORMATS = {".onnx": ("onnx", "model.onnx"), ".pte": ("executorch", "program.pte")}


class BundleError(HarnessError):
    """A bundle that cannot be written (a target without a device test format, a folder in use)."""


def bundle_format(target: Target, known: Sequence[Target]) -> str:
    """The bundle format of ``target``'s files (``onnx`` or ``executorch``); BundleError naming
    the targets that have one otherwise."""
    for suffix, (kind, _) in _FORMATS.items():
        if target.suffix.endswith(suffix):
            return kind
    supported = [t.name for t in known if any(t.suffix.endswith(s) for s in _FORMATS)]
    raise BundleError(
        f"{target.name}: no device test format (bundle supports the ONNX and ExecuTorch targets: "
        f"{', '.join(supported)})"
    )


def _graph_io(artifact: Artifact, kind: str) -> tuple[list[str], list[str]]:
    """The file's inputs and outputs in the order its runtime takes them: an ONNX graph's (weights
    left out), a program's the case's (its state stays inside)."""
    state_inputs = list(artifact.meta.get("state_inputs") or [])
    state_outputs = list(artifact.meta.get("state_outputs") or [])
    declared_in = [*artifact.input_names, *state_inputs]
    declared_out = [*artifact.output_names, *state_outputs]
    if kind != "onnx":
        return declared_in, declared_out
    import onnx

    graph = onnx.load(str(artifact.path), load_external_data=False).graph
    weights = {i.name for i in graph.initializer}
    inputs = [i.name for i in graph.input if i.name not in weights]
    outputs = [o.name for o in graph.output]
    if sorted(inputs) != sorted(declared_in) or sorted(outputs) != sorted(declared_out):
        raise BundleError(
            f"{artifact.meta.get('user_file') or artifact.path}: its graph takes {inputs} and gives {outputs}; "
            f"the case and its sidecar name {declared_in} and {declared_out}"
        )
    return inputs, outputs


def _copy_model(artifact: Artifact, outdir: Path, name: str) -> None:
    """The model file under ``name`` with its companions, initial state and a sidecar for it."""
    source = Path(artifact.path)
    shutil.copyfile(source, outdir / name)
    for extra in artifact.files[1:]:  # ONNX external data and the initial state keep their names
        if extra.is_file():
            shutil.copyfile(extra, outdir / extra.name)
    meta = {k: v for k, v in artifact.meta.items() if k not in ("user_file", "shapes_stated")}
    Artifact(
        outdir / name, artifact.target, artifact.case, artifact.input_names, artifact.output_names, meta
    ).write_sidecar()


def _eager_sets(
    case: ModelCase, artifact: Artifact, module: torch.nn.Module, calls: list, graph_inputs: list[str]
) -> list[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]]:
    """(inputs, expected outputs) by graph name for each call of one canonical input, from eager's
    run: explicit state as eager threads it, lifted state as eager's state before and after."""
    state_names = list(artifact.meta.get("state_names") or [])
    run = run_module(module, calls, case=case, state_names=state_names)
    threading = StateThreading.of(case)
    initial: dict[str, np.ndarray] = {}
    if state_names:
        before = fresh_copy(module)
        found = {n: read_state(before, n) for n in state_names}
        if any(v is None for v in found.values()):
            found = read_initial_state(artifact, state_names)
        initial = {n: np.array(torch.as_tensor(v).detach().cpu().numpy()) for n, v in found.items()}
    sets = []
    for index, (call, outputs) in enumerate(zip(calls, run.outputs)):
        fed = [np.array(torch.as_tensor(x).detach().cpu().numpy()) for x in call]
        if threading is not None and index > 0:  # explicit state: what eager's previous call returned
            for i, o in threading.pairs.values():
                fed[i] = np.array(run.outputs[index - 1][o])
        inputs = dict(zip(case.input_names, fed))
        expected = dict(zip(case.output_names, (np.array(o) for o in outputs)))
        if state_names:
            if run.states is None or len(run.states) <= index:
                raise BundleError(f"eager's state after call {index} of {case.name} could not be read")
            previous = initial if index == 0 else run.states[index - 1]
            for name, graph_input, graph_output in zip(
                state_names, artifact.meta["state_inputs"], artifact.meta["state_outputs"]
            ):
                if name not in run.states[index] or name not in previous:
                    raise BundleError(
                        f"{artifact.meta.get('user_file') or artifact.path}: its state {name!r} is not state of "
                        f"{case.name}'s eager module (eager's state is what a lifted file's sets are fed)"
                    )
                inputs[graph_input] = previous[name]
                expected[graph_output] = run.states[index][name]
        missing = [n for n in graph_inputs if n not in inputs]
        if missing:
            raise BundleError(f"{artifact.path}: graph inputs {missing} are neither the case's nor its state")
        sets.append((inputs, expected))
    return sets


def _write_tensor(path: Path, name: str, value: np.ndarray) -> None:
    from onnx import numpy_helper

    path.write_bytes(numpy_helper.from_array(np.ascontiguousarray(value), name=name).SerializeToString())


def write_bundle(
    case: ModelCase,
    target: Target,
    artifact: Artifact,
    outdir: Path,
    *,
    kind: str,
    inputs: Sequence[str] | None = None,
) -> Manifest:
    """Write ``artifact`` with ``case``'s canonical inputs (``inputs``: all of them) and eager's
    outputs into ``outdir`` as ``kind``'s test format; returns the manifest written."""
    names = list(inputs) if inputs else list(case.inputs)
    outdir.mkdir(parents=True, exist_ok=True)
    if any(outdir.glob("test_data_set_*")) or (outdir / OUTPUTS).exists():
        raise BundleError(f"{outdir}: holds test sets or outputs already; give an empty or new folder")
    _, model_name = _FORMATS[".onnx" if kind == "onnx" else ".pte"]
    graph_inputs, graph_outputs = _graph_io(artifact, kind)
    _copy_model(artifact, outdir, model_name)
    module = PristineModule(lambda: case.build().eval()).module
    threading = StateThreading.of(case)
    state_inputs = set(artifact.meta.get("state_inputs") or [])
    explicit = set(threading.names) if threading else set()
    matched = [n for n in case.input_names if n not in explicit and n not in state_inputs]
    sets: list[TestSet] = []
    programs: dict[str, str] = {}
    for name in names:
        program_cases = []
        for call, (fed, expected) in enumerate(
            _eager_sets(case, artifact, module, list(case.inputs[name]()), graph_inputs)
        ):
            folder = f"test_data_set_{len(sets)}"
            (outdir / folder).mkdir()
            for k, graph_input in enumerate(graph_inputs):
                _write_tensor(outdir / folder / f"input_{k}.pb", graph_input, fed[graph_input])
            for k, graph_output in enumerate(graph_outputs):
                _write_tensor(outdir / folder / f"output_{k}.pb", graph_output, expected[graph_output])
            sets.append(TestSet(folder, name, call))
            program_cases.append(
                (
                    [torch.from_numpy(fed[n]) for n in graph_inputs],
                    [torch.from_numpy(expected[n]) for n in graph_outputs],
                )
            )
        if kind == "executorch":  # one program per input: a loaded method's state runs on
            programs[name] = _write_bundled_program(outdir / model_name, name, program_cases)
    extra: dict = {
        "tensor_files": "ONNX TensorProto (onnx.numpy_helper), named as the graph's inputs and outputs"
    }
    if programs:
        extra["bundled_programs"] = programs
        extra["run_in_order"] = (
            "each input's sets in order on one freshly loaded method (its buffers carry state)"
        )
    tolerances = {name: case.tolerance_for(name, target.name) for name in graph_outputs}
    extra["tolerances"] = {name: {"atol": t.atol, "rtol": t.rtol} for name, t in tolerances.items()}
    # a runtime's own check that takes one tolerance (ExecuTorch's BundledProgram verification)
    # passes a conforming program only at the loosest; judge applies each output's own, only where
    # the case judges it, and the task metric
    extra["one_tolerance"] = {
        "atol": max(t.atol for t in tolerances.values()),
        "rtol": max(t.rtol for t in tolerances.values()),
    }
    if target.approximate:
        extra["approximate"] = "judged by the case's task metric, not tolerances (export-conformance judge)"
    if state_inputs:
        extra["state"] = "each set's state inputs are eager's state after the previous call; judged per set"
    manifest = Manifest(
        outdir,
        case.name,
        target.name,
        model_name,
        tuple(graph_inputs),
        tuple(graph_outputs),
        tuple(matched),
        tuple(n for n in case.output_names),
        tuple(sets),
        extra,
    )
    manifest.write()
    return manifest


def _write_bundled_program(program: Path, input_name: str, cases: list) -> str:
    """An ExecuTorch BundledProgram of the ``.pte`` at ``program`` with one test case per call of
    one canonical input, in order. Built from the file's bytes (``pte_file_path``): a user's own
    program needs no ExecutorchProgramManager, and the harness's exports are not lowered again."""
    from executorch.devtools.bundled_program.config import MethodTestCase, MethodTestSuite
    from executorch.devtools.bundled_program.core import BundledProgram
    from executorch.devtools.bundled_program.serialize import serialize_from_bundled_program_to_flatbuffer

    suite = MethodTestSuite(
        "forward", [MethodTestCase(inputs=fed, expected_outputs=expected) for fed, expected in cases]
    )
    bundled = BundledProgram(None, [suite], pte_file_path=str(program))
    path = program.with_name(f"{program.stem}.{input_name}.bpte")
    path.write_bytes(serialize_from_bundled_program_to_flatbuffer(bundled))
    return path.name
