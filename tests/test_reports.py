"""Reports people look at: the HTML page, the merged per-env matrix, the workflow files."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from harness.html_report import render_html
from harness.summary import merge_reports

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
