"""Controllers of one fleet on a real remote, the file router and a real Prometheus: each decides only
for the rollouts of the shards it owns; a controller whose shard is no longer proven its own writes
only what takes the canary out and opens no PR; and a stale owner that passed its own checks is still
stopped by the router's recorded fence. The coordinator here is the in-memory store (etcd's semantics);
the real etcd and Kubernetes backends have their own tests."""

from __future__ import annotations

from dataclasses import replace

import pytest

from controller import coordination, plan, reconcile, spec, traffic
from controller.forge import base as forge_base
from tests.helpers.gitops import GitOps, add_bad_bot, kind, outcome
from tests.helpers.memory_store import Cluster, MemoryStore

NAMES = ("bad-bot", "good-bot")


def _apart() -> int:
    """A shard count that puts the two rollouts in different shards (the hash is fixed: so is this)."""
    return next(n for n in range(2, 64) if len({coordination.shard_of(spec.HOME_REPOSITORY, r, n) for r in NAMES}) == 2)


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def fleet(gitops: GitOps, members: int) -> tuple[Cluster, list[coordination.Coordinator], list[reconcile.Controller]]:
    clock = Clock()
    cluster = Cluster(clock)
    shards = _apart()
    coordinators = [
        coordination.Coordinator(MemoryStore(cluster, f"c{i}"), f"c{i}", shards=shards, clock=clock)
        for i in range(members)
    ]
    for _ in range(3):
        for c in coordinators:
            c.sync()
    controllers = [  # one holder name for the git lease: the fleet shares it
        gitops.controller(holder="fleet-test", shards=coordination.Shards(spec.HOME_REPOSITORY, c))
        for c in coordinators
    ]
    return cluster, coordinators, controllers


def owner(coordinators: list[coordination.Coordinator], name: str) -> int:
    shard = coordination.shard_of(spec.HOME_REPOSITORY, name, coordinators[0].shards)
    return next(i for i, c in enumerate(coordinators) if shard in c.owned)


def test_each_controller_decides_only_for_its_shards(gitops: GitOps) -> None:
    add_bad_bot(gitops)
    _, coordinators, controllers = fleet(gitops, 2)
    assert {owner(coordinators, n) for n in NAMES} == {0, 1}, "the two rollouts sit in two members' shards"
    ticks = [c.reconcile_once() for c in controllers]
    for i, tick in enumerate(ticks):
        assert [o.rollout for o in tick.outcomes] == [n for n in NAMES if owner(coordinators, n) == i]
    bad = ticks[owner(coordinators, "bad-bot")]
    assert kind(bad, "bad-bot") is plan.Kind.ROLLBACK
    assert len(gitops.forge.list(prefix="rollout/bad-bot/")) == 1  # one revert PR, from its owner
    entry = gitops.router().routes()["good"]
    shard = coordination.shard_of(spec.HOME_REPOSITORY, "good-bot", coordinators[0].shards)
    assert entry["fence"]["shard"] == shard  # the raise carried its owner's fence
    assert entry["fence"]["token"] == coordinators[owner(coordinators, "good-bot")].owned[shard]


def test_a_lost_shard_writes_only_the_rollback_and_opens_no_pr(gitops: GitOps) -> None:
    add_bad_bot(gitops)
    cluster, coordinators, controllers = fleet(gitops, 1)
    (c,) = coordinators
    for name in NAMES:  # another member took both shards behind this one's back
        shard = coordination.shard_of(spec.HOME_REPOSITORY, name, c.shards)
        cluster.shards[shard] = coordination.Holder("usurper", 10_000 + shard)
    tick = controllers[0].reconcile_once()
    good, bad = outcome(tick, "good-bot"), outcome(tick, "bad-bot")
    assert good.adapter == "coordination" and "wrote nothing" in (good.error or "")
    assert gitops.live("good") is None  # the raise (shadow 100) was not written
    assert bad.adapter == "coordination" and "opened no pull request" in (bad.error or "")
    live = gitops.live("bad")
    assert live is not None and traffic.exposure_free(live)  # the kill switch waits for no one
    assert gitops.forge.list(state=forge_base.PRState.OPEN) == []


def test_a_stale_owner_past_its_own_checks_is_stopped_by_the_router(gitops: GitOps) -> None:
    _, coordinators, controllers = fleet(gitops, 1)
    (c,) = coordinators
    shard = coordination.shard_of(spec.HOME_REPOSITORY, "good-bot", c.shards)
    newer = traffic.Fence(shard, c.owned[shard] + 1)  # a newer owner already wrote the route
    gitops.router().write({"good": traffic.RouteState({"stable": 100, "canary": 0})}, {"good": newer})
    tick = controllers[0].reconcile_once()
    good = outcome(tick, "good-bot")
    assert good.adapter == "router" and "no longer owns the shard" in (good.error or "")
    live = gitops.live("good")
    assert live is not None and live.shadow == 0  # nothing written
    assert gitops.router().routes()["good"]["fence"] == newer.to_json()


@pytest.mark.parametrize("members", [1, 3])
def test_a_fleet_covers_every_rollout_once(gitops: GitOps, members: int) -> None:
    add_bad_bot(gitops)
    _, _, controllers = fleet(gitops, members)
    seen = [o.rollout for c in controllers for o in c.reconcile_once().outcomes]
    assert sorted(seen) == sorted(NAMES)


def test_one_controller_alone_is_unchanged(gitops: GitOps) -> None:
    c = gitops.controller()
    tick = c.reconcile_once()
    assert kind(tick, "good-bot") is plan.Kind.APPLY
    assert "fence" not in gitops.router().routes()["good"]  # nothing to fence with one controller
    assert replace(c.shards).coordinator is None
