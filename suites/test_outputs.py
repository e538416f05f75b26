"""Equivalence: every target matches eager on every canonical input set, is deterministic, and
gives each sample of a batch what it gives the sample alone."""

from __future__ import annotations

from harness.checks.equivalence import check_batch_consistency, check_determinism, check_equivalence
from harness.plugin.suites import judged_by

test_equivalence = judged_by("equivalence", check_equivalence)
test_determinism = judged_by("determinism", check_determinism)
test_batch_consistency = judged_by("batch-consistency", check_batch_consistency)
