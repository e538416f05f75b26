"""Hypothesis profiles for the input-space suites: ``conformance-dev``, ``conformance-ci``
(bounded), ``conformance-nightly``.

Registered under the plugin's own names, so no other test's settings change. Chosen with
hypothesis's own ``--hypothesis-profile``; when the active profile is not one of these (another
project's default), the conformance suites run under ``conformance-ci``. ``-dev`` and
``-nightly`` generate at random, shrink failures and save them in ``golden/hypothesis`` (commit
it): every later run replays them first. ``-ci`` is deterministic: it replays that database,
then generates a fixed (derandomized) set of inputs, so CI is never red by chance, and a
failure the nightly run found once gates every later CI run.

``run_property`` runs ``@given`` inside a test, where hypothesis's pytest plugin does not look for
statistics; given the pytest item, it hands them over (``--hypothesis-show-statistics``), one
block per pass.
"""

from __future__ import annotations

import contextlib
import hashlib
import unittest
from collections.abc import Callable, Iterator
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.database import DirectoryBasedExampleDatabase

__all__ = [
    "EXAMPLE_DATABASE",
    "PROFILES",
    "generation_seed",
    "register_profiles",
    "run_property",
    "search_settings",
    "statistics_for",
]

#: The plugin's profile names (hypothesis's own and other projects' profiles are never touched).
PROFILES = ("conformance-dev", "conformance-ci", "conformance-nightly")

EXAMPLE_DATABASE = "golden/hypothesis"
_COMMON = dict(
    deadline=None,  # exports run at the speed of their runtime (portable kernels are slow)
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
    print_blob=True,
)


def register_profiles() -> None:
    database = DirectoryBasedExampleDatabase(EXAMPLE_DATABASE)
    settings.register_profile("conformance-dev", max_examples=20, database=database, **_COMMON)
    # ci: derandomized generation (hypothesis then uses no database) and no shrinking;
    # replay_then_generate() replays the database in a separate pass first
    ci_phases = (Phase.explicit, Phase.generate, Phase.target)
    settings.register_profile("conformance-ci", max_examples=6, derandomize=True, phases=ci_phases, **_COMMON)
    settings.register_profile("conformance-nightly", max_examples=200, database=database, **_COMMON)


def run_property(
    strategy: Any,
    body: Callable[[Any], None],
    *,
    database_key: str,
    generation_key: str | None = None,
    database_path: str = EXAMPLE_DATABASE,
    item: Any = None,
) -> None:
    """Run ``body`` on inputs drawn from ``strategy`` under the active profile.

    Under a derandomized profile (``ci``), first replay every example saved in the database for
    ``database_key`` (failures found by earlier dev or nightly runs), then generate the fixed
    set. Otherwise one run does both, saving new failures.

    The fixed set is drawn from a seed derived from ``generation_key`` (default: the database
    key) and nothing else. Hypothesis's own derandomization hashes the test function's source,
    so editing the suite's code would silently change which inputs CI judges (and turn declared
    expected failures into passes); keyed by case and input, every target of a case is also
    judged on the same generated inputs.

    ``item`` (the pytest item, ``request.node``): where hypothesis's statistics of each pass go
    for ``--hypothesis-show-statistics``.
    """
    active = settings.get_current_profile_name()
    current = settings() if active.startswith("conformance-") else settings.get_profile("conformance-ci")
    # the cell's database (under the rootdir, wherever pytest was started) replaces the profile's;
    # a derandomized profile uses none while generating (its replay pass reads it, below)
    runs = [
        current
        if current.derandomize
        else settings(current, database=DirectoryBasedExampleDatabase(database_path))
    ]
    if current.derandomize:
        replay = settings(
            current,
            derandomize=False,
            database=DirectoryBasedExampleDatabase(database_path),
            phases=(Phase.reuse,),
        )
        runs = [replay, current]
    for index, run_settings in enumerate(runs):
        test = settings(run_settings)(given(strategy)(body))
        # one database key per cell (hypothesis's pytest plugin does the same for parametrized tests)
        test.hypothesis.inner_test._hypothesis_internal_add_digest = database_key.encode()
        if run_settings.derandomize:
            test._hypothesis_internal_use_seed = generation_seed(generation_key or database_key)
        label = ("replay of " + database_path) if len(runs) > 1 and index == 0 else "generated"
        try:
            with statistics_for(item, label):
                test()
        except unittest.SkipTest:
            if index == len(runs) - 1:
                raise  # the replay pass has nothing to replay when the database has no failure


def search_settings(**overrides: Any) -> settings:
    """The settings of a search the suites run themselves (branch coverage): the active profile
    where it is one of ours, else ``conformance-ci``, without a deadline (a model's call takes what
    it takes: a deadline only makes the search fail or flake) and with ``overrides``."""
    active = settings.get_current_profile_name()
    parent = settings() if active.startswith("conformance-") else settings.get_profile("conformance-ci")
    return settings(parent, deadline=None, **overrides)


@contextlib.contextmanager
def statistics_for(item: Any, label: str = "") -> Iterator[None]:
    """Give the statistics of the ``@given`` tests run in the block to ``item`` as hypothesis's
    pytest plugin does for a test decorated with ``@given`` (``item.hypothesis_statistics``,
    printed by ``--hypothesis-show-statistics``); several runs are printed one after another,
    each under the item's id and ``label``, a run that tried no example not at all. Without an
    item, nothing is collected."""
    if item is None:
        yield
        return
    from hypothesis.statistics import collector, describe_statistics

    def note(stats: Any) -> None:
        if not any(v.get("test-cases") for v in stats.values() if isinstance(v, dict)):
            return  # e.g. a replay pass with nothing saved to replay
        stats["nodeid"] = f"{item.nodeid} ({label})" if label else item.nodeid
        text = describe_statistics(stats)
        before = getattr(item, "hypothesis_statistics", None)
        item.hypothesis_statistics = f"{before}\n\n{text}" if before else text

    with collector.with_value(note):
        yield


def generation_seed(key: str) -> int:
    """The seed of the derandomized (``ci``) generation for ``key``: stable across processes,
    machines and edits to the suite's code."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")
