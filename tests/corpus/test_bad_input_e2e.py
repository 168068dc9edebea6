"""End to end on the reconciler's real parts (bare remote, local forge, file router, Prometheus):
a repository full of bad rollouts applies none of them and opens no PR, while the good rollout goes
on; a bad controller.yaml stops the controller from touching anything; an abort reason full of
injection attempts reaches the real PR and commit neutralised."""

from __future__ import annotations

import re
from datetime import timedelta

import git
import pytest

from controller import plan
from tests.helpers import corpus
from tests.helpers.gitops import GitOps, add_bad_bot, kind, outcome

pytestmark = pytest.mark.slow

PROMPTS = {"prompts/v1.md": "You are helpful.\n", "prompts/v2.md": "You are helpful and brief.\n"}


def bad_rollouts() -> dict[str, bytes]:
    """Every rollout-level case, each in its own directory `rollouts/bad-<id>/`."""
    files: dict[str, bytes] = {}
    for case in corpus.CASES:
        if case.target != "rollout":
            continue
        d = f"rollouts/bad-{case.id}"
        for rel, text in PROMPTS.items():
            files[f"{d}/{rel}"] = text.encode()
        files[f"{d}/rollout.yaml"] = corpus.VALID_ROLLOUT.encode()
        files[f"{d}/{case.path.removeprefix('rollouts/case/')}"] = case.data
    for path in corpus.LOCATED_CASES:
        m = corpus.HEADER.match(path.read_text("utf-8", errors="surrogateescape").splitlines()[0])
        if m is None or m["target"] == "controller":
            continue
        d = f"rollouts/bad-{path.stem}"
        for rel, text in PROMPTS.items():
            files[f"{d}/{rel}"] = text.encode()
        files[f"{d}/rollout.yaml"] = path.read_bytes()
    return files


def test_bad_rollouts_apply_nothing_and_the_good_one_goes_on(gitops: GitOps) -> None:
    files = bad_rollouts()
    gitops.commit(files, "a pile of bad rollouts")
    dirs = {p.split("/")[1] for p in files}
    assert len(dirs) >= 50
    tick = gitops.controller().reconcile_once()
    assert kind(tick, "good-bot") is plan.Kind.APPLY
    assert [o.rollout for o in tick.outcomes] == ["good-bot"]
    reported = {str(p).split("/")[1] for p in tick.problems}
    assert dirs <= reported, f"not reported: {sorted(dirs - reported)}"
    routes = gitops.router().routes()
    assert set(routes) == {"good"}, "a bad rollout reached the router"
    assert gitops.forge.list() == []


def test_a_bad_controller_config_touches_nothing(gitops: GitOps) -> None:
    c = gitops.controller()
    assert kind(c.reconcile_once(), "good-bot") is plan.Kind.APPLY
    before = gitops.router().routes()
    for case in [k for k in corpus.CASES if k.target == "controller" and not k.extra][:5]:
        gitops.commit({corpus.CONFIG: case.data}, f"break controller.yaml: {case.id}")
        gitops.advance(timedelta(minutes=2))  # good-bot's step is over: it would advance
        tick = c.reconcile_once()
        assert tick.skipped == "controller.yaml is invalid" and tick.outcomes == ()
        assert any(str(p).startswith(corpus.CONFIG) for p in tick.problems)
        assert gitops.router().routes() == before and gitops.forge.list() == []


def test_an_abort_reason_full_of_injections_is_neutralised_in_the_real_pr(gitops: GitOps) -> None:
    c = gitops.controller()
    c.reconcile_once()
    attack = " ".join(corpus.ATTACKS.values())
    done = c.abort("good-bot", reason=attack)
    assert done.pr is not None
    pr = gitops.forge.get(done.pr)
    corpus.neutral(pr.body, attack, where="PR body")
    assert "\n" not in pr.title and not re.search(r"@(acme|octocat)", pr.title)
    message = git.Repo(gitops.remote).commit(pr.head_sha).message
    corpus.neutral(str(message), attack, where="commit message", markdown=False)
    assert gitops.live("good").weight("canary") == 0
    assert outcome(c.reconcile_once(), "good-bot").error is None


def test_a_hostile_file_on_main_costs_only_its_own_rollout(gitops: GitOps) -> None:
    """Issue 19: a 5000-deep list (once a RecursionError), a self-referencing alias, an alias bomb of
    text and a 5000-digit integer on main: the tick still runs, the failing canary beside them is
    rolled back in that same tick, the healthy one goes on, and each hostile file is reported."""
    add_bad_bot(gitops)
    hostile = {c.id: c for c in corpus.HOSTILE}
    chosen = ["nested-list-5000", "alias-self-reference", "alias-repeats-a-large-string", "integer-5000-digits"]
    files = {f"rollouts/hostile-{i}/rollout.yaml": hostile[i].data for i in chosen}
    gitops.commit(files, "hostile rollouts")
    tick = gitops.controller().reconcile_once()
    assert kind(tick, "bad-bot") is plan.Kind.ROLLBACK
    assert kind(tick, "good-bot") is plan.Kind.APPLY
    live = gitops.live("bad")
    assert live is not None and live.weight("canary") == 0 and live.shadow == 0
    reported = {p.file for p in tick.problems}
    assert set(files) <= reported, f"not reported: {sorted(set(files) - reported)}"
