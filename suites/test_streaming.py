"""The streaming suites, for every case with a streaming spec x every target (where each
applies is said in ``harness.plugin.suites``: a case with one chunk size has no stream-chunks
cell).

Each is judged by its check on the evidence its suite declares (``Suite.evidence``): the
target's one run over the primary input (shared with equivalence and golden) and the eager side
computed once per worker; only reset, initial state, other chunkings and altered batch rows run
the target again.
"""

from __future__ import annotations

from harness.checks.streaming import (
    check_batch_isolation,
    check_chunk_sizes,
    check_continuity,
    check_initial_state,
    check_offline,
    check_reset,
)
from harness.plugin.suites import judged_by

test_stream_continuity = judged_by("stream-continuity", check_continuity)
test_stream_offline = judged_by("stream-offline", check_offline)
test_stream_chunks = judged_by("stream-chunks", check_chunk_sizes)
test_stream_reset = judged_by("stream-reset", check_reset)
test_stream_batch = judged_by("stream-batch", check_batch_isolation)
test_stream_initial = judged_by("stream-initial", check_initial_state)
