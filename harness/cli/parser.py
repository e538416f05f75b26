"""The command line's parser: every subcommand, argument, help text and example.

Kept apart from :mod:`harness.__main__` (what each subcommand does) and free of heavy imports,
so ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["build_parser"]

_MODULE_PROG = "python -m harness"
_CACHE_HELP = (
    "the export cache folder (default: the ini's conformance_export_cache, else .export-cache beside it)"
)
_SCRIPT_PROG = "export-conformance"


def _prog() -> str:
    """``export-conformance`` as the console script, ``python -m harness`` as a module."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if name == "__main__.py":
        return _MODULE_PROG
    return name if name.startswith(_SCRIPT_PROG) else _SCRIPT_PROG


def _wrap(text: str) -> str:
    """Paragraphs filled to the terminal (the raw formatter keeps the epilog's example lines as written)."""
    import shutil
    import textwrap

    width = min(shutil.get_terminal_size().columns, 100) - 2
    return "\n\n".join(textwrap.fill(paragraph, width) for paragraph in text.split("\n\n"))


def _subcommand(
    commands: Any, name: str, run: Any, help: str, description: str, example: str, **kw: Any
) -> Any:
    parser = commands.add_parser(
        name,
        help=help,
        description=_wrap(description),
        epilog=f"example:\n  %(prog)s {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        **kw,
    )
    parser.set_defaults(run=run)
    return parser


def build_parser(
    run: Mapping[str, Callable[[argparse.Namespace], int]], prog: str | None = None
) -> argparse.ArgumentParser:
    """The parser of every subcommand; ``run`` maps each subcommand to the function it calls."""
    prog = prog or _prog()
    parser = argparse.ArgumentParser(
        prog=prog,
        description=_wrap(
            "Does an exported PyTorch model still compute what the eager model computes? Export, "
            "check and localise cases from the command line; the suites themselves run under pytest."
        ),
        epilog="examples:\n"
        f"  {prog} list\n"
        f"  {prog} export pesto onnx-stateful my-exports/\n"
        f"  {prog} check pesto --artifact=onnx-stateful=my-exports/pesto.stateful.onnx -- -x\n"
        f"  {prog} localize pesto onnx --input=c4_sine\n"
        f"  {prog} repro pesto onnx --out=repro/pesto-onnx\n"
        f"  {prog} merge reports/tox/*/conformance.json\n\n"
        f"'{prog} COMMAND --help' explains one command.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", title="commands")
    case_help = f"a registered case ({prog} list names them)"
    _subcommand(
        commands,
        "list",
        run["list"],
        "list cases and targets",
        "List the cases the project's pytest configuration registers (conformance_case_modules) and "
        "every target, marking targets whose runtime is not installed.",
        "",
    )
    export = _subcommand(
        commands,
        "export",
        run["export"],
        "export one case to one or more targets",
        "Export one case to each named target and print each file's path on stdout. Progress goes to "
        "stderr (a progress bar on a terminal, one line per export otherwise).",
        "pesto onnx-stateful my-exports/",
    )
    export.add_argument("case", metavar="CASE", help=case_help)
    export.add_argument(
        "target", metavar="TARGET[,TARGET...]", help="target name(s), comma-separated, e.g. onnx"
    )
    export.add_argument("outdir", metavar="OUTDIR", help="folder the exported files are written to")
    check = _subcommand(
        commands,
        "check",
        run["check"],
        "run every suite for one case and print the matrix (extra arguments go to pytest)",
        "Run every suite for one case and print the matrix. With --artifact, judge your own files "
        "strictly: exit status 1 if any cell on them is not a pass.\n\n"
        "Any further argument goes to pytest (put them after '--' to be safe); a -k expression of "
        "yours is joined to the case's with 'and'.",
        "pesto -- -x -k equivalence",
        allow_abbrev=False,
        usage="%(prog)s [-h] [-v] [--artifact TARGET=PATH] [--targets T1,T2] [--workers N] "
        "[--export-cache-dir DIR] CASE [-- PYTEST_ARG ...]",
    )
    check.add_argument("case", metavar="CASE", help=case_help)
    check.add_argument(
        "--artifact",
        action="append",
        default=[],
        metavar="TARGET=PATH",
        help="judge this file as TARGET's export instead of the harness's own (repeatable)",
    )
    check.add_argument(
        "--targets", default=None, metavar="T1,T2", help="only these targets (comma-separated)"
    )
    check.add_argument(
        "--workers", type=int, default=1, metavar="N", help="pytest-xdist workers (default: 1)"
    )
    check.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="pytest's own report too: every test and the failures' tracebacks (by default the matrix and "
        "one line per cell that did not pass)",
    )
    check.add_argument("--export-cache-dir", default=None, metavar="DIR", help=_CACHE_HELP)
    where = _subcommand(
        commands,
        "localize",
        run["localize"],
        "name the first module where a target's run leaves eager's",
        "Run the case on eager with a hook on every module and on the target with its intermediate "
        "values exposed, on the first call whose outputs leave the case's tolerances (or --chunk), and "
        "print the first diverging module and a per-module error table.",
        "pesto onnx --input=c4_sine --chunk=1",
    )
    where.add_argument("case", metavar="CASE", help=case_help)
    where.add_argument("target", metavar="TARGET", help="a registered target, e.g. onnx")
    where.add_argument(
        "--artifact", default=None, metavar="PATH", help="your own file instead of the harness's export"
    )
    where.add_argument(
        "--input",
        default=None,
        metavar="NAME",
        help="canonical input set (default: the case's primary input)",
    )
    where.add_argument(
        "--chunk",
        type=int,
        default=None,
        metavar="N",
        help="0-based call to localise (default: the first failing)",
    )
    where.add_argument("--brief", action="store_true", help="the headline only, no per-module table")
    where.add_argument("--json", default=None, metavar="PATH", help="also write the result as JSON")
    where.add_argument("--export-cache-dir", default=None, metavar="DIR", help=_CACHE_HELP)
    readme = _subcommand(
        commands,
        "readme",
        run["readme"],
        "copy the last run's Markdown matrix into the README",
        "Replace the text between <!-- BLOCK:start --> and <!-- BLOCK:end --> in the README with the "
        "last run's Markdown matrix (and the benchmark table between the benchmarks markers).",
        "--report reports/seeds/conformance.md --block seeds",
    )
    readme.add_argument(
        "--report",
        default="reports/conformance.md",
        metavar="PATH",
        help="the Markdown matrix (default: %(default)s)",
    )
    readme.add_argument(
        "--block",
        default="matrix",
        metavar="NAME",
        help="the README block the matrix goes into (<!-- NAME:start -->)",
    )
    readme.add_argument(
        "--benchmarks", default=None, metavar="PATH", help="also copy this benchmark table (Markdown)"
    )
    readme.add_argument(
        "--readme", default="README.md", metavar="PATH", help="the file to edit (default: %(default)s)"
    )
    merge = _subcommand(
        commands,
        "merge",
        run["merge"],
        "merge per-env conformance.json reports into one matrix",
        "Merge conformance.json reports (one per environment, named by its folder) into one case x "
        "target x environment matrix; prints it and writes it as Markdown and JSON.",
        "reports/tox/*/conformance.json --out reports/summary.md",
    )
    merge.add_argument("reports", nargs="+", metavar="REPORT", help="a conformance.json a pytest run wrote")
    merge.add_argument(
        "--out",
        default="reports/summary.md",
        metavar="PATH",
        help="Markdown out, JSON beside it (default: %(default)s)",
    )
    plot = _subcommand(
        commands,
        "plot",
        run["plot"],
        "an SVG of one output over time, eager against targets",
        "Draw one per-call output of one case on one input over time, eager against each target, "
        "from the traces in a conformance.json.",
        "--case pesto --input a_major_scale --output pitch --targets onnx,onnx-stateful --out pitch.svg",
    )
    plot.add_argument(
        "--report",
        default="reports/conformance.json",
        metavar="PATH",
        help="the conformance.json (default: %(default)s)",
    )
    plot.add_argument("--case", required=True, metavar="CASE", help="a case with traces in the report")
    plot.add_argument("--input", required=True, metavar="NAME", help="one of the case's input sets")
    plot.add_argument("--output", required=True, metavar="NAME", help="output name, e.g. pitch")
    plot.add_argument(
        "--targets", default=None, metavar="T1,T2", help="comma-separated targets to draw (default: all)"
    )
    plot.add_argument("--out", required=True, metavar="PATH", help="the SVG file to write")
    repro = _subcommand(
        commands,
        "repro",
        run["repro"],
        "write a standalone reproducer of a target's divergence from eager",
        "Run the case on eager and on the target over one canonical input, keep the calls up to the "
        "first call whose outputs leave the case's tolerances, and write into OUTDIR a repro.py that "
        "imports neither the harness nor the case's code (only numpy and the target's runtime), the "
        "inputs and eager's expected outputs (inputs.npz, expected.npz), the artifact and a README with "
        "the versions; where localisation names the first divergent module, its eager side "
        "(model.py) and, for ONNX, the subgraph cut at that module's boundary. 'python repro.py' exits "
        "1 on the divergence and 0 where the outputs agree.",
        "pesto onnx --input=a_major_scale --out=repro/pesto-onnx",
    )
    repro.add_argument("case", metavar="CASE", help=case_help)
    repro.add_argument("target", metavar="TARGET", help="a registered target, e.g. onnx")
    repro.add_argument(
        "--artifact", default=None, metavar="PATH", help="your own file instead of the harness's export"
    )
    repro.add_argument(
        "--input",
        default=None,
        metavar="NAME",
        help="canonical input set (default: the case's primary input)",
    )
    repro.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help="the folder to write (default: reports/repro/CASE-TARGET-INPUT)",
    )
    repro.add_argument("--export-cache-dir", default=None, metavar="DIR", help=_CACHE_HELP)
    bundle = _subcommand(
        commands,
        "bundle",
        run["bundle"],
        "write the canonical inputs and eager's outputs in the runtime's own test format",
        "Write the case's canonical inputs and eager's expected outputs for TARGET's artifact into DIR "
        "in the runtime's own test format, for a device the CI machine cannot reach: the model file, "
        "ONNX test data sets (test_data_set_N/input_K.pb, output_K.pb, as onnx_test_runner reads them), "
        "for ExecuTorch also a BundledProgram (program.bpte, one test case per call of a streaming input: "
        "run its cases in order on one loaded method, whose buffers carry the state), and manifest.json "
        "(which input and call each set is). A file with lifted state (state.* inputs) gets eager's "
        "state before each call and eager's next_state as expected outputs. Supports the ONNX and "
        "ExecuTorch targets.",
        "pesto executorch-xnnpack bundles/pesto",
    )
    bundle.add_argument("case", metavar="CASE", help=case_help)
    bundle.add_argument("target", metavar="TARGET", help="a registered target, e.g. executorch-xnnpack")
    bundle.add_argument("outdir", metavar="DIR", help="the folder to write (new or empty)")
    bundle.add_argument(
        "--artifact", default=None, metavar="PATH", help="your own file instead of the harness's export"
    )
    bundle.add_argument(
        "--inputs",
        default=None,
        metavar="A,B",
        help="comma-separated canonical inputs to bundle (default: all); the others are judged as not recorded",
    )
    bundle.add_argument("--export-cache-dir", default=None, metavar="DIR", help=_CACHE_HELP)
    judge = _subcommand(
        commands,
        "judge",
        run["judge"],
        "judge outputs recorded elsewhere (a device) with the cell's own judge",
        "Judge outputs recorded by another process or device on a bundle, with each cell's own judge "
        "(tolerances, task metric, the streaming checks the recorded calls allow); prints the same "
        "matrix and exit status as 'check' (0 every judged cell passed, 1 a cell failed, 2 a usage "
        "error such as a missing or malformed file). DIR is the bundle's folder; the device writes, "
        "for every test set N it ran, outputs/test_data_set_N/output_K.pb (TensorProto files named "
        "as the bundle's own output_K.pb) or outputs/test_data_set_N.npz (arrays keyed by output "
        "name, or output_K). Run each input's sets in order on one freshly loaded model (for "
        "lifted state, feed each set's own state inputs). What a device run does not show (a "
        "replay after reset, other chunk sizes, batches, generated examples, timings) is a skip "
        "that says 'not recorded on the device'.",
        "pesto onnx-stateful --outputs=bundles/pesto",
    )
    judge.add_argument("case", metavar="CASE", help=case_help)
    judge.add_argument("target", metavar="TARGET", help="the target the outputs were recorded on")
    judge.add_argument(
        "--outputs",
        required=True,
        metavar="DIR",
        help="the bundle's folder, with the device's outputs/ in it",
    )
    judge.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="pytest's own report too (by default the matrix and one line per cell that did not pass)",
    )
    judge.add_argument("--export-cache-dir", default=None, metavar="DIR", help=_CACHE_HELP)
    overhead = _subcommand(
        commands,
        "overhead",
        run["overhead"],
        "the harness's CPU time for one case against the least work its verdicts need",
        "Run the case's conformance cells under pytest (one process, one compute thread, a warm export "
        "cache, benchmarks left out) and, side by side in a second process without the harness, the least "
        "work those verdicts need: every target loaded once and fed every canonical input once, one replay "
        "of the primary input, its other chunk sizes and the generated examples, and eager's reference. "
        "Prints both CPU times per round, the median overhead, and what each process spent outside the "
        "runtimes' runs and loads.",
        "pesto --json=reports/overhead.json",
    )
    overhead.add_argument("case", metavar="CASE", help=case_help)
    overhead.add_argument(
        "--tier",
        default="ci",
        choices=("ci", "nightly"),
        help="the tier whose cells run (default: %(default)s)",
    )
    overhead.add_argument(
        "--examples",
        type=int,
        default=6,
        metavar="N",
        help="generated examples (default: the ci profile's %(default)s)",
    )
    overhead.add_argument(
        "--rounds",
        type=int,
        default=3,
        metavar="N",
        help="side-by-side pairs; the median is reported (default: %(default)s)",
    )
    overhead.add_argument("--json", default=None, metavar="PATH", help="also write the figures as JSON")
    return parser
