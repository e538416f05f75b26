"""ExecuTorch programs (.pte), XNNPACK-delegated or portable kernels, run with the Python runtime."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.errors import LoggedRuntimeError, first_meaningful_line
from .base import Artifact, ArtifactError, Runner, Target, export_with_dynamic_chunk
from .formats import describe_format, pte_header_problem
from .taps import Tap, Taps

__all__ = ["ExecuTorchRunner", "ExecuTorchTarget"]


def check_pte_bytes(path: object, data: bytes) -> None:
    """Refuse bytes that are not a whole .pte before the runtime sees them.

    The runtime aborts the whole process on some malformed programs (seen here on random bytes),
    so the flatbuffer identifier and the extended header's declared sizes are checked first.
    """
    problem = pte_header_problem(path, data)
    if problem:
        raise ArtifactError(f"{path}: {problem}")


_PROBE = """
import sys
from executorch.runtime import Runtime
program = Runtime.get().load_program(open(sys.argv[1], "rb").read())
method = program.load_method("forward")
if method is None:
    sys.exit(3)
if len(sys.argv) > 2:
    import torch
    method.execute([t.contiguous() for t in torch.load(sys.argv[2])])
"""


def probe_in_subprocess(
    path: Path, example: tuple[torch.Tensor, ...] | None = None, timeout_s: float = 180.0
) -> str | None:
    """Load the program's ``forward`` (and run it once on ``example``) in a child process: the
    runtime aborts (SIGABRT) or hangs on some malformed programs, which must not take the test
    session down with it."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        args = [sys.executable, "-c", _PROBE, str(path)]
        if example is not None:
            torch.save(list(example), Path(folder) / "example.pt")
            args.append(str(Path(folder) / "example.pt"))
        try:
            done = subprocess.run(args, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return f"the ExecuTorch runtime did not finish loading and running it in {timeout_s:.0f} s"
    return _probe_problem(done)


def _probe_problem(done: subprocess.CompletedProcess) -> str | None:
    if done.returncode == 0:
        return None
    if done.returncode == 3:
        return "the program has no 'forward' method"
    lines = [line.strip() for line in (done.stderr or "").splitlines() if line.strip()]
    how = f"killed by signal {-done.returncode}" if done.returncode < 0 else f"exit status {done.returncode}"
    last = lines[-1][:300] if lines else "no message"
    return f"the ExecuTorch runtime cannot load and run it ({how}: {last})"


class NativeLog:
    """What the ExecuTorch C++ runtime writes to stderr (file descriptor 2) during a load or a run:
    its exceptions say only ``error 0x10``, the cause (``Attempted to resize a static tensor.
    Expected shape (2, 3), but received (3, 3).``) is in that log. The log is passed on to the
    real stderr as before; a failure is raised again as a LoggedRuntimeError that quotes it.
    Loads are captured as they happen; a run only when it failed, by running that call again
    (runs are timed by the benchmarks)."""

    #: lines of the log a failure quotes (its last ones: the runtime logs the cause last)
    QUOTED_LINES = 12
    _KEPT_BYTES = 1 << 20

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile()

    @contextlib.contextmanager
    def around(self) -> Iterator[None]:
        fd = self._file.fileno()
        if os.lseek(fd, 0, os.SEEK_END) > self._KEPT_BYTES:
            os.ftruncate(fd, 0)
        start = os.lseek(fd, 0, os.SEEK_END)
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(fd, 2)
        said = io.StringIO()  # the Python runtime's log goes through sys.stderr, its C++ to fd 2
        failure: BaseException | None = None
        try:
            with contextlib.redirect_stderr(said):
                yield
        except Exception as exc:
            failure = exc
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        logged = self._read(start) + said.getvalue()
        if logged:
            sys.stderr.write(logged)  # what the runtime said, where it would have gone
        if failure is not None:
            lines = [line.strip() for line in logged.splitlines() if line.strip()]
            raise LoggedRuntimeError(failure, lines[-self.QUOTED_LINES :]) from None

    def _read(self, start: int) -> str:
        fd = self._file.fileno()
        end = os.lseek(fd, 0, os.SEEK_END)
        return os.pread(fd, end - start, start).decode(errors="replace") if end > start else ""

    def close(self) -> None:
        self._file.close()


class ExecuTorchRunner(Runner):
    """A loaded ``forward`` method; mutable buffers persist across calls.

    Reset reloads the whole program: measured with executorch 1.5, a second ``load_method`` on the
    same ``Program`` shares the mutable buffers of the first, so it would not reset the state.
    """

    def __init__(self, artifact: Artifact) -> None:
        super().__init__(artifact)
        self._program_bytes = artifact.path.read_bytes()
        check_pte_bytes(artifact.path, self._program_bytes)
        self._log = NativeLog()
        self.method = self._load_method()

    def _load_method(self) -> Any:
        from executorch.runtime import Runtime

        with self._log.around():
            program = Runtime.get().load_program(self._program_bytes)
            method = program.load_method("forward")
        if method is None:
            raise ValueError("program has no 'forward' method")
        return method

    def _run_impl(self, inputs: tuple[torch.Tensor, ...]) -> Sequence[Any]:
        feed = [x.contiguous() for x in inputs]
        try:  # a call is timed by the benchmarks: no log capture on the way that works
            return self.method.execute(feed)
        except Exception as failed:
            try:  # the same call again with the C++ log captured, for its cause
                with self._log.around():
                    self.method.execute(feed)
            except LoggedRuntimeError as logged:
                raise logged from None
            raise failed  # it failed once only: the first failure stands, never a silent retry

    def close(self) -> None:
        self._log.close()

    def _reset_impl(self) -> None:
        self.method = self._load_method()


#: Bytes ExecuTorch may write intermediate outputs into while localising (sized for the seed models).
DEBUG_BUFFER_BYTES = 512 << 20
_SCALAR_DTYPES = {5: np.float16, 6: np.float32, 7: np.float64, 15: "bfloat16"}


def _module_of(stack: Any) -> str:
    path = list(stack.values())[-1][0] if stack else ""
    return path.removeprefix("L__self__").lstrip("._")


def _op_name(target: Any) -> str:
    """``aten.convolution.default`` -> ``aten::convolution`` (how a program names its operators)."""
    parts = str(target).split(".")
    return f"{parts[0]}::{parts[1]}" if len(parts) >= 2 else str(target)


def _output_modules(graph_module: Any) -> list[str | None]:
    """The eager module of each output of a lowered graph (None where its producer has none)."""
    output = next(n for n in graph_module.graph.nodes if n.op == "output")
    values = output.args[0] if isinstance(output.args[0], (list, tuple)) else [output.args[0]]
    modules: list[str | None] = []
    for value in values:
        stack = getattr(value, "meta", {}).get("nn_module_stack") if value is not None else None
        modules.append(_module_of(stack) if stack else None)
    return modules


def instruction_modules(edge_program: Any, program_bytes: bytes) -> dict[str, Any]:
    """Instruction index -> the eager module of the graph node it computes (for a delegate call,
    a list: the module of each of its outputs).

    The emitted instructions are aligned with the edge graph's nodes by operator name, in order
    (measured: the emitter's own debug-handle map is off by one instruction on PESTO).
    """
    from executorch.exir._serialize._program import deserialize_pte_binary

    program = deserialize_pte_binary(program_bytes)
    program = getattr(program, "program", program)
    plan = program.execution_plan[0]
    instructions = plan.chains[0].instructions
    nodes = [
        n
        for n in edge_program.graph_module.graph.nodes
        if n.op == "call_function" and not str(n.target).endswith("getitem")
    ]
    modules: dict[str, Any] = {}
    pointer = 0
    for index, instruction in enumerate(instructions):
        args = instruction.instr_args
        if hasattr(args, "op_index"):
            wanted = plan.operators[args.op_index].name
            match = lambda n, wanted=wanted: _op_name(n.target) == wanted  # noqa: E731
        elif type(args).__name__ == "DelegateCall":
            match = lambda n: "call_delegate" in str(n.target)  # noqa: E731
        else:
            continue
        for j in range(pointer, len(nodes)):
            if match(nodes[j]):
                node = nodes[j]
                pointer = j + 1
                if "call_delegate" in str(node.target):
                    lowered = getattr(edge_program.graph_module, str(node.args[0].target), None)
                    original = getattr(lowered, "original_module", None)
                    module = _output_modules(original.graph_module) if original is not None else None
                else:
                    stack = node.meta.get("nn_module_stack")
                    module = _module_of(stack) if stack else None
                if module is not None:
                    modules[str(index)] = module
                break
    return modules


def _instruction_map(edge_program: Any, program_bytes: bytes) -> dict[str, Any]:
    """The instruction map, or none: it only serves localisation and must never fail an export."""
    try:
        return instruction_modules(edge_program, program_bytes)
    except Exception as exc:  # noqa: BLE001 - any failure here leaves localisation to shapes
        return {"_unavailable": f"{type(exc).__name__}: {first_meaningful_line(exc)}"}


class EtdumpTappedRunner(Runner):
    """The program loaded with ETDump and a debug buffer: every instruction's outputs (a delegate
    call's outputs as one) are logged, and the export's instruction map places them in modules."""

    def __init__(self, artifact: Artifact) -> None:
        super().__init__(artifact)
        self._program_bytes = artifact.path.read_bytes()
        check_pte_bytes(artifact.path, self._program_bytes)
        self._load()

    def _load(self) -> None:
        from executorch.extension.pybindings.portable_lib import _load_for_executorch_from_buffer

        self.module = _load_for_executorch_from_buffer(
            self._program_bytes, enable_etdump=True, debug_buffer_size=DEBUG_BUFFER_BYTES
        )

    def _run_impl(self, inputs: tuple[torch.Tensor, ...]) -> Sequence[Any]:
        return self.module.forward([x.contiguous() for x in inputs])

    def _reset_impl(self) -> None:
        self._load()

    def taps(self, eager: Sequence[Any]) -> Any:
        import tempfile

        from executorch.devtools.etdump.serialize import deserialize_from_etdump_flatcc

        with tempfile.TemporaryDirectory() as folder:
            etdump, debug = Path(folder) / "run.etdp", Path(folder) / "debug.bin"
            self.module.write_etdump_result_to_file(str(etdump), str(debug))
            dump = deserialize_from_etdump_flatcc(etdump.read_bytes())
            buffer = debug.read_bytes() if debug.is_file() else b""
        modules = {
            k: v for k, v in (self.artifact.meta.get("instruction_modules") or {}).items() if k.isdigit()
        }
        runs = [r for r in dump.run_data if r.events]
        events = runs[-1].events if runs else []
        taps: list[Any] = []
        counts: dict[int, int] = {}
        for event in events:
            debug_event = event.debug_event
            if (
                debug_event is None
                or debug_event.debug_entry is None
                or debug_event.debug_entry.tensor is None
            ):
                continue
            if debug_event.chain_index != 0:
                continue  # the method's outputs, logged again after the last instruction
            tensor = debug_event.debug_entry.tensor
            dtype = _SCALAR_DTYPES.get(
                int(tensor.scalar_type.value if hasattr(tensor.scalar_type, "value") else tensor.scalar_type)
            )
            if dtype is None or dtype == "bfloat16":
                continue
            count = int(np.prod(tensor.sizes)) if tensor.sizes else 1
            size = count * np.dtype(dtype).itemsize
            if tensor.offset + size > len(buffer):
                continue
            value = np.frombuffer(buffer, dtype=dtype, count=count, offset=tensor.offset).reshape(
                tensor.sizes
            )
            instruction = debug_event.instruction_id
            k = counts.get(instruction, 0)
            counts[instruction] = k + 1
            module = modules.get(str(instruction))
            if isinstance(module, list):  # a delegate call: one module per output
                module = module[k] if k < len(module) else None
            taps.append(Tap(f"instruction {instruction} output {k}", module, value.astype(np.float64)))
        how = f"ExecuTorch ETDump debug buffer: {len(taps)} instruction outputs"
        notes = []
        if self.artifact.meta.get("backend") == "xnnpack" or "xnnpack" in self.artifact.target:
            notes.append(
                "XNNPACK delegates show only their outputs: modules computed inside a delegate and "
                "not among its outputs are not matched (a divergence there shows at the next output)"
            )
        if not modules:
            notes.append("the program carries no instruction map (not exported by this harness)")
        return Taps(taps, how, notes=notes)


def mutated_buffer_placeholders(program: Any) -> list[str]:
    """Graph placeholders of the buffers that forward mutates.

    ExecuTorch serialises only the shape and dtype of a mutated buffer unless it is marked for
    initialisation, so without this the first call reads uninitialised memory (measured: NaN
    pitch on PESTO's first frames); the target marks them so the program starts from the
    module's initial state.
    """
    signature = program.graph_signature
    mutated = set(signature.buffers_to_mutate.values())
    return sorted(ph for ph, fqn in signature.inputs_to_buffers.items() if fqn in mutated)


class ExecuTorchTarget(Target):
    """``torch.export`` then ``to_edge_transform_and_lower``; XNNPACK or the portable kernels."""

    suffix = ".pte"
    #: Export a streaming case's chunk as a dynamic dimension (the int8 subclass quantizes a
    #: module captured at the fixed chunk).
    dynamic_chunk = True
    requires = ("executorch",)
    via_torch_export = True
    carries_state = True
    standalone = "executorch_program"

    def __init__(self, backend: str) -> None:
        if backend not in ("xnnpack", "portable"):
            raise ValueError(f"unknown ExecuTorch backend {backend!r}")
        self.backend = backend
        self.name = f"executorch-{backend}"
        self.suffix = f".{backend}.pte"
        self.description = f"ExecuTorch .pte, {backend} kernels"

    def _export_impl(self, module, example, case, path):
        from executorch.exir import ExecutorchBackendConfig, to_edge_transform_and_lower
        from executorch.exir.passes.init_mutable_pass import InitializedMutableBufferPass

        partitioners = []
        if self.backend == "xnnpack":
            from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

            partitioners = [XnnpackPartitioner()]

        def lower(shapes: Any) -> tuple[Any, Any, list[str]]:
            program = torch.export.export(module, example, dynamic_shapes=shapes, strict=False)
            edge = to_edge_transform_and_lower(program, partitioner=partitioners)
            initialized = mutated_buffer_placeholders(edge.exported_program())
            config = ExecutorchBackendConfig(
                passes=[InitializedMutableBufferPass(initialized)] if initialized else []
            )
            with warnings.catch_warnings():
                if initialized:  # the emitter warns about uninitialised buffers even when they are marked
                    warnings.filterwarnings("ignore", message="Mutation on a buffer in the model is detected")
                return edge, edge.to_executorch(config), initialized

        (edge, program_manager, initialized), chunk_meta = export_with_dynamic_chunk(
            case, example, lower, chunk=self.dynamic_chunk
        )
        path.write_bytes(program_manager.buffer)
        return {
            "backend": self.backend,
            "initialized_mutable_buffers": initialized,
            "instruction_modules": _instruction_map(edge.exported_program(), program_manager.buffer),
            **chunk_meta,
        }

    def _load_impl(self, artifact: Artifact) -> Runner:
        return ExecuTorchRunner(artifact)

    def tapped_runner(self, artifact: Artifact, case: Any) -> Runner:
        self.require_runtime()
        return EtdumpTappedRunner(artifact)

    def format_problem(self, path: Path, example: tuple[torch.Tensor, ...] | None = None) -> str | None:
        kind = describe_format(path)
        if kind != "an ExecuTorch program":
            return f"is {kind}, not an ExecuTorch program (.pte)"
        problem = pte_header_problem(path, path.read_bytes())
        if problem:
            return problem
        if self.missing_runtime():
            return None  # the cells skip with the reason; nothing can load it here
        return probe_in_subprocess(path, example)
