"""The reconciler's cost on GitHub, counted by the stand-in: a quiet repository's tick costs nothing
(every read a 304), and a tick's requests do not grow with the closed pull requests in its history."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import git
import pytest

from controller import coordination, settings
from controller.forge import github
from tests.helpers import github_standin as standin_mod
from tests.helpers.gitops import GitOps, add_bad_bot, outcome, remote_files

pytestmark = pytest.mark.slow
TOKEN = "ghs_reconcileBUDGET0123456789abcd"
UNPACED = settings.GithubBudget(mutation_interval=0.0)  # pacing is tested in tests/github/test_forge_budget.py


@dataclass(frozen=True)
class Only(coordination.Shards):
    """This controller's shards hold only `names` (the other rollouts are another controller's)."""

    names: frozenset[str] = frozenset()

    def mine(self, rollout: str) -> bool:
        return rollout in self.names

    def confirm(self, rollouts: Sequence[str]) -> set[str]:
        return {r for r in rollouts if r in self.names}


def hub_for(gitops: GitOps) -> standin_mod.StandIn:
    return standin_mod.StandIn(token=TOKEN, files=remote_files(gitops.remote), limits=standin_mod.UNPACED).start()


def test_a_quiet_repository_costs_no_budget_once_settled(gitops: GitOps) -> None:
    add_bad_bot(gitops)
    hub = hub_for(gitops)
    try:
        forge = github.GithubForge("acme/rollouts", token=TOKEN, api_url=hub.api_url, limits=UNPACED)
        # bad-bot only: its rollback is done in one tick, then nothing changes (good-bot would advance)
        c = gitops.controller(forge=forge, shards=Only("acme/rollouts", names=frozenset({"bad-bot"})))
        first = c.reconcile_once()  # the rollback, live, and its revert PR on GitHub
        c.reconcile_once()  # it lists its own new PR once (its listing changed)
        assert outcome(first, "bad-bot").pr is not None
        spent, sent = hub.counted(TOKEN), len(hub.records)
        second = c.reconcile_once()
        assert all(o.error is None for o in second.outcomes)
        assert hub.counted(TOKEN) == spent, [(r.op_id, r.status) for r in hub.records[sent:]]
        assert len(hub.records) > sent and {r.status for r in hub.records[sent:]} == {304}
        assert hub.violations == []
    finally:
        hub.stop()


def test_a_ticks_requests_do_not_grow_with_closed_pull_requests(gitops: GitOps) -> None:
    add_bad_bot(gitops)
    state = gitops.work / "state"
    saved = gitops.work / "state-before"
    shutil.copytree(state, saved)
    sent = []
    for history in (0, 100):
        shutil.rmtree(state)
        shutil.copytree(saved, state)  # each tick starts from the same live state
        hub = hub_for(gitops)
        try:
            for i in range(history):
                action = "rollback" if i % 10 == 0 else "advance-1"
                hub.closed_pull(branch=f"rollout/bot-{i}/{action}-{i:012x}", title=f"old #{i}", merged=i % 2 == 0)
            forge = github.GithubForge("acme/rollouts", token=TOKEN, api_url=hub.api_url, limits=UNPACED)
            c = gitops.controller(holder=f"history-{history}", forge=forge)
            tick = c.reconcile_once()
            assert outcome(tick, "bad-bot").pr is not None and not tick.skipped
            c.release_lease()
            sent.append(len(hub.records))
            assert hub.violations == []
        finally:
            hub.stop()
    assert sent[0] == sent[1]


def test_an_open_promotion_pr_is_not_rewritten_every_tick_for_its_figures(gitops: GitOps) -> None:
    """good-bot's advance PR waits for a human; each tick measures a few more samples, so its body's
    figures differ. Within `pr_refresh` the PR is left as it is: a waiting PR costs no budget. After it,
    the figures are brought up to date once."""
    hub = hub_for(gitops)
    try:
        forge = github.GithubForge("acme/rollouts", token=TOKEN, api_url=hub.api_url, limits=UNPACED)
        c = gitops.controller(forge=forge)
        opened = None
        for _ in range(3):  # apply the first step, then open the advance PR
            opened = outcome(c.reconcile_once(), "good-bot").pr or opened
        assert opened is not None
        updates = lambda: sum(1 for r in hub.records if r.op_id == "pulls/update")  # noqa: E731
        before, spent = updates(), hub.counted(TOKEN)
        gitops.advance(timedelta(minutes=1))  # the figures move on
        c.reconcile_once()
        assert updates() == before and hub.counted(TOKEN) == spent, [r.op_id for r in hub.records[-20:]]
        gitops.advance(settings.Settings().pr_refresh)
        c.reconcile_once()
        assert updates() == before + 1  # brought up to date, once
        assert hub.violations == []
    finally:
        hub.stop()


def test_a_pr_head_someone_else_moved_is_set_back_at_once(gitops: GitOps) -> None:
    """The refresh rule never leaves a PR as it is when its head is not the controller's commit: a
    push to the bot's branch (by anyone with write access) is undone on the next tick, before any check
    or merge could vouch for it."""
    c = gitops.controller()
    number = None
    for _ in range(3):
        number = outcome(c.reconcile_once(), "good-bot").pr or number
    assert number is not None
    pr = gitops.forge.find(next(b for b in gitops.branches() if b.startswith("rollout/good-bot/advance")))
    assert pr is not None
    ours = pr.head_sha
    clone = gitops.work / "intruder"
    r = git.Repo.clone_from(str(gitops.remote), clone, branch=pr.branch)
    (clone / "rollouts" / "good-bot" / "rollout.yaml").write_text("# replaced\n")
    r.git.commit(
        "-am",
        "sneak",
        env={
            "GIT_AUTHOR_NAME": "x",
            "GIT_AUTHOR_EMAIL": "x@x",
            "GIT_COMMITTER_NAME": "x",
            "GIT_COMMITTER_EMAIL": "x@x",
        },
    )
    r.git.push("origin", f"HEAD:{pr.branch}")
    moved = r.head.commit.hexsha
    c.reconcile_once()  # within pr_refresh
    head = git.Repo(gitops.remote).commit(pr.branch).hexsha
    assert head != moved and git.Repo(gitops.remote).commit(pr.branch).tree == git.Repo(gitops.remote).commit(ours).tree
