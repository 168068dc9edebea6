"""The controller killed at each step boundary, and two controllers at once.

A kill is a `Killed` (BaseException) raised from a wrapper around the real adapter just before or just
after the real call took effect: nothing in the tick can catch it, as nothing runs when a process dies.
A fresh controller (another process; it takes the lease once the dead one's expires) must converge:
no duplicate PR, no lost rollback, one merge commit per merged PR. `test_real_kill.py` kills a real
`rollout run` process instead, at the same boundaries and more."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest

from controller import plan, proposals, reconcile, traffic
from controller.forge import base as forge_base
from tests.helpers.faults import KillAt, Killed, make_controller
from tests.helpers.gitops import ROLLOUT, GitOps, add_bad_bot, kind

pytestmark = pytest.mark.slow

BOUNDARIES = [
    (adapter, method, after)
    for adapter, method in (("router", "write"), ("forge", "propose"), ("forge", "set_check"))
    for after in (False, True)
]


def ids(b: tuple[str, str, bool]) -> str:
    return f"{b[0]}.{b[1]}-{'after' if b[2] else 'before'}"


def assert_converged(gitops: GitOps) -> None:
    pulls = gitops.forge.list()
    # one PR per (branch, title): an advance branch is reused step after step, each step one PR
    per_change = Counter((p.branch, p.title) for p in pulls)
    assert all(n == 1 for n in per_change.values()), f"duplicate PRs: {per_change}"
    open_per_branch = Counter(p.branch for p in pulls if p.state is forge_base.PRState.OPEN)
    assert all(n == 1 for n in open_per_branch.values()), f"two open PRs on one branch: {open_per_branch}"
    merged = [p for p in pulls if p.state is forge_base.PRState.MERGED]
    merges = gitops.main_merges()
    assert len(merges) == len(merged), (merges, merged)


def restart(gitops: GitOps, ticks: int = 3) -> reconcile.Controller:
    """A new process after the dead one's lease expired; a few ticks, the clock moving on."""
    gitops.advance(timedelta(minutes=3))
    fresh = gitops.controller(holder="restarted")
    for _ in range(ticks):
        tick = fresh.reconcile_once()
        assert not tick.skipped and all(o.error is None for o in tick.outcomes), tick
        gitops.advance(timedelta(minutes=2))
    return fresh


def killer(gitops: GitOps, adapter: str, method: str, after: bool) -> reconcile.Controller:
    if adapter == "forge":
        return make_controller(gitops, forge=KillAt(gitops.forge, method, after=after))
    shared: dict[str, KillAt] = {}

    def wrap(real: Any) -> KillAt:
        k = shared.setdefault("k", KillAt(real, method, after=after))
        k.real = real
        return k

    return make_controller(gitops, router=wrap)


@pytest.mark.parametrize(("adapter", "method", "after"), BOUNDARIES, ids=[ids(b) for b in BOUNDARIES])
def test_killed_during_a_rollback_the_restart_converges(gitops: GitOps, adapter: str, method: str, after: bool) -> None:
    add_bad_bot(gitops)
    gitops.router().write({"bad": rc_running()})
    with pytest.raises(Killed):
        killer(gitops, adapter, method, after).reconcile_once()

    restart(gitops)
    live = gitops.live("bad")
    assert live is not None and live.weight("canary") == 0 and live.shadow == 0, "the rollback was lost"
    [pr] = gitops.forge.list(prefix="rollout/bad-bot/")
    assert pr.state is forge_base.PRState.OPEN and pr.branch.startswith("rollout/bad-bot/rollback-")
    # killed between opening the revert PR and setting its status too: the restart sets it, passing, so
    # a required check never keeps the record off main
    check = gitops.forge.checks(pr.number)["rollout/gates"]
    assert check["state"] == "success" and check["summary"].startswith("merging records the rollback")
    assert_converged(gitops)


class CountChecks:
    """The real forge; counts `set_check` calls per PR."""

    def __init__(self, real: Any) -> None:
        self.real, self.calls = real, Counter[int]()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def set_check(self, number: int, **kwargs: Any) -> None:
        self.calls[number] += 1
        self.real.set_check(number, **kwargs)


def test_a_restart_sets_a_missing_revert_status_once_not_every_tick(gitops: GitOps) -> None:
    add_bad_bot(gitops)
    gitops.router().write({"bad": rc_running()})
    with pytest.raises(Killed):
        killer(gitops, "forge", "set_check", False).reconcile_once()
    gitops.advance(timedelta(minutes=3))
    counting = CountChecks(gitops.forge)
    fresh = make_controller(gitops, holder="restarted", forge=counting)
    for _ in range(4):
        assert all(o.error is None for o in fresh.reconcile_once().outcomes)
        gitops.advance(timedelta(minutes=1))
    [pr] = gitops.forge.list(prefix="rollout/bad-bot/")
    assert counting.calls[pr.number] == 1
    check = gitops.forge.checks(pr.number)["rollout/gates"]
    assert check == {"state": "success", "summary": proposals.REVERT_CHECK}


AUTO = [("forge", m, a) for m in ("propose", "set_check", "merge") for a in (False, True)]


@pytest.mark.parametrize(("adapter", "method", "after"), AUTO, ids=[ids(b) for b in AUTO])
def test_killed_during_an_auto_promotion_the_restart_converges(
    gitops: GitOps, adapter: str, method: str, after: bool
) -> None:
    gitops.commit(
        {"rollouts/good-bot/rollout.yaml": ROLLOUT.format(name="good-bot", route="good", promotion="auto")}, "auto"
    )
    first = gitops.controller()
    assert kind(first.reconcile_once(), "good-bot") is plan.Kind.APPLY
    gitops.advance(timedelta(minutes=2))
    with pytest.raises(Killed):
        killer(gitops, adapter, method, after).reconcile_once()  # the advance to 10%

    restart(gitops, ticks=2)
    advances = gitops.forge.list(prefix="rollout/good-bot/")
    assert all(p.state is forge_base.PRState.MERGED for p in advances), advances
    assert any(p.title.startswith("good-bot: advance to 10%") for p in advances)
    live = gitops.live("good")
    assert live is not None and live.weight("canary") >= 10  # the merged step was applied
    assert_converged(gitops)


def rc_running() -> Any:

    return traffic.RouteState({traffic.STABLE: 100, traffic.CANARY: 0}, 100)


def test_two_controllers_at_once_one_acts(gitops: GitOps) -> None:
    add_bad_bot(gitops)
    controllers = [gitops.controller(holder=h) for h in ("a", "b")]
    ticks: dict[str, reconcile.Tick] = {}
    start = threading.Barrier(2)

    def run(c: reconcile.Controller) -> None:
        start.wait()
        ticks[c.holder] = c.reconcile_once()

    threads = [threading.Thread(target=run, args=(c,)) for c in controllers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    acted = [h for h, t in ticks.items() if not t.skipped]
    assert len(acted) == 1, {h: t.skipped for h, t in ticks.items()}
    skipped = next(t for t in ticks.values() if t.skipped)
    assert skipped.outcomes == () and ("lease" in skipped.skipped)
    assert len(gitops.forge.list(prefix="rollout/bad-bot/")) == 1
    assert_converged(gitops)
