"""The conformance suites as data: what each runs on, and when it does not apply.

A suite function is an ordinary test marked ``@pytest.mark.conformance("NAME")``; everything
about where its cells exist lives here, once: which canonical inputs it takes, whether it needs a
streaming case, and what a case must declare for it to apply. A cell that does not apply is
never generated (it is not a skip in the matrix). The marker may only narrow the targets of one
function (``targets=`` / ``skip_targets=``: golden's eager and target halves).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from ..core.case import SUITES, ModelCase
from ..core.judge import Judge
from ..run.eager import EagerReference
from ..run.evidence import Evidence, LoadedRuns, Need, gather
from ..targets import Runner, Target

__all__ = [
    "MARKER_KWARGS",
    "SUITE_REGISTRY",
    "Suite",
    "evidence_for",
    "in_quick_tier",
    "judged_by",
    "pair_runs",
    "suite",
]

#: Keyword arguments ``@pytest.mark.conformance`` takes besides the suite's name.
MARKER_KWARGS = frozenset({"targets", "skip_targets"})


def _always(case: ModelCase) -> str | None:
    return None


@dataclass(frozen=True)
class Suite:
    """One column of the matrix.

    Args:
        name: the column, the name expected failures use, and a ``-k`` keyword of its cells.
        inputs: ``all`` canonical inputs, the ``primary`` one, or ``generated`` (hypothesis).
        eager_inputs: the inputs of the eager target where they differ (golden: every input).
        streaming: runs on streaming cases only (approximate targets only where they stream).
        needs: what a case lacks when ``applies`` says no, for the message of an empty suite.
        applies: None where the suite applies to a case, else why it does not.
        localized: a failure is localised to the first diverging module (compares with eager).
        evidence: the runs its checks are judged on (:class:`~harness.run.evidence.Need`): the
            cell's context gathers exactly these, and the overhead measurement counts them as
            the least work.
    """

    name: str
    inputs: str = "all"
    eager_inputs: str | None = None
    streaming: bool = False
    needs: str = ""
    applies: Callable[[ModelCase], str | None] = _always
    localized: bool = False
    evidence: frozenset[Need] = frozenset()

    def input_names(self, case: ModelCase, *, eager: bool) -> list[str]:
        kind = self.eager_inputs if eager and self.eager_inputs else self.inputs
        return {"all": list(case.inputs), "primary": [case.main_input], "generated": ["generated"]}[kind]

    def reason_not_applied(self, case: ModelCase) -> str | None:
        if self.streaming and case.streaming is None:
            return "not a streaming case"
        return self.applies(case)


def _streaming(check: Callable[[ModelCase], str | None]) -> Callable[[ModelCase], str | None]:
    return lambda case: check(case) if case.streaming is not None else "not a streaming case"


SUITE_REGISTRY: dict[str, Suite] = {
    s.name: s
    for s in (
        Suite("equivalence", localized=True, evidence=frozenset({Need.CANONICAL, Need.WEIGHTS})),
        Suite("determinism", inputs="primary", evidence=frozenset({Need.FRESH, Need.REPLAY})),
        Suite(
            "batch-consistency",
            inputs="primary",
            needs="a batch axis (batch_consistency=...)",
            applies=lambda c: None if c.batch_consistency is not None else "declares no batch_consistency",
            evidence=frozenset({Need.BATCHED}),
        ),
        Suite(
            "stream-continuity",
            inputs="primary",
            streaming=True,
            localized=True,
            evidence=frozenset({Need.CANONICAL}),
        ),
        Suite(
            "stream-offline",
            inputs="primary",
            streaming=True,
            localized=True,
            needs="an offline model or other chunk sizes",
            applies=_streaming(
                lambda c: (
                    None
                    if c.streaming.offline is not None or c.streaming.other_chunks
                    else "one chunk size and no offline model: no whole-signal reference"
                )
            ),
            evidence=frozenset({Need.CANONICAL, Need.OFFLINE}),
        ),
        Suite(
            "stream-chunks",
            inputs="primary",
            streaming=True,
            needs="other chunk sizes (StreamingSpec(other_chunks=...))",
            applies=_streaming(lambda c: None if c.streaming.other_chunks else "admits one chunk size only"),
            evidence=frozenset({Need.CANONICAL, Need.RECHUNKED}),
        ),
        Suite(
            "stream-reset", inputs="primary", streaming=True, evidence=frozenset({Need.FRESH, Need.REPLAY})
        ),
        Suite(
            "stream-batch",
            inputs="primary",
            streaming=True,
            needs="batched streams (StreamingSpec(batch_rows=2 or more))",
            applies=_streaming(lambda c: None if c.streaming.batch_rows >= 2 else "streams one row per call"),
            evidence=frozenset({Need.CANONICAL, Need.ALTERED_ROWS}),
        ),
        Suite(
            "stream-initial",
            inputs="primary",
            streaming=True,
            localized=True,
            evidence=frozenset({Need.FRESH, Need.START_STATE}),
        ),
        Suite(
            "hypothesis",
            inputs="generated",
            localized=True,
            needs="an input strategy (strategy=...)",
            applies=lambda c: None if c.strategy is not None else "declares no input strategy",
            evidence=frozenset({Need.CANONICAL, Need.GENERATED}),
        ),
        Suite(
            "dynamic-shapes",
            inputs="primary",
            needs="dynamic dimensions (dynamic_dims=...)",
            applies=lambda c: None if c.dynamic_dims else "declares no dynamic dimensions",
            evidence=frozenset({Need.RESIZED}),
        ),
        Suite(
            "branch-coverage",
            inputs="generated",
            needs="an input strategy (strategy=...)",
            applies=lambda c: None if c.strategy is not None else "declares no input strategy",
        ),
        Suite(
            "golden",
            inputs="primary",
            eager_inputs="all",
            localized=True,
            evidence=frozenset({Need.CANONICAL}),
        ),
        Suite("benchmark", inputs="primary"),
    )
}

assert set(SUITE_REGISTRY) == set(SUITES) - {"export"}, "every suite name has one Suite"


def evidence_for(
    suite_name: str,
    target: Target,
    runner: Runner,
    eager: EagerReference,
    *,
    judge: Judge | None = None,
    fixed_dims: Mapping[str, Mapping[str, Any]] | None = None,
) -> Evidence:
    """A suite's evidence outside a pytest run (a script, a self-test): what ``suite_name``
    declares, gathered by the function the cells use, from ``runner`` (freshly loaded: its
    first run is the canonical one) and the eager side of ``eager``'s calls. ``judge``: the
    cell's judge (default: ``Judge.for_cell``)."""
    case = eager.case
    return gather(
        case,
        target,
        case.main_input,
        eager,
        LoadedRuns(runner, eager.calls, case),
        SUITE_REGISTRY[suite_name].evidence,
        judge=judge if judge is not None else Judge.for_cell(case, target),
        fixed_dims=fixed_dims,
    )


def judged_by(suite_name: str, check: Callable[[Evidence], Any]) -> Callable[..., None]:
    """A suite function whose cells are judged by ``check`` on the evidence ``suite_name``
    declares (``test_stream_reset = judged_by("stream-reset", check_reset)``): one line per suite
    where the check is all a cell does."""

    @pytest.mark.conformance(suite_name)
    def test(conformance: Any) -> None:
        conformance.judge_by(check)

    test.__doc__ = check.__doc__
    test.__name__ = test.__qualname__ = "test_" + suite_name.replace("-", "_")
    return test


def suite(name: str) -> Suite:
    """The registered suite of that name (KeyError: not a suite)."""
    return SUITE_REGISTRY[name]


def pair_runs(case: ModelCase, target: Target, *, streaming: bool, quick: bool) -> bool:
    """Whether a suite's cells exist for this case and target: the quick tier leaves some pairs to
    the nightly; an approximate target needs the case's task metric, and runs the streaming suites
    only where it says so (``Target.streams_when_approximate``)."""
    if quick and not in_quick_tier(case, target):
        return False
    if target.approximate:
        return case.approximate_metric is not None and (not streaming or target.streams_when_approximate)
    return True


def in_quick_tier(case: ModelCase, target: Target) -> bool:
    """Whether the quick ``ci`` tier runs this pair: the case may limit its targets
    (``ModelCase.ci_targets``), and a costly target (``Target.costly``) runs only on the cases
    that name it (``ModelCase.ci_costly_targets``, or ``ci_targets``)."""
    name = target.name
    if case.ci_targets is not None and name not in case.ci_targets:
        return False
    return not target.costly or name in case.ci_costly_targets or name in (case.ci_targets or ())
