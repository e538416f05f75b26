"""``--conformance-shard=K/N``: split one run across N jobs by case (and self-tests by file).

Every cell of a case runs in the same shard, so a case's exports are made once, by one job;
cases are dealt round-robin in name order, so the split grows with the number of cases and
every job computes the same assignment from the registered cases alone. Items that are not
conformance cells (self-tests) are dealt by a stable hash of their file. Deselected items are
reported to pytest as deselected, as ``-k`` does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pytest

__all__ = ["Shard", "parse_shard", "split"]


class Shard(tuple):
    """(index, count), index 0-based."""

    @property
    def index(self) -> int:
        return self[0]

    @property
    def count(self) -> int:
        return self[1]


def parse_shard(text: str) -> Shard:
    """``"K/N"`` with 1 <= K <= N."""
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise pytest.UsageError(f"--conformance-shard={text}: expected K/N, e.g. 2/3") from None
    if not 1 <= k <= n:
        raise pytest.UsageError(f"--conformance-shard={text}: K must be between 1 and N")
    return Shard((k - 1, n))


def _case_of(item: pytest.Item) -> str | None:
    cell = getattr(getattr(item, "callspec", None), "params", {}).get("cell")
    return getattr(cell, "case_name", None)


def _stable(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")


def split(
    items: Sequence[pytest.Item], case_names: Sequence[str], shard: Shard
) -> tuple[list[pytest.Item], list[pytest.Item]]:
    """(kept, deselected) for this shard."""
    owner = {name: i % shard.count for i, name in enumerate(sorted(case_names))}
    kept, dropped = [], []
    for item in items:
        case = _case_of(item)
        if case is not None:
            mine = owner.get(case, _stable(case) % shard.count) == shard.index
        else:
            mine = _stable(str(item.path)) % shard.count == shard.index
        (kept if mine else dropped).append(item)
    return kept, dropped
