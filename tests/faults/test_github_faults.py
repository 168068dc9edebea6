"""The GitHub forge under faults, with the reconciler against the OpenAPI-checked stand-in: a 502, a
secondary rate limit and a rejected ref update each back off or fail the one rollout's tick; the
rollback on the router is never held up, and the next tick converges to exactly one PR."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from controller import plan, settings
from controller.forge import base as forge_base
from controller.forge import github
from tests.helpers import github_standin as standin_mod
from tests.helpers.fake_time import FakeTime
from tests.helpers.gitops import GitOps, add_bad_bot, outcome, remote_files

pytestmark = pytest.mark.slow
TOKEN = "ghs_faultsSUITE0123456789abcdef"


@pytest.fixture
def hub(gitops: GitOps) -> Iterator[standin_mod.StandIn]:
    add_bad_bot(gitops)
    server = standin_mod.StandIn(token=TOKEN, files=remote_files(gitops.remote), limits=standin_mod.UNPACED).start()
    try:
        yield server
    finally:
        server.stop()


def forge_with(hub: standin_mod.StandIn, waits: list[float], time: FakeTime | None = None) -> github.GithubForge:
    """A forge whose rate-limit waits are recorded in `waits` and pass on `time` (no real waiting)."""
    time = time or FakeTime(slept=waits)
    retry = github.RetryPolicy(attempts=3, max_wait=60.0, sleep=time.sleep, clock=time.clock)
    unpaced = settings.GithubBudget(mutation_interval=0.0)
    return github.GithubForge("acme/rollouts", token=TOKEN, api_url=hub.api_url, retry=retry, limits=unpaced)


def rollback_prs(forge: github.GithubForge) -> list[forge_base.PullRequest]:
    return forge.list(prefix="rollout/bad-bot/")


@pytest.mark.parametrize(
    ("status", "headers", "message", "op"),
    [
        (502, {}, "Bad Gateway", "pulls/create"),
        (502, {}, "Bad Gateway", "git/create-ref"),
        (422, {}, "Update is not a fast forward", "git/create-ref"),
        (500, {}, "Server Error", "repos/create-commit-status"),
    ],
    ids=["502-on-create-pr", "502-on-create-branch", "rejected-ref-update", "500-on-status"],
)
def test_a_failed_forge_call_fails_the_tick_then_converges_to_one_pr(
    gitops: GitOps, hub: standin_mod.StandIn, status: int, headers: dict[str, str], message: str, op: str
) -> None:
    waits: list[float] = []
    forge = forge_with(hub, waits)
    c = gitops.controller(forge=forge)
    hub.fail_next(status, headers=headers, op_id=op, message=message)
    tick = c.reconcile_once()
    found = outcome(tick, "bad-bot")
    assert found.error and found.adapter == "forge" and TOKEN not in found.error
    assert gitops.live("bad").weight("canary") == 0, "a forge fault never holds up the rollback itself"
    assert outcome(tick, "good-bot").error is None  # the other rollout is unaffected

    for _ in range(2):
        tick = c.reconcile_once()
        assert outcome(tick, "bad-bot").error is None
    [pr] = rollback_prs(forge)
    assert pr.state is forge_base.PRState.OPEN and pr.title.startswith("bad-bot: roll back")
    assert hub.violations == []


@pytest.mark.parametrize("op", ["pulls/create", "git/create-ref", "repos/create-commit-status"])
def test_a_502_after_the_call_took_effect_does_not_double_the_pr(
    gitops: GitOps, hub: standin_mod.StandIn, op: str
) -> None:
    """The worst 502: GitHub did it, the reply was lost. Find-or-update converges to one PR."""
    forge = forge_with(hub, [])
    c = gitops.controller(forge=forge)
    hub.fail_next(502, op_id=op, message="Bad Gateway", after=True)
    first = c.reconcile_once()
    assert outcome(first, "bad-bot").error and all(f.count == 0 for f in hub.faults)
    for _ in range(2):
        c.reconcile_once()
    pulls = rollback_prs(forge)
    assert len(pulls) == 1 and pulls[0].state is forge_base.PRState.OPEN
    assert hub.violations == []


def test_a_secondary_rate_limit_is_waited_out_without_a_duplicate(gitops: GitOps, hub: standin_mod.StandIn) -> None:
    waits: list[float] = []
    forge = forge_with(hub, waits)
    hub.fail_next(
        403,
        headers={"Retry-After": "7"},
        op_id="pulls/create",
        message="You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
    )
    tick = gitops.controller(forge=forge).reconcile_once()
    assert outcome(tick, "bad-bot").error is None
    assert waits == [7.0]  # waited exactly what GitHub asked, then retried
    assert len(rollback_prs(forge)) == 1
    assert hub.ops().count("pulls/create") == 2  # the refused call and its one retry


def test_a_long_rate_limit_is_left_to_the_next_tick(gitops: GitOps, hub: standin_mod.StandIn) -> None:
    waits: list[float] = []
    time = FakeTime(slept=waits)
    forge = forge_with(hub, waits, time)
    hub.fail_next(403, headers={"Retry-After": "3600"}, op_id="pulls/create", message="secondary rate limit")
    c = gitops.controller(forge=forge)
    found = outcome(c.reconcile_once(), "bad-bot")
    assert found.error and "rate limited" in found.error and waits == []
    assert found.decision is not None and found.decision.kind is plan.Kind.ROLLBACK
    assert gitops.live("bad").weight("canary") == 0
    sent = len(hub.records)
    found = outcome(c.reconcile_once(), "bad-bot")  # still paused: nothing sent, the rollback holds
    assert found.error and "paused" in found.error and found.adapter == "forge"
    assert len(hub.records) == sent
    time.now += 3600
    assert outcome(c.reconcile_once(), "bad-bot").error is None
    assert len(rollback_prs(forge)) == 1
