"""The pure parts of sharding: the stable hash, the balance, and the Coordinator's logic over an
in-memory store with etcd's semantics (the real backends have their own tests on real etcd and the
Kubernetes stand-in)."""

from __future__ import annotations

import collections
from collections.abc import Mapping

import pytest

from controller import coordination, errors
from controller.coordination import balance
from tests.helpers.memory_store import Cluster, MemoryStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_shard_of_is_stable_and_spreads() -> None:
    # pinned: a rollout's shard must not change between versions, hosts or processes
    assert coordination.shard_of("home", "support-bot", 64) == coordination.shard_of("home", "support-bot", 64)
    assert [coordination.shard_of("home", f"r{i}", 64) for i in range(3)] == [
        coordination.shard_of("home", f"r{i}", 64) for i in range(3)
    ]
    assert coordination.shard_of("team-a", "support-bot", 64) != coordination.shard_of("team-b", "support-bot", 64) or (
        coordination.shard_of("team-a", "x", 64) != coordination.shard_of("team-b", "x", 64)
    )
    counts = collections.Counter(coordination.shard_of("repo", f"rollout-{i}", 64) for i in range(6400))
    assert len(counts) == 64 and max(counts.values()) < 2 * 100  # about 100 each


def test_shard_of_known_value() -> None:
    import hashlib

    digest = hashlib.sha256(b"home\0support-bot").hexdigest()
    assert coordination.shard_of("home", "support-bot", 64) == int(digest[:8], 16) % 64


@pytest.mark.parametrize(
    ("shards", "members", "aim"),
    [(64, 1, 64), (64, 2, 32), (64, 3, 22), (64, 4, 16), (64, 5, 13), (3, 5, 1), (1, 2, 1), (64, 0, 64)],
)
def test_target(shards: int, members: int, aim: int) -> None:
    assert balance.target(shards, members) == aim


@pytest.mark.parametrize(
    ("members", "held", "mine", "claim", "release"),
    [
        # alone, nothing held: claim everything
        (["a"], {}, {}, [0, 1, 2, 3], []),
        # not listed yet (membership not written): counts itself
        ([], {}, {}, [0, 1, 2, 3], []),
        # a second member arrived: the first releases the two it claimed last (highest tokens)
        (["a", "b"], {0: "a", 1: "a", 2: "a", 3: "a"}, {0: 5, 1: 9, 2: 6, 3: 7}, [], [1, 3]),
        # the newcomer: nothing free yet, so nothing to claim
        (["a", "b"], {0: "a", 1: "a", 2: "a", 3: "a"}, {}, [], []),
        # once released, it claims the lowest free ones
        (["a", "b"], {0: "a", 2: "a"}, {}, [1, 3], []),
        # at target: nothing to do
        (["a", "b"], {0: "a", 1: "a", 2: "b", 3: "b"}, {0: 1, 1: 2}, [], []),
        # a member died (its claims gone from the view): the survivor takes them all
        (["a"], {0: "a", 1: "a"}, {0: 1, 1: 2}, [2, 3], []),
    ],
)
def test_rebalance(
    members: list[str], held: dict[int, str], mine: dict[int, int], claim: list[int], release: list[int]
) -> None:
    assert balance.rebalance(shards=4, members=members, me="a" if mine or not held else "b", held=held, mine=mine) == (
        claim,
        release,
    )


def _fleet(n: int, *, shards: int = 8) -> tuple[Clock, Cluster, list[coordination.Coordinator]]:
    clock = Clock()
    cluster = Cluster(clock)
    fleet = [
        coordination.Coordinator(MemoryStore(cluster, f"c{i}"), f"c{i}", shards=shards, ttl=10, margin=3, clock=clock)
        for i in range(n)
    ]
    return clock, cluster, fleet


def _settle(fleet: list[coordination.Coordinator], rounds: int = 4) -> None:
    for _ in range(rounds):
        for c in fleet:
            c.sync()


def test_members_converge_to_a_partition() -> None:
    _, cluster, fleet = _fleet(3)
    _settle(fleet)
    owned = [set(c.owned) for c in fleet]
    assert set().union(*owned) == set(range(8))
    assert sum(len(o) for o in owned) == 8  # no shard twice
    assert all(2 <= len(o) <= 3 for o in owned)
    assert {s: h.identity for s, h in cluster.shards.items()} == {s: c.identity for c in fleet for s in c.owned}


def test_a_dead_member_s_shards_go_to_the_survivors_after_its_ttl() -> None:
    clock, _cluster, fleet = _fleet(2)
    _settle(fleet)
    dead, survivor = fleet
    lost = set(dead.owned)
    clock.now += 5
    survivor.sync()
    assert not lost & set(survivor.owned)  # the dead one's lease still runs: nothing taken early
    clock.now += 6  # past its TTL
    survivor.sync()
    assert set(survivor.owned) == set(range(8))
    assert all(survivor.owned[s] > 0 for s in lost)


def test_tokens_grow_when_a_shard_changes_hands() -> None:
    _clock, _cluster, fleet = _fleet(2, shards=2)
    _settle(fleet)
    a, b = fleet
    before = {**a.owned, **b.owned}
    a.close()  # gives its shards up at once
    b.sync()
    assert set(b.owned) == {0, 1}
    moved = [s for s in b.owned if b.owned[s] != before[s]]
    assert moved and all(b.owned[s] > before[s] for s in moved)


def test_a_paused_member_is_stale_before_its_first_write() -> None:
    clock, _cluster, fleet = _fleet(2)
    _settle(fleet)
    paused, other = fleet
    assert paused.fresh() and paused.confirm(paused.owned) == set(paused.owned)
    clock.now += 7.5  # past TTL - margin, not yet past the TTL: its shards are still its own in etcd
    other.sync()  # the other keeps its lease alive
    assert not paused.fresh()
    assert paused.confirm(paused.owned) == set()  # layer 1 refuses before asking anyone
    clock.now += 5  # past the TTL: the other takes over
    other.sync()
    assert set(other.owned) == set(range(8))
    # on resume its keepalive fails (the lease is gone); it rejoins and owns nothing it had
    assert paused.sync() == {}
    assert not paused.owned
    _settle(fleet)
    assert set(paused.owned).isdisjoint(other.owned)
    assert set(paused.owned) | set(other.owned) == set(range(8))


def test_confirm_drops_a_shard_whose_token_changed() -> None:
    _clock, cluster, fleet = _fleet(1, shards=2)
    (c,) = fleet
    c.sync()
    cluster.shards[1] = coordination.Holder("intruder", 999)  # taken behind its back
    assert c.confirm({0, 1}) == {0}


def test_coordinator_unreachable_keeps_its_shards_unproven_then_recovers() -> None:
    _, cluster, fleet = _fleet(1, shards=4)
    (c,) = fleet
    c.sync()
    assert c.proven
    cluster.down = True
    assert set(c.sync()) == {0, 1, 2, 3}  # still decided for, so a rollback still goes through
    assert not c.proven
    assert c.confirm({0, 1}) == set()  # but nothing is proven: no raise, no PR
    cluster.down = False
    assert set(c.sync()) == {0, 1, 2, 3} and c.proven  # its claims were still there


def test_shards_view_for_one_repository() -> None:
    _, _, fleet = _fleet(2, shards=8)
    _settle(fleet)
    a = coordination.Shards("home", fleet[0])
    names = [f"r{i}" for i in range(40)]
    mine = {n for n in names if a.mine(n)}
    assert mine == {n for n in names if coordination.shard_of("home", n, 8) in fleet[0].owned}
    fence = a.fence(sorted(mine)[0])
    assert fence is not None and fence.token == fleet[0].owned[fence.shard]
    assert a.confirm(names) == mine
    solo = coordination.Shards("home")
    assert all(solo.mine(n) for n in names) and solo.fence("r1") is None and solo.confirm(names) == set(names)


class Flaky(MemoryStore):
    """A store whose next keepalive and next view fail once each, as on a network blip."""

    fail: set[str]

    def keepalive(self, owned: Mapping[int, int]) -> None:
        if "keepalive" in self.fail:
            self.fail.discard("keepalive")
            raise errors.CoordinationError("etcd: connection reset")
        super().keepalive(owned)

    def view(self) -> coordination.View:
        if "view" in self.fail:
            self.fail.discard("view")
            raise errors.CoordinationError("etcd: connection reset")
        return super().view()


def test_a_rejoin_proves_nothing_until_the_old_leases_claims_are_given_up() -> None:
    """A keepalive lost on a blip makes the member join again; if the view then fails, the claims it
    still holds are under the old lease, which no one keeps alive: the new lease's deadline must not
    prove them. The next sync gives them up by their tokens and claims afresh."""
    clock = Clock()
    cluster = Cluster(clock)
    store = Flaky(cluster, "a")
    store.fail = set()
    c = coordination.Coordinator(store, "a", shards=2, ttl=10, margin=3, clock=clock)
    c.sync()
    old = dict(c.owned)
    assert c.confirm({0, 1}) == {0, 1}
    store.fail = {"keepalive", "view"}
    assert set(c.sync()) == {0, 1} and not c.proven  # still decided for (a rollback goes through)
    assert not c.fresh() and c.confirm({0, 1}) == set()  # but proven by nothing
    c.heartbeat()  # the background keepalive of the new lease does not make them proven either
    assert c.confirm({0, 1}) == set()
    c.sync()
    assert c.proven and set(c.owned) == {0, 1} and all(c.owned[s] > old[s] for s in old)
    assert c.confirm({0, 1}) == {0, 1}
