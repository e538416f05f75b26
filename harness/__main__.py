"""Command line for people who do not write pytest.

python -m harness list                               cases and targets
python -m harness export pesto onnx-stateful out/    export one case to one target
python -m harness check pesto                        every suite for a case; prints the matrix
python -m harness check pesto --artifact onnx-stateful=my.onnx   gate an export made elsewhere

Arguments ``check`` does not know are passed to pytest (e.g. ``-x``, ``--export-fresh``).
"""

from __future__ import annotations

import argparse
import configparser
import json
import sys
import tomllib
from pathlib import Path
from typing import Any


def project_config(start: Path | None = None) -> tuple[Path | None, dict[str, Any]]:
    """The pytest configuration of the project around ``start`` (default: the current folder),
    found the way pytest finds its inifile: walking up, the first of pytest.ini, .pytest.ini,
    pyproject.toml with [tool.pytest.ini_options], tox.ini with [pytest], setup.cfg with
    [tool:pytest]. Returns (the file, its options)."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        for name in ("pytest.ini", ".pytest.ini"):
            path = folder / name
            if path.is_file():
                return path, _ini_section(path, "pytest") or {}
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file():
            try:
                body = tomllib.loads(pyproject.read_text())
            except (OSError, tomllib.TOMLDecodeError):
                body = {}
            options = body.get("tool", {}).get("pytest", {}).get("ini_options")
            if options is not None:
                return pyproject, dict(options)
        for name, section in (("tox.ini", "pytest"), ("setup.cfg", "tool:pytest")):
            path = folder / name
            if path.is_file():
                options = _ini_section(path, section)
                if options is not None:
                    return path, options
    return None, {}


def _ini_section(path: Path, section: str) -> dict[str, Any] | None:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path)
    except configparser.Error:
        return None
    return dict(parser[section]) if parser.has_section(section) else None


def _as_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [v for v in value.replace(",", " ").split() if v]
    return [str(v) for v in value or []]


def _load_cases() -> None:
    """Import the case modules the current project's pytest configuration names
    (``conformance_case_modules``), with the project's folder and ``pythonpath`` on sys.path."""
    from . import registry

    path, options = project_config()
    if path is not None:
        root = path.parent
        for entry in [".", *_as_list(options.get("pythonpath", []))]:
            folder = str((root / entry).resolve())
            if folder not in sys.path:
                sys.path.insert(0, folder)
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    modules = _as_list(options.get("conformance_case_modules", []))
    try:
        registry.load_case_modules(modules)
    except registry.CaseError as exc:
        raise SystemExit(f"error: {exc} (named by conformance_case_modules in {path})") from None
    if not registry.cases():
        where = f"in {path}" if path else "(no pytest configuration found from here up)"
        print(
            f"note: no conformance cases: conformance_case_modules {where} names no module that registers one",
            file=sys.stderr,
        )


def _list(_: argparse.Namespace) -> int:
    from . import registry
    from .targets import targets

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
    from . import registry
    from .targets import ExportError
    from .targets import target as find_target

    _load_cases()
    try:
        artifact = find_target(args.target).export(registry.case(args.case), Path(args.outdir))
    except (ExportError, KeyError, registry.CaseError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(artifact.path)
    return 0


def _check(args: argparse.Namespace) -> int:
    """Every suite for one case. With ``--artifact`` only the given files are judged (unless
    ``--targets`` says otherwise), strictly: the case's expected failures and the baseline
    describe the harness's own exports and are not applied; any cell on the user's file that
    is not a pass (or a check that does not apply) makes the exit status non-zero."""
    pytest_args = ["--pyargs", "suites", "-k", args.case]
    artifact_targets = []
    for value in args.artifact:
        target, sep, path = value.partition("=")
        if not sep or not target or not path:
            print(f"error: --artifact {value!r}: expected TARGET=PATH", file=sys.stderr)
            return 2
        artifact_targets.append(target)
        pytest_args.append(f"--artifact={args.case}:{target}={Path(path).resolve()}")
    targets_option = args.targets or ",".join(dict.fromkeys(artifact_targets))
    if targets_option:
        pytest_args.append(f"--conformance-targets={targets_option}")
    if args.workers > 1:
        pytest_args += ["-n", str(args.workers)]
    import pytest

    return int(pytest.main(pytest_args + ["-q", *args.pytest_args]))


def _localize(args: argparse.Namespace) -> int:
    """Name the first eager module whose output the target's run stops reproducing."""
    import json

    from . import registry
    from .cache import ExportCache
    from .external import ArtifactOverride, external_artifact
    from .localize import LocalizationUnsupported, localize
    from .targets import ArtifactError, ExportError, RuntimeMissing
    from .targets import target as find_target

    _load_cases()
    try:
        case = registry.case(args.case)
        target = find_target(args.target)
    except (KeyError, registry.CaseError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    root, options = project_config()
    cache_root = (root.parent if root else Path.cwd()) / options.get("conformance_export_cache", ".export-cache")
    try:
        if args.artifact:
            path = Path(args.artifact).resolve()
            artifact = external_artifact(ArtifactOverride(case.name, target.name, path), cache_root / "external")
        else:
            artifact = ExportCache(cache_root).get(case, target)
        result = localize(case, target, artifact, args.input, chunk=args.chunk)
    except (ArtifactError, ExportError, RuntimeMissing, LocalizationUnsupported, KeyError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(result.render(table=not args.brief))
    if args.json:
        Path(args.json).write_text(json.dumps(result.as_dict(), indent=2))
    return 0


def _replace_block(text: str, name: str, body: str) -> str | None:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if start not in text or end not in text:
        return None
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{body.strip()}\n{end}{tail}"


def _readme(args: argparse.Namespace) -> int:
    """Put the last run's matrix (and benchmark table, if any) between the README's markers."""
    readme = Path(args.readme)
    text = readme.read_text()
    replaced = []
    sources = [(args.block, Path(args.report))]
    if args.benchmarks:
        sources.append(("benchmarks", Path(args.benchmarks)))
    for name, report in sources:
        if not report.is_file():
            continue
        updated = _replace_block(text, name, report.read_text())
        if updated is None:
            print(
                f"error: {readme} has no <!-- {name}:start --> ... <!-- {name}:end --> block", file=sys.stderr
            )
            return 2
        text = updated
        replaced.append(str(report))
    if not replaced:
        print(
            f"error: neither {args.report} nor {args.benchmarks} exists; run the suites first",
            file=sys.stderr,
        )
        return 2
    readme.write_text(text)
    print(f"{readme}: replaced from {', '.join(replaced)}")
    return 0


def _merge(args: argparse.Namespace) -> int:
    from .summary import merge_reports

    paths = [Path(p) for p in args.reports]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        print(f"error: no report at {', '.join(missing)}", file=sys.stderr)
        return 2
    markdown, merged = merge_reports(paths)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(markdown)
    out.with_suffix(".json").write_text(json.dumps(merged, indent=2, sort_keys=True) + "\n")
    print(markdown)
    return 0


def _plot(args: argparse.Namespace) -> int:
    from .html_report import trace_svgs

    body = json.loads(Path(args.report).read_text())
    key = f"{args.case}/{args.input}"
    if key not in body.get("traces", {}):
        print(
            f"error: {args.report} has no traces for {key} (run the equivalence suite for it)",
            file=sys.stderr,
        )
        return 2
    from .targets import targets

    order = [t.name for t in targets()]
    only = args.targets.split(",") if args.targets else None
    figures = dict(trace_svgs({key: body["traces"][key]}, target_order=order, only_targets=only))
    caption = f"{args.case} on {args.input}: {args.output}"
    if caption not in figures:
        print(f"error: no per-call output {args.output!r} in the traces of {key}", file=sys.stderr)
        return 2
    Path(args.out).write_text(figures[caption])
    print(args.out)
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
    check = commands.add_parser(
        "check",
        help="run every suite for one case and print the matrix (other arguments go to pytest)",
        description="Run every suite for one case and print the matrix. With --artifact, judge your "
        "own files strictly: exit status 1 if any cell on them is not a pass. Arguments check does "
        "not know are passed to pytest.",
    )
    check.add_argument("case")
    check.add_argument("--artifact", action="append", default=[], metavar="TARGET=PATH")
    check.add_argument("--targets", default=None, help="comma-separated target names")
    check.add_argument("--workers", type=int, default=1, help="pytest-xdist workers")
    check.set_defaults(run=_check)
    where = commands.add_parser(
        "localize",
        help="name the first module where a target's run leaves eager's",
        description="Run the case on eager with a hook on every module and on the target with its "
        "intermediate values exposed, on the first call whose outputs leave the case's tolerances "
        "(or --chunk), and print the first diverging module and a per-module error table.",
    )
    where.add_argument("case", help="a registered case (python -m harness list)")
    where.add_argument("target", help="a registered target, e.g. onnx")
    where.add_argument("--artifact", default=None, metavar="PATH", help="your own file instead of the harness's export")
    where.add_argument("--input", default=None, help="canonical input set (default: the case's primary input)")
    where.add_argument("--chunk", type=int, default=None, help="0-based call to localise (default: the first failing)")
    where.add_argument("--brief", action="store_true", help="the headline only, no per-module table")
    where.add_argument("--json", default=None, metavar="PATH", help="also write the result as JSON")
    where.set_defaults(run=_localize)
    readme = commands.add_parser("readme", help="copy the last run's Markdown matrix into the README")
    readme.add_argument("--report", default="reports/conformance.md")
    readme.add_argument(
        "--block", default="matrix", help="the README block the matrix goes into (<!-- NAME:start -->)"
    )
    readme.add_argument("--benchmarks", default=None, help="also copy this benchmark table (Markdown)")
    readme.add_argument("--readme", default="README.md")
    readme.set_defaults(run=_readme)
    merge = commands.add_parser("merge", help="merge per-env conformance.json reports into one matrix")
    merge.add_argument("reports", nargs="+")
    merge.add_argument("--out", default="reports/summary.md")
    merge.set_defaults(run=_merge)
    plot = commands.add_parser("plot", help="an SVG of one output over time, eager against targets")
    plot.add_argument("--report", default="reports/conformance.json")
    plot.add_argument("--case", required=True)
    plot.add_argument("--input", required=True)
    plot.add_argument("--output", required=True, help="output name, e.g. pitch")
    plot.add_argument("--targets", default=None, help="comma-separated targets to draw (default: all)")
    plot.add_argument("--out", required=True)
    plot.set_defaults(run=_plot)
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "check":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.pytest_args = [a for a in extra if a != "--"]  # anything else goes to pytest
    return args.run(args)


def console() -> None:
    """The ``export-conformance`` console script."""
    sys.exit(main())


if __name__ == "__main__":
    console()
