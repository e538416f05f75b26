"""Stateful streaming continuity, for every case with a streaming spec x every target."""

from __future__ import annotations

import pytest

from harness.streaming import (
    check_batch_isolation,
    check_chunk_sizes,
    check_continuity,
    check_initial_state,
    check_offline,
    check_reset,
)


@pytest.mark.conformance("stream-continuity", inputs="primary", requires="streaming")
def test_stream_continuity(conformance):
    """Fed chunk by chunk, the export matches eager fed the same chunks; names the first bad chunk."""
    runner = conformance.runner()
    conformance.verdict(
        check_continuity(
            conformance.case,
            conformance.target.name,
            runner,
            conformance.eager_module(),
            conformance.calls(),
            conformance.state_names(),
        )
    )


@pytest.mark.conformance("stream-offline", inputs="primary", requires="streaming")
def test_stream_offline(conformance):
    """Streamed output matches whole-signal output after the warm-up frames."""
    spec = conformance.case.streaming
    if spec.offline is None and not spec.other_chunks:
        conformance.not_applicable(
            f"{conformance.case.name} declares one chunk size and no offline model: no whole-signal reference "
            "(does not apply)"
        )
    runner = conformance.runner()
    conformance.verdict(
        check_offline(
            conformance.case, conformance.target.name, runner, conformance.case.build, conformance.calls()
        )
    )


@pytest.mark.conformance("stream-chunks", inputs="primary", requires="streaming")
def test_stream_chunk_sizes(conformance):
    """Every chunk size the case admits gives the same frames."""
    if not conformance.case.streaming.other_chunks:
        conformance.not_applicable(f"{conformance.case.name} admits one chunk size only")
    runner = conformance.runner()
    conformance.verdict(
        check_chunk_sizes(conformance.case, conformance.target.name, runner, conformance.calls())
    )


@pytest.mark.conformance("stream-reset", inputs="primary", requires="streaming")
def test_stream_reset(conformance):
    """reset() returns to the initial state: a replay is identical to the first run."""
    with conformance.fresh_runner() as runner:
        conformance.verdict(
            check_reset(conformance.case, conformance.target.name, runner, conformance.calls())
        )


@pytest.mark.conformance("stream-batch", inputs="primary", requires="streaming")
def test_stream_batch_isolation(conformance):
    """Batched streams are independent: one row's state never leaks into another's."""
    if conformance.case.streaming.batch_rows < 2:
        conformance.not_applicable(f"{conformance.case.name} streams one row per call")
    runner = conformance.runner()
    conformance.verdict(
        check_batch_isolation(conformance.case, conformance.target.name, runner, conformance.calls())
    )


@pytest.mark.conformance("stream-initial", inputs="primary", requires="streaming")
def test_stream_initial_state(conformance):
    """The artifact starts from the initial state: exporting consumed none of it."""
    names = conformance.state_names()
    with conformance.fresh_runner() as runner:
        conformance.verdict(
            check_initial_state(
                conformance.case,
                conformance.target.name,
                runner,
                conformance.eager_module(),
                conformance.calls(),
                names,
            )
        )
