"""Taking a user's file as a target's artifact (``Target.adopt``, for ``--artifact CASE:TARGET=PATH``).

Before anything runs, the file's signature is checked against the case: input and output names
(where the format declares them, as ONNX does: names are the contract), their order, ranks,
dtypes and fixed dimensions, and state inputs for a lifted-state model. A mismatch is one clear
error naming what differs. What is specific to a format is asked of the target:
``format_problem``, ``takes_lifted_state`` / ``lifted_state_meta``, ``companion_files``,
``input_shapes`` and ``io_signature``.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import shutil
import stat
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..core.case import ModelCase
from ..core.errors import HarnessError
from ..core.pristine import built, case_fault
from ..core.shapes import check_call_signature, chunk_axes, dims_fixed_in_file, input_signature
from .artifact import Artifact, ArtifactError

if TYPE_CHECKING:
    from .base import Target, TensorDecl

__all__ = ["STATE_FILE_SUFFIX", "adopt_file", "check_signature", "resolve_user_file"]

#: The initial state written beside a lifted-state file whose sidecar gives none: ``NAME.state.npz``.
STATE_FILE_SUFFIX = ".state.npz"


def _names_problem(kind: str, graph: list[str], declared: list[str], target: Target) -> str | None:
    if graph == declared:
        return None
    if target.io_names_are_positions and sorted(graph) != sorted(declared):
        if len(graph) == len(declared):
            return None  # matched by position (a .tflite signature's args_N / output_N)
        return f"{kind} differ in number: the file has {len(graph)} {graph}, the case declares {len(declared)} {declared}"
    if sorted(graph) == sorted(declared):
        return f"{kind} are reordered: the graph has {graph}, the case declares {declared}"
    missing = [n for n in declared if n not in graph]
    extra = [n for n in graph if n not in declared]
    return f"{kind} differ: the graph has {graph}, the case declares {declared} (missing {missing}, unexpected {extra})"


def _declares_inputs(target: Target, path: Path, names: Sequence[str]) -> bool:
    """Whether the file's graph takes any of ``names`` as inputs (an IR converted from a lifted
    export keeps its state inside, though its sidecar still names the inputs it came from)."""
    declared = target.io_signature(path)
    return declared is not None and any(name in {i[0] for i in declared[0]} for name in names)


def _eager_signature(case: ModelCase) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    module = built(case.build)
    example = list(case.example_inputs())
    with torch.no_grad():
        out = module(*example)
    return example, list(out) if isinstance(out, (tuple, list)) else [out]


def _tensor_problems(
    kind: str, names: Sequence[str], graph: list[TensorDecl], expected: list[torch.Tensor]
) -> list[str]:
    problems = []
    for name, (_, dtype, dims), tensor in zip(names, graph, expected):
        want_dtype = str(tensor.dtype).removeprefix("torch.")
        if dtype != want_dtype:
            problems.append(f"{kind} {name!r} is {dtype} in the graph, {want_dtype} in the case")
        if len(dims) != tensor.dim():
            problems.append(f"{kind} {name!r} has rank {len(dims)} in the graph, {tensor.dim()} in the case")
            continue
        for axis, (got, want) in enumerate(zip(dims, tensor.shape)):
            if got is not None and got != want:
                problems.append(
                    f"{kind} {name!r} dimension {axis} is {got} in the graph, {want} in the case's example"
                )
    return problems


def check_signature(artifact: Artifact, case: ModelCase, target: Target) -> list[str]:
    """Problems that make ``artifact`` unfit for ``case`` (empty: it fits): the graph's declared
    inputs and outputs where the target's format states them (``Target.io_signature``: names,
    order, dtypes, fixed dimensions), else the outputs of a run on the case's example input."""
    try:
        example, outputs = _eager_signature(case)
    except Exception:
        fault = case_fault(case)
        raise HarnessError(fault or f"case {case.name!r}: its eager module cannot be run") from None
    declared = target.io_signature(artifact.path)
    if declared is not None:
        inputs, graph_outputs = declared
        state_in = list(artifact.meta.get("state_inputs", []))
        state_out = list(artifact.meta.get("state_outputs", []))
        case_in = [i for i in inputs if i[0] not in state_in]
        case_out = [o for o in graph_outputs if o[0] not in state_out]
        problems = [
            p
            for p in (
                _names_problem("inputs", [i[0] for i in case_in], list(case.input_names), target),
                _names_problem("outputs", [o[0] for o in case_out], list(case.output_names), target),
            )
            if p
        ]
        if problems:
            return problems
        return _tensor_problems("input", case.input_names, case_in, example) + _tensor_problems(
            "output", case.output_names, case_out, outputs
        )
    try:
        with target.load(artifact) as runner:
            got = runner.run(*example)
    except ArtifactError:
        raise
    except Exception as exc:
        return [
            f"does not accept the case's example input ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})"
        ]
    if len(got) != len(outputs):
        return [f"returns {len(got)} outputs, the case declares {len(outputs)} {list(case.output_names)}"]
    return [
        f"output {name!r} is {tuple(g.shape)} {g.dtype}, eager gives {tuple(e.shape)} {str(e.dtype).removeprefix('torch.')}"
        for name, g, e in zip(case.output_names, got, outputs)
        if tuple(g.shape) != tuple(e.shape) or str(g.dtype) != str(e.dtype).removeprefix("torch.")
    ]


def resolve_user_file(given: Path) -> Path:
    """The file ``given`` names, resolved by the file system (a path through a deleted folder is
    not normalised into another file); raises ArtifactError naming what is wrong: a missing
    component, a symbolic-link loop, a folder or a special file (FIFO, device, socket)."""
    try:
        path = Path(given).resolve(strict=True)
    except FileNotFoundError:
        probe = Path(given) if Path(given).is_absolute() else Path.cwd() / given
        missing = next(
            (p for p in [*reversed(probe.parents), probe] if not os.path.lexists(p)),
            probe,
        )
        detail = "" if missing == probe else f" ({missing} does not exist)"
        raise ArtifactError(f"{given}: artifact file does not exist{detail}") from None
    except RuntimeError as exc:  # Python 3.11 reports a symlink loop so
        raise ArtifactError(f"{given}: a symbolic link loop, not a file ({exc})") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ArtifactError(f"{given}: a symbolic link loop, not a file") from None
        raise ArtifactError(f"{given}: cannot be read ({exc.strerror or exc})") from None
    mode = path.stat().st_mode
    kinds = (
        (stat.S_ISDIR, "is a directory, not an artifact file"),
        (stat.S_ISFIFO, "is a FIFO (named pipe), not an artifact file"),
        (stat.S_ISCHR, "is a character device, not an artifact file"),
        (stat.S_ISBLK, "is a block device, not an artifact file"),
        (stat.S_ISSOCK, "is a socket, not an artifact file"),
    )
    for test, words in kinds:
        if test(mode):
            raise ArtifactError(f"{given}: {words}")
    if not os.access(path, os.R_OK):
        raise ArtifactError(f"{given}: cannot be read (permission denied)")
    return path


#: A dimension beyond this is no real input (2**31: what int32 shape fields hold).
_ABSURD = 1 << 31


def _check_sidecar_inputs(sidecar: Path, inputs: object, case: ModelCase) -> None:
    """The sidecar's ``meta.inputs`` have the shape docs/sidecar.schema.json gives: one entry per
    case input, each ``{name, dtype, shape}``, a shape of sizes, ``null`` (any) or ``[min, max,
    dim]`` ranges within bounds. Checked before anything reads them."""
    where = f"{sidecar}: meta.inputs"
    if not isinstance(inputs, list) or len(inputs) != len(case.input_names):
        raise ArtifactError(
            f"{where} must list one entry per input {list(case.input_names)}, got {json.dumps(inputs)[:120]}"
        )
    for i, (entry, name) in enumerate(zip(inputs, case.input_names)):
        if not isinstance(entry, dict) or not {"name", "dtype", "shape"} <= set(entry):
            raise ArtifactError(
                f"{where}[{i}] must be an object with name, dtype and shape, got {json.dumps(entry)[:120]}"
            )
        if not isinstance(entry["name"], str) or not isinstance(entry["dtype"], str):
            raise ArtifactError(
                f"{where}[{i}]: name and dtype must be strings, got {json.dumps(entry)[:120]}"
            )
        shape = entry["shape"]
        if not isinstance(shape, list):
            raise ArtifactError(f"{where}[{i}] ({name}) shape must be a list of dimensions, got {shape!r}")
        for axis, dim in enumerate(shape):
            ok = (
                dim is None
                or (type(dim) is int and 0 < dim < _ABSURD)
                or (
                    isinstance(dim, list)
                    and len(dim) == 3
                    and all(type(v) is int for v in dim[:2])
                    and 0 < dim[0] <= dim[1] < _ABSURD
                    and isinstance(dim[2], str)
                )
            )
            if not ok:
                raise ArtifactError(
                    f"{where}[{i}] ({name}) dimension {axis} is {dim!r}: give a size, null (any) or "
                    f"[min, max, name] with 0 < min <= max < {_ABSURD}"
                )


def _sidecar_inputs_fit_the_case(sidecar: Path, inputs: list, case: ModelCase, example: tuple) -> None:
    """The sidecar's ``meta.inputs`` name the case's inputs with its dtypes and ranks, and admit
    the case's own example input (checked after the file's own signature, which says more)."""
    where = f"{sidecar}: meta.inputs"
    for i, (entry, name, x) in enumerate(zip(inputs, case.input_names, example)):
        if entry["name"] != name:
            raise ArtifactError(f"{where}[{i}] is named {entry['name']!r}, the case's input {i} is {name!r}")
        want = str(x.dtype).removeprefix("torch.")
        if entry["dtype"] != want:
            raise ArtifactError(f"{where}[{i}] ({name}) is {entry['dtype']!r}, the case feeds it {want}")
        if len(entry["shape"]) != x.dim():
            raise ArtifactError(
                f"{where}[{i}] ({name}) has {len(entry['shape'])} dimensions, the case's {x.dim()}"
            )
    try:
        check_call_signature(inputs, example, "the case's example input")
    except Exception as exc:
        raise ArtifactError(f"{where} does not admit the case's own example input: {exc}") from None


def _check_state_inputs(
    given: Path, target: Target, path: Path, meta: dict, buffers: dict[str, torch.Tensor]
) -> None:
    """A lifted state input whose fixed dimensions are not its buffer's is one line, up front."""
    declared = target.io_signature(path)
    if declared is None:
        return
    graph = {name: dims for name, _, dims in declared[0]}
    for state_input, name in zip(meta.get("state_inputs", []), meta.get("state_names", [])):
        if state_input not in graph or name not in buffers:
            continue
        dims, want = graph[state_input], tuple(buffers[name].shape)
        if len(dims) != len(want) or any(d is not None and d != w for d, w in zip(dims, want)):
            shown = tuple("?" if d is None else d for d in dims)
            raise ArtifactError(
                f"{given}: state input {state_input!r} is declared {shown} in the graph, the case's state "
                f"{name!r} is {want}"
            )


_META_LISTS = ("state_names", "state_inputs", "state_outputs")


def _read_sidecar(sidecar: Path) -> dict:
    """The ``meta`` of a user's sidecar, checked against docs/sidecar.schema.json's shape."""
    try:
        body = json.loads(sidecar.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{sidecar}: cannot read the artifact's sidecar ({exc})") from exc
    except ValueError as exc:
        raise ArtifactError(f"{sidecar}: the artifact's sidecar is not valid JSON ({exc})") from exc
    if not isinstance(body, dict):
        raise ArtifactError(f"{sidecar}: the sidecar must be a JSON object, got a {type(body).__name__}")
    meta = body.get("meta", {})
    if not isinstance(meta, dict):
        raise ArtifactError(f"{sidecar}: 'meta' must be an object, got a {type(meta).__name__}")
    for key in _META_LISTS:
        value = meta.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ArtifactError(f"{sidecar}: meta.{key} must be a list of strings, got {value!r}")
    if "state_file" in meta and (not isinstance(meta["state_file"], str) or not meta["state_file"]):
        raise ArtifactError(f"{sidecar}: meta.state_file must be a file name, got {meta['state_file']!r}")
    if "state_file" in meta and Path(meta["state_file"]).name != meta["state_file"]:
        raise ArtifactError(f"{sidecar}: meta.state_file must name a file beside the artifact, not a path")
    lengths = {key: len(meta.get(key, [])) for key in _META_LISTS}
    if len(set(lengths.values())) > 1:
        raise ArtifactError(f"{sidecar}: meta's state lists differ in length {lengths}")
    return dict(meta)


def _check_state_file(state: Path, names: list[str], buffers: dict[str, torch.Tensor]) -> None:
    """The user's initial state: readable, one array per state buffer, the buffers' shapes and dtypes."""
    if not state.is_file():
        raise ArtifactError(f"{state}: the initial-state file the sidecar names does not exist")
    try:
        with np.load(state, allow_pickle=False) as stored:
            arrays = {key: stored[key] for key in stored.files}
    except Exception as exc:  # zipfile, pickle refusal, truncated member: all "unreadable"
        raise ArtifactError(
            f"{state}: not a readable .npz of initial state ({type(exc).__name__}: {exc})"
        ) from exc
    if sorted(arrays) != sorted(names):
        raise ArtifactError(f"{state}: holds {sorted(arrays)}, the artifact's state is {sorted(names)}")
    for name in names:
        if name not in buffers:
            continue  # a state the case's module does not name: checked against the graph instead
        want = buffers[name]
        got = arrays[name]
        if tuple(got.shape) != tuple(want.shape):
            raise ArtifactError(
                f"{state}: state {name!r} has shape {tuple(got.shape)}, the case's buffer {tuple(want.shape)}"
            )
        if str(got.dtype) != str(want.dtype).removeprefix("torch."):
            raise ArtifactError(
                f"{state}: state {name!r} is {got.dtype}, the case's buffer is {str(want.dtype).removeprefix('torch.')}"
            )


def _digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for path in paths:
        h.update(path.name.encode() + b"\0")
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        h.update(b"\0")
    return h.hexdigest()[:20]


def _private_copy(files: list[Path], workdir: Path, entry: str, extra: dict[str, bytes]) -> Path:
    """Copy the user's files into ``workdir/entry`` (an entry named by their content digest),
    published atomically; an existing entry has the same content by construction."""
    final = workdir / entry
    if final.is_dir():
        return final
    workdir.mkdir(parents=True, exist_ok=True)
    staging = workdir / f".staging-{entry}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        base = files[0].parent
        for f in files:
            relative = f.relative_to(base) if f.is_relative_to(base) else Path(f.name)
            (staging / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, staging / relative)
        for name, data in extra.items():
            (staging / name).write_bytes(data)
        try:
            staging.rename(final)
        except OSError:  # another xdist worker published the same content first
            if not final.is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def _file_takes_chunks(target: Target, path: Path, case: ModelCase, example: tuple) -> bool:
    """Whether the file's own input shapes leave every streamed time axis dynamic (a user's export
    with a dynamic chunk, no sidecar needed): then every chunk size the case admits is fed to it."""
    axes = chunk_axes(case, example)
    shapes = target.input_shapes(path) if axes else None
    if not shapes:
        return False
    by_name = dict(shapes)
    if not all(n in by_name for n in case.input_names):  # other names: match by position
        if len(shapes) < len(case.input_names):
            return False
        by_name = {n: dims for n, (_, dims) in zip(case.input_names, shapes)}
    return all(a.axis < len(by_name[a.input]) and by_name[a.input][a.axis] is None for a in axes)


def adopt_file(target: Target, given: Path, case: ModelCase, workdir: Path) -> Artifact:
    """The user's file as ``target``'s Artifact, checked against its case; raises ArtifactError
    naming ``given`` on any misfit (``Target.adopt``'s default).

    The file and every file beside it that belongs to it (sidecar, companions, initial state) are
    copied into a private entry named by their content digest: two different files never share
    an entry, and a file changed between runs is never judged by an old copy.
    """
    path = resolve_user_file(given)
    if path.stat().st_size == 0:
        raise ArtifactError(f"{given}: artifact file is empty")
    sidecar = path.with_name(path.name + ".json")
    meta = _read_sidecar(sidecar) if sidecar.is_file() else {}
    problem = target.format_problem(path, tuple(case.example_inputs()))
    if problem:
        raise ArtifactError(f"{given}: {problem}")
    sidecar_gives_inputs = "inputs" in meta  # else the harness derives them below
    if sidecar_gives_inputs:
        _check_sidecar_inputs(sidecar, meta["inputs"], case)
    buffers = dict(case.build().named_buffers())  # the case's initial state, built once
    if target.takes_lifted_state(path):  # (a file keeping its state inside has none to name)
        meta.update(target.lifted_state_meta(path, case, meta))
    elif meta.get("state_inputs") and _declares_inputs(target, path, meta["state_inputs"]):
        raise ArtifactError(
            f"{given}: its sidecar says it carries the streaming state as inputs {list(meta['state_inputs'])} "
            f"(a lifted-state export), and {target.name} runs a file that keeps its state inside: give it "
            "for a target that takes lifted state (onnx-stateful, openvino)"
        )
    if meta.get("state_inputs"):
        _check_state_inputs(given, target, path, meta, buffers)
    files = [path, *target.companion_files(path)]
    extra: dict[str, bytes] = {}
    if meta.get("state_inputs"):
        if meta.get("state_file"):
            state = path.with_name(meta["state_file"])
            _check_state_file(state, meta["state_names"], buffers)
            files.append(state)
        else:
            unknown = [n for n in meta["state_names"] if n not in buffers]
            if unknown:
                raise ArtifactError(
                    f"{given}: state inputs name buffers the case's module does not have: {unknown} "
                    "(give their initial values in a .npz named by the sidecar's meta.state_file)"
                )
            buffer = io.BytesIO()
            np.savez(buffer, **{n: buffers[n].numpy() for n in meta["state_names"]})
            meta["state_file"] = path.name + STATE_FILE_SUFFIX
            extra[meta["state_file"]] = buffer.getvalue()
    if sidecar.is_file():
        files.append(sidecar)
    digest = _digest(files) + (hashlib.sha256(b"".join(extra.values())).hexdigest()[:8] if extra else "")
    local = _private_copy(
        [f for f in files if f != sidecar], workdir, f"{case.name}-{target.name}-{digest}", extra
    )
    example = tuple(case.example_inputs())
    meta.setdefault(
        "inputs",
        input_signature(
            case,
            example,
            fixed_shapes=target.fixed_shapes,
            chunk_dynamic=_file_takes_chunks(target, path, case, example),
            fixed_dims=dims_fixed_in_file(
                case, example, target.input_shapes(path)
            ),  # as the file states them
        ),
    )
    meta["user_file"] = str(path)  # what the reports name (the private copy is what runs)
    # whether the input shapes are the file's own word (its format, or its sidecar), not a guess
    meta["shapes_stated"] = sidecar_gives_inputs or target.input_shapes(path) is not None
    artifact = Artifact(local / path.name, target.name, case.name, case.input_names, case.output_names, meta)
    try:
        problems = check_signature(artifact, case, target)
    except ArtifactError as exc:  # name the user's file, not the private copy the loader saw
        raise ArtifactError(str(exc).replace(str(artifact.path), str(given))) from exc
    if problems:
        raise ArtifactError(
            f"{given}: does not fit case {case.name!r} on {target.name}: " + "; ".join(problems)
        )
    if sidecar_gives_inputs:
        _sidecar_inputs_fit_the_case(sidecar, meta["inputs"], case, example)
    return artifact
