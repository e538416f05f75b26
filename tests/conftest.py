"""Shared fixtures for the harness self-tests."""

from __future__ import annotations

import os
from pathlib import Path

import onnx  # noqa: F401  (see below)
import pytest
import torch._dynamo  # noqa: F401  (see below)
import torch.export._trace  # noqa: F401  (see below)
import torch.onnx._internal.exporter._core  # noqa: F401  (see below)

from harness.run.cache import ExportCache

# pytester restores sys.modules after each test that uses it: a module first imported inside
# such a test is dropped, and onnx's C extension aborts the process when imported a second time.
# Importing it here puts it in every snapshot. torch._dynamo likewise: imported again, its
# torch._inductor.test_operators registers the `_inductor_test` op library twice and raises;
# torch.export._trace (through torch._inductor.codecache) its mega-cache artifact type ("Artifact
# of type=autotune already registered"); and the ONNX exporter imported again no longer knows its
# own SymbolicTensor ("Unexpected onnxscript value type"). A test that exports in-process beside
# pytester drops them all unless they are imported here (seen on a subset run under xdist).

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def export_cache(tmp_path_factory: pytest.TempPathFactory) -> ExportCache:
    """A throwaway export cache for self-tests (never the user's)."""
    return ExportCache(tmp_path_factory.mktemp("export-cache"))


@pytest.fixture
def inner_pytest(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch):
    """Run pytest in a subprocess in a scratch folder, with the repo's case modules importable.

    The inner run has its own case registry, so planted cases do not leak into this session.
    """

    def run(
        *args: str,
        conftest: str = "",
        cases: str = "",
        modules: tuple[str, ...] = (),
        suites: tuple[str, ...] = ("test_outputs",),
        user_suites: str = "",
    ) -> pytest.RunResult:
        ini_modules = list(modules) + (["planted_cases"] if cases else [])
        pytester.makeini(
            "[pytest]\n"
            "conformance_case_modules =\n" + "".join(f"    {m}\n" for m in ini_modules) + "filterwarnings =\n"
            "    ignore::DeprecationWarning\n    ignore::FutureWarning\n    ignore::UserWarning\n"
        )
        if cases:
            pytester.makepyfile(planted_cases=cases)
        if conftest:
            pytester.makeconftest(conftest)
        if user_suites:  # a project's own suite functions, beside the package's
            pytester.makepyfile(test_user_suites=user_suites)
        pytester.makepyfile(
            test_suites="".join(f"from suites.{name} import *  # noqa: F403\n" for name in suites)
        )
        env_path = os.pathsep.join([str(pytester.path), str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])
        monkeypatch.setenv("PYTHONPATH", env_path)
        # the inner run is a fresh pytest: not an xdist worker of this run (pytest-benchmark and
        # the plugin read these), and a known terminal width (the matrix wraps to it)
        for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("COLUMNS", "120")
        return pytester.runpytest_subprocess(
            "-p", "no:cacheprovider", "--export-cache-dir", str(pytester.path / "cache"), *args, timeout=600
        )

    return run
