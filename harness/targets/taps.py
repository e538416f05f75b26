"""Intermediate values: what eager computes inside each module, and what a runtime shows of its own.

A runtime's intermediate values (:class:`Tap`) are read by a *tapped runner*, one per target
format (``Target.tapped_runner``): an ONNX copy with every tensor added as a graph output, a
torch.export graph run node by node, an ExecuTorch program run with its ETDump debug buffer, a
TorchScript module replayed module by module. :mod:`harness.checks.localize` matches them to eager's
module hierarchy and says where the export starts to compute something else.
"""

from __future__ import annotations

import inspect
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .base import Runner

__all__ = ["ModuleOutput", "Tap", "TappedRunner", "Taps", "class_source", "first_tensor"]


@dataclass(frozen=True)
class ModuleOutput:
    """One eager module's output on the localised call (first tensor of what forward returned)."""

    #: qualified module name (``''`` for the whole model); ``name#k`` for its k-th extra call
    path: str
    cls: str
    #: where the module's class is defined, ``file:line``
    source: str
    value: np.ndarray
    #: forward's positional inputs on that call (kept for module-by-module replay)
    inputs: tuple[torch.Tensor, ...] = ()

    @property
    def module_path(self) -> str:
        return self.path.split("#", 1)[0]


@dataclass(frozen=True)
class Tap:
    """One intermediate value a runtime computed, under the runtime's own name for it."""

    name: str
    #: the eager module the runtime's metadata places it in (None: the file carries no such metadata)
    module: str | None
    value: np.ndarray


@dataclass(frozen=True)
class Taps:
    """A runtime's intermediate values on one call, in its execution order."""

    taps: list[Tap]
    #: how the values were read and how they map to modules, in a few words
    how: str
    #: True when each value is a module run on eager's own inputs (errors are local, not carried)
    local: bool = False
    notes: list[str] = field(default_factory=list)


class TappedRunner(Runner):
    """A runner that also shows its intermediate values for the latest call."""

    @abstractmethod
    def taps(self, eager: Sequence[ModuleOutput]) -> Taps:
        """The intermediate values of the latest ``run`` (``eager``: for runtimes that replay)."""


def first_tensor(value: object) -> torch.Tensor | None:
    """The first floating-point tensor in a module's output (tensors, tuples, lists, dicts)."""
    if isinstance(value, torch.Tensor):
        return value if value.is_floating_point() else None
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (tuple, list)):
        for item in value:
            found = first_tensor(item)
            if found is not None:
                return found
    return None


def class_source(cls: type) -> str:
    """``file:line`` of a class definition, the file shortened to its package-relative path."""
    try:
        file = inspect.getsourcefile(cls) or "?"
        line = inspect.getsourcelines(cls)[1]
    except (OSError, TypeError):
        return f"{cls.__module__} (no source)"
    parts = Path(file).parts
    if "site-packages" in parts:
        file = str(Path(*parts[parts.index("site-packages") + 1 :]))
    else:
        try:
            file = str(Path(file).resolve().relative_to(Path.cwd()))
        except ValueError:
            pass
    return f"{file}:{line}"
