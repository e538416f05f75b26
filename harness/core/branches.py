"""Data-dependent Python branches: find them, watch which way eager goes, judge coverage.

A branch is data-dependent when its condition turns a tensor into a Python bool: tracing
exporters (``torch.jit.trace``, the legacy ONNX exporter) record only the side the example took,
and warn with a TracerWarning that names the line. Those lines are the branches; a tracer then
records which side eager takes for every generated input.
"""

from __future__ import annotations

import ast
import linecache
import os
import sys
import warnings
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from types import FrameType
from typing import Any

import torch

from .check import Check
from .pristine import fresh_copy

__all__ = [
    "LIBRARY_PACKAGES",
    "Branch",
    "BranchRecorder",
    "coverage_verdict",
    "discover_branches",
    "in_library",
]


@dataclass(frozen=True)
class Branch:
    """An ``if`` whose condition depends on tensor data: where it is and how its sides begin."""

    filename: str
    line: int
    body: tuple[int, int]  # first and last line of the if-body

    @property
    def source(self) -> str:
        return linecache.getline(self.filename, self.line).strip()

    @property
    def where(self) -> str:
        path = os.path.relpath(self.filename) if self.filename.startswith(os.getcwd()) else self.filename
        return f"{path}:{self.line}"

    def describe(self) -> str:
        return f"`{self.source}` ({self.where})"


@cache
def _if_bodies(filename: str) -> dict[int, tuple[int, int]]:
    try:
        tree = ast.parse(open(filename).read())
    except (OSError, SyntaxError):
        return {}
    return {
        node.lineno: (node.body[0].lineno, node.body[-1].end_lineno or node.body[-1].lineno)
        for node in ast.walk(tree)
        if isinstance(node, ast.If)
    }


#: Libraries whose own shape checks (``nn.LSTM``'s in ``torch/nn/modules/rnn.py``,
#: ``F.group_norm``'s) convert tensors to bools too: those are not the model's branches.
LIBRARY_PACKAGES = ("torch", "torchvision", "torchaudio", "numpy", "scipy")


@cache
def _library_folders() -> tuple[str, ...]:
    """The installed folders of ``LIBRARY_PACKAGES`` (found without importing them)."""
    import importlib.util

    folders = []
    for name in LIBRARY_PACKAGES:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        for location in (spec.submodule_search_locations or []) if spec else []:
            folders.append(os.path.realpath(location) + os.sep)
    return tuple(folders)


def in_library(filename: str) -> bool:
    """Whether ``filename`` is a file of torch, torchvision, torchaudio, numpy or scipy."""
    return os.path.realpath(filename).startswith(_library_folders())


def discover_branches(module: torch.nn.Module, example: Sequence[torch.Tensor]) -> list[Branch]:
    """Branches in the model's own code whose condition converts a tensor to a Python bool,
    found by tracing once (a library's own checks, ``LIBRARY_PACKAGES``, are left out).

    A copy of the module is traced (tracing runs forward): the module is left as it was.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            torch.jit.trace(fresh_copy(module), tuple(example), check_trace=False)
        except Exception:  # a model that cannot be traced has no trace-visible branches to report
            pass
    found = {}
    for warning in caught:
        if warning.category.__name__ != "TracerWarning" or "Python boolean" not in str(warning.message):
            continue
        if in_library(warning.filename):
            continue
        body = _if_bodies(warning.filename).get(warning.lineno)
        if body is not None:
            found[(warning.filename, warning.lineno)] = Branch(warning.filename, warning.lineno, body)
    return sorted(found.values(), key=lambda b: (b.filename, b.line))


@dataclass
class BranchRecorder:
    """Counts which side of each branch eager takes while it runs inside :meth:`watch`."""

    branches: Sequence[Branch]
    counts: dict[Branch, dict[bool, int]] = field(
        default_factory=lambda: defaultdict(lambda: {True: 0, False: 0})
    )

    @contextmanager
    def watch(self) -> Iterator[dict[Branch, bool]]:
        """Record outcomes while the block runs; yields the outcomes of this block alone."""
        by_file: dict[str, dict[int, Branch]] = defaultdict(dict)
        for branch in self.branches:
            by_file[branch.filename][branch.line] = branch
        taken: dict[Branch, bool] = {}
        pending: dict[int, Branch] = {}

        def local(frame: FrameType, event: str, arg: Any):
            if event == "line":
                branch = pending.pop(id(frame), None)
                if branch is not None:
                    outcome = branch.body[0] <= frame.f_lineno <= branch.body[1]
                    taken[branch] = outcome
                    self.counts[branch][outcome] += 1
                here = by_file[frame.f_code.co_filename].get(frame.f_lineno)
                if here is not None:
                    pending[id(frame)] = here
            elif event == "return":
                branch = pending.pop(id(frame), None)
                if branch is not None:  # the if was the last statement and its body was skipped
                    taken[branch] = False
                    self.counts[branch][False] += 1
            return local

        def global_(frame: FrameType, event: str, arg: Any):
            return local if frame.f_code.co_filename in by_file else None

        previous = sys.gettrace()
        sys.settrace(global_ if self.branches else previous)
        try:
            yield taken
        finally:
            sys.settrace(previous)

    def unreached(self) -> list[tuple[Branch, bool]]:
        """(branch, side) pairs no input has taken."""
        return [(b, side) for b in self.branches for side in (True, False) if not self.counts[b][side]]

    def summary(self) -> str:
        if not self.branches:
            return "no data-dependent branches"
        return "; ".join(
            f"{b.describe()}: true x{self.counts[b][True]}, false x{self.counts[b][False]}"
            for b in self.branches
        )


def coverage_verdict(recorder: BranchRecorder) -> Check:
    """Every side of every branch taken by some input the recorder watched, or the sides never taken."""
    unreached = recorder.unreached()
    if unreached:
        missing = "; ".join(f"the {str(side).lower()} side of {b.describe()}" for b, side in unreached)
        return Check("branch coverage", False, f"never exercised by the generated inputs: {missing}")
    return Check("branch coverage", True, f"covered: {recorder.summary()}")
