"""A torch file run with torch alone: a TorchScript archive (``torch.jit.load``), a torch.export
program (``torch.export.load(...).module()``) or an AOTInductor package (``aoti_load_package``),
as ``config["options"]["loader"]`` says. The module's buffers carry the state between calls."""

import numpy as np

PACKAGES = ("torch",)


def _load(path, loader):
    import torch

    if loader == "jit":
        return torch.jit.load(str(path), map_location="cpu")
    if loader == "export":
        return torch.export.load(str(path)).module()
    if loader == "aoti":
        from torch._inductor import aoti_load_package

        return aoti_load_package(str(path))
    raise ValueError(f"unknown torch loader {loader!r}")


class TorchProgram:
    def __init__(self, path, config):
        self.module = _load(path, config.get("options", {}).get("loader", "jit"))

    def run(self, inputs):
        import torch

        with torch.no_grad():
            out = self.module(*(torch.from_numpy(np.ascontiguousarray(x)) for x in inputs))
        out = tuple(out) if isinstance(out, (tuple, list)) else (out,)
        return [o.detach().cpu().numpy() for o in out]


def open_program(path, config):
    return TorchProgram(path, config)
