"""The command line as a user meets it: the real console script (and ``python -m harness``) in a
subprocess. Help for every subcommand and argument, a fast ``--help``, and one clear line with
exit status 2, never a traceback, for a bad file or an unknown name."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.__main__ import build_parser

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).parent / "export-conformance"
SUBCOMMANDS = (
    "list",
    "export",
    "check",
    "localize",
    "readme",
    "merge",
    "plot",
    "overhead",
    "repro",
    "bundle",
    "judge",
)
REPORT = {"schema": "export-conformance/matrix/1", "versions": {"torch": "2.x"}, "rows": []}


def _script() -> list[str]:
    found = SCRIPT if SCRIPT.is_file() else shutil.which("export-conformance")
    if not found:
        pytest.skip("the export-conformance console script is not installed (pip install -e .)")
    return [str(found)]


def _run(
    command: list[str], *args: str, cwd: Path = REPO_ROOT, timeout: int = 300
) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "100"}
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout
    )


def _module() -> list[str]:
    return [sys.executable, "-m", "harness"]


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_subcommand_and_argument_has_help():
    parser = build_parser("export-conformance")
    assert parser.description and "export-conformance" in parser.epilog
    subparsers = _subparsers(parser)
    assert set(subparsers) == set(SUBCOMMANDS)
    listed = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert {c.dest for c in listed._choices_actions} == set(SUBCOMMANDS)
    assert all(c.help for c in listed._choices_actions)
    missing = [
        f"{name} {action.dest}"
        for name, sub in subparsers.items()
        for action in sub._actions
        if not action.help or action.help == argparse.SUPPRESS
    ]
    assert not missing, f"arguments without help: {missing}"
    for name, sub in subparsers.items():
        assert sub.description, name
        assert "example" in (sub.epilog or ""), name


def test_help_is_fast_and_names_the_console_script():
    script = _script()
    timings = {}
    for args in (["--help"], ["localize", "--help"]):
        start = time.perf_counter()
        done = _run(script, *args, timeout=60)
        timings[" ".join(args)] = time.perf_counter() - start
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("usage: export-conformance"), done.stdout[:200]
        assert not done.stderr
    print("export-conformance help wall time: " + ", ".join(f"{k} {v:.2f} s" for k, v in timings.items()))
    assert max(timings.values()) < 3.0, timings


@pytest.mark.parametrize("subcommand", SUBCOMMANDS)
def test_help_for_every_subcommand(subcommand):
    done = _run(_script(), subcommand, "--help", timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: export-conformance {subcommand}")
    assert f"example:\n  export-conformance {subcommand}" in done.stdout


def test_module_form_names_itself():
    done = _run(_module(), "--help", timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("usage: python -m harness"), done.stdout[:200]


def test_check_help_says_further_arguments_go_to_pytest():
    done = _run(_script(), "check", "--help", timeout=60)
    assert "goes to pytest" in done.stdout and "-- -x -k equivalence" in done.stdout, done.stdout


def _bad_files(folder: Path) -> dict[str, tuple[Path, str]]:
    (folder / "folder.json").mkdir()
    (folder / "broken.json").write_text('{"rows": [')
    (folder / "binary.json").write_bytes(b"\xff\xfe\x00")
    (folder / "list.json").write_text("[1, 2]")
    (folder / "object.json").write_text(json.dumps({"name": "not a report"}))
    (folder / "summary.json").write_text(json.dumps({"schema": "export-conformance/summary/1", "cells": []}))
    (folder / "rows.json").write_text(json.dumps({**REPORT, "rows": [{"case": "x"}]}))
    return {
        "missing": (folder / "nope.json", "no such file"),
        "folder": (folder / "folder.json", "is a folder"),
        "malformed": (folder / "broken.json", "malformed JSON"),
        "binary": (folder / "binary.json", "not UTF-8"),
        "not a report": (folder / "list.json", "not a conformance report"),
        "no rows": (folder / "object.json", "not a conformance report"),
        "other schema": (folder / "summary.json", "not a conformance report"),
        "bad rows": (folder / "rows.json", "malformed conformance report"),
    }


def _one_clear_line(done: subprocess.CompletedProcess, prefix: str, problem: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(prefix) and problem in lines[0], done.stderr


def test_merge_and_plot_on_files_that_are_not_reports(tmp_path):
    script = _script()
    for name, (path, problem) in _bad_files(tmp_path).items():
        merged = _run(script, "merge", str(path), "--out", str(tmp_path / "out" / "summary.md"), timeout=60)
        _one_clear_line(merged, f"export-conformance merge: {path}: ", problem)
        plotted = _run(
            _module(), "plot", "--report", str(path), "--case", "pesto", "--input", "c4_sine",
            "--output", "pitch", "--out", str(tmp_path / "x.svg"), timeout=60,
        )  # fmt: skip
        _one_clear_line(plotted, f"python -m harness plot: {path}: ", problem)
        assert not (tmp_path / "out").exists() and not (tmp_path / "x.svg").exists(), name


def test_merge_names_the_bad_file_among_good_ones(tmp_path):
    good = tmp_path / "env-a" / "conformance.json"
    good.parent.mkdir()
    good.write_text(json.dumps(REPORT))
    bad = tmp_path / "env-b" / "conformance.json"
    bad.parent.mkdir()
    bad.write_text("{")
    done = _run(_script(), "merge", str(good), str(bad), "--out", str(tmp_path / "summary.md"), timeout=60)
    _one_clear_line(done, f"export-conformance merge: {bad}: ", "malformed JSON")


def _traced_report(folder: Path) -> Path:
    traces = {"eager": {"pitch": [1.0, 2.0, 3.0]}, "onnx": {"pitch": [1.0, 2.0, 3.5]}}
    path = folder / "conformance.json"
    path.write_text(json.dumps({**REPORT, "traces": {"pesto/c4_sine": traces}}))
    return path


def test_plot_writes_one_svg_file_of_the_traced_output(tmp_path):
    out = tmp_path / "charts" / "pitch.svg"
    done = _run(_module(), "plot", f"--report={_traced_report(tmp_path)}", "--case", "pesto", "--input", "c4_sine",
                "--output", "pitch", f"--out={out}", timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    svg = out.read_text()
    assert svg.startswith("<svg xmlns=") and "onnx" in svg and "|pitch - eager|" in svg
    assert "pesto / c4_sine: pitch, eager against each target" in svg


@pytest.mark.parametrize(
    ("option", "value", "known"),
    [
        (
            "--targets",
            "onnx,onnx-statefull",
            "no target named 'onnx-statefull' (traced for pesto/c4_sine: onnx)",
        ),
        ("--case", "pestoo", "no per-call traces of case 'pestoo' (traces are recorded for streaming cases"),
        ("--input", "c5_sine", "no input of pesto named 'c5_sine'"),
        (
            "--output",
            "pitches",
            "no output named 'pitches' (traced for pesto/c4_sine, outputs with one value per call: pitch)",
        ),
    ],
)
def test_plot_rejects_an_unknown_name_with_the_known_ones(tmp_path, option, value, known):
    args = {"--case": "pesto", "--input": "c4_sine", "--output": "pitch", "--targets": "onnx", option: value}
    report = _traced_report(tmp_path)
    flat = [part for pair in args.items() for part in pair]
    done = _run(
        _script(), "plot", "--report", str(report), *flat, "--out", str(tmp_path / "x.svg"), timeout=60
    )
    _one_clear_line(done, "export-conformance plot: ", known)
    assert not (tmp_path / "x.svg").exists()


def test_export_rejects_an_unknown_target_with_the_known_ones(tmp_path):
    done = _run(_module(), "export", "conv_mlp", "onnx,onnx-statefull", str(tmp_path / "out"))
    _one_clear_line(done, "python -m harness export: ", "no target named 'onnx-statefull' (known: eager,")
    assert "onnx-stateful" in done.stderr and not (tmp_path / "out").exists()


def test_check_with_a_misfit_file_is_a_usage_error_naming_it(tmp_path):
    """Exit status 2 (as the README says), the file and the problem named, before anything runs."""
    missing = tmp_path / "nowhere.onnx"
    done = _run(_module(), "check", "conv_mlp", f"--artifact=onnx={missing}", timeout=300)
    assert done.returncode == 2, (done.returncode, done.stdout[-2000:], done.stderr[-2000:])
    assert "Traceback" not in done.stdout + done.stderr
    assert f"{missing}: artifact file does not exist" in done.stdout + done.stderr
