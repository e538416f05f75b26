"""ExecuTorch programs (.pte), XNNPACK-delegated or portable kernels, run with the Python runtime."""

from __future__ import annotations

import struct
import warnings
from collections.abc import Sequence
from typing import Any

import torch

from ..shapes import torch_dynamic_shapes
from .base import Artifact, ArtifactError, Runner, Target

__all__ = ["ExecuTorchRunner", "ExecuTorchTarget"]


def check_pte_bytes(path: object, data: bytes) -> None:
    """Refuse bytes that are not a whole .pte before the runtime sees them.

    The runtime aborts the whole process on some malformed programs (seen here on random bytes),
    so the flatbuffer identifier and the extended header's declared sizes are checked first.
    """
    if len(data) < 8 or data[4:6] != b"ET" or not data[6:8].isdigit():
        raise ArtifactError(f"{path}: not an ExecuTorch program (no 'ETnn' flatbuffer identifier at byte 4)")
    if data[8:12] == b"eh00" and len(data) >= 40:
        program_size, segment_base, segment_size = struct.unpack_from("<QQQ", data, 16)
        needed = segment_base + segment_size if segment_size else program_size
        if len(data) < needed:
            raise ArtifactError(
                f"{path}: truncated ExecuTorch program ({len(data)} bytes, header says {needed})"
            )


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
