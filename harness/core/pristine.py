"""A case's module as built, never called: every eager run and every export starts from a copy.

Nothing the harness does (the state audit, tracing, branch discovery, localisation hooks, a
benchmark) can then leak into eager's reference or into an artifact, wherever the model keeps
its state: buffers, tensor attributes, Python numbers, lists or dicts of tensors, buffers or
submodules created on the first call. A forward pre-hook refuses any call of the kept module
itself, so a path that forgets to copy fails loudly instead of advancing the reference.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import nn

from .errors import HarnessError

if TYPE_CHECKING:
    from .case import ModelCase

__all__ = ["PristineModule", "built", "case_fault", "fresh_copy"]


def _refuse(module: nn.Module, args: object) -> None:
    raise HarnessError(
        "internal: the never-called copy of the case's module was called; run a copy of it "
        "(PristineModule.copy()) so nothing advances eager's reference"
    )


class PristineModule:
    """One case's module, built once and never called; :meth:`copy` gives a module to run.

    ``build`` is the case's factory: used once, and again for each copy where the module
    cannot be deep-copied (it holds something ``copy.deepcopy`` refuses).
    """

    def __init__(self, build: Callable[[], nn.Module]) -> None:
        self._build = build
        built = build()
        try:  # our own copy: a build() that hands out one shared module keeps it untouched
            self._module = fresh_copy(built)
        except Exception:  # deepcopy refuses it: every copy is built anew, nothing to guard
            self._module, self._copyable = built, False
        else:
            self._module.register_forward_pre_hook(_refuse)
            self._copyable = True

    @property
    def module(self) -> nn.Module:
        """The kept module, to read (weights, buffers, attributes), never to call."""
        return self._module

    def copy(self) -> nn.Module:
        """A module equal to the kept one in every respect, that may be called."""
        if self._copyable:
            return fresh_copy(self._module)
        return self._build()


def fresh_copy(module: nn.Module, *, share_weights: bool = True) -> nn.Module:
    """A callable copy of ``module``, so a run never changes the module it was given (a
    pristine one's copy loses the refusing hook). Everything is copied but the parameters,
    which are shared: they are weights, never state, and a run never writes them (a copy of
    PESTO takes 7 ms this way, 28 ms with its weights). ``share_weights=False`` copies them
    too, for a copy whose weights change (``.double()`` converts parameters in place)."""
    made = copy.deepcopy(module, {id(p): p for p in module.parameters()} if share_weights else None)
    for key, hook in list(made._forward_pre_hooks.items()):
        if hook is _refuse:
            made._forward_pre_hooks.pop(key)
    return made


def built(build: Callable[[], nn.Module]) -> nn.Module:
    """A freshly built module the harness may call: a copy of what ``build()`` returns, so a
    factory that hands out one shared module (a cached global) never has it called."""
    module = build()
    try:
        return fresh_copy(module)
    except Exception:  # deepcopy refuses it: a factory that cannot be copied builds anew
        return module


def case_fault(case: ModelCase) -> str | None:
    """Why the case cannot be judged at all (None: it can): its module, freshly built, rejects
    its own example input (a wrong arity, a dtype it cannot take). The case's bug, named with
    its module; asked only after something failed, so it costs nothing on the way that works."""
    try:
        with torch.no_grad():
            built(case.build)(*case.example_inputs())
    except Exception as probe:
        where = getattr(case.build, "__module__", None) or "its case module"
        said = str(probe).splitlines()[0] if str(probe) else ""
        return (
            f"case {case.name!r} ({where}): its module does not run on its own example_inputs "
            f"({type(probe).__name__}: {said}): the case needs fixing, no export can be judged"
        )
    return None
