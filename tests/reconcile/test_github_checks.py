"""Every kind of pull request the controller opens on GitHub, and a human's, reaches main exactly when
its check says so: branch protection on the stand-in requires `rollout-checks`; the composite action's
check step runs with the real `rollout` on a real checkout of the PR's merge commit (gates measured in
a real Prometheus); its result is reported on the PR's head as Actions would; then the merge.

A revert, a pause, a retry, a completion and a decommission are refused until the check has run, then
merge; a promotion merges on passing gates; a promotion whose gates fail stays refused, whatever its
branch is called. GitHub's API is the stand-in; its git remote is a bare repository (`land` copies each
merged PR there, as GitHub's merge would)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import git
import pytest

from controller import edits, errors, load, plan, reconcile, repo, settings, spec
from controller.forge import base as forge_base
from controller.forge import github
from tests.helpers import github_actions
from tests.helpers import github_standin as standin_mod
from tests.helpers.gitops import ROLLOUT, GitOps, add_bad_bot

pytestmark = pytest.mark.slow
TOKEN = "ghs_reconcileCHECKS0123456789abcdef"
UNPACED = settings.GithubBudget(mutation_interval=0.0)  # pacing is tested in tests/github/test_forge_budget.py


@dataclass
class Hub:
    """GitHub for one test: the stand-in with `main` protected, the forge, the controller on it."""

    gitops: GitOps
    server: standin_mod.StandIn
    forge: github.GithubForge
    controller: reconcile.Controller
    work: Path

    def tick(self, name: str) -> plan.Kind:
        outcome = next(o for o in self.controller.reconcile_once().outcomes if o.rollout == name)
        assert outcome.error is None, outcome.error
        assert outcome.decision is not None
        return outcome.decision.kind

    def open_pr(self, name: str) -> forge_base.PullRequest:
        [pr] = self.forge.list(prefix=f"rollout/{name}/", state=forge_base.PRState.OPEN)
        return pr

    def check(self, pr: forge_base.PullRequest) -> github_actions.StepRun:
        """The required check, as the workflow runs it on this PR: its result is reported on the head."""
        files = self.server.pull_files(pr.number)
        checkout = github_actions.merge_checkout(self.gitops.remote, files, work=self.work)
        work = self.work / f"runner-{pr.number}-{pr.head_sha[:8]}"
        work.mkdir()
        run = github_actions.run_check(cwd=checkout, work=work)
        assert run.code in (0, 1), run.log
        assert run.outputs == {"result": "pass" if run.code == 0 else "fail"}, run.log
        headline = run.summary.splitlines()[0]
        github_actions.report(self.server.api_url, TOKEN, pr.head_sha, passed=run.code == 0, summary=headline)
        return run

    def refused(self, pr: forge_base.PullRequest, why: str) -> None:
        message = f'HTTP 405: Required status check "rollout-checks" is {why}.'
        with pytest.raises(errors.ForgeError, match=re.escape(message)):
            self.forge.merge(pr.number, message=pr.title)
        assert self.forge.find(pr.branch).state is forge_base.PRState.OPEN  # type: ignore[union-attr]

    def merge(self, pr: forge_base.PullRequest, *, records: str) -> str:
        """Refused before its check, checked, then merged and landed on main; the check's summary."""
        self.refused(pr, "expected")
        run = self.check(pr)
        assert run.code == 0, run.log
        assert records in run.summary, run.summary
        merged = self.forge.merge(pr.number, message=pr.title)
        assert merged.state is forge_base.PRState.MERGED
        files = self.server.pull_files(pr.number)
        self.gitops.commit(
            {p: self.server.read_file("main", p).decode() for p in files}, f"Merge pull request #{pr.number}"
        )
        return run.summary

    def human_pr(self, name: str, *, branch: str, step: int) -> forge_base.PullRequest:
        """A human's PR that sets `status.step` of `name` by hand (through the API, on any branch)."""
        tree = repo.GitTree.open(self.gitops.remote, "main")
        loaded = load.load_repo(tree).rollout(name)
        assert loaded is not None
        status = {"revision": loaded.revisions["canary"], "step": step, "phase": "Progressing"}
        text = edits.set_status(tree.read(loaded.path).decode(), status)
        change = forge_base.Change(
            branch=branch,
            title=f"{name}: faster, step {step + 1}",
            body="We are confident.",
            message="by hand",
            files={loaded.path: text.encode()},
        )
        return self.forge.propose(change, base="main")


def remote_files(remote: Path) -> dict[str, bytes]:
    tree = git.Repo(remote).commit("main").tree
    return {b.path: b.data_stream.read() for b in tree.traverse() if isinstance(b, git.Blob)}


@pytest.fixture
def hub(gitops: GitOps, tmp_path: Path) -> Iterator[Hub]:
    add_bad_bot(gitops)
    server = standin_mod.StandIn(token=TOKEN, files=remote_files(gitops.remote), limits=standin_mod.UNPACED).start()
    try:
        github_actions.protect(server.api_url, TOKEN)  # rollout-checks required, nobody bypasses
        forge = github.GithubForge("acme/rollouts", token=TOKEN, api_url=server.api_url, limits=UNPACED)
        yield Hub(gitops, server, forge, gitops.controller(forge=forge), tmp_path)
        assert server.violations == []
    finally:
        server.stop()


def main(hub: Hub, name: str) -> spec.Rollout:
    loaded = load.load_repo(repo.GitTree.open(hub.gitops.remote, "main")).rollout(name)
    assert loaded is not None
    return loaded.rollout


def gates_status(hub: Hub, pr: forge_base.PullRequest) -> dict[str, str]:
    """The controller's own `rollout/gates` status on the PR's head (informational, not required)."""
    return next(s for s in reversed(hub.server.statuses[pr.head_sha]) if s["context"] == "rollout/gates")


def test_every_controller_pr_reaches_main(hub: Hub) -> None:
    # a rollback: the canary is out at once, and the revert PR is mergeable once its check ran
    assert hub.tick("good-bot") is plan.Kind.APPLY
    revert = hub.open_pr("bad-bot")
    assert revert.branch.startswith("rollout/bad-bot/rollback-")
    assert hub.gitops.live("bad").weight("canary") == 0  # type: ignore[union-attr]
    assert gates_status(hub, revert)["state"] == "success"
    assert gates_status(hub, revert)["description"].startswith("merging records the rollback")
    summary = hub.merge(revert, records="records the rollback of revision")
    assert "| bad-bot | rollback | records the rollback of revision" in summary and "| not needed |" in summary
    assert main(hub, "bad-bot").status.phase is spec.Phase.ROLLED_BACK  # type: ignore[union-attr]

    # the retry: a human asks to run the rolled-back revision again; merging lets it start over
    outcome = hub.controller.retry("bad-bot")
    retry = hub.open_pr("bad-bot")
    assert outcome.pr == retry.number and retry.branch.startswith("rollout/bad-bot/retry-")
    hub.merge(retry, records="lets revision")

    # promotions: each merges on gates that pass when the check measures them
    for to in ("10%", "100%"):
        hub.gitops.advance(timedelta(minutes=2))
        assert hub.tick("good-bot") is plan.Kind.ADVANCE
        promotion = hub.open_pr("good-bot")
        summary = hub.merge(promotion, records="raises revision")
        assert "| good-bot | promotion | raises revision" in summary and "| **PASS** |" in summary
        assert "### Gates for good-bot: **PASS**" in summary
        assert hub.tick("good-bot") is plan.Kind.APPLY
        assert hub.gitops.live("good").weight("canary") == int(to.rstrip("%"))  # type: ignore[union-attr]

    # the completion, then the decommission: records, mergeable without gates
    hub.gitops.advance(timedelta(minutes=2))
    assert hub.tick("good-bot") is plan.Kind.COMPLETE
    hub.merge(hub.open_pr("good-bot"), records="records the completion")
    assert hub.tick("good-bot") is plan.Kind.APPLY
    hub.gitops.advance(timedelta(minutes=31))
    assert hub.tick("good-bot") is plan.Kind.DECOMMISSION
    hub.merge(hub.open_pr("good-bot"), records="removes the old stable")

    log = hub.gitops.main_log()
    merges = [m for m in log if m.startswith("Merge pull request")]
    assert len(merges) == 6  # revert, retry, two advances, completion, decommission: all on main


def test_a_pause_reaches_main_and_a_retry_resumes(hub: Hub) -> None:
    paused = ROLLOUT.format(name="bad-bot", route="bad", promotion="manual").replace("rollback", "pause")
    hub.gitops.commit({"rollouts/bad-bot/rollout.yaml": paused}, "bad-bot: a failing gate pauses")
    assert hub.gitops.live("bad").shadow == 100  # type: ignore[union-attr]  # the canary already mirrored there
    hub.gitops.advance(timedelta(minutes=2))
    assert hub.tick("bad-bot") is plan.Kind.PAUSE
    pause = hub.open_pr("bad-bot")
    assert pause.branch.startswith("rollout/bad-bot/pause-")
    assert gates_status(hub, pause)["state"] == "success"  # never FAILURE: it would block the record
    assert gates_status(hub, pause)["description"].startswith("merging records the pause")
    hub.merge(pause, records="records the pause of revision")
    assert hub.tick("bad-bot") is plan.Kind.HOLD

    hub.controller.retry("bad-bot")
    hub.merge(hub.open_pr("bad-bot"), records="lets revision")


def test_a_human_promotion_needs_passing_gates_whatever_its_branch(hub: Hub) -> None:
    assert hub.tick("good-bot") is plan.Kind.APPLY

    # the canary whose gate fails: a PR raising its step by hand, on a branch named like ours, stays refused
    bad = hub.human_pr("bad-bot", branch="rollout/bad-bot-by-hand", step=1)
    hub.refused(bad, "expected")
    run = hub.check(bad)
    assert run.code == 1 and "| bad-bot | promotion | raises revision" in run.summary
    assert "| **FAIL**: gates FAIL: eval\\_pass\\_rate |" in run.summary
    assert "::error title=rollout check::NOT mergeable: 1 promotion" in run.log
    hub.refused(bad, "failing")

    # the good canary raised by hand on a feature branch: its gates pass, so it may merge
    good = hub.human_pr("good-bot", branch="feature/faster-ramp", step=1)
    hub.merge(good, records="raises revision")
    assert hub.tick("good-bot") is plan.Kind.APPLY
    assert hub.gitops.live("good").weight("canary") == 10  # type: ignore[union-attr]
    hub.refused(bad, "failing")  # still refused
