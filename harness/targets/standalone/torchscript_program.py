"""A TorchScript archive (torch.jit.save) loaded with torch.jit.load; its buffers hold the state."""

import numpy as np

PACKAGES = ("torch",)


class ModuleProgram:
    def __init__(self, module):
        self.module = module

    def run(self, inputs):
        import torch

        with torch.no_grad():
            out = self.module(*(torch.from_numpy(np.ascontiguousarray(x)) for x in inputs))
        out = tuple(out) if isinstance(out, (tuple, list)) else (out,)
        return [o.detach().cpu().numpy() for o in out]


def open_program(path, config):
    import torch

    return ModuleProgram(torch.jit.load(str(path), map_location="cpu"))
