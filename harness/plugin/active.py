"""The active pytest plugin: case discovery, suite generation, expected failures, the matrix.

Registered by the entry point (:mod:`harness.plugin`) only in a run that uses conformance: a
project that installs the package for other reasons never imports torch through it. Suites are
ordinary test functions marked ``@pytest.mark.conformance("SUITE")`` that take the
``conformance`` fixture; this plugin parametrises them over every registered case x target x
canonical input set.
"""

from __future__ import annotations

import functools
import hashlib
import shutil
import traceback
import uuid
from pathlib import Path
from typing import Any

import pytest

from ..checks.golden import TensorSnapshotExtension
from ..core import registry
from ..core.case import STREAM_SUITES
from ..core.errors import ConformanceFailure, describe_exception
from ..reports.baseline import Baseline
from ..reports.matrix import ConformanceReport
from ..run.cache import ExportCache
from ..run.session import Cell, ConformanceSession
from ..targets import EAGER, ExportError, targets
from ..targets.options import runtime_option_values
from .cell_context import CellContext, record_of
from .cell_record import RECORD_PROPERTY, Outcome
from .collector import MatrixCollector
from .hooks import register_hook_targets
from .profiles import EXAMPLE_DATABASE
from .suites import MARKER_KWARGS, SUITE_REGISTRY, Suite, pair_runs
from .user_files import check_writes_allowed, take_recordings, take_user_files

SESSION_KEY = pytest.StashKey[ConformanceSession]()
SESSION_ID_KEY = pytest.StashKey[str]()
GENERATED_KEY = pytest.StashKey[set]()
ORPHANS_KEY = pytest.StashKey[bool]()
ORPHAN_LIST_KEY = pytest.StashKey[list]()
MARKER_PROBLEMS_KEY = pytest.StashKey[list]()
NOTHING_COLLECTED_KEY = pytest.StashKey[bool]()


def pytest_configure(config: pytest.Config) -> None:
    register_hook_targets(config)  # a conftest's targets (pytest_conformance_targets), before the cases
    try:
        registry.load_case_modules(config.getini("conformance_case_modules"))
    except registry.CaseError as exc:
        raise pytest.UsageError(str(exc)) from exc
    known = [t.name for t in targets()]
    problems = [p for c in registry.cases() for p in c.check_declarations(known)]
    selected = _selected_targets(config)
    unknown = sorted(set(selected or ()) - set(known))
    if unknown:
        problems.append(f"--conformance-targets names unknown targets {unknown} (known: {', '.join(known)})")
    if problems:
        raise pytest.UsageError("conformance declarations do not match anything:\n  " + "\n  ".join(problems))

    tier_leaves_out = _tier(config) == "ci" and (
        any(c.ci_targets is not None for c in registry.cases()) or any(t.costly for t in targets())
    )
    sharded = bool(config.getoption("conformance_shard", default=None))
    if (selected is not None or tier_leaves_out or sharded) and hasattr(
        config.option, "disable_unused_snapshots"
    ):
        # A target subset never generates the other targets' golden cells: syrupy would call
        # their snapshots unused (and delete them under --snapshot-update). Snapshots that
        # belong to no cell of any registered case and target are still reported (below).
        config.option.disable_unused_snapshots = True
        config.stash[ORPHANS_KEY] = True
    workerinput = getattr(config, "workerinput", None)
    threads = None
    if workerinput is not None and int(workerinput.get("workercount", 1)) > 1:
        threads = share_cores_between_workers()
    for target in targets():  # each target takes the options it declares (Target.runtime_options)
        target.configure(
            {**runtime_option_values(target.runtime_options, config.getoption), "threads": threads}
        )
    session_id = workerinput["conformance_session_id"] if workerinput else uuid.uuid4().hex
    config.stash[SESSION_ID_KEY] = session_id
    cache_dir = config.getoption("export_cache_dir") or config.getini("conformance_export_cache")
    cache_root = Path(config.rootpath) / cache_dir
    cache = ExportCache(cache_root, fresh=config.getoption("export_fresh"), session_id=session_id)
    problem = cache.problem()
    if problem:
        raise pytest.UsageError(
            f"{problem} (--conformance-export-cache-dir, or the ini's conformance_export_cache, names another)"
        )
    overrides = take_user_files(
        config.getoption("artifact"), cache_root / "external", selected=selected, tier=_tier(config)
    )
    recordings = take_recordings(
        config.getoption("conformance_recorded"), overrides, selected=selected, tier=_tier(config)
    )
    if recordings:  # localising runs the file on this machine: it would not be the device's run
        config.option.conformance_localize = "none"
    check_writes_allowed(config, bool(overrides))
    config.stash[SESSION_KEY] = ConformanceSession(
        cache,
        overrides,
        golden_root=golden_root(config),
        hypothesis_database=Path(config.rootpath) / EXAMPLE_DATABASE,
        recordings=recordings,
    )
    if workerinput is None:  # the controller (or a run without xdist) collects the matrix
        report_dir = config.getoption("conformance_report") or "reports"
        # the reproducers of this run's failing cells, written by the workers: none of an earlier run's
        shutil.rmtree(Path(config.rootpath) / report_dir / "repro", ignore_errors=True)
        baseline_path = config.getoption("conformance_baseline") or config.getini("conformance_baseline")
        baseline: Baseline | None = Baseline(Path(config.rootpath) / baseline_path)
        if overrides and not config.getoption("conformance_baseline_with_artifacts"):
            # the baseline records the harness's own exports: a user's file is judged on its own
            if config.getoption("conformance_baseline_update"):
                raise pytest.UsageError(
                    "--conformance-baseline-update with --conformance-artifact would record a user's file as the "
                    "baseline; add --conformance-baseline-with-artifacts if that is what you want"
                )
            baseline = None
        collector = MatrixCollector(
            ConformanceReport(Path(config.rootpath) / report_dir),
            baseline,
            update=config.getoption("conformance_baseline_update"),
            external={f"{c}/{t}": a.meta.get("user_file", str(a.path)) for (c, t), a in overrides.items()},
        )
        config.pluginmanager.register(collector, "conformance-matrix")


def share_cores_between_workers() -> int:
    """One compute thread per xdist worker: the runtimes' thread pools spin while they wait, and
    several pools per core make every cell many times slower (measured: 20 s instead of 1 s).
    Returns the threads each runtime may use (the targets are told in ``configure``)."""
    import torch

    torch.set_num_threads(1)
    return 1


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist: workers share the controller's session id (one fresh export per run, not per worker)."""
    node.workerinput["conformance_session_id"] = node.config.stash[SESSION_ID_KEY]


def golden_root(config: pytest.Config) -> Path:
    """Where golden snapshots live: ``<rootdir>/golden/snapshots``."""
    return Path(config.rootpath) / "golden" / "snapshots"


def orphan_snapshots(golden_root: Path) -> list[Path]:
    """Golden snapshot files whose cell (case-target-input) no registered case and target has,
    or that lie outside the one folder golden cells use."""
    known_cases = {c.name: c for c in registry.cases()}
    known_targets = {t.name for t in targets()}
    possible = {f"{c.name}-{t}-{i}" for c in known_cases.values() for t in known_targets for i in c.inputs}
    orphans = []
    for path in sorted(golden_root.glob("test_*/*.npz")):
        name = path.name.removesuffix(".npz")
        cell_id = name.partition("[")[2].removesuffix("]")
        misplaced = path.parent.name != TensorSnapshotExtension.FOLDER  # an older layout's folder
        if misplaced or (cell_id and cell_id not in possible):
            orphans.append(path)
    return orphans


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    collector = config.pluginmanager.get_plugin("conformance-matrix")
    if collector is not None and collector.unjudged:
        # last: syrupy ORs exit codes together (4 | 5 == 5), and a file nobody judged is never 0 or 5
        session.exitstatus = pytest.ExitCode.USAGE_ERROR
    if not config.stash.get(ORPHANS_KEY, False) or hasattr(config, "workerinput"):
        return
    root = golden_root(config)
    orphans = orphan_snapshots(root) if root is not None and root.is_dir() else []
    if orphans:
        config.stash[ORPHAN_LIST_KEY] = orphans
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if config.stash.get(NOTHING_COLLECTED_KEY, False):
        modules = ", ".join(config.getini("conformance_case_modules")) or "none"
        terminalreporter.write_line(
            f"export-conformance: cases are configured (conformance_case_modules: {modules}) but no test "
            "was collected: the conformance suites ship with the plugin, run them with "
            "`pytest --pyargs harness.suites`",
            yellow=True,
        )
    orphans = config.stash.get(ORPHAN_LIST_KEY, [])
    if orphans:
        terminalreporter.section("golden snapshots that belong to no cell")
        for path in orphans:
            terminalreporter.write_line(f"  {path}", red=True)
        terminalreporter.write_line(
            "no registered case, target and input set makes these cells: remove the files (a full run "
            "with --snapshot-update deletes them); snapshots of real cells outside "
            f"{TensorSnapshotExtension.FOLDER}/ were stored by an older version: move them there"
        )


def pytest_unconfigure(config: pytest.Config) -> None:
    session = config.stash.get(SESSION_KEY, None)
    if session is not None:
        session.close()


def _tier(config: pytest.Config) -> str:
    return config.getoption("conformance_tier") or config.getini("conformance_tier") or "nightly"


def _selected_targets(config: pytest.Config) -> list[str] | None:
    value = config.getoption("conformance_targets")
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def _suite_of_marker(
    metafunc: pytest.Metafunc, marker: pytest.Mark
) -> tuple[Suite, set[str] | None, set[str]]:
    """The marked function's suite and its target narrowing, validated (a typo is a usage error)."""
    where = metafunc.definition.nodeid
    name = marker.args[0] if marker.args else marker.kwargs.get("suite")
    if name not in SUITE_REGISTRY:
        raise pytest.UsageError(
            f"{where}: unknown conformance suite {name!r} (suites: {', '.join(SUITE_REGISTRY)})"
        )
    unknown_kwargs = sorted(set(marker.kwargs) - MARKER_KWARGS - {"suite"})
    if unknown_kwargs or len(marker.args) > 1:
        raise pytest.UsageError(
            f"{where}: @pytest.mark.conformance({name!r}) takes only {', '.join(sorted(MARKER_KWARGS))}; "
            f"got {unknown_kwargs or list(marker.args[1:])} (where a suite runs is said once, in "
            "harness.plugin.suites)"
        )
    known = {t.name for t in targets()}
    only = marker.kwargs.get("targets")
    skip = marker.kwargs.get("skip_targets", ())
    for label, names in (("targets", only or ()), ("skip_targets", skip)):
        if isinstance(names, str) or not all(isinstance(n, str) for n in names):
            raise pytest.UsageError(f"{where}: {label}= takes a tuple of target names, got {names!r}")
        if set(names) - known:
            raise pytest.UsageError(f"{where}: {label}= names unknown targets {sorted(set(names) - known)}")
    return SUITE_REGISTRY[name], (set(only) if only is not None else None), set(skip)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("conformance")
    if marker is None:
        return
    try:
        suite, only_targets, skip_targets = _suite_of_marker(metafunc, marker)
    except pytest.UsageError as exc:
        # raised here, pytest would wrap it in a collection traceback: said once, after collection
        metafunc.config.stash.setdefault(MARKER_PROBLEMS_KEY, []).append(str(exc))
        metafunc.parametrize(
            "cell", [pytest.param(None, marks=pytest.mark.skip(reason=str(exc)))], ids=["invalid"]
        )
        return
    selected = _selected_targets(metafunc.config)
    quick = _tier(metafunc.config) == "ci"
    cells = []
    for case in registry.cases():
        if suite.reason_not_applied(case) is not None:
            continue  # never generated: a check that does not apply is not a cell
        for target in targets():
            if selected is not None and target.name not in selected:
                continue
            if (only_targets is not None and target.name not in only_targets) or target.name in skip_targets:
                continue
            if not pair_runs(case, target, streaming=suite.streaming, quick=quick):
                continue
            inputs = suite.input_names(case, eager=target.name == EAGER)
            cells += [Cell(case.name, target.name, name, suite.name) for name in inputs]
    metafunc.config.stash.setdefault(GENERATED_KEY, set()).update(cells)
    if not cells:  # say which declaration is missing (pytest alone says "got empty parameter set")
        needs = "a StreamingSpec (streaming=...)" if suite.streaming and not suite.needs else suite.needs
        if suite.streaming and suite.needs:
            needs = f"a StreamingSpec with {suite.needs}"
        needs = needs or "a target this run selects"
        reason = (
            f"{suite.name}: no registered case declares {needs}, so this suite has no cells (does not apply)"
        )
        metafunc.parametrize(
            "cell", [pytest.param(None, marks=pytest.mark.skip(reason=reason))], ids=[suite.name]
        )
        return
    metafunc.parametrize("cell", cells, ids=[c.id for c in cells])


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Apply declared expected failures as strict xfail; reject declarations that match nothing.

    Staleness is judged against every cell generated for the collected suite functions (before
    ``-k`` or node-id selection), so selecting a subset never makes a declaration look stale.
    """
    config.stash[NOTHING_COLLECTED_KEY] = not items
    marker_problems = config.stash.get(MARKER_PROBLEMS_KEY, [])
    if marker_problems:
        raise pytest.UsageError("conformance markers:\n  " + "\n  ".join(marker_problems))
    generated: set[Cell] = config.stash.get(GENERATED_KEY, set())
    suites_generated = {cell.suite for cell in generated}
    external = set(config.stash[SESSION_KEY].overrides)
    for item in items:
        cell = _cell_of(item)
        if cell is None:
            continue
        item.extra_keyword_matches.add(cell.suite)  # -k stream-chunks selects that column
        if (cell.case_name, cell.target_name) in external:
            continue  # a case's expected failures describe the harness's exports, never a user's file
        expected = cell.case.expected_failure(cell.target_name, cell.suite, cell.input_name)
        if expected is not None:
            raises: Any = ExportError if expected.suite == "export" else ConformanceFailure
            if expected.suite == "dynamic-shapes":  # an exporter's refusal of the declared range too
                raises = (ConformanceFailure, ExportError)
            item.add_marker(pytest.mark.xfail(reason=expected.reason, strict=True, raises=raises))
    if _selected_targets(config) is not None:
        return  # a target subset cannot judge declarations about the others
    registered = {t.name: t for t in targets()}
    stale = [
        f"case {c.name!r}: expected failure ({e.target}, {e.suite}, inputs={list(e.inputs) or 'all'}) matches no test"
        for c in registry.cases()
        for e in c.expected
        # an export declaration is judged where every (case, target) pair gets a cell: equivalence
        if (e.suite in suites_generated or (e.suite == "export" and "equivalence" in suites_generated))
        and (
            e.target not in registered  # named at the edge: an unknown name is reported as stale
            or pair_runs(
                c, registered[e.target], streaming=e.suite in STREAM_SUITES, quick=_tier(config) == "ci"
            )
        )
        and not any(
            cell.case_name == c.name and e.matches(cell.target_name, cell.suite, cell.input_name)
            for cell in generated
        )
    ]
    if stale:
        raise pytest.UsageError("stale expected failures:\n  " + "\n  ".join(stale))


def _cell_of(item: pytest.Item) -> Cell | None:
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return None
    cell = callspec.params.get("cell")
    return cell if isinstance(cell, Cell) else None


@pytest.fixture
def conformance(request: pytest.FixtureRequest, cell: Cell) -> CellContext:
    """The cell's context; only for tests marked ``@pytest.mark.conformance``. A cell whose
    target's runtime is not installed is skipped here, before eager or anything else runs for it;
    so is a cell on a device's recorded outputs (``--conformance-recorded``) whose suite declares
    evidence the device did not record (``Recording.unrecorded``): a skip, never a pass."""
    session = request.config.stash[SESSION_KEY]
    context = CellContext(cell, session, request.node)
    recording = session.recordings.get((cell.case_name, cell.target_name))
    if recording is not None:  # a device's outputs: the cells whose evidence it holds are judged
        suite = SUITE_REGISTRY[cell.suite]
        unrecorded = recording.unrecorded(
            suite.evidence, cell.input_name, generated=suite.inputs == "generated"
        )
        if unrecorded:
            context.not_applicable(unrecorded)
    else:
        context.skip_if_runtime_missing()
    return context


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Attach the cell's record to each phase's report (outermost wrapper: after pytest's own
    xfail handling has made its verdict on the report)."""
    report = yield
    cell = _cell_of(item)
    if cell is not None:
        session = item.config.stash.get(SESSION_KEY, None)
        override = session.overrides.get((cell.case_name, cell.target_name)) if session else None
        outcome = None
        if report.when == "call" and not report.skipped:
            if call.excinfo is not None:
                outcome = Outcome(**outcome_of(call.excinfo.value))
            elif report.failed:  # nothing raised, yet failed: a strict expected failure passed
                outcome = Outcome("xpass")
        record = record_of(
            item,
            cell,
            external=override is not None,
            artifact=artifact_identity(Path(override.meta.get("user_file", override.path)))
            if override is not None
            else None,
            outcome=outcome,
        )
        report.user_properties.append((RECORD_PROPERTY, record.as_dict()))
    return report


@functools.cache
def artifact_identity(path: Path) -> dict[str, str]:
    """A user's file as the reports name it: its path and the start of its sha256."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return {"path": str(path), "sha256": "unreadable"}
    return {"path": str(path), "sha256": digest.hexdigest()[:16]}


def outcome_of(exc: BaseException) -> dict[str, str]:
    """Who is at fault for an exception a cell raised: the export (``fail``), the exporter
    (``export-error``) or the harness, the case or the user's input (``error``)."""
    if isinstance(exc, ConformanceFailure):
        return {"status": "fail"}
    if isinstance(exc, ExportError):
        return {"status": "export-error"}
    kind, line = describe_exception(exc)
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    return {"status": "error", "reason": f"harness error, not a verdict on the export: {kind}: {line}{where}"}
