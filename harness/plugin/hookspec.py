"""Hooks a project's ``conftest.py`` (or any pytest plugin) may implement, registered by the
entry point in ``pytest_addhooks``. An implementation may take any subset of a hook's arguments.

Add a target of your own without touching your case module::

    # conftest.py
    def pytest_conformance_targets(config):
        from mypkg.my_target import ScriptedTarget

        return [ScriptedTarget()]

Loosen (or tighten) one cell's judge::

    # conftest.py
    import dataclasses

    from harness import tol


    def pytest_conformance_judge(cell, judge):
        if cell.case_name == "pesto" and cell.target_name == "onnx-legacy":
            loose = tol(1e-3, 1e-3)
            return dataclasses.replace(judge, default_tolerance=loose, tolerances=dict.fromkeys(judge.tolerances, loose))
        return None  # the case's own judge

A target of your own that takes command-line options declares them in ``runtime_options``
(``harness.targets.options.RuntimeOption``) and adds them in your ``pytest_addoption`` with
``harness.targets.options.add_runtime_options(parser, MyTarget.runtime_options)``: its
``configure`` then gets their values by ``dest``. The built-in targets' are added by the plugin.

These hooks are pytest's: the CLI (``python -m harness``) reads no conftest, so a target it
should know is registered from a case module (``register_target``) instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from ..core.case import ModelCase
    from ..core.judge import Judge
    from ..run.session import Cell
    from ..targets import Target


def pytest_conformance_targets(config: pytest.Config) -> Sequence[Target] | None:
    """Return targets to register in this run (after the built-in ones, before the case modules
    are imported, so that a case module may name them), or None.

    Called once per process (the controller and every xdist worker) in ``pytest_configure``
    of a conformance run. Every implementation's targets are registered, each like
    ``harness.register_target``: a name already taken by another target is a usage error.
    Their cells are generated, judged, cached and reported like the built-in targets', and
    ``--conformance-targets`` and ``--conformance-artifact`` take their names.
    """


@pytest.hookspec(firstresult=True)
def pytest_conformance_judge(
    config: pytest.Config, cell: Cell, case: ModelCase, target: Target, judge: Judge
) -> Judge | None:
    """Return a replacement for a cell's judge, or None to keep it.

    ``judge`` is the case's own for ``target`` (its tolerances and task metric, or the metric
    alone for an approximate target); ``cell`` says which suite and input set it judges
    (``cell.case_name``, ``cell.target_name``, ``cell.input_name``, ``cell.suite``). Build the
    replacement with ``dataclasses.replace(judge, ...)``: what the outputs are compared with
    (``judge.reference``: eager, a golden snapshot, the first run) is kept whatever it returns.
    The first implementation that returns a judge decides (``firstresult``). Determinism and
    reset are always held to ``Judge.identical``, whatever this hook returns.
    """
