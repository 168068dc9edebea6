"""Fork pull requests cannot trigger a promotion: a fork's PR whose branch is named like one of ours
is never merged by `promotion: auto`, never updated, closed or labelled, and cannot pose as a revert
PR to hold a rollout back. GitHub forge against the OpenAPI-checked stand-in."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from controller import load, plan, proposals, settings
from controller.forge import base as forge_base
from controller.forge import github
from tests.helpers import github_standin as standin_mod
from tests.helpers.gitops import ROLLOUT, GitOps, add_bad_bot, kind, remote_files

pytestmark = pytest.mark.slow
TOKEN = "ghs_forkTEST0123456789abcdef"
UNPACED = settings.GithubBudget(mutation_interval=0.0)  # pacing is tested in tests/github/test_forge_budget.py


@pytest.fixture
def hub(gitops: GitOps) -> Iterator[standin_mod.StandIn]:
    gitops.commit(
        {"rollouts/good-bot/rollout.yaml": ROLLOUT.format(name="good-bot", route="good", promotion="auto")}, "auto"
    )
    add_bad_bot(gitops)
    server = standin_mod.StandIn(token=TOKEN, files=remote_files(gitops.remote), limits=standin_mod.UNPACED).start()
    try:
        yield server
    finally:
        server.stop()


def test_fork_prs_named_like_ours_are_ignored(gitops: GitOps, hub: standin_mod.StandIn) -> None:
    forge = github.GithubForge("acme/rollouts", token=TOKEN, api_url=hub.api_url, limits=UNPACED)
    c = gitops.controller(forge=forge)
    desired = load.load_repo(c.workspace.tree())
    good = desired.rollout("good-bot")
    assert good is not None
    revision = good.revisions["canary"]
    evil_advance = hub.open_fork_pull(
        fork="mallory", branch=proposals.branch("good-bot", "advance", revision), title="good-bot: advance to 100%"
    )
    evil_rollback = hub.open_fork_pull(
        fork="mallory", branch=proposals.branch("good-bot", "rollback", revision), title="good-bot: roll back"
    )
    assert {p.number for p in forge.list(prefix="rollout/")} & {evil_advance, evil_rollback} == set()

    tick = c.reconcile_once()
    assert kind(tick, "good-bot") is plan.Kind.APPLY, "a fork's 'revert PR' must not hold the rollout back"
    gitops.advance(timedelta(minutes=2))
    tick = c.reconcile_once()
    assert kind(tick, "good-bot") is plan.Kind.ADVANCE
    ours = [p for p in forge.list(prefix="rollout/good-bot/") if p.state is forge_base.PRState.MERGED]
    assert len(ours) == 1 and ours[0].number not in (evil_advance, evil_rollback)  # auto-merged: our own PR
    for number in (evil_advance, evil_rollback):
        fork_pr = hub.pulls[number]
        assert fork_pr.state == "open" and not fork_pr.merged_sha and fork_pr.labels == []
    touched = [r for r in hub.records if f"/pulls/{evil_advance}" in r.path or f"/issues/{evil_advance}" in r.path]
    assert touched == [], "the controller wrote to a fork's PR"
    assert hub.violations == []
