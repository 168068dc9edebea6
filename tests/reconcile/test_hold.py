"""`rollout hold`: a pause by hand. Its pause PR holds the rollout while it is open and once merged: no
new advance PR, an open promotion PR labelled `paused` and never merged by the bot, the weights as they
were; `rollout retry` lets it run again. The file router, the local forge in a real git remote, and a
real Prometheus (tests/helpers/gitops.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from controller import errors, plan, proposals
from controller.forge import base as forge_base
from tests.helpers.gitops import ROLLOUT, GitOps, add_bad_bot, approve_and_merge, kind, outcome

pytestmark = pytest.mark.slow


def open_prs(gitops: GitOps, name: str) -> dict[str, forge_base.PullRequest]:
    """The rollout's open PRs by action (advance, pause, ...)."""
    found = {}
    for pr in gitops.forge.list(prefix=f"rollout/{name}/", state=forge_base.PRState.OPEN):
        parsed = proposals.parse_branch(pr.branch)
        assert parsed is not None
        found[parsed[1]] = pr
    return found


def test_a_hold_keeps_an_open_promotion_pr_waiting_and_a_retry_resumes(gitops: GitOps) -> None:
    c = gitops.controller()
    assert kind(c.reconcile_once(), "good-bot") is plan.Kind.APPLY
    gitops.advance(timedelta(minutes=2))
    assert kind(c.reconcile_once(), "good-bot") is plan.Kind.ADVANCE
    advance = open_prs(gitops, "good-bot")["advance"]
    before = gitops.live("good")

    held = c.hold("good-bot", reason="waiting for the support team", by="alice")
    assert held.pr is not None
    pause = gitops.forge.get(held.pr)
    assert pause.branch.startswith("rollout/good-bot/pause-")
    assert pause.title.startswith("good-bot: pause at step 1 (held by hand by @\u200balice: waiting")  # no @mention
    assert "held by hand by \\@alice: waiting for the support team" in pause.body  # escaped: no @mention
    assert f"opened or updated #{pause.number}: {pause.title}" in held.actions
    labelled = gitops.forge.get(advance.number)
    assert proposals.PAUSED_LABEL in labelled.labels
    assert f"See #{pause.number}" in gitops.forge.comments(advance.number)["pause"]
    assert gitops.live("good") == before  # a hold lowers nothing and raises nothing

    for _ in range(2):  # the pause PR open, not merged: the rollout advances no further
        gitops.advance(timedelta(minutes=5))
        tick = c.reconcile_once()
        assert kind(tick, "good-bot") is plan.Kind.HOLD
        assert "pause PR is open" in outcome(tick, "good-bot").decision.reason  # type: ignore[union-attr]
        assert set(open_prs(gitops, "good-bot")) == {"advance", "pause"}
        assert gitops.live("good") == before

    approve_and_merge(gitops, pause.number)  # merged: main says Paused, and it still holds
    tick = c.reconcile_once()
    assert kind(tick, "good-bot") is plan.Kind.HOLD and "paused" in outcome(tick, "good-bot").decision.reason  # type: ignore[union-attr]
    assert gitops.live("good") == before

    retry = c.retry("good-bot")
    assert retry.pr is not None
    approve_and_merge(gitops, retry.pr)
    gitops.advance(timedelta(minutes=20))  # measured from the retry: the evidence is twenty minutes'
    tick = c.reconcile_once()
    assert kind(tick, "good-bot") is plan.Kind.ADVANCE, outcome(tick, "good-bot").decision  # it runs again
    assert open_prs(gitops, "good-bot")["advance"].number == advance.number


def test_a_retry_lifts_a_hold_not_yet_merged_only_once_merged_and_a_second_hold_opens_a_new_pr(gitops: GitOps) -> None:
    c = gitops.controller()
    c.reconcile_once()
    first = c.hold("good-bot", reason="", by="bob")
    assert first.pr is not None
    assert gitops.forge.get(first.pr).title == "good-bot: pause at step 1 (held by hand by @\u200bbob)"
    gitops.advance(timedelta(minutes=2))
    assert kind(c.reconcile_once(), "good-bot") is plan.Kind.HOLD

    retry = c.retry("good-bot")
    assert retry.pr is not None and f"#{first.pr} holds until #{retry.pr} is merged" in retry.actions
    assert gitops.forge.get(first.pr).state is forge_base.PRState.OPEN  # the hold stands until the retry is merged
    assert f"proposed #{retry.pr}" in gitops.forge.comments(first.pr)["retry"]
    assert kind(c.reconcile_once(), "good-bot") is plan.Kind.HOLD  # nothing merged: nothing advances

    approve_and_merge(gitops, retry.pr)
    gitops.advance(timedelta(minutes=20))  # measured from the retry
    tick = c.reconcile_once()
    assert kind(tick, "good-bot") is plan.Kind.ADVANCE, outcome(tick, "good-bot").decision  # the merged retry lifts it
    assert f"closed #{first.pr} (retried in #{retry.pr})" in outcome(tick, "good-bot").actions
    assert gitops.forge.get(first.pr).state is forge_base.PRState.CLOSED
    assert f"retry PR #{retry.pr} was merged" in gitops.forge.comments(first.pr)["close"]

    second = c.hold("good-bot", reason="again", by="bob")  # after the retry: it holds again
    assert second.pr not in (None, first.pr)
    assert kind(c.reconcile_once(), "good-bot") is plan.Kind.HOLD


def test_a_pause_pr_closed_by_hand_lifts_the_hold(gitops: GitOps) -> None:
    c = gitops.controller()
    c.reconcile_once()
    held = c.hold("good-bot", reason="", by="bob")
    assert held.pr is not None
    gitops.advance(timedelta(minutes=2))
    assert kind(c.reconcile_once(), "good-bot") is plan.Kind.HOLD
    gitops.forge.close(held.pr, comment="not needed")
    assert kind(c.reconcile_once(), "good-bot") is plan.Kind.ADVANCE


def test_under_promotion_auto_a_hold_keeps_the_bot_from_merging(gitops: GitOps) -> None:
    auto = ROLLOUT.format(name="good-bot", route="good", promotion="auto")
    gitops.commit({"rollouts/good-bot/rollout.yaml": auto}, "good-bot: promotion auto")
    c = gitops.controller()
    c.reconcile_once()
    c.hold("good-bot", reason="freeze for the launch", by="carol")
    gitops.advance(timedelta(minutes=2))
    assert kind(c.reconcile_once(), "good-bot") is plan.Kind.HOLD
    assert set(open_prs(gitops, "good-bot")) == {"pause"}
    assert not [m for m in gitops.main_merges() if "advance" in m]


def test_a_rolled_back_rollout_has_nothing_to_hold(gitops: GitOps) -> None:
    add_bad_bot(gitops)
    c = gitops.controller()
    c.reconcile_once()
    [revert] = gitops.forge.list(prefix="rollout/bad-bot/")
    approve_and_merge(gitops, revert.number)
    with pytest.raises(errors.RolloutError, match="rolled back: there is nothing to hold"):
        c.hold("bad-bot", reason="x", by="alice")


def test_a_hold_while_the_revert_pr_is_pending_is_refused(gitops: GitOps) -> None:
    add_bad_bot(gitops)
    c = gitops.controller()
    c.reconcile_once()
    [revert] = gitops.forge.list(prefix="rollout/bad-bot/")  # open, not merged: main does not say RolledBack yet
    with pytest.raises(errors.RolloutError, match=r"rolled back already .*: nothing to hold"):
        c.hold("bad-bot", reason="x", by="alice")
    assert [pr.number for pr in gitops.forge.list(prefix="rollout/bad-bot/")] == [revert.number]  # no pause PR


def test_a_hold_on_an_open_pause_pr_leaves_it_as_it_is_and_comments_the_reason(gitops: GitOps) -> None:
    """One pause branch per revision: a second hold (as a hold on a pause gate's PR) never rewrites the PR
    that holds the rollout already, whose reason and evidence the next tick would write back."""
    c = gitops.controller()
    c.reconcile_once()
    first = c.hold("good-bot", reason="the gate's reason", by="alice")
    assert first.pr is not None
    before = gitops.forge.get(first.pr)

    second = c.hold("good-bot", reason="launch day", by="bob")
    assert second.pr == first.pr
    assert second.actions == (f"#{first.pr} holds the rollout already: commented the hold on it",)
    after = gitops.forge.get(first.pr)
    assert (after.title, after.body, after.head_sha) == (before.title, before.body, before.head_sha)
    assert "Also held by hand by \\@bob: launch day" in gitops.forge.comments(first.pr)["hold"]
    assert [p.number for p in gitops.forge.list(prefix="rollout/good-bot/pause-")] == [first.pr]


def test_a_hold_after_a_merged_retry_holds_even_before_the_tick_closes_the_lifted_pause_pr(gitops: GitOps) -> None:
    c = gitops.controller()
    c.reconcile_once()
    first = c.hold("good-bot", reason="", by="bob")
    retry = c.retry("good-bot")
    assert first.pr is not None and retry.pr is not None
    approve_and_merge(gitops, retry.pr)

    second = c.hold("good-bot", reason="again", by="bob")  # no tick yet: the first pause PR is still open
    assert second.pr not in (None, first.pr)
    assert gitops.forge.get(first.pr).state is forge_base.PRState.CLOSED
    gitops.advance(timedelta(minutes=20))
    assert kind(c.reconcile_once(), "good-bot") is plan.Kind.HOLD
