"""What the self-tests that play another project share: a small case module written against the
public API only, and a run of a command with only what that project gives it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

__all__ = ["SCORER", "SUITES", "outside_env", "run_outside", "scorer_case"]

#: pytest on the installed suites, as a project runs them (no cache folder left behind)
SUITES = ("-m", "pytest", "--pyargs", "harness.suites", "-p", "no:cacheprovider", "-q")

#: A seeded three-class scorer and its imports (a case module starts with it).
SCORER = """
import torch
from torch import nn
from harness import ExpectedFailure, ModelCase, StreamingSpec, register, tol


class Scorer(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))

    def forward(self, x):
        return self.net(x)
"""


def scorer_case(name: str, atol: float = 1e-4) -> str:
    """A case module registering the scorer as case ``name``, one input set (a ramp)."""
    return (
        SCORER
        + f'''

register(ModelCase(
    name="{name}",
    build=lambda: Scorer().eval(),
    example_inputs=lambda: (torch.zeros(2, 8),),
    input_names=("x",), output_names=("scores",),
    inputs={{"ramp": lambda: [(torch.linspace(-2, 2, 16).reshape(2, 8),)]}},
    tolerance={{"default": tol({atol}, {atol})}},
))
'''
    )


def outside_env(columns: int = 120) -> dict[str, str]:
    """This environment less what this run adds: no PYTHONPATH, no venv of ours, not an xdist
    worker; a known terminal width."""
    drop = ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("PYTEST_")}
    env["COLUMNS"] = str(columns)
    return env


def run_outside(
    cwd: Path, *args: str | Path, python: str | Path = sys.executable, timeout: int = 900, columns: int = 120
) -> subprocess.CompletedProcess:
    """``python ARGS`` (or a program, with ``python=""``) run in ``cwd`` as that project would."""
    command = [str(python), *map(str, args)] if python else [str(a) for a in args]
    return subprocess.run(
        command, cwd=cwd, env=outside_env(columns), capture_output=True, text=True, timeout=timeout
    )
