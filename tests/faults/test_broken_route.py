"""Router writes are batched per router within a tick; a route the router refuses must not stop the
others. The file router is real; a thin wrapper records each write's routes and refuses the batches
that contain one chosen route, as Envoy refuses a route whose upstream changed or LiteLLM a group
without its deployments."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from controller import errors, plan, traffic
from controller.forge import base as forge_base
from controller.routers import base
from tests.helpers.faults import FlakyRouter, make_controller
from tests.helpers.gitops import GitOps, add_bad_bot, outcome

pytestmark = pytest.mark.slow

RUNNING = traffic.RouteState({traffic.STABLE: 100, traffic.CANARY: 0}, 100)  # the bad canary gets shadow traffic


class Refusing:
    """A real router that refuses, with nothing written, every batch containing `route`; records the
    routes of every read and write call."""

    def __init__(self, *, route: str | None) -> None:
        self.route = route
        self.real: Any = None
        self.name = ""
        self.batches: list[list[str]] = []
        self.reads: list[list[str]] = []

    def wrap(self, real: Any) -> Refusing:
        """`make_controller`'s router hook: wrap the controller's own file router."""
        self.real, self.name, self.location = real, real.name, real.location
        return self

    def read(self, routes: Sequence[str]) -> dict[str, base.Live]:
        self.reads.append(sorted(routes))
        states: dict[str, base.Live] = self.real.read(routes)
        return states

    def write(self, states: Mapping[str, traffic.RouteState], fences: object = None) -> None:
        self.batches.append(sorted(states))
        if self.route in states:
            raise errors.RouterStateError(f"router {self.name!r} route {self.route!r}: refused; nothing was written")
        self.real.write(states)


def test_one_write_per_router_per_tick(gitops: GitOps) -> None:
    add_bad_bot(gitops)
    recorder = Refusing(route=None)
    tick = make_controller(gitops, router=recorder.wrap).reconcile_once()
    assert recorder.batches == [["bad", "good"]]  # the rollback and the apply: one write
    assert recorder.reads == [["bad", "good"], ["bad", "good"]]  # one read to decide, one to read back
    assert outcome(tick, "bad-bot").decision.kind is plan.Kind.ROLLBACK  # type: ignore[union-attr]
    assert outcome(tick, "good-bot").decision.kind is plan.Kind.APPLY  # type: ignore[union-attr]
    for name in ("bad-bot", "good-bot"):
        found = outcome(tick, name)
        assert found.error is None and found.router_attempts == 1
        assert any(a.endswith(", read back") for a in found.actions), found.actions
    bad, good = gitops.live("bad"), gitops.live("good")
    assert bad is not None and (bad.weight("canary"), bad.shadow) == (0, 0)
    assert good is not None and good.shadow == 100


def test_a_refused_route_does_not_stop_a_rollback(gitops: GitOps) -> None:
    add_bad_bot(gitops)
    gitops.router().write({"bad": RUNNING})
    refusing = Refusing(route="good")
    sleeps: list[float] = []
    tick = make_controller(gitops, router=refusing.wrap, sleeps=sleeps).reconcile_once()
    assert refusing.batches == [["bad", "good"], ["bad"], ["good"]]  # the batch, then each half

    bad = outcome(tick, "bad-bot")
    assert bad.decision is not None and bad.decision.kind is plan.Kind.ROLLBACK
    assert bad.error is None and not bad.rollback_unconfirmed and bad.router_attempts == 1
    live = gitops.live("bad")
    assert live is not None and (live.weight("canary"), live.shadow) == (0, 0)
    [pr] = gitops.forge.list(prefix="rollout/bad-bot/")
    assert "**already** sends no traffic" in pr.body

    good = outcome(tick, "good-bot")
    assert good.decision is not None and good.decision.kind is plan.Kind.APPLY
    assert good.adapter == "router" and "route 'good': refused" in (good.error or "")
    assert any("NOT confirmed after 1 attempt(s); retried next tick" in a for a in good.actions)
    assert (
        gitops.live("good") is None and gitops.forge.list(prefix="rollout/good-bot/") == []
    )  # no PR for a failed apply
    assert sleeps == []  # a refusal is not retried within the tick


def test_a_refused_rollback_still_opens_its_pr_and_the_others_are_written(gitops: GitOps) -> None:
    add_bad_bot(gitops)
    gitops.router().write({"bad": RUNNING})
    refusing = Refusing(route="bad")
    tick = make_controller(gitops, router=refusing.wrap).reconcile_once()

    good = outcome(tick, "good-bot")
    assert good.error is None and any(a.endswith(", read back") for a in good.actions)
    live = gitops.live("good")
    assert live is not None and live.shadow == 100

    bad = outcome(tick, "bad-bot")
    assert bad.adapter == "router" and bad.rollback_unconfirmed and bad.router_attempts == 1
    assert any("the canary may still get traffic" in a for a in bad.actions)
    assert gitops.live("bad") == RUNNING
    [pr] = gitops.forge.list(prefix="rollout/bad-bot/", state=forge_base.PRState.OPEN)
    assert "Not yet confirmed on the router" in pr.body  # the revert PR records the intent


def test_an_unreachable_router_is_one_failed_write_not_one_per_route(gitops: GitOps) -> None:
    """The batch fails as a whole (the router did not answer): no write per route; only the urgent
    route (the rollback) is retried, alone, with backoff."""
    add_bad_bot(gitops)
    gitops.router().write({"bad": RUNNING})
    flaky: list[FlakyRouter] = []
    sleeps: list[float] = []

    def wrap(real: object) -> FlakyRouter:
        flaky.append(FlakyRouter(real, fail_writes=1))
        return flaky[-1]

    tick = make_controller(gitops, router=wrap, sleeps=sleeps).reconcile_once()
    assert [f.writes for f in flaky] == [2] and sleeps == [0.25]  # the batch, then the rollback alone
    bad = outcome(tick, "bad-bot")
    assert bad.error is None and bad.router_attempts == 2 and not bad.rollback_unconfirmed
    good = outcome(tick, "good-bot")
    assert good.adapter == "router" and "connection refused" in (good.error or "") and good.router_attempts == 1
    assert gitops.live("good") is None


def test_a_malformed_live_route_does_not_stop_the_others(gitops: GitOps) -> None:
    """One route's entry in the real routes file is malformed: the one read of the decide pass gives
    that route's error to its rollout alone; the other rollout is read, decided and rolled back."""
    add_bad_bot(gitops)
    gitops.router().write({"bad": RUNNING, "good": RUNNING})
    path = gitops.work / "state" / "routes.json"
    data = json.loads(path.read_text("utf-8"))
    data["routes"]["good"] = {"weights": {"stable": 60}}  # not a split of 100
    path.write_text(json.dumps(data), "utf-8")
    recorder = Refusing(route=None)
    sleeps: list[float] = []
    tick = make_controller(gitops, router=recorder.wrap, sleeps=sleeps).reconcile_once()
    assert recorder.reads == [["bad", "good"], ["bad"]]  # one read to decide, one to read the write back
    assert recorder.batches == [["bad"]]

    good = outcome(tick, "good-bot")
    assert good.decision is None and good.adapter == "router"
    assert "route 'good'" in (good.error or "") and "sum to 100" in (good.error or "")
    assert json.loads(path.read_text("utf-8"))["routes"]["good"] == {"weights": {"stable": 60}}  # left as it was

    bad = outcome(tick, "bad-bot")
    assert bad.decision is not None and bad.decision.kind is plan.Kind.ROLLBACK
    assert bad.error is None and not bad.rollback_unconfirmed and bad.router_attempts == 1
    live = gitops.live("bad")
    assert live is not None and (live.weight("canary"), live.shadow) == (0, 0)
    assert sleeps == []
