"""OpenVINO's settings: the CPU plugin's precision hint, its command-line option and the
environment variable a run's value travels in. Light: the pytest entry point reads the option
without importing torch or openvino."""

from __future__ import annotations

from .options import RuntimeOption

__all__ = ["OPENVINO_OPTIONS", "OPENVINO_PRECISION_ENV", "OPENVINO_PRECISION_OPTION", "PRECISIONS"]

#: The CPU plugin's ``INFERENCE_PRECISION_HINT`` (f32, bf16, f16); unset or "default": the plugin's own.
OPENVINO_PRECISION_ENV = "EXPORT_CONFORMANCE_OPENVINO_PRECISION"
PRECISIONS = ("default", "f32", "bf16", "f16")

OPENVINO_PRECISION_OPTION = RuntimeOption(
    flags=("--conformance-openvino-precision", "--openvino-precision"),
    dest="openvino_precision",
    choices=PRECISIONS,
    help="OpenVINO CPU INFERENCE_PRECISION_HINT (default: the plugin's own, bf16 on CPUs with AMX; "
    "anything but f32 is judged by the case's task metric)",
)
#: The options of the OpenVINO target (``Target.runtime_options``).
OPENVINO_OPTIONS = (OPENVINO_PRECISION_OPTION,)
