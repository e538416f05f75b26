"""Command line for people who do not write pytest.

python -m harness list                               cases and targets
python -m harness export pesto onnx-stateful out/    export one case to one target
python -m harness check pesto                        every suite for a case; prints the matrix
python -m harness check pesto --artifact onnx-stateful=my.onnx   gate an export made elsewhere

Arguments ``check`` does not know are passed to pytest (e.g. ``-x``, ``--export-fresh``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

from . import registry
from .targets import ExportError, targets
from .targets import target as find_target


def _load_cases() -> None:
    registry.load_case_modules([], Path.cwd() / "fixtures")


def _list(_: argparse.Namespace) -> int:
    _load_cases()
    print("cases:")
    for case in registry.cases():
        streaming = f", streams {case.streaming.chunk}-step chunks" if case.streaming else ""
        print(f"  {case.name}: inputs {', '.join(case.inputs)}{streaming}")
    print("targets:")
    for target in targets():
        missing = target.missing_runtime()
        print(f"  {target.name}: {target.description}" + (f" [unavailable: {missing}]" if missing else ""))
    return 0


def _export(args: argparse.Namespace) -> int:
    _load_cases()
    try:
        artifact = find_target(args.target).export(registry.case(args.case), Path(args.outdir))
    except (ExportError, KeyError, registry.CaseError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(artifact.path)
    return 0


def _check(args: argparse.Namespace) -> int:
    pytest_args = ["--pyargs", "suites", "-k", args.case]
    for value in args.artifact:
        target, sep, path = value.partition("=")
        if not sep:
            print(f"error: --artifact {value!r}: expected TARGET=PATH", file=sys.stderr)
            return 2
        pytest_args += ["--artifact", f"{args.case}:{target}={path}"]
    if args.targets:
        pytest_args += ["--conformance-targets", args.targets]
    if args.workers > 1:
        pytest_args += ["-n", str(args.workers)]
    return int(pytest.main(pytest_args + ["-q", *args.pytest_args]))


MATRIX_START, MATRIX_END = "<!-- matrix:start -->", "<!-- matrix:end -->"


def _readme(args: argparse.Namespace) -> int:
    """Put the last run's Markdown matrix between the README's matrix markers."""
    readme, report = Path(args.readme), Path(args.report)
    text = readme.read_text()
    if MATRIX_START not in text or MATRIX_END not in text:
        print(f"error: {readme} has no {MATRIX_START} ... {MATRIX_END} block", file=sys.stderr)
        return 2
    if not report.is_file():
        print(f"error: {report} does not exist; run the suites first", file=sys.stderr)
        return 2
    head, rest = text.split(MATRIX_START, 1)
    _, tail = rest.split(MATRIX_END, 1)
    readme.write_text(f"{head}{MATRIX_START}\n{report.read_text().strip()}\n{MATRIX_END}{tail}")
    print(f"{readme}: matrix replaced from {report}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness", description="export conformance harness")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="list cases and targets").set_defaults(run=_list)
    export = commands.add_parser("export", help="export one case to one target")
    export.add_argument("case")
    export.add_argument("target")
    export.add_argument("outdir")
    export.set_defaults(run=_export)
    check = commands.add_parser("check", help="run every suite for one case and print the matrix")
    check.add_argument("case")
    check.add_argument("--artifact", action="append", default=[], metavar="TARGET=PATH")
    check.add_argument("--targets", default=None, help="comma-separated target names")
    check.add_argument("--workers", type=int, default=1, help="pytest-xdist workers")
    check.set_defaults(run=_check)
    readme = commands.add_parser("readme", help="copy the last run's Markdown matrix into the README")
    readme.add_argument("--report", default="reports/conformance.md")
    readme.add_argument("--readme", default="README.md")
    readme.set_defaults(run=_readme)
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "check":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.pytest_args = [a for a in extra if a != "--"]  # anything else goes to pytest
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
