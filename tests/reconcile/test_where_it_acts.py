"""Every controller command acts on the repository and the router state the user means: one state
location from controller.yaml for every command, from any directory, with default flags; a remote
named on purpose, never guessed; and a lowering that finds no state says so instead of creating it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import git
import pytest

from controller import settings, traffic
from controller.routers import file as file_router
from tests.helpers.gitops import CONFIG, GitOps
from tests.helpers.routes import read_one

pytestmark = pytest.mark.slow
ROOT = Path(__file__).parent.parent.parent


def terminal(gitops: GitOps, *argv: str, cwd: Path, home: Path) -> subprocess.CompletedProcess[str]:
    """`rollout ARGV` as a user types it in another terminal: another directory, another HOME (so
    another default workdir), no state-directory override, the remote from $ROLLOUT_REMOTE."""
    env = {k: v for k, v in os.environ.items() if k not in (settings.STATE_ENV, "XDG_STATE_HOME", "XDG_CACHE_HOME")}
    env.update(HOME=str(home), ROLLOUT_REMOTE=str(gitops.remote), PYTHONPATH=str(ROOT))
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "controller", *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def with_state_dir(gitops: GitOps, state: Path) -> None:
    config = CONFIG.format(prom=gitops.prom_url) + f"stateDir: {state}\n"
    gitops.commit({"rollouts/controller.yaml": config}, "Keep the routers' state in one place")


def test_every_command_from_any_terminal_sees_one_router_state(gitops: GitOps, tmp_path: Path) -> None:
    state = tmp_path / "shared-state"
    with_state_dir(gitops, state)
    first = terminal(gitops, "reconcile", "--once", cwd=tmp_path / "one", home=tmp_path / "home-one")
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"router state in {state}" in first.stdout and str(gitops.remote) in first.stdout
    live = file_router.FileRouter("local", state / "routes.json")
    assert read_one(live, "good").same_traffic(traffic.RouteState({"stable": 100, "canary": 0}, 100))  # type: ignore[union-attr]

    status = terminal(gitops, "status", cwd=tmp_path / "two", home=tmp_path / "home-two")
    assert status.returncode == 0, status.stderr
    assert "live     stable 100%, canary 0%, shadow 100%" in status.stdout

    checkout = tmp_path / "checkout"
    git.Repo.clone_from(str(gitops.remote), checkout)
    plan = terminal(gitops, "plan", "--format", "json", cwd=checkout, home=tmp_path / "home-three")
    assert plan.returncode == 0, plan.stderr
    [row] = [r for r in json.loads(plan.stdout)["rollouts"] if r["rollout"] == "good-bot"]
    assert row["live"] is not None and row["live"]["shadow"] == 100

    abort = terminal(gitops, "abort", "good-bot", "--reason", "pager", cwd=tmp_path / "four", home=tmp_path / "h4")
    assert abort.returncode == 0, abort.stdout + abort.stderr
    assert "router local: set stable 100%, canary 0%, read back" in abort.stdout
    after = read_one(live, "good")
    assert after is not None and after.same_traffic(
        traffic.RouteState({"stable": 100, "canary": 0})
    )  # what traffic reads


def test_an_abort_aimed_at_state_nobody_has_fails_and_names_the_path(gitops: GitOps, tmp_path: Path) -> None:
    gitops.router().write({"good": traffic.RouteState({"stable": 90, "canary": 10})})  # what the app reads
    empty = tmp_path / "nobody-reads-this"
    with_state_dir(gitops, empty)
    abort = terminal(gitops, "abort", "good-bot", "--reason", "pager", cwd=tmp_path / "t", home=tmp_path / "home")
    assert abort.returncode == 1, abort.stdout
    assert str(empty / "routes.json") in abort.stdout and "nothing was written" in abort.stdout
    assert "read back" not in abort.stdout
    assert not (empty / "routes.json").exists()  # no router state was created where none was
    # nor by the next attempt, or the next tick, while the revert PR holds the rollback open
    for argv in (["abort", "good-bot", "--reason", "again"], ["reconcile", "--once"]):
        again = terminal(gitops, *argv, cwd=tmp_path / "t", home=tmp_path / "home")
        assert again.returncode == 1 and "nothing was written" in again.stdout, again.stdout
        assert "read back" not in again.stdout and not (empty / "routes.json").exists()


def test_no_remote_is_guessed(gitops: GitOps, tmp_path: Path) -> None:
    clone = tmp_path / "someones-clone"  # a checkout whose origin is a rollouts repository
    git.Repo.clone_from(str(gitops.remote), clone)
    env = {k: v for k, v in os.environ.items() if k != settings.REMOTE_ENV}
    env.update(HOME=str(tmp_path / "home"), PYTHONPATH=str(ROOT))
    for argv in (["reconcile", "--once"], ["abort", "good-bot", "--reason", "x"], ["pr", "list"]):
        run = subprocess.run(
            [sys.executable, "-m", "controller", *argv], cwd=clone, env=env, capture_output=True, text=True
        )
        assert run.returncode == 2 and "--remote" in run.stderr and "ROLLOUT_REMOTE" in run.stderr, argv
    assert git.Repo(gitops.remote).git.for_each_ref() == git.Repo(gitops.remote).git.for_each_ref("refs/heads")


def test_a_remote_that_is_not_a_rollouts_repository_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "app.git"  # say, the application's own repository
    git.Repo.init(other, bare=True, initial_branch="main")
    work = git.Repo.clone_from(str(other), tmp_path / "app")
    (tmp_path / "app" / "README.md").write_text("an app\n")
    work.git.add("-A")
    work.git.commit("-m", "init", env={**os.environ, "GIT_AUTHOR_NAME": "a", "GIT_AUTHOR_EMAIL": "a@x",
                                        "GIT_COMMITTER_NAME": "a", "GIT_COMMITTER_EMAIL": "a@x"})  # fmt: skip
    work.git.push("origin", "HEAD:main")
    before = git.Repo(other).git.for_each_ref()
    for argv in (["reconcile", "--once"], ["abort", "x", "--reason", "y"], ["retry", "x"], ["pr", "merge", "1"]):
        run = subprocess.run(
            [sys.executable, "-m", "controller", *argv, "--remote", str(other)],
            cwd=tmp_path,
            env={**os.environ, "HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
        )
        assert run.returncode == 2, (argv, run.stdout, run.stderr)
        assert "rollouts/controller.yaml" in run.stderr and "nothing was done" in run.stderr
    assert git.Repo(other).git.for_each_ref() == before  # no lease, no branch, no forge record


def test_a_relative_state_dir_is_refused_with_its_line(gitops: GitOps, tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    git.Repo.clone_from(str(gitops.remote), checkout)
    config = checkout / "rollouts" / "controller.yaml"
    config.write_text(config.read_text() + "stateDir: .rollout\n")
    run = terminal(gitops, "validate", cwd=checkout, home=tmp_path / "home")
    assert run.returncode == 1
    line = len(config.read_text().splitlines())
    assert f"controller.yaml:{line}:" in run.stdout and "stateDir" in run.stdout and "relative" in run.stdout
