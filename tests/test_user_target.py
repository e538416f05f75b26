"""A user's own target: a project outside this one defines a runtime in its own module, registers
it with ``register_target`` from its case module, and every suite runs on it like on a built-in
one; a planted fault in that runtime is a mismatch in the equivalence cell, not an error."""

from __future__ import annotations

import os
import sys

import pytest

from tests.outside import scorer_case

pytestmark = [pytest.mark.filterwarnings("ignore")]

#: The README's "Adding a target" example, verbatim but for the planted fault's subclass.
TARGETS = '''
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from harness import Artifact, ModelCase, Runner, Target


class ScriptedRunner(Runner):
    """Runs a TorchScript module loaded from the artifact; stateless, so reset has nothing to do."""

    def __init__(self, artifact: Artifact, module: Any, scale: float = 1.0) -> None:
        super().__init__(artifact)
        self.module = module
        self.scale = scale

    def _run_impl(self, inputs: tuple[torch.Tensor, ...]) -> Sequence[Any]:
        with torch.no_grad():
            out = self.module(*inputs)
        outputs = out if isinstance(out, (tuple, list)) else (out,)
        return [o * self.scale for o in outputs]

    def _reset_impl(self) -> None:
        pass


class ScriptedTarget(Target):
    """torch.jit.script, saved with torch.jit.save, run by torch.jit.load."""

    name = "my-script"
    suffix = ".script.pt"
    description = "torch.jit.script, run with torch.jit.load"
    fixed_shapes = False  # a scripted module runs any size its layers accept

    def _export_impl(
        self, module: torch.nn.Module, example: tuple[torch.Tensor, ...], case: ModelCase, path: Path
    ) -> dict[str, Any] | None:
        torch.jit.save(torch.jit.script(module), str(path))
        return {"exporter": "torch.jit.script"}

    def _load_impl(self, artifact: Artifact) -> Runner:
        return ScriptedRunner(artifact, torch.jit.load(str(artifact.path), map_location="cpu"))


class ReloadingRunner(ScriptedRunner):
    """A stateful runtime done right: reset loads the file again (its buffers as exported)."""

    def _reset_impl(self) -> None:
        self.module = torch.jit.load(str(self.artifact.path), map_location="cpu")


class ReloadingScriptTarget(ScriptedTarget):
    name = "my-script-reloading"
    suffix = ".reloading.pt"

    def _load_impl(self, artifact: Artifact) -> Runner:
        return ReloadingRunner(artifact, torch.jit.load(str(artifact.path), map_location="cpu"))


class ScaledScriptTarget(ScriptedTarget):
    """A planted fault: the runtime scales every output by 1.5."""

    name = "my-script-scaled"
    suffix = ".scaled.pt"

    def _load_impl(self, artifact: Artifact) -> Runner:
        return ScriptedRunner(artifact, torch.jit.load(str(artifact.path), map_location="cpu"), scale=1.5)
'''

CASES = '''
import torch
from torch import nn

from harness import ModelCase, register, register_target, tol

from userproj.targets import ReloadingScriptTarget, ScaledScriptTarget, ScriptedTarget
from harness import StreamingSpec

register_target(ScriptedTarget())
register_target(ScaledScriptTarget())
register_target(ReloadingScriptTarget())


class Counter(nn.Module):
    """A streaming model: each chunk's output adds the running total of every earlier chunk."""

    def __init__(self):
        super().__init__()
        self.register_buffer("total", torch.zeros(1))

    def forward(self, x):
        y = x + self.total
        self.total.copy_(self.total + x.sum())
        return y


register(ModelCase(
    name="user_counter",
    build=lambda: Counter().eval(),
    example_inputs=lambda: (torch.zeros(1, 4),),
    input_names=("x",), output_names=("y",),
    inputs={"ramp": lambda: [((torch.arange(4.0) + 4 * i).reshape(1, 4) / 10,) for i in range(5)]},
    streaming=StreamingSpec(chunk=4, input_time_axis=1, output_time_axis=1),
    tolerance={"default": tol(1e-5, 1e-5)},
))


''' + scorer_case("user_scorer", atol=1e-5)


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """Their repository: its own ini naming its case module and ``pythonpath``, a package of its own."""
    pytester.makeini(
        "[pytest]\n"
        "conformance_case_modules = userproj.conformance\n"
        "pythonpath = .\n"
        "filterwarnings =\n    ignore::DeprecationWarning\n    ignore::FutureWarning\n    ignore::UserWarning\n"
    )
    package = pytester.mkpydir("userproj")
    (package / "targets.py").write_text(TARGETS)
    (package / "conformance.py").write_text(CASES)
    monkeypatch.delenv("PYTHONPATH", raising=False)  # only what the project itself gives
    for name in [n for n in os.environ if n.startswith("PYTEST_XDIST")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("COLUMNS", "120")
    return pytester


def _run(project: pytest.Pytester, targets: str, *args: str) -> pytest.RunResult:
    return project.runpytest_subprocess(
        "-p",
        "export_conformance",
        "-p",
        "no:cacheprovider",
        f"--conformance-export-cache-dir={project.path / 'cache'}",
        f"--conformance-targets={targets}",
        *args,
        timeout=600,
    )


def test_a_users_target_runs_every_suite_and_passes(project):
    result = _run(
        project,
        "eager,my-script",
        "--pyargs",
        "harness.suites",
        "-k",
        "user_scorer and not benchmark and not golden",
    )
    outcomes = result.parseoutcomes()
    assert result.ret == 0, result.stdout.str()[-3000:]
    matrix = result.stdout.str().split("conformance matrix")[1]
    row = next(line for line in matrix.splitlines() if line.startswith("user_scorer") and "my-script" in line)
    assert "fail" not in row and "error" not in row, row
    assert outcomes.get("passed", 0) >= 4 and not outcomes.get("errors"), outcomes  # eq, det x 2 targets
    assert any(p.name.endswith(".script.pt") for p in (project.path / "cache").rglob("*"))


def test_a_fault_in_a_users_runtime_is_a_mismatch_in_the_equivalence_cell(project):
    result = _run(
        project, "eager,my-script-scaled", "--pyargs", "harness.suites.test_outputs", "-k", "user_scorer"
    )
    outcomes = result.parseoutcomes()
    out = result.stdout.str()
    assert outcomes.get("failed") == 1 and not outcomes.get("errors"), out[-3000:]
    assert "FAILED" in out and "test_equivalence[user_scorer-my-script-scaled" in out, out[-3000:]
    assert "my-script-scaled vs eager: scores: MISMATCH" in out, out[-3000:]
    assert "(rel 0.5)" in out and "elements outside" in out
    matrix = out.split("conformance matrix")[1]
    row = next(
        line for line in matrix.splitlines() if line.startswith("user_scorer") and "my-script-scaled" in line
    )
    assert row.split()[2:] == ["FAIL", "ok"], row  # equivalence fails, determinism holds


def test_a_users_file_is_adopted_by_the_users_target(project):
    """``--artifact`` on a user's target: the base ``Target.adopt`` (format sniffing and signature
    check by a run on the example input, since the target declares no I/O of its own)."""
    exported = project.run(sys.executable, "-m", "harness", "export", "user_scorer", "my-script", "out")
    assert exported.ret == 0, exported.stderr.str()
    path = project.path / exported.stdout.lines[-1].strip()
    assert path.is_file(), exported.stdout.str()
    good = _run(
        project,
        "eager,my-script",
        "--pyargs",
        "harness.suites.test_outputs",
        "-k",
        "user_scorer",
        f"--artifact=user_scorer:my-script={path}",
    )
    assert good.ret == 0, good.stdout.str()[-3000:]
    wrong = project.path / "wrong.script.pt"
    wrong.write_text("not a model\n")
    bad = _run(
        project,
        "eager,my-script",
        "--pyargs",
        "harness.suites.test_outputs",
        "-k",
        "user_scorer",
        f"--artifact=user_scorer:my-script={wrong}",
    )
    said = bad.stdout.str() + bad.stderr.str()
    assert bad.ret != 0 and f"{wrong}: not a loadable my-script artifact" in said, said[-3000:]


def test_a_users_runtime_whose_reset_does_not_reset_is_caught_where_the_suites_share_one_run(project):
    """The suites judge one freshly loaded run and its replay after reset(): a runtime whose reset
    keeps the state fails stream-reset and determinism (naming reset), while its first run, as
    loaded, still matches eager; a runtime that reloads on reset passes every streaming cell."""
    result = _run(
        project,
        "eager,my-script,my-script-reloading",
        "--pyargs",
        "harness.suites.test_streaming",
        "harness.suites.test_outputs",
        "-k",
        "user_counter",
    )
    out = result.stdout.str()
    matrix = out.split("conformance matrix")[1]
    rows = {line.split()[1]: line for line in matrix.splitlines() if line.startswith("user_counter")}
    assert "reset() did not return to the initial state" in out, out[-3000:]
    assert "or reset() does not return to the initial state" in out, out[-3000:]  # determinism's hint
    failed = {line.split("::")[1].split("[")[0] for line in out.splitlines() if line.startswith("FAILED")}
    assert failed == {"test_stream_reset", "test_determinism"}, (failed, out[-3000:])
    assert "FAIL" not in rows["my-script-reloading"] and "ERR" not in rows["my-script-reloading"], rows
