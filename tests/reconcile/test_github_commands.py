"""PR comment commands against the GitHub stand-in (every request checked against GitHub's OpenAPI
description): `/rollout abort|hold|retry` from a commenter with write access, or a code owner of the
rollout's file, takes effect as the CLI's would; anyone else is refused with nothing changed; a
malformed command gets the usage; a comment on a PR that is not the bot's is refused; bots are never
heard; the token never appears. Then the workflow's own step, run by bash with the real `rollout`.

The stand-in plays GitHub's API and a bare repository its git remote, as in test_github_flow.py."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from controller import cli, commands, plan, proposals, reconcile, settings
from controller.forge import base as forge_base
from controller.forge import github
from controller.reconcile import commands as steering
from tests.helpers import github_standin as standin_mod
from tests.helpers.gitops import CONFIG, GitOps, kind, remote_files
from tests.helpers.webhook_receiver import receiver

pytestmark = pytest.mark.slow
TOKEN = "ghs_commandsTOKEN0123456789abcdef"
UNPACED = settings.GithubBudget(mutation_interval=0.0)
ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "rollout-commands.yml"
# @ghost: named, but no collaborator (a stale or mistyped login someone could register): never heard
CODEOWNERS = "/rollouts/                @acme/ml-platform\n/rollouts/good-bot/       @acme/support-ai @dana @ghost\n"
PEOPLE = {"alice": "write", "mia": "maintain", "rita": "read", "dana": "read", "tom": "triage"}


@dataclass
class Hub:
    gitops: GitOps
    server: standin_mod.StandIn
    forge: github.GithubForge
    controller: reconcile.Controller
    ids: Iterator[int]

    def promotion(self) -> forge_base.PullRequest:
        """The bot's promotion PR of good-bot: its first step done, every gate passed."""
        assert kind(self.controller.reconcile_once(), "good-bot") is plan.Kind.APPLY
        self.gitops.advance(timedelta(minutes=2))
        assert kind(self.controller.reconcile_once(), "good-bot") is plan.Kind.ADVANCE
        return self.open_prs()["advance"]

    def open_prs(self) -> dict[str, forge_base.PullRequest]:
        found = {}
        for pr in self.forge.list(prefix="rollout/good-bot/", state=forge_base.PRState.OPEN):
            parsed = proposals.parse_branch(pr.branch)
            assert parsed is not None
            found[parsed[1]] = pr
        return found

    def event(self, number: int, body: str, *, login: str, user_type: str = "User") -> dict[str, Any]:
        """GitHub's issue_comment event for a new comment on PR `number`."""
        return {
            "action": "created",
            "issue": {"number": number, "pull_request": {"url": f"{self.server.repo_api}/pulls/{number}"}},
            "comment": {"id": next(self.ids), "body": body, "user": {"login": login, "type": user_type}},
            "repository": {"full_name": "acme/rollouts"},
        }

    def say(self, number: int, body: str, *, login: str, user_type: str = "User") -> steering.Steered:
        comment = commands.comment_of(self.event(number, body, login=login, user_type=user_type))
        assert comment is not None
        return steering.steer(self.controller, self.forge, comment)

    def answers(self, number: int) -> list[str]:
        return [
            c["body"] for c in self.server.comments.values() if c["issue"] == number and "rollout:command-" in c["body"]
        ]


def hub_config(gitops: GitOps, server: standin_mod.StandIn) -> str:
    return CONFIG.format(prom=gitops.prom_url).replace(
        "forge: {type: local}", f"forge: {{type: github, repository: acme/rollouts, apiUrl: '{server.api_url}'}}"
    )


@pytest.fixture
def hub(gitops: GitOps) -> Iterator[Hub]:
    server = standin_mod.StandIn(token=TOKEN, files=remote_files(gitops.remote), limits=standin_mod.UNPACED)
    files = {"rollouts/controller.yaml": hub_config(gitops, server), ".github/CODEOWNERS": CODEOWNERS}
    gitops.commit(files, "GitHub, code owners")  # one repository: its git remote and its API say the same
    server.push({path: text.encode() for path, text in files.items()}, "GitHub, code owners")
    server.permissions.update(PEOPLE)
    server.start()
    forge = github.GithubForge("acme/rollouts", token=TOKEN, api_url=server.api_url, limits=UNPACED)
    try:
        yield Hub(gitops, server, forge, gitops.controller(forge=forge), iter(range(9000, 10000)))
    finally:
        server.stop()
        assert server.violations == []


def test_an_abort_by_a_writer_takes_the_canary_out_at_once_and_opens_the_revert_pr(hub: Hub) -> None:
    promotion = hub.promotion()
    assert hub.gitops.live("good").shadow == 100  # type: ignore[union-attr]
    done = hub.say(promotion.number, "/rollout abort answers in riddles", login="alice")
    assert done.status is steering.Status.DONE, done.said
    live = hub.gitops.live("good")
    assert live is not None and live.weight("canary") == 0 and live.shadow == 0  # at once, before any merge
    revert = hub.open_prs()["rollback"]
    assert f"answers in riddles \\(by \\@alice on \\#{promotion.number}\\)" in revert.body  # markdown-escaped
    assert hub.forge.find(promotion.branch).state is forge_base.PRState.CLOSED  # type: ignore[union-attr]
    [said] = hub.answers(promotion.number)
    assert "`/rollout abort` by @alice (@alice has write access)" in said and f"#{revert.number}" in said
    assert kind(hub.controller.reconcile_once(), "good-bot") is plan.Kind.HOLD  # the revert PR holds it

    again = hub.say(revert.number, "/rollout abort again", login="alice")  # on the revert PR: already done
    assert again.status is steering.Status.DONE and "nothing to do: the rollout is rolled back already" in again.said, (
        again.said
    )
    assert set(hub.open_prs()) == {"rollback"}

    late = hub.say(promotion.number, "/rollout hold", login="alice")  # the promotion PR was closed by the abort
    assert late.status is steering.Status.REFUSED and "this PR is closed" in late.said, late.said
    assert set(hub.open_prs()) == {"rollback"}  # no pause PR beside the revert PR


def test_a_hold_opens_the_pause_pr_and_a_following_tick_does_not_advance(hub: Hub) -> None:
    promotion = hub.promotion()
    before = hub.gitops.live("good")
    done = hub.say(promotion.number, "/rollout hold launch day", login="mia")  # maintain: may write
    assert done.status is steering.Status.DONE, done.said
    pause = hub.open_prs()["pause"]
    assert pause.title.startswith("good-bot: pause at step 1 (held by hand by @\u200bmia: launch day")
    assert proposals.PAUSED_LABEL in hub.forge.find(promotion.branch).labels  # type: ignore[union-attr]
    hub.gitops.advance(timedelta(minutes=5))
    assert kind(hub.controller.reconcile_once(), "good-bot") is plan.Kind.HOLD
    assert set(hub.open_prs()) == {"advance", "pause"} and hub.gitops.live("good") == before
    assert hub.server.statuses[promotion.head_sha][-1]["state"] == "pending"  # its check set back: not mergeable

    done = hub.say(pause.number, "/rollout retry", login="alice")
    assert done.status is steering.Status.DONE, done.said
    assert set(hub.open_prs()) == {"advance", "pause", "retry"}  # the hold stands until the retry is merged
    assert f"#{pause.number} holds until #{hub.open_prs()['retry'].number} is merged" in hub.answers(pause.number)[0]


def test_a_code_owner_without_write_access_may_steer(hub: Hub) -> None:
    promotion = hub.promotion()
    done = hub.say(promotion.number, "/rollout hold", login="dana")
    assert done.status is steering.Status.DONE, done.said
    assert "@dana is a code owner of `rollouts/good-bot/rollout.yaml`" in hub.answers(promotion.number)[0]
    assert "pause" in hub.open_prs()


@pytest.mark.parametrize(
    ("login", "why"),
    [
        (
            "rita",
            "@rita has read access and is not a code owner of `rollouts/good-bot/rollout.yaml` (its owning "
            "teams, `@acme/support-ai`, count only through their members' write access)",
        ),
        ("tom", "@tom has read access"),  # triage reads as read
        ("stranger", "@stranger has none access"),  # unknown to the repository: GitHub answers 404
        ("ghost", "@ghost is named a code owner of `rollouts/good-bot/rollout.yaml` but has none access"),
    ],
    ids=["read", "triage", "unknown", "code-owner-no-collaborator"],
)
def test_a_commenter_without_permission_is_refused_and_nothing_changes(hub: Hub, login: str, why: str) -> None:
    promotion = hub.promotion()
    before, pulls = hub.gitops.live("good"), hub.open_prs()
    for body in ("/rollout abort I say so", "/rollout hold", "/rollout retry"):
        done = hub.say(promotion.number, body, login=login)
        assert done.status is steering.Status.REFUSED and why in done.said
    assert hub.gitops.live("good") == before and hub.open_prs() == pulls  # no router write, no PR
    answers = hub.answers(promotion.number)
    assert len(answers) == 3 and all("refused, nothing was done" in a for a in answers)


def test_a_malformed_command_gets_the_usage_and_does_nothing(hub: Hub) -> None:
    promotion = hub.promotion()
    before = hub.gitops.live("good")
    done = hub.say(promotion.number, "/rollout abort", login="alice")
    assert done.status is steering.Status.USAGE
    [said] = hub.answers(promotion.number)
    assert "`/rollout abort` needs a reason: nothing was done." in said and "/rollout hold [reason]" in said
    assert hub.gitops.live("good") == before and set(hub.open_prs()) == {"advance"}


def test_a_comment_on_a_pr_that_is_not_the_bots_is_refused(hub: Hub) -> None:
    hub.promotion()
    change = forge_base.Change("feature/faster", "Faster ramp", "", "faster", {"README.md": b"x\n"})
    human = hub.forge.propose(change, base="main")
    done = hub.say(human.number, "/rollout abort stop", login="alice")
    assert done.status is steering.Status.REFUSED and "is not a pull request of the rollout controller's" in done.said
    fork = hub.server.open_fork_pull(fork="mallory", branch="rollout/good-bot/advance-0", title="named like ours")
    assert hub.say(fork, "/rollout abort stop", login="alice").status is steering.Status.REFUSED
    assert hub.gitops.live("good").shadow == 100  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("body", "login", "user_type"),
    [
        ("/rollout abort loop", "rollout-bot[bot]", "Bot"),
        # our answer, by a PAT, quoting the command it answers first: the marker alone keeps it silent
        ("/rollout abort loop\n<!-- rollout:command-1 -->", "rollout-bot", "User"),
        ("LGTM, /rollout abort later maybe", "alice", "User"),
    ],
    ids=["a-bot", "our-own-answer", "not-a-command"],
)
def test_bots_answers_and_other_comments_are_ignored_silently(hub: Hub, body: str, login: str, user_type: str) -> None:
    promotion = hub.promotion()
    done = hub.say(promotion.number, body, login=login, user_type=user_type)
    assert done.status is steering.Status.IGNORED
    assert hub.answers(promotion.number) == [] and set(hub.open_prs()) == {"advance"}


def rollout_comment(
    hub: Hub, event: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[int, str]:
    path = tmp_path / f"event-{event['comment']['id']}.json"
    path.write_text(json.dumps(event))
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    out = io.StringIO()
    argv = ["comment", "--event", str(path), "--remote", str(hub.gitops.remote), "--workdir", str(tmp_path / "cli")]
    return cli.main(argv, out), out.getvalue()


def test_the_command_line_exit_codes(
    hub: Hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    promotion = hub.promotion()
    n = promotion.number
    for body, login, code, said in [
        ("thanks", "alice", 0, "ignored: the comment's first line is no `/rollout` command"),
        ("/rollout promote", "alice", 2, "usage: unknown command `promote`"),
        ("/rollout hold", "rita", 4, "refused, nothing was done"),
        ("/rollout hold wait", "alice", 0, "done: `/rollout hold` by @alice"),
    ]:
        got, out = rollout_comment(hub, hub.event(n, body, login=login), tmp_path, monkeypatch)
        assert (got, said in out) == (code, True), out
        assert TOKEN not in out
    issue = hub.event(n, "/rollout abort x", login="alice")
    del issue["issue"]["pull_request"]
    assert rollout_comment(hub, issue, tmp_path, monkeypatch) == (0, "ignored: not a comment on a pull request\n")
    broken = hub.event(n, "/rollout retry", login="alice")
    del broken["comment"]["user"]
    code, _ = rollout_comment(hub, broken, tmp_path, monkeypatch)
    assert code == 2
    elsewhere = hub.event(n, "/rollout abort x", login="alice") | {"repository": {"full_name": "acme/other"}}
    capsys.readouterr()
    assert rollout_comment(hub, elsewhere, tmp_path, monkeypatch)[0] == 2
    assert "the comment is on acme/other, but rollouts/controller.yaml names acme/rollouts" in capsys.readouterr().err
    assert hub.gitops.live("good").shadow == 100  # type: ignore[union-attr]  # the hold above wrote nothing
    for record in hub.server.records:
        assert TOKEN not in json.dumps(record.body)
    assert all(TOKEN not in c["body"] for c in hub.server.comments.values())


def test_rollout_comment_posts_the_aborts_notification_before_it_exits(hub: Hub, tmp_path: Path) -> None:
    """`rollout comment` as its own process, as the workflow runs it: the notification thread is a daemon,
    so only the command's flush on exit gets the abort's message out (the receiver answers the first
    POST 500: the message arrives twice only when the retry, 1 s later, went out before the exit)."""
    with receiver() as r:
        notify = "notifications:\n  - {type: webhook, urlEnv: ROLLOUT_TEST_WEBHOOK}\n"
        files = {"rollouts/controller.yaml": hub_config(hub.gitops, hub.server) + notify}
        hub.gitops.commit(files, "Notify")
        hub.server.push({path: text.encode() for path, text in files.items()}, "Notify")
        promotion = hub.promotion()
        event = tmp_path / "event.json"
        event.write_text(json.dumps(hub.event(promotion.number, "/rollout abort riddles", login="alice")))
        r.fail_first = 1
        argv = ["comment", "--event", str(event), "--remote", str(hub.gitops.remote), "--workdir", str(tmp_path / "c")]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "GITHUB_TOKEN": TOKEN, "ROLLOUT_TEST_WEBHOOK": f"{r.url}/hook"}
        run = subprocess.run(
            [sys.executable, "-m", "controller", *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        assert run.returncode == 0, run.stdout + run.stderr
        told = [(b["rollout"], b["action"], b["byHand"]) for b in r.bodies()]
    assert told == [("good-bot", "rollback", True)] * 2
    assert TOKEN not in run.stdout + run.stderr


def test_the_workflow_step_runs_the_command_with_the_token_never_shown(hub: Hub, tmp_path: Path) -> None:
    """The workflow's `Run the command` step by bash as the runner runs it, with the real `rollout`: its
    remote (https with the token, as Actions has it) reaches the bare repository through git's
    `insteadOf`, and GitHub's API is the stand-in; a writer's abort takes the canary out."""
    promotion = hub.promotion()
    steps = YAML(typ="safe").load(WORKFLOW.read_text("utf-8"))["jobs"]["command"]["steps"]
    step = next(s for s in steps if s.get("name") == "Run the command")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "rollout"
    tool.write_text(f'#!/usr/bin/env bash\nPYTHONPATH="{ROOT}" exec python3 -m controller "$@"\n')
    tool.chmod(0o755)
    event = tmp_path / "event.json"
    event.write_text(json.dumps(hub.event(promotion.number, "/rollout abort from the workflow", login="alice")))
    https = f"https://x-access-token:{TOKEN}@github.invalid/acme/rollouts.git"
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "RUNNER_TEMP": str(tmp_path),
        "GITHUB_EVENT_PATH": str(event),
        "GITHUB_TOKEN": TOKEN,
        "GITHUB_SERVER_URL": "https://github.invalid",
        "GITHUB_REPOSITORY": "acme/rollouts",
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": f"url.{hub.gitops.remote}.insteadOf",
        "GIT_CONFIG_VALUE_0": https,
    }
    argv = ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]]
    run = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "done: `/rollout abort` by @alice" in run.stdout
    assert TOKEN not in run.stdout + run.stderr
    assert hub.gitops.live("good").weight("canary") == 0  # type: ignore[union-attr]
    assert "rollback" in hub.open_prs()

    no_token = {**env, "GITHUB_TOKEN": ""}
    run = subprocess.run(argv, cwd=tmp_path, env=no_token, capture_output=True, text=True, timeout=60)
    assert run.returncode == 1 and "::error::set vars.ROLLOUT_APP_CLIENT_ID" in run.stdout


def test_a_failure_before_the_check_is_answered_on_the_pr(hub: Hub) -> None:
    """Main unreadable (its git remote gone): nothing is done, and the PR says so, the token never in it."""
    promotion = hub.promotion()
    before = hub.gitops.live("good")
    moved = hub.gitops.remote.with_name(hub.gitops.remote.name + ".away")
    hub.gitops.remote.rename(moved)
    try:
        done = hub.say(promotion.number, "/rollout abort now", login="alice")
    finally:
        moved.rename(hub.gitops.remote)
    assert done.status is steering.Status.FAILED
    [said] = hub.answers(promotion.number)
    assert "`/rollout abort` by @alice failed before anything was done: " in said and TOKEN not in said
    assert hub.gitops.live("good") == before
