"""Merging per-environment reports (one tox env each) into one case x target x env matrix.

Standalone on purpose (no torch, no package imports): a CI summary job runs it as
``python harness/summary.py reports/tox/*/conformance.json`` without installing the harness.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["STATUS_ORDER", "merge_reports"]

#: Worst first: a cell takes the worst status over its input sets (and a row over its suites).
STATUS_ORDER = ("error", "fail", "xpass", "export-error", "xfail", "skip", "pass")


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
    runtime version shows stands out.
    """
    envs: list[str] = []
    cells: dict[tuple[str, str], dict[str, str]] = {}
    versions: dict[str, dict[str, str]] = {}
    for path in paths:
        env = Path(path).parent.name
        body = json.loads(Path(path).read_text())
        envs.append(env)
        versions[env] = body.get("versions", {})
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
        print("usage: python harness/summary.py REPORT.json [REPORT.json ...]", file=sys.stderr)
        return 2
    markdown, _ = merge_reports([Path(a) for a in argv])
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
