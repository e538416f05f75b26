"""An ExecuTorch program (.pte) on the ExecuTorch runtime's Python API: one loaded ``forward``
method, whose mutable buffers carry the state from call to call."""

from pathlib import Path

import numpy as np

PACKAGES = ("executorch", "torch")


class ExecuTorchProgram:
    def __init__(self, path):
        from executorch.runtime import Runtime

        self.program = Runtime.get().load_program(Path(path).read_bytes())
        self.method = self.program.load_method("forward")

    def run(self, inputs):
        import torch

        out = self.method.execute([torch.from_numpy(np.ascontiguousarray(x)) for x in inputs])
        return [o.detach().cpu().numpy() if hasattr(o, "detach") else np.asarray(o) for o in out]


def open_program(path, config):
    return ExecuTorchProgram(path)
