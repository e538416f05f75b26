"""A LiteRT flatbuffer (.tflite) on the ai_edge_litert interpreter's signature runner; int64
values fed as the signature declares them (the converter writes int64 as int32 by default)."""

import re

import numpy as np

PACKAGES = ("ai-edge-litert",)


_POSITIONAL = re.compile(r"^(args|output)_(\d+)$")


def _positional_order(names):
    """``args_N`` / ``output_N`` by N (the interpreter lists them as strings: args_10 before args_2)."""
    if names and all(_POSITIONAL.match(n) for n in names):
        return sorted(names, key=lambda n: int(_POSITIONAL.match(n).group(2)))
    return list(names)


class LiteRtProgram:
    def __init__(self, path):
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=str(path))
        signatures = self.interpreter.get_signature_list()
        key = "serving_default" if "serving_default" in signatures else next(iter(signatures))
        self.runner = self.interpreter.get_signature_runner(key)
        self.input_names = _positional_order(signatures[key]["inputs"])
        self.output_names = _positional_order(signatures[key]["outputs"])
        self.dtypes = {name: d["dtype"] for name, d in self.runner.get_input_details().items()}

    def run_named(self, feed):
        fed = {}
        for name, value in feed.items():
            want = self.dtypes.get(name)
            if want is not None and value.dtype != want and np.issubdtype(value.dtype, np.integer):
                value = value.astype(want)
            fed[name] = np.ascontiguousarray(value)
        return {k: np.array(v, copy=True) for k, v in self.runner(**fed).items()}


def open_program(path, config):
    return LiteRtProgram(path)
