"""Command line for people who do not write pytest: ``export-conformance`` (the console script)
or ``python -m harness``; ``--help`` on any subcommand lists its arguments with an example.

export-conformance list                               cases and targets
export-conformance export pesto onnx-stateful out/    export one case to one target
export-conformance check pesto                        every suite for a case; prints the matrix
export-conformance check pesto --artifact onnx-stateful=my.onnx   gate an export made elsewhere

Arguments ``check`` does not know are passed to pytest (e.g. ``-- -x -k equivalence``).
Imports of what loads torch (the case registry, the targets, the checks, the runs, the HTML
report, the overhead measurement) stay inside the subcommands, so that ``--help`` answers at
once; tests/test_layers.py lists them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .cli.parser import build_parser as build_command_line
from .cli.progress import Steps, quiet_torch
from .core.errors import HarnessError
from .reports.summary import ReportError, load_report, merge_reports


class _Fail(Exception):
    """A problem the user can fix: one line ``<prog> <command>: <message>`` on stderr, exit status 2."""


def _load_cases() -> None:
    """The project's case modules (``cli.project.load_cases``); one it cannot load is this
    command's usage error."""
    from .cli.project import load_cases  # torch: kept out of --help
    from .core.registry import CaseError

    try:
        load_cases()
    except CaseError as exc:
        raise _Fail(str(exc)) from None


def _known(kind: str, name: str, known: Iterable[str], where: str = "known") -> str:
    """``name`` if it is one of ``known``; otherwise fail naming every known one."""
    known = list(known)
    if name not in known:
        raise _Fail(f"no {kind} named {name!r} ({where}: {', '.join(known) or 'none'})")
    return name


def _names(value: str) -> list[str]:
    return [name.strip() for name in value.split(",") if name.strip()]


def _case(name: str) -> Any:
    from .core import registry  # torch: kept out of --help

    _load_cases()
    return registry.case(_known("case", name, [c.name for c in registry.cases()]))


def _target(name: str) -> Any:
    from .targets import target, targets  # torch: kept out of --help

    return target(_known("target", name, [t.name for t in targets()]))


def _list(_: argparse.Namespace) -> int:
    from .core import registry  # torch: kept out of --help
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
    from .targets import ExportError, RuntimeMissing  # torch: kept out of --help

    case = _case(args.case)
    chosen = [_target(name) for name in _names(args.target)] or [_target(args.target)]
    outdir = Path(args.outdir)
    if outdir.exists() and not outdir.is_dir():
        raise _Fail(f"{outdir}: not a folder (OUTDIR is the folder the exported files are written to)")
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _Fail(f"{outdir}: cannot create the output folder ({exc.strerror or exc})") from None
    paths, failures = [], []
    with quiet_torch(), Steps(args.where, len(chosen)) as steps:
        for target in chosen:
            try:
                with steps.step(f"exporting {case.name} to {target.name}"):
                    paths.append(target.export(case, Path(args.outdir)).path)
            except (ExportError, RuntimeMissing, HarnessError) as exc:
                failures.append(f"{args.where}: {case.name} to {target.name}: {exc}")
    for path in paths:
        print(path)
    for failure in failures:
        print(failure, file=sys.stderr)
    return 2 if failures else 0


def _user_file(given: str) -> Path:
    """A user's file resolved by the file system, or this command's one-line usage error."""
    from .targets import ArtifactError  # torch: kept out of --help
    from .targets.adopt import resolve_user_file

    try:
        return resolve_user_file(Path(given))
    except ArtifactError as exc:
        raise _Fail(str(exc)) from None


def _pytest_selection(case: str, extra: list[str]) -> list[str]:
    """``-k CASE`` joined with the user's own ``-k`` expressions (pytest keeps only the last -k)."""
    keywords, rest = [], []
    items = iter(extra)
    for arg in items:
        if arg == "-k":
            keywords.append(next(items, ""))
        elif arg.startswith("-k") and len(arg) > 2:
            keywords.append(arg[2:])
        else:
            rest.append(arg)
    return ["-k", " and ".join([case, *(f"({k})" for k in keywords if k.strip())]), *rest]


def _check(args: argparse.Namespace) -> int:
    """Every suite for one case. With ``--artifact`` only the given files are judged (unless
    ``--targets`` says otherwise), strictly: the case's expected failures and the baseline
    describe the harness's own exports and are not applied; any cell on the user's file that
    is not a pass (or a check that does not apply) makes the exit status non-zero."""
    case = _case(args.case).name
    pytest_args = ["--pyargs", "harness.suites"]
    artifact_targets = []
    for value in args.artifact:
        target, sep, path = value.partition("=")
        if not sep or not target or not path:
            raise _Fail(f"--artifact {value!r}: expected TARGET=PATH")
        artifact_targets.append(_target(target).name)
        pytest_args.append(f"--artifact={case}:{target}={_user_file(path)}")
    for name in _names(args.targets or ""):
        _target(name)
    targets_option = args.targets or ",".join(dict.fromkeys(artifact_targets))
    if targets_option:
        pytest_args.append(f"--conformance-targets={targets_option}")
    if args.workers > 1:
        pytest_args += ["-n", str(args.workers)]
    return _run_suites(case, pytest_args, args)


def _run_suites(case: str, pytest_args: list[str], args: argparse.Namespace) -> int:
    """The suites under pytest for one case, quiet unless ``-v``, with check's exit statuses."""
    if args.export_cache_dir:
        pytest_args.append(f"--conformance-export-cache-dir={Path(args.export_cache_dir).resolve()}")
    # What a person reads: the matrix and one line per cell that did not pass; pytest's own
    # progress, warnings and tracebacks only with -v (the JSON report keeps every reason whole).
    quiet = ["-q", "--tb=no", "--disable-warnings", "-W", "ignore::DeprecationWarning"]
    quiet += ["--benchmark-columns=min,median,rounds"]  # pytest-benchmark's own table in 120 columns
    pytest_args += ["-v", "--tb=short"] if args.verbose else quiet
    # The case modules were imported above to check the names; pytest would warn that it cannot
    # rewrite the asserts of plugins they imported first (hypothesis), which is no problem here.
    pytest_args += ["-W", "ignore::pytest.PytestAssertRewriteWarning"]
    import pytest

    status = int(pytest.main(pytest_args + _pytest_selection(case, args.pytest_args)))
    # a misfit file (or any other usage error pytest printed) is this command's usage error
    return 2 if status == pytest.ExitCode.USAGE_ERROR else status


def _cache_root(args: argparse.Namespace) -> Path:
    """The export cache: --export-cache-dir, else the ini's conformance_export_cache beside it."""
    from .cli.project import project_config  # torch: kept out of --help

    if args.export_cache_dir:
        return Path(args.export_cache_dir)
    root, options = project_config()
    return (root.parent if root else Path.cwd()) / options.get("conformance_export_cache", ".export-cache")


def _artifact(args: argparse.Namespace, case: Any, target: Any, steps: Steps) -> Any:
    """The user's file (``--artifact``) adopted as ``target``'s, else the harness's own export."""
    from .run.cache import ExportCache  # torch: kept out of --help
    from .run.external import ArtifactOverride, external_artifact

    cache_root = _cache_root(args)
    if args.artifact:
        with steps.step(f"loading {args.artifact} as {target.name}"):
            path = _user_file(args.artifact)
            return external_artifact(ArtifactOverride(case.name, target.name, path), cache_root / "external")
    with steps.step(f"exporting {case.name} to {target.name} (or reusing the export cache)"):
        return ExportCache(cache_root).get(case, target)


def _localize(args: argparse.Namespace) -> int:
    """Name the first eager module whose output the target's run stops reproducing."""
    from .checks.localize import LocalizationUnsupported, localize  # torch: kept out of --help
    from .targets import ArtifactError, ExportError, RuntimeMissing

    case = _case(args.case)
    target = _target(args.target)
    if args.input is not None:
        _known("input", args.input, case.inputs)
    try:
        with quiet_torch(), Steps(args.where, 2) as steps:
            artifact = _artifact(args, case, target, steps)
            with steps.step(f"localizing {case.name} on {target.name}"):
                result = localize(case, target, artifact, args.input, chunk=args.chunk)
    except (ArtifactError, ExportError, RuntimeMissing, LocalizationUnsupported, KeyError, ValueError) as exc:
        raise _Fail(str(exc).strip("'\"")) from None
    print(result.render(table=not args.brief))
    if args.json:
        Path(args.json).write_text(json.dumps(result.as_dict(), indent=2))
    return 0


def _repro(args: argparse.Namespace) -> int:
    """A standalone reproducer of one target's divergence from eager: exit 1 where it diverges
    (the reproducer's own status), 0 where every call agrees."""
    from .checks.localize import localization_record  # torch: kept out of --help
    from .reports.repro import ReproUnsupported, repro_folder_name, write_repro
    from .targets import ArtifactError, ExportError, RuntimeMissing

    case = _case(args.case)
    target = _target(args.target)
    input_name = _known("input", args.input, case.inputs) if args.input else case.main_input
    folder = (
        Path(args.out)
        if args.out
        else Path("reports/repro") / repro_folder_name(case.name, target.name, input_name)
    )
    if target.standalone is None:
        raise _Fail(f"{target.name}: no standalone program to reproduce its runs with (the eager side?)")
    try:
        with quiet_torch(), Steps(args.where, 3) as steps:
            artifact = _artifact(args, case, target, steps)
            with steps.step(f"localizing {case.name} on {target.name}"):
                located = localization_record(case, target, artifact, input_name)
            with steps.step(f"writing the reproducer into {folder}"):
                repro = write_repro(
                    case,
                    target,
                    artifact,
                    list(case.inputs[input_name]()),
                    folder,
                    input_name=input_name,
                    localization=located,
                )
    except (ArtifactError, ExportError, RuntimeMissing, ReproUnsupported) as exc:
        raise _Fail(str(exc).strip("'\"")) from None
    print(repro.headline())
    for note in repro.notes:
        print(f"  {note}")
    return 0 if repro.first is None else 1


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
    try:
        text = readme.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise _Fail(f"{readme}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
    replaced = []
    sources = [(args.block, Path(args.report))]
    if args.benchmarks:
        sources.append(("benchmarks", Path(args.benchmarks)))
    for name, report in sources:
        if not report.is_file():
            continue
        updated = _replace_block(text, name, report.read_text())
        if updated is None:
            raise _Fail(f"{readme}: no <!-- {name}:start --> ... <!-- {name}:end --> block")
        text = updated
        replaced.append(str(report))
    if not replaced:
        raise _Fail(f"neither {args.report} nor {args.benchmarks} exists; run the suites first")
    readme.write_text(text)
    print(f"{readme}: replaced from {', '.join(replaced)}")
    return 0


def _report(path: str) -> dict[str, Any]:
    try:
        return load_report(Path(path))
    except ReportError as exc:
        raise _Fail(f"{path}: {exc}") from None


def _write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    except OSError as exc:
        raise _Fail(f"{path}: cannot write it ({exc.strerror or exc})") from None


def _merge(args: argparse.Namespace) -> int:
    for path in args.reports:
        _report(path)
    markdown, merged = merge_reports([Path(p) for p in args.reports])
    out = Path(args.out)
    _write(out, markdown)
    _write(out.with_suffix(".json"), json.dumps(merged, indent=2, sort_keys=True) + "\n")
    print(markdown)
    return 0


def _plot(args: argparse.Namespace) -> int:
    traces = _report(args.report).get("traces", {})
    where = f"traced in {args.report}"
    traced_cases = sorted({key.split("/", 1)[0] for key in traces})
    if args.case not in traced_cases:
        raise _Fail(
            f"{args.report}: no per-call traces of case {args.case!r} (traces are recorded for streaming "
            f"cases, one value per call; traced: {', '.join(traced_cases) or 'none'})"
        )
    inputs = sorted(key.split("/", 1)[1] for key in traces if key.startswith(f"{args.case}/"))
    _known(f"input of {args.case}", args.input, inputs, where)
    key = f"{args.case}/{args.input}"
    try:
        from .targets import EAGER  # torch: kept out of --help

        traced = [t for t in traces[key] if t != EAGER]
        only = [_known("target", name, traced, f"traced for {key}") for name in _names(args.targets or "")]
        _known(
            "output", args.output, sorted(traces[key].get(EAGER, {})),
            f"traced for {key}, outputs with one value per call",
        )  # fmt: skip
        from .reports.html import target_colours, trace_figure  # torch: kept out of --help
        from .targets import targets

        order = [t.name for t in targets()]
        rank = {name: i for i, name in enumerate(order)}
        drawn = sorted(only or traced, key=lambda t: (rank.get(t, len(rank)), t))
        series = {EAGER: traces[key][EAGER][args.output]}
        series.update({t: traces[key][t][args.output] for t in drawn if args.output in traces[key][t]})
        title = f"{args.case} / {args.input}: {args.output}, eager against each target"
        figure, _ = trace_figure(series, target_colours(order, drawn), output=args.output, title=title)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise _Fail(f"{args.report}: malformed traces for {key} ({type(exc).__name__}: {exc})") from None
    out = Path(args.out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(figure.svg() + "\n")
    except OSError as exc:
        raise _Fail(f"{out}: cannot write it ({exc.strerror or exc})") from None
    print(args.out)
    return 0


def _overhead(args: argparse.Namespace) -> int:
    """The harness's CPU time for one case's cells against the least work its verdicts need."""
    from .cli.overhead import measure  # torch: kept out of --help

    _case(args.case)
    if args.rounds < 1:
        raise _Fail(f"--rounds {args.rounds}: need at least one round")
    return measure(args.case, tier=args.tier, examples=args.examples, rounds=args.rounds, json_path=args.json)


def _bundle(args: argparse.Namespace) -> int:
    """The canonical inputs and eager's outputs in the runtime's own test format."""
    from .cli.bundle import BundleError, bundle_format, write_bundle  # torch: kept out of --help
    from .targets import ArtifactError, ExportError, RuntimeMissing, targets

    case = _case(args.case)
    target = _target(args.target)
    chosen = [_known("input", name, case.inputs) for name in _names(args.inputs or "")]
    outdir = Path(args.outdir)
    if outdir.exists() and not outdir.is_dir():
        raise _Fail(f"{outdir}: not a folder (DIR is the folder the bundle is written to)")
    try:
        kind = bundle_format(target, targets())
        with quiet_torch(), Steps(args.where, 2) as steps:
            artifact = _artifact(args, case, target, steps)
            with steps.step(f"bundling eager's outputs for {case.name}"):
                manifest = write_bundle(case, target, artifact, outdir, kind=kind, inputs=chosen)
    except (ArtifactError, ExportError, RuntimeMissing, BundleError, HarnessError, OSError) as exc:
        raise _Fail(str(exc).strip("'\"")) from None
    streams = manifest.streams()
    files = ", ".join([manifest.model, *manifest.extra.get("bundled_programs", {}).values()])
    print(
        f"{outdir}: {files}, {len(manifest.sets)} test sets ({', '.join(f'{k}: {len(v)} calls' for k, v in streams.items())})"
    )
    return 0


def _judge(args: argparse.Namespace) -> int:
    """Outputs recorded elsewhere, judged as the cells judge a target's run."""
    from .run.recorded import Recording, RecordingError  # torch: kept out of --help

    try:  # the folder first: a malformed one is named before the cases load
        recording = Recording.read(Path(args.outputs))
    except RecordingError as exc:
        raise _Fail(str(exc)) from None
    case = _case(args.case).name
    target = _target(args.target).name
    manifest = recording.manifest
    if (manifest.case, manifest.target) != (case, target):
        raise _Fail(
            f"{manifest.root / 'manifest.json'}: a bundle of {manifest.case} on {manifest.target}, not {case} on {target}"
        )
    root = manifest.root.resolve()
    pytest_args = [
        "--pyargs",
        "harness.suites",
        f"--conformance-recorded={case}:{target}={root}",
        f"--conformance-targets={target}",
    ]
    return _run_suites(case, pytest_args, args)


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser, wired to this module's subcommands."""
    commands = {
        "list": _list,
        "export": _export,
        "check": _check,
        "localize": _localize,
        "readme": _readme,
        "merge": _merge,
        "plot": _plot,
        "overhead": _overhead,
        "repro": _repro,
        "bundle": _bundle,
        "judge": _judge,
    }
    return build_command_line(commands, prog)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "check":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.pytest_args = [a for a in extra if a != "--"]  # anything else goes to pytest
    args.where = f"{parser.prog} {args.command}"
    try:
        return args.run(args)
    except _Fail as exc:
        print(f"{args.where}: {exc}", file=sys.stderr)
        return 2


def console() -> None:
    """The ``export-conformance`` console script."""
    sys.exit(main())


if __name__ == "__main__":
    console()
