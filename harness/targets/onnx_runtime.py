"""onnxruntime's settings, shared by every target that runs on it: its command-line options and
how a run's values reach the sessions (the environment, read when a session opens). Light: the
pytest entry point reads the options without importing torch or onnxruntime."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, ClassVar

from .options import RuntimeOption

__all__ = [
    "ORT_OPTIMIZATION_ENV",
    "ORT_OPTIMIZATION_OPTION",
    "ORT_OPTIONS",
    "ORT_THREADS_ENV",
    "ORT_THREADS_OPTION",
    "OnnxRuntimeSettings",
]

#: Environment variables for onnxruntime's intra-op thread count (0: its default) and graph
#: optimisation level (disable, basic, extended, all); set by --ort-threads / --ort-optimization.
ORT_THREADS_ENV = "EXPORT_CONFORMANCE_ORT_THREADS"
ORT_OPTIMIZATION_ENV = "EXPORT_CONFORMANCE_ORT_OPTIMIZATION"

ORT_OPTIMIZATION_OPTION = RuntimeOption(
    flags=("--conformance-ort-optimization", "--ort-optimization"),
    dest="ort_optimization",
    choices=("disable", "basic", "extended", "all"),
    help="onnxruntime graph optimisation level for ONNX targets (default: all)",
)
ORT_THREADS_OPTION = RuntimeOption(
    flags=("--conformance-ort-threads", "--ort-threads"),
    dest="ort_threads",
    type=int,
    help="onnxruntime intra-op threads (0: its default)",
)
#: The options of every target on onnxruntime (``Target.runtime_options``).
ORT_OPTIONS = (ORT_OPTIMIZATION_OPTION, ORT_THREADS_OPTION)


class OnnxRuntimeSettings:
    """onnxruntime's knobs, for every target that runs on it: graph optimisation and intra-op
    threads, carried in the environment (sessions read them when they open)."""

    runtime_options: ClassVar[tuple[RuntimeOption, ...]] = ORT_OPTIONS
    standalone: ClassVar[str | None] = "onnxruntime_program"

    def standalone_options(self) -> dict[str, Any]:
        return {"graph_optimization": os.environ.get(ORT_OPTIMIZATION_ENV, "all")}

    def configure(self, options: Mapping[str, Any]) -> None:
        if options.get("ort_optimization"):
            os.environ[ORT_OPTIMIZATION_ENV] = str(options["ort_optimization"])
        if options.get("ort_threads") is not None:
            os.environ[ORT_THREADS_ENV] = str(options["ort_threads"])
        elif options.get("threads"):
            os.environ.setdefault(ORT_THREADS_ENV, str(options["threads"]))

    def runtime_settings(self) -> dict[str, str]:
        return {
            "ort_optimization": os.environ.get(ORT_OPTIMIZATION_ENV, "all"),
            "ort_threads": os.environ.get(ORT_THREADS_ENV, "default"),
        }
