"""Which shards a controller claims and which it gives up: pure, so every member computes the same
answer from the same view, and the table tests pin it down. docs/sharding.md, "Balance"."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence


def target(shards: int, members: int) -> int:
    """How many shards one member aims at: ceil(shards / members), so the members together always
    cover every shard, and none holds more than one above its fair share."""
    return math.ceil(shards / max(1, members))


def rebalance(
    *, shards: int, members: Sequence[str], me: str, held: Mapping[int, str], mine: Mapping[int, int]
) -> tuple[list[int], list[int]]:
    """(to claim, to release) for member `me`.

    `held` is every claimed shard's holder as the coordinator shows it now; `mine` is the shards `me`
    owns, with their fencing tokens (the claim's revision: a higher one was claimed later). Above the
    target, `me` releases the shards it claimed last; below it, it claims free shards, lowest number
    first. A member the view does not list yet (its membership not written) counts itself."""
    count = len(set(members) | {me})
    aim = target(shards, count)
    if len(mine) > aim:
        latest = sorted(mine, key=lambda s: (mine[s], s), reverse=True)
        return [], sorted(latest[: len(mine) - aim])
    free = [s for s in range(shards) if s not in held and s not in mine]
    return free[: aim - len(mine)], []
