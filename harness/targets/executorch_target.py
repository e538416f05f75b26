"""ExecuTorch programs (.pte), XNNPACK-delegated or portable kernels, run with the Python runtime."""

from __future__ import annotations

import subprocess
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..shapes import torch_dynamic_shapes
from .base import Artifact, ArtifactError, Runner, Target
from .formats import describe_format, pte_header_problem

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


class ExecuTorchRunner(Runner):
    """A loaded ``forward`` method; mutable buffers persist across calls.

    Reset reloads the whole program: measured with executorch 1.5, a second ``load_method`` on the
    same ``Program`` shares the mutable buffers of the first, so it would not reset the state.
    """

    def __init__(self, artifact: Artifact) -> None:
        super().__init__(artifact)
        self._program_bytes = artifact.path.read_bytes()
        check_pte_bytes(artifact.path, self._program_bytes)
        self.method = self._load_method()

    def _load_method(self) -> Any:
        from executorch.runtime import Runtime

        program = Runtime.get().load_program(self._program_bytes)
        method = program.load_method("forward")
        if method is None:
            raise ValueError("program has no 'forward' method")
        return method

    def _run_impl(self, inputs: tuple[torch.Tensor, ...]) -> Sequence[Any]:
        return self.method.execute([x.contiguous() for x in inputs])

    def _reset_impl(self) -> None:
        self.method = self._load_method()


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
    requires = ("executorch",)

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

        program = torch.export.export(
            module, example, dynamic_shapes=torch_dynamic_shapes(case), strict=False
        )
        partitioners = []
        if self.backend == "xnnpack":
            from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

            partitioners = [XnnpackPartitioner()]
        edge = to_edge_transform_and_lower(program, partitioner=partitioners)
        initialized = mutated_buffer_placeholders(edge.exported_program())
        config = ExecutorchBackendConfig(
            passes=[InitializedMutableBufferPass(initialized)] if initialized else []
        )
        with warnings.catch_warnings():
            if initialized:  # the emitter warns about uninitialised buffers even when they are marked
                warnings.filterwarnings("ignore", message="Mutation on a buffer in the model is detected")
            path.write_bytes(edge.to_executorch(config).buffer)
        return {"backend": self.backend, "initialized_mutable_buffers": initialized}

    def _load_impl(self, artifact: Artifact) -> Runner:
        return ExecuTorchRunner(artifact)

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
