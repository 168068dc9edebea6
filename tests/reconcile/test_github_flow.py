"""The reconciler with the GitHub forge against the OpenAPI-checked stand-in: a promotion PR with
evidence and a status, the merge detected, a rollback PR; zero contract violations.

GitHub keeps one repository behind its API and its git remote. Here the stand-in plays the API and a
bare repository plays the git remote; `Mirror` lands each merged PR in the bare repository, as
GitHub's merge would."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from controller import plan, settings
from controller.forge import base as forge_base
from controller.forge import github
from tests.helpers import github_standin as standin_mod
from tests.helpers.gitops import GitOps, add_bad_bot, kind, remote_files

pytestmark = pytest.mark.slow
TOKEN = "ghs_reconcileFLOW0123456789abcdef"
UNPACED = settings.GithubBudget(mutation_interval=0.0)  # pacing is tested in tests/github/test_forge_budget.py


@pytest.fixture
def hub(gitops: GitOps) -> Iterator[standin_mod.StandIn]:
    add_bad_bot(gitops)
    server = standin_mod.StandIn(token=TOKEN, files=remote_files(gitops.remote), limits=standin_mod.UNPACED).start()
    try:
        yield server
    finally:
        server.stop()


def land(gitops: GitOps, hub: standin_mod.StandIn, pr: forge_base.PullRequest, paths: list[str]) -> None:
    """GitHub merged `pr`: the git remote's main now has its files."""
    gitops.commit({p: hub.read_file("main", p).decode() for p in paths}, f"Merge pull request #{pr.number}")


def test_reconcile_with_the_github_forge(gitops: GitOps, hub: standin_mod.StandIn) -> None:
    forge = github.GithubForge("acme/rollouts", token=TOKEN, api_url=hub.api_url, limits=UNPACED)
    c = gitops.controller(forge=forge)

    tick = c.reconcile_once()
    assert kind(tick, "good-bot") is plan.Kind.APPLY
    assert kind(tick, "bad-bot") is plan.Kind.ROLLBACK  # canary 0 now, then a revert PR on GitHub
    assert gitops.live("bad").weight("canary") == 0
    [rollback] = forge.list(prefix="rollout/bad-bot/", state=forge_base.PRState.OPEN)
    assert rollback.title.startswith("bad-bot: roll back (eval_pass_rate")

    gitops.advance(timedelta(minutes=2))
    tick = c.reconcile_once()
    assert kind(tick, "good-bot") is plan.Kind.ADVANCE
    c.reconcile_once()  # find-or-update: still one promotion PR
    [promotion] = forge.list(prefix="rollout/good-bot/", state=forge_base.PRState.OPEN)
    assert promotion.title == "good-bot: advance to 10% (step 2 of 3)"
    assert "eval" in promotion.body and "after merge" in promotion.body
    statuses = hub.statuses[promotion.head_sha]
    assert statuses[-1]["state"] == "success" and statuses[-1]["context"] == "rollout/gates"
    assert gitops.live("good").weight("canary") == 0  # not merged: no more exposure

    hub.review(promotion.number, login="alice")
    assert forge.find(promotion.branch).approved
    merged = forge.merge(promotion.number, message="approved by alice")
    assert merged.state is forge_base.PRState.MERGED
    land(gitops, hub, merged, ["rollouts/good-bot/rollout.yaml"])

    tick = c.reconcile_once()
    assert kind(tick, "good-bot") is plan.Kind.APPLY
    assert gitops.live("good").weight("canary") == 10
    assert forge.find(promotion.branch).state is forge_base.PRState.MERGED
    assert len(forge.list(prefix="rollout/bad-bot/")) == 1
    assert hub.violations == []
