"""An AOTInductor package (aoti_compile_and_package) loaded with aoti_load_package."""

import numpy as np

PACKAGES = ("torch",)


class AotiProgram:
    def __init__(self, model):
        self.model = model

    def run(self, inputs):
        import torch

        with torch.no_grad():
            out = self.model(*(torch.from_numpy(np.ascontiguousarray(x)) for x in inputs))
        out = tuple(out) if isinstance(out, (tuple, list)) else (out,)
        return [o.detach().cpu().numpy() for o in out]


def open_program(path, config):
    from torch._inductor import aoti_load_package

    return AotiProgram(aoti_load_package(str(path)))
