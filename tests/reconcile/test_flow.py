"""End to end: the file router, the local forge in a real git remote, and a real Prometheus."""

from __future__ import annotations

from datetime import timedelta

import pytest

from controller import errors, plan, settings
from controller.forge import base as forge_base
from tests.helpers.gitops import ROLLOUT, GitOps, add_bad_bot, approve_and_merge, kind, outcome

pytestmark = pytest.mark.slow


def test_full_ramp_through_every_step(gitops: GitOps) -> None:
    c = gitops.controller()
    assert kind(c.reconcile_once(), "good-bot") is plan.Kind.APPLY  # step 1: shadow 100
    live = gitops.live("good")
    assert live and live.weight("canary") == 0 and live.shadow == 100

    expected_titles = []
    for to, weight in ((1, 10), (2, 100)):
        gitops.advance(timedelta(minutes=2))
        tick = c.reconcile_once()
        assert kind(tick, "good-bot") is plan.Kind.ADVANCE
        assert gitops.live("good").weight("canary") == (0 if to == 1 else 10), "exposure grew before a merge"
        again = c.reconcile_once()  # find-or-update: no second PR
        [pr] = gitops.forge.list(state=forge_base.PRState.OPEN)
        assert outcome(again, "good-bot").pr == pr.number == outcome(tick, "good-bot").pr
        assert f"opened #{pr.number}: {pr.title}" in outcome(tick, "good-bot").actions
        assert not any(f"#{pr.number}:" in a for a in outcome(again, "good-bot").actions), "logged once, not per tick"
        assert pr.title == f"good-bot: advance to {weight}% (step {to + 1} of 3)"
        assert "eval\\_pass\\_rate" in pr.body and "**PASS**" in pr.body
        expected_titles.append(f"{pr.title} (#{pr.number})")
        approve_and_merge(gitops, pr.number)
        assert pr.branch not in gitops.branches(), "a merged branch is deleted"
        assert kind(c.reconcile_once(), "good-bot") is plan.Kind.APPLY
        assert gitops.live("good").weight("canary") == weight

    gitops.advance(timedelta(minutes=2))
    assert kind(c.reconcile_once(), "good-bot") is plan.Kind.COMPLETE
    [pr] = gitops.forge.list(state=forge_base.PRState.OPEN)
    assert pr.title == "good-bot: complete (v2.md is the new stable)"  # a prompt-only change
    approve_and_merge(gitops, pr.number)
    tick = c.reconcile_once()  # main: stable = the old canary, previous = the old stable at 0
    assert kind(tick, "good-bot") is plan.Kind.APPLY
    live = gitops.live("good")
    assert live and live.weights == {"stable": 100, "previous": 0}
    assert live.served["stable"].prompt == "rollouts/good-bot/prompts/v2.md"
    assert kind(c.reconcile_once(), "good-bot") is plan.Kind.HOLD  # kept warm for 30m

    gitops.advance(timedelta(minutes=31))
    assert kind(c.reconcile_once(), "good-bot") is plan.Kind.DECOMMISSION
    [pr] = gitops.forge.list(state=forge_base.PRState.OPEN)
    approve_and_merge(gitops, pr.number)
    assert kind(c.reconcile_once(), "good-bot") is plan.Kind.APPLY
    assert gitops.live("good").weights == {"stable": 100}
    assert kind(c.reconcile_once(), "good-bot") is plan.Kind.HOLD

    merges = gitops.main_merges()
    assert len(merges) == 4  # two advances, the completion, the decommission: one commit each
    assert all(t in merges for t in expected_titles)
    assert all(len(m) < 72 for m in merges), merges
    assert gitops.branches() == ["main"]


def test_regression_rolls_back_at_once_and_records_it(gitops: GitOps) -> None:
    add_bad_bot(gitops)
    c = gitops.controller()
    tick = c.reconcile_once()
    # the gate already fails on the shadow traffic: no waiting for the step to end
    assert kind(tick, "bad-bot") is plan.Kind.ROLLBACK
    assert kind(tick, "good-bot") is plan.Kind.APPLY  # the other rollout is unaffected
    live = gitops.live("bad")
    assert live and live.weight("canary") == 0 and live.shadow == 0
    [pr] = gitops.forge.list(state=forge_base.PRState.OPEN, prefix="rollout/bad-bot/")
    assert pr.title.startswith("bad-bot: roll back (eval_pass_rate")
    check = gitops.forge.checks(pr.number)["rollout/gates"]
    assert "already" in pr.body and check["state"] == "success"
    assert check["summary"].startswith("merging records the rollback: the canary stays at 0%; eval_pass_rate failed")

    for _ in range(2):  # the revert PR is open: hold canary 0, no second PR
        gitops.advance(timedelta(minutes=5))
        assert kind(c.reconcile_once(), "bad-bot") is plan.Kind.HOLD
    assert len(gitops.forge.list(prefix="rollout/bad-bot/")) == 1

    approve_and_merge(gitops, pr.number)
    gitops.advance(timedelta(minutes=5))
    tick = c.reconcile_once()
    assert kind(tick, "bad-bot") is plan.Kind.HOLD and "rolled back" in outcome(tick, "bad-bot").decision.reason
    assert gitops.live("bad").weight("canary") == 0
    assert any(m.startswith("bad-bot: roll back") for m in gitops.main_merges())
    for _ in range(3):  # never promoted again
        gitops.advance(timedelta(hours=1))
        assert kind(c.reconcile_once(), "bad-bot") is plan.Kind.HOLD
    assert [p.state for p in gitops.forge.list(prefix="rollout/bad-bot/")] == [forge_base.PRState.MERGED]


class CrashOnPropose:
    """The real local forge, except that the process "dies" on the first PR it tries to open."""

    def __init__(self, real: object) -> None:
        self.real = real
        self.crashed = False

    def __getattr__(self, name: str) -> object:
        return getattr(self.real, name)

    def propose(self, change: forge_base.Change, *, base: str) -> forge_base.PullRequest:
        if not self.crashed:
            self.crashed = True
            raise errors.ForgeUnavailable("the controller was killed here")
        return self.real.propose(change, base=base)  # type: ignore[attr-defined, no-any-return]


def test_crash_between_router_write_and_pr_converges_to_one_pr(gitops: GitOps) -> None:
    add_bad_bot(gitops)
    crashing = gitops.controller(forge=CrashOnPropose(gitops.forge))
    tick = crashing.reconcile_once()
    assert outcome(tick, "bad-bot").error and gitops.live("bad").weight("canary") == 0
    assert gitops.forge.list(prefix="rollout/bad-bot/") == []
    restarted = gitops.controller(holder="test")  # a new process, same identity, fresh state
    for _ in range(3):
        restarted.reconcile_once()
    pulls = gitops.forge.list(prefix="rollout/bad-bot/")
    assert len(pulls) == 1 and pulls[0].state is forge_base.PRState.OPEN
    assert gitops.live("bad").weight("canary") == 0


def test_closing_the_revert_pr_keeps_the_canary_out_until_a_retry(gitops: GitOps) -> None:
    """Decision: a revert PR closed without merging is not an approval of the canary. The rolled-back
    weights hold, no new revert PR is opened for the same revision, and only `rollout retry` (a PR a
    human merges) or a new revision lets it run again."""
    add_bad_bot(gitops)
    c = gitops.controller()
    c.reconcile_once()
    [pr] = gitops.forge.list(prefix="rollout/bad-bot/")
    gitops.forge.close(pr.number, comment="not now")
    for _ in range(3):
        gitops.advance(timedelta(minutes=5))
        tick = c.reconcile_once()
        assert kind(tick, "bad-bot") is plan.Kind.HOLD
        assert gitops.live("bad").weight("canary") == 0 and gitops.live("bad").shadow == 0
    assert len(gitops.forge.list(prefix="rollout/bad-bot/")) == 1

    retry = c.retry("bad-bot")
    assert retry.pr is not None
    approve_and_merge(gitops, retry.pr)
    gitops.advance(timedelta(minutes=20))  # measured from the retry: the evidence is twenty minutes'
    tick = c.reconcile_once()  # it runs again, the gate still fails: rolled back again, new PR
    assert kind(tick, "bad-bot") is plan.Kind.ROLLBACK
    open_now = gitops.forge.list(prefix="rollout/bad-bot/rollback", state=forge_base.PRState.OPEN)
    assert len(open_now) == 1 and open_now[0].number != pr.number


def test_abort_is_immediate_then_a_pr(gitops: GitOps) -> None:
    c = gitops.controller()
    c.reconcile_once()
    assert gitops.live("good").shadow == 100
    done = c.abort("good-bot", reason="customer complaints")
    assert gitops.live("good").weight("canary") == 0 and gitops.live("good").shadow == 0
    assert done.pr is not None
    pr = gitops.forge.get(done.pr)
    assert "customer complaints" in pr.body and pr.title.startswith("good-bot: roll back")
    assert kind(c.reconcile_once(), "good-bot") is plan.Kind.HOLD


def test_two_controllers_one_acts(gitops: GitOps) -> None:
    first, second = gitops.controller(holder="a"), gitops.controller(holder="b")
    assert not first.reconcile_once().skipped
    tick = second.reconcile_once()
    assert "holds the lease" in tick.skipped and tick.outcomes == ()
    gitops.advance(timedelta(minutes=3))  # the lease expires when its holder stops renewing it
    assert not second.reconcile_once().skipped


def test_dry_run_changes_nothing(gitops: GitOps) -> None:
    add_bad_bot(gitops)
    before = gitops.live("bad")
    tick = gitops.controller().reconcile_once(dry_run=True)
    assert kind(tick, "bad-bot") is plan.Kind.ROLLBACK
    assert outcome(tick, "bad-bot").actions[0].startswith("would rollback")
    assert gitops.live("bad") == before and gitops.forge.list() == []


def test_a_broken_rollout_does_not_stop_the_others(gitops: GitOps) -> None:
    gitops.commit(
        {"rollouts/broken/rollout.yaml": "apiVersion: rollouts/v1\nkind: Rollout\nmetadata: {name: broken}\n"}, "oops"
    )
    tick = gitops.controller().reconcile_once()
    assert any("rollouts/broken/rollout.yaml" in str(p) for p in tick.problems)
    assert kind(tick, "good-bot") is plan.Kind.APPLY


def test_no_ramp_before_the_offline_eval_passes(gitops: GitOps) -> None:
    gated = ROLLOUT.format(name="good-bot", route="good", promotion="manual").replace(
        "  promotion:", "  offlineEval: {maxDrop: 2%}\n  promotion:"
    )
    gitops.commit({"rollouts/good-bot/rollout.yaml": gated}, "Require an offline eval")
    c = gitops.controller()
    tick = c.reconcile_once()
    assert kind(tick, "good-bot") is plan.Kind.APPLY
    assert "offline eval INCONCLUSIVE" in outcome(tick, "good-bot").decision.reason
    live = gitops.live("good")
    assert live and live.weight("canary") == 0 and live.shadow == 0  # not even shadow traffic
    gitops.advance(timedelta(minutes=5))
    assert kind(c.reconcile_once(), "good-bot") is plan.Kind.HOLD
    assert gitops.forge.list() == []


def test_the_step_history_cache_stays_bounded(gitops: GitOps) -> None:
    """A long `rollout run` must not grow the (commit, rollout) cache without bound; bounded, the step
    start it finds is the same."""
    add_bad_bot(gitops)
    for i in range(3):
        gitops.commit({f"rollouts/good-bot/prompts/draft-{i}.md": "a draft\n"}, f"a draft {i}")
    unbounded = gitops.controller()
    want = {o.rollout: o.step_since for o in unbounded.reconcile_once(dry_run=True).outcomes}
    assert len(unbounded.steps) > 2
    bounded = gitops.controller(knobs=settings.Settings(memory=settings.Memory(step_histories=2)))
    for _ in range(3):
        got = {o.rollout: o.step_since for o in bounded.reconcile_once(dry_run=True).outcomes}
        assert got == want
        assert len(bounded.steps) <= 2


def test_abort_lowers_a_route_whose_own_state_is_malformed(gitops: GitOps) -> None:
    """Lowering exposure is never refused: a hand-broken entry (weights that do not add up) is still
    written to canary 0, and a variant no rollout manages in another route is left alone."""
    import json

    gitops.controller().reconcile_once()
    path = gitops.work / "state" / "routes.json"
    document = json.loads(path.read_text())
    document["routes"]["good"]["weights"] = {"stable": 40, "canary": 10}  # 50 in all: unreadable as a split
    document["routes"]["other"] = {"weights": {"stable": 80, "hotfix": 20}, "shadow": 0}
    path.write_text(json.dumps(document))
    assert isinstance(gitops.router().read(["good"])["good"], errors.RouterStateError)

    done = gitops.controller().abort("good-bot", reason="the split looks wrong")
    assert done.error is None, done
    live = gitops.live("good")
    assert live is not None and live.weight("canary") == 0 and live.shadow == 0
    assert json.loads(path.read_text())["routes"]["other"]["weights"] == {"stable": 80, "hotfix": 20}


def test_a_second_rollback_after_a_retry_reaches_main_too(gitops: GitOps) -> None:
    """Rollback, its revert PR merged, `rollout retry` merged, the gate fails again: main records the
    second rollback through a new revert PR (the first one, merged, is history, not this record)."""
    add_bad_bot(gitops)
    c = gitops.controller()
    assert kind(c.reconcile_once(), "bad-bot") is plan.Kind.ROLLBACK
    [first] = gitops.forge.list(prefix="rollout/bad-bot/rollback", state=forge_base.PRState.OPEN)
    approve_and_merge(gitops, first.number)
    retry = c.retry("bad-bot")
    assert retry.pr is not None
    approve_and_merge(gitops, retry.pr)

    gitops.advance(timedelta(minutes=20))  # measured from the retry: the evidence is twenty minutes'
    assert kind(c.reconcile_once(), "bad-bot") is plan.Kind.ROLLBACK
    [second] = gitops.forge.list(prefix="rollout/bad-bot/rollback", state=forge_base.PRState.OPEN)
    assert second.number not in (first.number, retry.pr)
    assert kind(c.reconcile_once(), "bad-bot") is plan.Kind.HOLD  # the open revert PR holds; no third PR
    assert len(gitops.forge.list(prefix="rollout/bad-bot/rollback", state=forge_base.PRState.OPEN)) == 1
    approve_and_merge(gitops, second.number)
    gitops.advance(timedelta(minutes=5))
    assert kind(c.reconcile_once(), "bad-bot") is plan.Kind.HOLD
    reverts = [m for m in gitops.main_merges() if m.startswith("bad-bot: roll back")]
    assert len(reverts) == 2, gitops.main_log()
