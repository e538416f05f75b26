"""AOTInductor (``aoti``): torch.export, compiled ahead of time to C++ in a ``.pt2`` package.

``torch._inductor.aoti_compile_and_package`` compiles the exported program (a C++ compiler runs:
tens of seconds per model, cached like every export); ``torch._inductor.aoti_load_package`` loads
it. Mutated buffers stay inside the loaded model and advance call by call as in eager; each load
starts from the buffers' stored initial values, so ``reset`` loads the package again (~10 ms).
"""

from __future__ import annotations

import os
import shutil
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .base import Artifact, Runner, Target, export_with_dynamic_chunk
from .formats import describe_format

__all__ = ["AotiRunner", "AotiTarget"]


class AotiRunner(Runner):
    """Runs an AOTInductor package; every load is a fresh model with the initial buffers."""

    def __init__(self, artifact: Artifact) -> None:
        super().__init__(artifact)
        self.model = self._load()

    def _load(self) -> Any:
        from torch._inductor import aoti_load_package

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return aoti_load_package(str(self.artifact.path))

    def _run_impl(self, inputs: tuple[torch.Tensor, ...]) -> Sequence[Any]:
        with torch.no_grad():
            out = self.model(*(x.contiguous() for x in inputs))
        return tuple(out) if isinstance(out, (tuple, list)) else (out,)

    def _reset_impl(self) -> None:
        self.model = self._load()


class AotiTarget(Target):
    """``torch.export`` (chunk dynamic where the case streams) then ``aoti_compile_and_package``."""

    name = "aoti"
    standalone = "torch_program"
    suffix = ".aoti.pt2"
    via_torch_export = True
    carries_state = True
    description = "torch.export compiled by AOTInductor (aoti_compile_and_package), C++ on CPU"
    #: A C++ compile per case (11-60 s here): the quick CI tier runs these cases, the nightly all.
    costly = True  # a C++ compile per export: the ci tier runs it on the cases that ask for it

    def missing_runtime(self) -> str | None:
        """AOTInductor compiles C++: without a compiler the target is skipped, not an export error."""
        compilers = [os.environ.get("CXX", ""), "g++", "c++", "clang++"]
        if not any(c and shutil.which(c) for c in compilers):
            return f"{self.name}: no C++ compiler found (g++, c++, clang++ or $CXX); AOTInductor compiles C++"
        return super().missing_runtime()

    def standalone_options(self) -> dict[str, Any]:
        return {"loader": "aoti"}

    def _export_impl(self, module, example, case, path):
        from torch._inductor import aoti_compile_and_package

        program, meta = export_with_dynamic_chunk(
            case,
            example,
            lambda shapes: torch.export.export(module, example, dynamic_shapes=shapes, strict=False),
        )
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            aoti_compile_and_package(program, package_path=str(path))
        return {**meta, "compile_seconds": round(time.perf_counter() - started, 1)}

    def _load_impl(self, artifact: Artifact) -> Runner:
        return AotiRunner(artifact)

    def format_problem(self, path: Path, example: object = None) -> str | None:
        kind = describe_format(path)
        if kind == "an AOTInductor package":
            return None
        if kind == "a torch.export archive":
            return (
                "is a torch.export archive, not an AOTInductor package "
                "(compile it with torch._inductor.aoti_compile_and_package, or give it to torch-export)"
            )
        return f"is {kind}, not an AOTInductor package (.pt2 from aoti_compile_and_package)"
