"""The workflows run what exists: they validate against GitHub's workflow schema (offline), every
file and tox environment a step names is there, and the nightly summary's merge works on the
layout its download step makes. ``.ci/run`` itself runs the merge on its own run's reports and
``tox -e lint``, so those steps are exercised on every change."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (pip install -e '.[dev]')")
    return found


def _run_steps() -> list[tuple[str, dict, str]]:
    """(workflow, job's matrix, the step's script) for every ``run:`` step."""
    steps = []
    for path in WORKFLOWS:
        for job in yaml.safe_load(path.read_text())["jobs"].values():
            matrix = job.get("strategy", {}).get("matrix", {})
            steps += [(path.name, matrix, step["run"]) for step in job.get("steps", []) if "run" in step]
    return steps


def test_the_workflows_validate_against_githubs_schema_offline():
    checker = _tool("check-jsonschema")
    result = subprocess.run(
        [checker, "--builtin-schema", "vendor.github-workflows", *map(str, WORKFLOWS)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(WORKFLOWS) >= 2


def test_every_file_and_tox_env_a_step_names_exists():
    """A moved script (the summary's ``harness/summary.py``) or a renamed tox env fails here, not
    at night."""
    tox_envs = set(
        subprocess.run([_tool("tox"), "l", "-q"], cwd=REPO, capture_output=True, text=True).stdout.split()
    )
    assert {"lint", "nightly", "ort-prev", "ort-current"} <= tox_envs, tox_envs
    named_files, named_envs = set(), set()
    for _, matrix, script in _run_steps():
        for line in script.splitlines():
            words = shlex.split(line.split("#")[0], posix=True) if line.strip() else []
            for word in words:
                if re.fullmatch(r"(\.ci|harness|suites|tests|fixtures)/[\w./-]+", word):
                    named_files.add(word)
            for match in re.finditer(r"tox -e ([\w.-]+|\$\{\{)", line):
                env = match.group(1)
                if env == "${{":  # tox -e ${{ matrix.env }}: every value of the job's matrix
                    named_envs |= {e for e in matrix.get("env", []) if e != "lint"}
                else:
                    named_envs.add(env)
    assert ".ci/run" in named_files and ".ci/merge-reports" in named_files
    missing = sorted(f for f in named_files if not (REPO / f).exists())
    assert not missing, f"workflow steps name files that do not exist: {missing}"
    assert named_envs and named_envs <= tox_envs, f"unknown tox envs: {sorted(named_envs - tox_envs)}"


def _report(case: str, status: str) -> dict:
    suites = {
        "equivalence": {"status": status, "inputs": {"x": {"status": status, "reason": "", "metric": None}}}
    }
    return {
        "schema": "export-conformance/matrix/1",
        "versions": {"onnxruntime": "1.32.0"},
        "rows": [{"case": case, "target": "onnx", "suites": suites, "reasons": [], "errors": []}],
    }


def test_the_nightly_merge_runs_on_the_downloaded_layout(tmp_path):
    """What the summary job downloads (report-ENV-shardK/conformance.json), merged with the
    standalone summary.py: the shards of an env make one column, envs that disagree are marked."""
    downloaded = tmp_path / "downloaded"
    layout = {
        "report-ort-prev-shard1": _report("pesto", "fail"),
        "report-ort-prev-shard2": _report("toy", "pass"),
        "report-ort-current-shard1": _report("pesto", "pass"),
        "report-lint-shard1": None,  # the lint job uploads no report
    }
    for name, body in layout.items():
        (downloaded / name).mkdir(parents=True)
        if body is not None:
            (downloaded / name / "conformance.json").write_text(json.dumps(body))
    out = tmp_path / "summary.md"
    # no PYTHONPATH and no package: the summary job runs it without installing the harness
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(
        ["bash", str(REPO / ".ci" / "merge-reports"), str(downloaded), str(out)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    table = out.read_text()
    assert "| case | target | ort-current | ort-prev | differs |" in table or (
        "| case | target | ort-prev | ort-current | differs |" in table
    ), table
    assert re.search(r"\| pesto \| onnx \| .*\*\*yes\*\* \|", table), table
    assert re.search(r"\| toy \| onnx \| ", table), table
    empty = subprocess.run(
        ["bash", str(REPO / ".ci" / "merge-reports"), str(tmp_path / "nothing"), str(out)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert empty.returncode == 2 and "no " in empty.stderr, empty.stderr


def test_ci_runs_the_nightly_steps_it_can():
    """``.ci/run`` runs the README's test command, the summary's merge and the lint job's tox env."""
    ci = (REPO / ".ci" / "run").read_text()
    readme = (REPO / "README.md").read_text()
    test_command = readme.split("```bash\n", 1)[1].split("\n")[1]
    assert test_command.endswith(".venv/bin/pytest -n 2") and "\n# README, command 2" in ci
    assert ".venv/bin/pip install -q -e '.[dev]' && .venv/bin/pytest -n 2\n" in ci
    assert "bash .ci/merge-reports" in ci and ".venv/bin/tox -e lint" in ci
