"""The streaming suites, for every case with a streaming spec x every target (where each
applies is said in ``harness.plugin.suites``: a case with one chunk size has no stream-chunks
cell).

Each check judges the target's one run over the primary input (``conformance.target_run()``,
shared with equivalence and golden) against the eager side computed once per worker
(``conformance.eager()``); only reset, initial state, other chunkings and altered batch rows
run the target again.
"""

from __future__ import annotations

import pytest

from harness.checks.streaming import (
    check_batch_isolation,
    check_chunk_sizes,
    check_continuity,
    check_initial_state,
    check_offline,
    check_reset,
)


@pytest.mark.conformance("stream-continuity")
def test_stream_continuity(conformance):
    """Fed chunk by chunk, the export matches eager fed the same chunks; names the first bad chunk."""
    conformance.state_names()  # recorded for the report's state audit
    conformance.verdict(
        check_continuity(
            conformance.target, conformance.runner(), conformance.eager(), actual=conformance.target_run()
        )
    )


@pytest.mark.conformance("stream-offline")
def test_stream_offline(conformance):
    """Streamed output matches whole-signal output after the warm-up frames."""
    conformance.verdict(
        check_offline(
            conformance.target, conformance.runner(), conformance.eager(), actual=conformance.target_run()
        )
    )


@pytest.mark.conformance("stream-chunks")
def test_stream_chunks(conformance):
    """Every chunk size the case admits gives the same frames."""
    conformance.verdict(
        check_chunk_sizes(
            conformance.target, conformance.runner(), conformance.eager(), actual=conformance.target_run()
        )
    )


@pytest.mark.conformance("stream-reset")
def test_stream_reset(conformance):
    """reset() returns to the initial state: a replay is identical to the first run."""
    fresh = conformance.fresh_run()  # the run every check on this input shares, and its replay
    replay, _ = fresh.replay()
    conformance.verdict(
        check_reset(conformance.target, None, conformance.eager(), first=fresh.first, replay=replay)
    )


@pytest.mark.conformance("stream-batch")
def test_stream_batch(conformance):
    """Batched streams are independent: one row's state never leaks into another's."""
    conformance.verdict(
        check_batch_isolation(
            conformance.target, conformance.runner(), conformance.eager(), actual=conformance.target_run()
        )
    )


@pytest.mark.conformance("stream-initial")
def test_stream_initial(conformance):
    """The artifact starts from the initial state: exporting consumed none of it."""
    conformance.state_names()  # recorded for the report's state audit
    fresh = conformance.fresh_run()
    start = fresh.replay()[1] if fresh.first.states else None  # the state reset() returns to, where readable
    conformance.verdict(
        check_initial_state(
            conformance.target, None, conformance.eager(), first=fresh.first, start_state=start
        )
    )
