"""Merging per-environment reports (one tox env each) into one case x target x env matrix.

Standalone on purpose (no torch, no package imports): a CI summary job runs it as
``python harness/reports/summary.py reports/tox/*/conformance.json`` without installing the
harness (``.ci/merge-reports`` lays the downloaded reports out by env first).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["REPORT_SCHEMA", "STATUS_ORDER", "ReportError", "load_report", "merge_reports"]

#: Worst first: a cell takes the worst status over its input sets (and a row over its suites).
STATUS_ORDER = ("error", "fail", "xpass", "export-error", "xfail", "skip", "pass")

#: The ``schema`` of the conformance.json a pytest run writes (harness.reports.matrix).
REPORT_SCHEMA = "export-conformance/matrix/1"


class ReportError(ValueError):
    """A path that is not a readable conformance report; the message says why, without the path."""


def load_report(path: Path) -> dict[str, Any]:
    """The conformance.json at ``path``, checked enough that merging and plotting it cannot fail
    half way: raises ReportError (missing, a folder, unreadable, not JSON, not a report)."""
    path = Path(path)
    if path.is_dir():
        raise ReportError("is a folder, not a conformance.json report")
    if not path.exists():
        raise ReportError("no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ReportError("not UTF-8 text, so not a JSON report") from None
    except OSError as exc:
        raise ReportError(f"cannot read it ({exc.strerror or exc})") from None
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReportError(f"malformed JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    expected = f"expected a conformance report with schema {REPORT_SCHEMA!r}, as pytest writes to reports/"
    if not isinstance(body, dict):
        raise ReportError(f"not a conformance report (JSON {type(body).__name__}; {expected})")
    schema, rows = body.get("schema"), body.get("rows")
    if schema is not None and schema != REPORT_SCHEMA:  # no schema: a hand-made or older report
        raise ReportError(f"not a conformance report (schema {schema!r}; {expected})")
    if not isinstance(rows, list):
        raise ReportError(f"not a conformance report (no list of rows; {expected})")
    for number, row in enumerate(rows, 1):
        suites = row.get("suites") if isinstance(row, dict) else None
        if (
            not isinstance(suites, dict)
            or not all(isinstance(row.get(key), str) for key in ("case", "target"))
            or not all(isinstance(s, dict) and isinstance(s.get("status"), str) for s in suites.values())
        ):
            raise ReportError(
                f"malformed conformance report (row {number} lacks case, target or suite statuses)"
            )
    if not isinstance(body.get("traces", {}), dict) or not isinstance(body.get("versions", {}), dict):
        raise ReportError("malformed conformance report (traces or versions is not an object)")
    return body


def _worst(statuses: Sequence[str]) -> str:
    return min(statuses, key=lambda s: STATUS_ORDER.index(s) if s in STATUS_ORDER else -1)


def _cell(row: dict[str, Any]) -> str:
    """The worst status of a row over its suites, naming the suites that are not pass."""
    statuses = {suite: body["status"] for suite, body in row["suites"].items()}
    worst = _worst(list(statuses.values()))
    off = [f"{suite} {status}" for suite, status in statuses.items() if status not in ("pass", "skip")]
    return worst if not off else f"{worst}: {', '.join(off)}"


def merge_reports(paths: Sequence[Path]) -> tuple[str, dict[str, Any]]:
    """Markdown and JSON of case x target x env; the env is each report's folder name.

    Rows whose cells differ between environments are marked, so a regression that only one
    runtime version shows stands out. Raises ReportError (from load_report) for a path that is not
    a conformance report; check them all with load_report first to name the bad one.
    """
    envs: list[str] = []
    cells: dict[tuple[str, str], dict[str, str]] = {}
    versions: dict[str, dict[str, str]] = {}
    for path in paths:
        env = Path(path).parent.name
        body = load_report(Path(path))
        if env not in envs:  # reports in one folder are shards of one env: their rows are unioned
            envs.append(env)
        versions.setdefault(env, {}).update(body.get("versions", {}))
        for row in body["rows"]:
            cells.setdefault((row["case"], row["target"]), {})[env] = _cell(row)
    lines = [
        "| case | target | " + " | ".join(envs) + " | differs |",
        "|---|---|" + "---|" * len(envs) + "---|",
    ]
    for (case_name, target_name), by_env in cells.items():
        values = [by_env.get(env, "-") for env in envs]
        differs = "**yes**" if len(set(values)) > 1 else ""
        lines.append(f"| {case_name} | {target_name} | " + " | ".join(values) + f" | {differs} |")
    lines += ["", "| env | " + " | ".join(sorted({k for v in versions.values() for k in v})) + " |"]
    keys = sorted({k for v in versions.values() for k in v})
    lines.append("|---|" + "---|" * len(keys))
    lines += [f"| {env} | " + " | ".join(versions[env].get(k, "-") for k in keys) + " |" for env in envs]
    merged = {
        "schema": "export-conformance/summary/1",
        "envs": envs,
        "versions": versions,
        "cells": [{"case": c, "target": t, "by_env": by_env} for (c, t), by_env in cells.items()],
    }
    return "\n".join(lines) + "\n", merged


def main(argv: Sequence[str]) -> int:
    if not argv:
        print("usage: python harness/reports/summary.py REPORT.json [REPORT.json ...]", file=sys.stderr)
        return 2
    for arg in argv:
        try:
            load_report(Path(arg))
        except ReportError as exc:
            print(f"summary: {arg}: {exc}", file=sys.stderr)
            return 2
    markdown, _ = merge_reports([Path(a) for a in argv])
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
