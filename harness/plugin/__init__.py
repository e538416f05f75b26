"""The pytest entry point ``export_conformance``: options, and nothing heavy until a run uses it.

Installing the package registers this module with every pytest run in the environment, so it
imports only pytest and hypothesis (already loaded by hypothesis's own plugin), the hookspecs
(:mod:`harness.plugin.hookspec`) and the runtimes' own option declarations (light modules of
:mod:`harness.targets`, which imports no target until one is used). The active plugin
(:mod:`harness.plugin.active`: torch, the runtimes, the case modules) is registered only when
the run configures case modules or uses a conformance option. A run that collects the
conformance suites without any case is told so, instead of a silent "16 skipped".
"""

from __future__ import annotations

import importlib
from typing import Any

import pytest

from ..targets import builtin_runtime_options
from . import hookspec
from .profiles import register_profiles
from .sharding import parse_shard, split

register_profiles()  # our own names only; before hypothesis's pytest_configure reads --hypothesis-profile

ACTIVE_KEY = pytest.StashKey[bool]()

#: Options whose use alone makes a run a conformance run.
_ACTIVATING_OPTIONS = (
    "artifact",
    "conformance_recorded",
    "conformance_targets",
    "conformance_report",
    "conformance_baseline_update",
    "conformance_shard",
)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    """The hooks a project's conftest may implement (:mod:`harness.plugin.hookspec`)."""
    pluginmanager.add_hookspecs(hookspec)


def pytest_addoption(parser: pytest.Parser) -> None:
    """Every option is spelled ``--conformance-...``; the shorter names of earlier releases
    (``--artifact``, ``--export-cache-dir``, ``--ort-threads``, ...) stay as aliases."""
    group = parser.getgroup("conformance", "export conformance")
    group.addoption(
        "--conformance-export-cache-dir",
        "--export-cache-dir",
        dest="export_cache_dir",
        default=None,
        help="folder of cached exports (default: .export-cache under the rootdir, or the ini value)",
    )
    group.addoption(
        "--conformance-artifact",
        "--artifact",
        dest="artifact",
        action="append",
        default=[],
        metavar="CASE:TARGET=PATH",
        help="run the suites on an export made elsewhere instead of exporting (repeatable), "
        "e.g. pesto:onnx-stateful=model.onnx; its signature is checked against the case first",
    )
    group.addoption(
        "--conformance-recorded",
        dest="conformance_recorded",
        action="append",
        default=[],
        metavar="CASE:TARGET=DIR",
        help="judge outputs a device recorded on a bundle (export-conformance bundle) instead of running the "
        "target (repeatable): DIR holds the bundle's manifest.json and the device's outputs/; judged as a "
        "user's file, e.g. pesto:executorch-xnnpack=bundles/pesto",
    )
    group.addoption(
        "--conformance-export-fresh",
        "--export-fresh",
        dest="export_fresh",
        action="store_true",
        help="re-export every artifact once in this run",
    )
    group.addoption(
        "--conformance-report",
        default=None,
        metavar="DIR",
        help="write conformance.md and conformance.json here (default: reports under the rootdir)",
    )
    group.addoption(
        "--conformance-targets",
        default=None,
        metavar="NAMES",
        help="comma-separated target names to run (default: all registered targets)",
    )
    group.addoption(
        "--conformance-baseline",
        default=None,
        metavar="PATH",
        help="the committed conformance baseline (default: golden/conformance-baseline.json, or the ini value)",
    )
    group.addoption(
        "--conformance-baseline-update",
        action="store_true",
        help="rewrite the baseline with this run's statuses instead of gating on it",
    )
    group.addoption(
        "--conformance-baseline-with-artifacts",
        action="store_true",
        help="also gate (or rewrite) the baseline in a run with --artifact (by default a user's file "
        "is judged on its own: the baseline is neither consulted nor rewritten)",
    )
    group.addoption(
        "--conformance-snapshots-with-artifacts",
        action="store_true",
        help="let --snapshot-update record golden snapshots in a run with --artifact (by default it is refused: "
        "a user's file's outputs would replace the repository's snapshots)",
    )
    group.addoption(
        "--conformance-tier",
        choices=("ci", "nightly"),
        default=None,
        help="ci: cases declaring ci_targets run only on those targets (quick); nightly: every "
        "target (default, or the ini value conformance_tier)",
    )
    group.addoption(
        "--conformance-localize",
        choices=("failures", "all", "none"),
        default="failures",
        help="name the first diverging module of failing cells (default), also of expected "
        "failures (all), or never (none)",
    )
    group.addoption(
        "--conformance-shard",
        default=None,
        metavar="K/N",
        help="run the K-th of N shards: every cell of a case in one shard (cases dealt round-robin "
        "by name), self-tests by file; for splitting a nightly run across jobs",
    )
    for option in builtin_runtime_options():  # each runtime's own knobs, declared by its targets
        option.add_to(group)
    parser.addini("conformance_baseline", default="golden/conformance-baseline.json", help="baseline file")
    parser.addini("conformance_case_modules", type="linelist", default=[], help="modules that register cases")
    parser.addini("conformance_tier", default="nightly", help="ci or nightly (see --conformance-tier)")
    parser.addini("conformance_export_cache", default=".export-cache", help="export cache folder")


def is_conformance_run(config: pytest.Config) -> bool:
    """Case modules configured, or a conformance option given."""
    if config.getini("conformance_case_modules"):
        return True
    return any(config.getoption(name, default=None) for name in _ACTIVATING_OPTIONS)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "conformance(suite, targets=None, skip_targets=()): a conformance suite (harness.plugin.suites "
        "says where it applies), generated per case x target x input; -k SUITE selects its cells",
    )
    active = is_conformance_run(config)
    config.stash[ACTIVE_KEY] = active
    if active:
        # pytest_configure is historic: the active plugin's own configure runs on registration
        config.pluginmanager.register(
            importlib.import_module("harness.plugin.active"), "export_conformance_active"
        )


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> Any:
    if metafunc.definition.get_closest_marker("conformance") is None:
        return None
    if not metafunc.config.stash.get(ACTIVE_KEY, False):
        raise pytest.UsageError(
            f"{metafunc.definition.nodeid}: a conformance suite was collected but no cases are configured: "
            "name the modules that register your cases in the ini option conformance_case_modules "
            "(pytest.ini, [tool.pytest.ini_options] in pyproject.toml, tox.ini or setup.cfg)"
        )
    return None


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    text = config.getoption("conformance_shard", default=None)
    if not text:
        return
    from ..core.registry import cases  # imports torch: the light entry point loads it only here

    kept, dropped = split(items, [c.name for c in cases()], parse_shard(text))
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
