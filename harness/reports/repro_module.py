"""The first divergent module of a reproducer, reduced: eager's side and, for ONNX, the runtime's.

Localisation names the first eager module whose output the target stops reproducing. A
maintainer wants that module alone, on the values it saw at the divergent call:

- ``module/module.pt2``: the module *as it was when that call reached it* (its state included:
  a streaming cache holds what the calls before wrote into it), exported with ``torch.export``
  on its recorded inputs, so it runs with torch alone and no case code;
  ``module/inputs.npz``, ``module/expected.npz``: what eager fed it and what it returned;
  ``module/source.py``: the module's class source, for reading;
- ``module/subgraph.onnx`` (ONNX targets): the artifact's graph cut at the module's boundary
  (``onnx.utils.Extractor``: from the values it consumes to the value localisation matched
  with its output), with ``module/subgraph_inputs.npz``, the boundary values the artifact
  itself computed on that call;
- ``model.py``: runs the module's program (and the subgraph on onnxruntime) on those values
  and says whether the subgraph still diverges from eager's module (exit 1) or not (0).

Every step that cannot be made is a note in the README, never a failure of the reproducer.
"""

from __future__ import annotations

import copy
import inspect
import json
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..checks.module_match import DIVERGENCE_RELATIVE
from ..core.case import Calls, ModelCase
from ..core.errors import first_meaningful_line
from ..core.pristine import fresh_copy
from ..core.sequence import StateThreading, run_sequence
from ..targets import Artifact, Target
from ..targets.base import to_numpy
from ..targets.onnx_target import onnx_value_modules

__all__ = ["onnx_boundary", "write_module_repro"]


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _tensors(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    return []


def _clone(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, (tuple, list)):
        return type(value)(_clone(v) for v in value)
    return copy.deepcopy(value)


def capture_module(
    module: torch.nn.Module, calls: Calls, threading: StateThreading | None, path: str
) -> tuple[torch.nn.Module, tuple[Any, ...], list[torch.Tensor]]:
    """The module at ``path`` (``name#k``: its k-th invocation in one call) copied as the last of
    ``calls`` reached it, with its positional inputs and its outputs there. ``module`` is run
    as it is (a fresh copy of eager's)."""
    name, _, nth_text = path.partition("#")
    nth = int(nth_text or 0)
    sub = module.get_submodule(name) if name else module
    found: dict[str, Any] = {}
    seen = [0]
    last = [False]

    def before(mod: torch.nn.Module, args: tuple[Any, ...]) -> None:
        if last[0] and seen[0] == nth and "module" not in found:
            found["module"] = copy.deepcopy(mod)
            found["args"] = _clone(args)

    def after(mod: torch.nn.Module, args: tuple[Any, ...], out: Any) -> None:
        if last[0]:
            if seen[0] == nth:
                found["out"] = [t.detach().clone() for t in _tensors(out)]
            seen[0] += 1

    handles = [sub.register_forward_pre_hook(before), sub.register_forward_hook(after)]
    index = [0]

    def step(call: tuple[torch.Tensor, ...]) -> Sequence[Any]:
        last[0] = index[0] == len(calls) - 1
        index[0] += 1
        with torch.no_grad():
            out = module(*call)
        return tuple(out) if isinstance(out, (tuple, list)) else (out,)

    try:
        run_sequence(step, calls, threading)
    finally:
        for handle in handles:
            handle.remove()
    if "out" not in found:
        raise ValueError(f"module {path!r} did not run on the last call")
    return found["module"], found["args"], found["out"]


def onnx_boundary(model: Any, module_path: str, output: str) -> list[str]:
    """The values a graph's nodes of ``module_path`` (and the modules inside it) consume that
    they do not make themselves, nor the file holds as constants: the module's inputs in the
    graph (graph inputs included), from which ``output`` is computed."""
    modules = onnx_value_modules(model)
    constants = {i.name for i in model.graph.initializer}
    constants |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}

    def inside(value: str) -> bool:
        owner = modules.get(value)
        return owner is not None and (owner == module_path or owner.startswith(module_path + "."))

    made = {o for n in model.graph.node if any(inside(o) for o in n.output) for o in n.output}
    consumed = [
        i
        for n in model.graph.node
        if any(inside(o) for o in n.output)
        for i in n.input
        if i and i not in made and i not in constants
    ]
    graph_inputs = [i.name for i in model.graph.input]
    return list(dict.fromkeys([*consumed, *graph_inputs]))


def _onnx_subgraph(
    case: ModelCase,
    target: Target,
    artifact: Artifact,
    calls: Calls,
    into: Path,
    module_path: str,
    output: str,
) -> list[str]:
    """``subgraph.onnx`` and its boundary values, or the notes that say why not."""
    import onnx
    import onnx.utils

    model = onnx.load(str(artifact.path))
    values = {v.name for v in model.graph.value_info} | {o for n in model.graph.node for o in n.output}
    if output not in values and output not in {o.name for o in model.graph.output}:
        return [f"no ONNX subgraph: the value {output!r} localisation matched is not in the graph"]
    boundary = onnx_boundary(model, module_path, output)
    extracted = onnx.utils.Extractor(model).extract_model(boundary, [output])
    used = {i for n in extracted.graph.node for i in n.input}
    inputs = [name for name in boundary if name in used]
    extracted = onnx.utils.Extractor(model).extract_model(inputs, [output])
    # the boundary values the artifact itself computes on the call: added as graph outputs of a
    # copy, run by the target's own runner class (a lifted state fed back as in the cell)
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {
        v.name: v.type.tensor_type.elem_type for v in [*inferred.graph.value_info, *inferred.graph.input]
    }
    graph_inputs = {i.name for i in model.graph.input}
    wanted = [n for n in inputs if n not in graph_inputs]
    for name in wanted:
        if name not in types:
            return [f"no ONNX subgraph: the type of boundary value {name!r} is unknown"]
        model.graph.output.append(onnx.helper.make_tensor_value_info(name, types[name], None))
    scratch = Path(tempfile.mkdtemp(prefix="conformance-repro-"))
    try:
        found = _boundary_values(case, target, artifact, calls, model, scratch, wanted, inputs)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    missing = [name for name in inputs if name not in found]
    if missing:
        return [f"no ONNX subgraph: no value for its inputs {missing}"]
    onnx.save(extracted, str(into / "subgraph.onnx"))
    np.savez(into / "subgraph_inputs.npz", **{name: found[name] for name in inputs})
    return []


def _boundary_values(
    case: ModelCase,
    target: Target,
    artifact: Artifact,
    calls: Calls,
    model: Any,
    scratch: Path,
    wanted: list[str],
    inputs: list[str],
) -> dict[str, np.ndarray]:
    """The boundary values on the last of ``calls``: those computed inside the graph (``wanted``,
    added as outputs of ``model``), the case's inputs and a lifted state as the call was fed."""
    import onnx

    tapped = scratch / Path(artifact.path).name
    onnx.save(model, str(tapped))
    for extra in Path(artifact.path).parent.glob(Path(artifact.path).name + ".*"):
        if extra.suffix != ".json":
            shutil.copy2(extra, scratch / extra.name)
    runner = target._load_impl(replace(artifact, path=tapped))
    fed: list[Any] = [(), {}]

    def step(call: tuple[Any, ...]) -> Sequence[Any]:
        fed[:] = [call, runner.state() or {}]
        return runner._run_impl(tuple(torch.as_tensor(np.asarray(x)) for x in call))

    try:
        outputs = run_sequence(step, calls, StateThreading.of(case))[-1]
    finally:
        runner.close()
    found = dict(zip(wanted, [np.asarray(v) for v in list(outputs)[len(case.output_names) :]]))
    by_input = dict(zip(case.input_names, fed[0]))
    state_inputs = dict(zip(artifact.meta.get("state_inputs", []), artifact.meta.get("state_names", [])))
    for name in inputs:
        if name in by_input:
            found[name] = to_numpy(by_input[name])
        elif name in state_inputs and state_inputs[name] in fed[1]:
            found[name] = np.asarray(fed[1][state_inputs[name]])
    return found


def _describe_args(args: tuple[Any, ...]) -> list[Any] | None:
    kinds: list[Any] = []
    for a in args:
        if isinstance(a, torch.Tensor):
            kinds.append("tensor")
        elif isinstance(a, (int, float, bool, str)) or a is None:
            kinds.append({"value": a})
        else:
            return None
    return kinds


def write_module_repro(
    case: ModelCase,
    target: Target,
    artifact: Artifact,
    calls: Calls,
    folder: Path,
    *,
    module: torch.nn.Module,
    localization: dict[str, Any],
) -> list[str]:
    """Write ``model.py`` and ``module/`` for the first divergent module; the notes the README
    gives (what was written, and what could not be)."""
    first = localization.get("first_divergence")
    if not first:
        return ["no module reduction: localisation names no first divergent module"]
    path = str(first["module"])
    if path.split("#", 1)[0] == "":
        return ["no module reduction: the first divergent module is the whole model"]
    call = int(localization.get("call", len(calls) - 1))
    calls = list(calls)[: call + 1]
    threading = StateThreading.of(case)
    try:
        sub, args, outs = capture_module(fresh_copy(module), calls, threading, path)
    except Exception as exc:  # noqa: BLE001 - a reduction is a courtesy
        return [f"no module reduction: {type(exc).__name__}: {first_meaningful_line(exc)}"]
    kinds = _describe_args(args)
    if kinds is None:
        return [f"no module reduction: {path} takes inputs that are neither tensors nor numbers"]
    into = folder / "module"
    into.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    np.savez(
        into / "inputs.npz", **{f"arg{i}": to_numpy(a) for i, a in enumerate(args) if kinds[i] == "tensor"}
    )
    np.savez(into / "expected.npz", **{f"out{i}": to_numpy(o) for i, o in enumerate(outs)})
    try:
        (into / "source.py").write_text(inspect.getsource(type(sub)))
    except (OSError, TypeError):
        pass
    try:
        program = torch.export.export(sub.eval(), tuple(args), strict=False)
        torch.export.save(program, str(into / "module.pt2"))
    except Exception as exc:  # noqa: BLE001 - the recorded values stay useful without it
        notes.append(
            f"the module could not be exported with torch.export: {type(exc).__name__}: {first_meaningful_line(exc)}"
        )
    if (
        first.get("tap")
        and str(artifact.path).endswith(".onnx")
        and target.standalone == "onnxruntime_program"
    ):
        try:
            notes += _onnx_subgraph(
                case, target, artifact, calls, into, path.split("#", 1)[0], str(first["tap"])
            )
        except Exception as exc:  # noqa: BLE001
            notes.append(f"no ONNX subgraph: {type(exc).__name__}: {first_meaningful_line(exc)}")
    meta = {
        "module": path,
        "class": first.get("class"),
        "source": first.get("source"),
        "call": call,
        "args": kinds,
        "outputs": len(outs),
        "tap": first.get("tap"),
        "divergence_relative": DIVERGENCE_RELATIVE,
    }
    (into / "module.json").write_text(json.dumps(meta, indent=2))
    (folder / "model.py").write_text(MODEL_SCRIPT.replace("__HEADER__", _header(meta, case, target)))
    written = ["model.py: the first divergent module"]
    if (into / "module.pt2").exists():
        written.append("its eager side as module/module.pt2 (torch.export, as the call found it)")
    if (into / "subgraph.onnx").exists():
        written.append("the artifact's subgraph cut at its boundary (module/subgraph.onnx)")
    return [f"{path} ({first.get('class')}, {first.get('source')}): " + "; ".join(written), *notes]


def _header(meta: dict[str, Any], case: ModelCase, target: Target) -> str:
    return (
        f"The first module where {case.name} on {target.name} leaves eager: {meta['module']} "
        f"({meta['class']}, {meta['source']}), on the values it saw at call {meta['call']}.\n\n"
        "    python model.py   # exit 1: the runtime's subgraph diverges from eager's module; 0: it agrees"
    )


MODEL_SCRIPT = '''"""__HEADER__"""

import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent / "module"


def relative(expected, actual):
    expected = np.asarray(expected, dtype=np.float64)
    actual = np.asarray(actual, dtype=np.float64)
    if expected.size != actual.size:
        return float("inf"), float("inf")
    actual = actual.reshape(expected.shape)
    err = float(np.abs(actual - expected).max()) if expected.size else 0.0
    scale = float(np.abs(expected).max()) if expected.size else 0.0
    return err, err / scale if scale > 0 else err


def main():
    meta = json.loads((HERE / "module.json").read_text())
    expected = np.load(HERE / "expected.npz")
    print(f"{meta['module']} ({meta['class']}, {meta['source']}), call {meta['call']}")
    if (HERE / "module.pt2").exists():
        import torch

        inputs = np.load(HERE / "inputs.npz")
        args = [
            torch.from_numpy(inputs[f"arg{i}"]) if kind == "tensor" else kind["value"]
            for i, kind in enumerate(meta["args"])
        ]
        with torch.no_grad():
            out = torch.export.load(str(HERE / "module.pt2")).module()(*args)
        out = out if isinstance(out, (tuple, list)) else (out,)
        err, rel = relative(expected["out0"], out[0].numpy())
        print(f"eager's module (module.pt2) on its recorded inputs: max abs {err:.3g} from the recorded output")
    status = 0
    if (HERE / "subgraph.onnx").exists():
        import onnxruntime as ort

        session = ort.InferenceSession(str(HERE / "subgraph.onnx"), providers=["CPUExecutionProvider"])
        feed = dict(np.load(HERE / "subgraph_inputs.npz"))
        got = session.run(None, {i.name: feed[i.name] for i in session.get_inputs()})[0]
        err, rel = relative(expected["out0"], got)
        diverges = not rel <= meta["divergence_relative"]
        print(
            f"the artifact's subgraph (subgraph.onnx, boundary: {', '.join(feed)}) against eager's module: "
            f"max abs {err:.3g}, relative {rel:.3g}: " + ("DIVERGES" if diverges else "agrees")
        )
        status = 1 if diverges else 0
    return status


if __name__ == "__main__":
    sys.exit(main())
'''
