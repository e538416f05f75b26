"""Another repository is a first-class user: a temp project outside this one, with its own ini
and case module (written against the public API only), through pytest and every CLI command."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.outside import SCORER, SUITES, run_outside

pytestmark = [pytest.mark.filterwarnings("ignore"), pytest.mark.slow]

CASES = (
    SCORER
    + '''

class Vad(nn.Module):
    """(x, state, sr) -> (prob, stateN): explicit state, a per-call sample rate, one probability
    per 16-sample frame, two independent streams (rows) per call, any chunk length."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.frame = nn.Linear(16, 8)
        self.cell = nn.GRUCell(8, 8)
        self.head = nn.Linear(8, 1)

    def forward(self, x, state, sr):
        scaled = x * (sr.to(x.dtype) / 16000.0)
        probs = []
        for start in range(0, x.shape[-1], 16):
            state = self.cell(torch.tanh(self.frame(scaled[:, start : start + 16])), state)
            probs.append(torch.sigmoid(self.head(state)))
        return torch.cat(probs, dim=1), state


def _stream(seed, n=8):
    g = torch.Generator().manual_seed(seed)
    signal = torch.randn(2, 32 * n, generator=g) * torch.linspace(0.1, 2.0, 32 * n)
    return [(c.contiguous(), torch.zeros(2, 8), torch.tensor(16000)) for c in signal.split(32, dim=-1)]


register(ModelCase(
    name="outside_scorer",
    build=lambda: Scorer().eval(),
    example_inputs=lambda: (torch.zeros(2, 8),),
    input_names=("x",), output_names=("scores",),
    inputs={"ramp": lambda: [(torch.linspace(-2, 2, 16).reshape(2, 8),)]},
    tolerance={"default": tol(1e-4, 1e-4)},
))

register(ModelCase(
    name="outside_vad",
    build=lambda: Vad().eval(),
    example_inputs=lambda: _stream(1)[0],
    input_names=("x", "state", "sr"), output_names=("prob", "stateN"),
    inputs={"speechy": lambda: _stream(2)},
    tolerance={"default": tol(1e-5, 1e-5)},
    expected=(ExpectedFailure("onnx", "stream-chunks", "exported at 32-sample chunks with static shapes"),),
    streaming=StreamingSpec(
        chunk=32, other_chunks=(64,), static_inputs=("sr",), state={"state": "stateN"},
        output_time_axis=1, batch_rows=2,
    ),
))
'''
)


def _project(tmp_path: Path, ini: str = "[pytest]\nconformance_case_modules = extcases\n") -> Path:
    project = tmp_path / "their-repo"
    project.mkdir()
    (project / "pytest.ini").write_text(ini)
    (project / "extcases.py").write_text(CASES)
    return project


def _run(project: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return run_outside(project, *args, timeout=timeout)


def test_another_repository_through_pytest_and_every_cli_command(tmp_path):
    project = _project(tmp_path)
    listed = _run(project, "-m", "harness", "list")
    assert listed.returncode == 0, listed.stderr
    assert "outside_scorer" in listed.stdout and "outside_vad" in listed.stdout

    suites = _run(
        project,
        *SUITES,
        "--conformance-targets=eager,onnx",
        "-k",
        "not benchmark and not golden",
    )
    assert suites.returncode == 0, suites.stdout[-3000:]
    matrix = suites.stdout.split("conformance matrix")[1]
    eager_vad = next(
        line for line in matrix.splitlines() if line.startswith("outside_vad") and " eager " in line
    )
    assert "stream-offline" in matrix and "error" not in matrix
    assert "skip" not in eager_vad and "fail" not in eager_vad, eager_vad  # every streaming suite passes

    exported = _run(project, "-m", "harness", "export", "outside_scorer", "onnx", "out")
    assert exported.returncode == 0, exported.stderr
    path = project / exported.stdout.strip().splitlines()[-1]
    assert path.is_file()
    good = _run(
        project, "-m", "harness", "check", "outside_scorer", f"--artifact=onnx={path}", "-k", "not golden"
    )
    assert good.returncode == 0, good.stdout[-3000:]

    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    weight = max(model.graph.initializer, key=lambda t: t.raw_data.__len__())
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * 1.01, weight.name))
    changed = project / "mine" / "scorer.onnx"
    changed.parent.mkdir()
    onnx.save(model, str(changed))
    bad = _run(
        project, "-m", "harness", "check", "outside_scorer", f"--artifact=onnx={changed}", "-k", "not golden"
    )
    assert bad.returncode == 1, bad.stdout[-3000:]
    assert "cells on your files did not pass" in bad.stdout
    # on workers the benchmarks time nothing: a skipped benchmark is no verdict on a good file
    workers = _run(
        project, "-m", "harness", "check", "outside_scorer", f"--artifact=onnx={path}", "--workers", "2",
        "-k", "benchmark or equivalence",
    )  # fmt: skip
    assert workers.returncode == 0, workers.stdout[-3000:]
    assert (
        "times nothing under xdist" in workers.stdout and "every cell on your files passed" in workers.stdout
    )


def test_suites_collected_without_any_case_say_so(tmp_path):
    project = _project(tmp_path, ini="[pytest]\n")
    result = _run(project, "-m", "pytest", "--pyargs", "harness.suites", "-p", "no:cacheprovider", "-q")
    assert result.returncode != 0
    assert "no cases are configured" in result.stdout + result.stderr


def test_cases_configured_but_nothing_collected_point_at_the_suites(tmp_path):
    """A bare ``pytest`` in a project whose ini names its cases collects nothing (the suites ship
    with the plugin): say how to run them; a project with its own tests is not told every run."""
    project = _project(tmp_path)
    bare = _run(project, "-m", "pytest", "-p", "no:cacheprovider", "-q")
    assert bare.returncode == pytest.ExitCode.NO_TESTS_COLLECTED
    assert (
        "conformance_case_modules: extcases" in bare.stdout
        and "pytest --pyargs harness.suites" in bare.stdout
    )
    (project / "test_own.py").write_text("def test_own():\n    pass\n")
    own = _run(project, "-m", "pytest", "-p", "no:cacheprovider", "-q")
    assert own.returncode == 0 and "--pyargs harness.suites" not in own.stdout


def test_a_project_that_does_not_use_conformance_is_left_alone(tmp_path):
    project = tmp_path / "unrelated"
    (project / "fixtures").mkdir(parents=True)
    (project / "fixtures" / "__init__.py").write_text("")
    (project / "fixtures" / "broken.py").write_text("raise ImportError('not a case module')\n")
    (project / "test_it.py").write_text(
        "import sys\n\ndef test_plain():\n    assert 'torch' not in sys.modules\n"
    )
    result = _run(project, "-m", "pytest", "-p", "no:cacheprovider", "-q", "test_it.py")
    assert result.returncode == 0, result.stdout + result.stderr
