"""Reports people look at: the HTML page, the merged per-env matrix, the workflow files."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from harness.reports.html import render_html
from harness.reports.summary import merge_reports

REPO = Path(__file__).resolve().parents[1]


def _body(status: str) -> dict:
    return {
        "versions": {"onnxruntime": "1.31.1"},
        "rows": [
            {
                "case": "pesto",
                "target": "onnx",
                "suites": {
                    "equivalence": {
                        "status": status,
                        "inputs": {"sweep": {"status": status, "reason": "state dropped", "metric": None}},
                    }
                },
            }
        ],
    }


def test_html_report_has_the_matrix_reasons_and_a_trace_plot():
    traces = {"pesto/sweep": {"eager": {"pitch": [57.0, 60.0, 63.0]}, "onnx": {"pitch": [58.3, 58.3, 58.3]}}}
    page = render_html(
        _body("fail"),
        traces,
        [
            {"case": "pesto", "target": "eager", "step_s": 2e-3},
            {"case": "pesto", "target": "onnx", "step_s": 1e-3},
        ],
    )
    assert page.startswith("<!doctype html>") and "<script" not in page
    assert "<details><summary>fail</summary>" in page and "state dropped" in page
    assert "equivalence metric (worst)" in page
    # one chart for the trace (eager and onnx, then onnx's error below), one for the benchmark
    assert page.count('<figure class="chart"') == 2
    assert "pesto / sweep: pitch, eager against each target" in page
    assert "speed-up of one step against eager" in page and "2.00x" in page


def test_merge_marks_rows_that_differ_between_envs(tmp_path):
    paths = []
    for env, status in (("ort-prev", "fail"), ("ort-current", "pass")):
        (tmp_path / env).mkdir()
        path = tmp_path / env / "conformance.json"
        path.write_text(json.dumps(_body(status)))
        paths.append(path)
    markdown, merged = merge_reports(paths)
    assert "| pesto | onnx | fail: equivalence fail | pass | **yes** |" in markdown
    assert merged["envs"] == ["ort-prev", "ort-current"]


def test_merge_unions_the_shards_of_one_env(tmp_path):
    """The nightly workflow puts each shard's report in its env's folder: one column per env."""
    (tmp_path / "nightly").mkdir()
    first, second = _body("pass"), _body("fail")
    second["rows"][0]["case"] = "toy"
    paths = [tmp_path / "nightly" / "shard1.json", tmp_path / "nightly" / "shard2.json"]
    for path, body in zip(paths, (first, second)):
        path.write_text(json.dumps(body))
    markdown, merged = merge_reports(paths)
    assert merged["envs"] == ["nightly"]
    assert {(c["case"], c["by_env"]["nightly"].split(":")[0]) for c in merged["cells"]} == {
        ("pesto", "pass"),
        ("toy", "fail"),
    }


def test_workflows_are_valid_and_run_the_matrix():
    nightly = yaml.safe_load((REPO / ".github/workflows/nightly.yml").read_text())
    pr = yaml.safe_load((REPO / ".github/workflows/pr.yml").read_text())
    assert nightly[True]["schedule"]  # PyYAML reads the key "on" as True
    envs = nightly["jobs"]["matrix"]["strategy"]["matrix"]["env"]
    tox_envs = (REPO / "tox.ini").read_text()
    assert all(f"{env}" in tox_envs for env in envs)
    assert any("bash .ci/run" in step.get("run", "") for step in pr["jobs"]["conformance"]["steps"])
    # the PR summary is the main run's full matrix; the benchmark pass writes elsewhere
    assert any(
        "cat reports/conformance.md" in step.get("run", "") for step in pr["jobs"]["conformance"]["steps"]
    )
    ci = (REPO / ".ci/run").read_text()
    assert '-k "benchmark and (pesto or cached_conv)" --conformance-report=reports/benchmarks' in ci
    # the nightly splits every env by case; both workflows cache pip and the export cache
    matrix = nightly["jobs"]["matrix"]
    assert len(matrix["strategy"]["matrix"]["shard"]) == int(nightly["env"]["SHARDS"])
    assert any("--conformance-shard=" in step.get("run", "") for step in matrix["steps"])
    for job in (matrix, pr["jobs"]["conformance"]):
        uses = {step.get("uses", "").split("@")[0]: step for step in job["steps"]}
        assert uses["actions/setup-python"]["with"]["cache"] == "pip"
        assert uses["actions/cache"]["with"]["path"] == ".export-cache"


def test_tox_lists_what_the_readme_says():
    """`tox -l` (the defaults a plain `tox` runs) and `tox l` (every env) agree with the README."""
    import shutil
    import subprocess
    import sys

    tox = shutil.which("tox", path=str(Path(sys.executable).parent)) or shutil.which("tox")
    if tox is None:
        import pytest

        pytest.skip("tox is not installed (pip install -e '.[dev]')")
    defaults = subprocess.run(
        [tox, "-l"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    every = subprocess.run([tox, "l"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert defaults == ["py311", "lint"]
    readme = (REPO / "README.md").read_text()
    assert (
        "A plain `tox` runs the default environments that `tox -l` lists: `py311` (the fast default) and\n`lint`"
        in readme
    )
    for env in ("ort-prev", "ort-current", "et-prev", "et-current", "nightly"):
        assert env in every and f"`{env}`" in readme


def test_every_declared_dependency_is_used():
    """Core dependencies are imported by the package (or are pytest plugins it relies on)."""
    import re
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    plugins = {"pytest", "pytest-xdist", "pytest-benchmark", "hypothesis", "syrupy"}
    source = "\n".join(
        p.read_text() for folder in ("harness", "fixtures", "suites") for p in (REPO / folder).rglob("*.py")
    )
    for requirement in project["dependencies"]:
        name = re.split(r"[=<>!~\[ ;]", requirement, maxsplit=1)[0]
        if name in plugins:
            continue
        module = {"jinja2": "jinja2"}.get(name, name.replace("-", "_"))
        assert re.search(rf"^\s*(import|from) {module}\b", source, re.M), (
            f"{name} is declared but never imported"
        )


def test_reports_and_the_baseline_record_the_environment_and_the_gate_says_what_changed(tmp_path):
    """Versions of torch, every runtime and the harness, and the machine, in every record (as
    pytest-benchmark's machine_info); a baseline comparison names what changed since it was written."""
    from harness.core.environment import environment, environment_changes
    from harness.reports.baseline import Baseline
    from harness.reports.matrix import ConformanceReport

    now = environment()
    assert now["versions"]["torch"].startswith("2.13") and now["versions"]["export-conformance"] == "0.1.0"
    assert {"onnxruntime", "executorch", "openvino", "python"} <= set(now["versions"])
    assert now["machine"]["cpu"] and now["machine"]["cores"].isdigit()
    report = ConformanceReport(tmp_path).as_json()
    assert report["versions"]["pesto-pitch"] != "absent", "a case's declared dependency is recorded"
    assert report["machine"] == now["machine"]

    baseline = Baseline(tmp_path / "baseline.json")
    written_on = {
        "versions": {**now["versions"], "onnxruntime": "1.31.1"},
        "machine": {**now["machine"], "cores": "64"},
    }
    baseline.write({("c", "t", "equivalence", "x"): ("pass", "")}, ["c"], ["t"], written_on)
    assert baseline.environment() == written_on and baseline.load() == {
        ("c", "t", "equivalence", "x"): "pass"
    }
    later = {"versions": {**now["versions"], "onnxruntime": "1.32.0"}, "machine": now["machine"]}
    assert environment_changes(baseline.environment(), later) == [
        "onnxruntime: 1.31.1 -> 1.32.0",
        f"cores: 64 -> {now['machine']['cores']}",
    ]
    assert environment_changes(written_on, written_on) == []
    assert environment_changes({}, now) == [], "a baseline written before the record names no change"
