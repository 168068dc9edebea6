"""The lease as the commands use it: `reconcile` gives it back when it exits, a restart on the same
host and workdir takes back the lease its predecessor left, a tick skipped for the lease exits 3 and
names the holder, and the commands that never take the lease take no `--holder`."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import git
import pytest

from controller import cli, repo
from tests.helpers.gitops import GitOps, add_bad_bot

pytestmark = pytest.mark.slow


def rollout(gitops: GitOps, *argv: str, workdir: str = "cli") -> tuple[int, str]:
    out = io.StringIO()
    code = cli.main([*argv, "--remote", str(gitops.remote), "--workdir", str(gitops.work / workdir)], out)
    return code, out.getvalue()


def lease_ref(gitops: GitOps) -> str:
    return str(git.Repo(gitops.remote).git.for_each_ref(repo.LEASE_REF))


def hold(gitops: GitOps, holder: str, *, minutes: int = 2) -> None:
    """`holder` takes the lease, as a controller that then died without giving it back would leave it."""
    ws = repo.Workspace.open(str(gitops.remote), gitops.work / f"lease-{holder}")
    repo.acquire_lease(ws, holder=holder, ttl=timedelta(minutes=minutes), now=datetime.now(UTC))
    assert lease_ref(gitops)


def test_reconcile_once_gives_the_lease_back(gitops: GitOps) -> None:
    add_bad_bot(gitops)
    code, out = rollout(gitops, "reconcile", "--once")
    assert code == 0, out
    assert "opened #1" in out  # it acted, so it held the lease
    assert lease_ref(gitops) == "", "the lease was left held"
    code, out = rollout(gitops, "reconcile", "--once", workdir="elsewhere")  # another controller, at once
    assert code == 0 and "skipped" not in out, out


def test_the_default_holder_is_stable_per_host_and_workdir(tmp_path: Path) -> None:
    one = cli.default_holder(tmp_path / "a")
    assert one == cli.default_holder(tmp_path / "a" / ".." / "a")  # the same place, however it is named
    assert one != cli.default_holder(tmp_path / "b")
    assert one.startswith(socket.gethostname() + "-") and repo.valid_holder(one)


def test_a_restart_takes_back_the_lease_its_predecessor_left(gitops: GitOps) -> None:
    """A controller killed before it could give the lease back: its restart (same host and workdir, so
    the same holder) takes it back at once, not two minutes later."""
    hold(gitops, cli.default_holder(gitops.work / "cli"))
    code, out = rollout(gitops, "reconcile", "--once")
    assert code == 0 and "skipped" not in out, out
    assert lease_ref(gitops) == ""


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_tick_skipped_for_the_lease_exits_3_and_names_the_holder(gitops: GitOps, fmt: str) -> None:
    hold(gitops, "ci-runner-7")
    add_bad_bot(gitops)
    code, out = rollout(gitops, "reconcile", "--once", "--format", fmt)
    assert code == cli.EXIT_SKIPPED == 3, out
    if fmt == "json":
        report = json.loads(out)
        assert report["heldBy"] == "ci-runner-7" and report["rollouts"] == []
        assert "holds the lease until" in report["skipped"]
    else:
        assert "skipped: controller 'ci-runner-7' holds the lease until" in out
    assert gitops.forge.list() == [], "a skipped tick did something"
    assert git.Repo(gitops.remote).commit(repo.LEASE_REF).message.startswith("lease holder=ci-runner-7 ")


def test_a_second_process_on_the_same_workdir_is_skipped(gitops: GitOps) -> None:
    """Two processes on one workdir would share a holder name: the second exits 3 and touches nothing."""
    workdir = gitops.work / "cli"
    with repo.workdir_lock(workdir, holder="first"):
        code, out = rollout(gitops, "reconcile", "--once")
        assert code == 3 and out.startswith("skipped: pid ") and str(workdir) in out, out
        code, out = rollout(gitops, "reconcile", "--once", "--format", "json")
        assert code == 3 and json.loads(out)["skipped"].startswith("pid "), out
        code, out = rollout(gitops, "run", "--interval", "1s")
        assert code == 3 and out.startswith("not started: pid "), out
    assert lease_ref(gitops) == "" and gitops.forge.list() == []
    assert rollout(gitops, "reconcile", "--once")[0] == 0  # the lock went with the process


def test_dry_run_takes_no_lease(gitops: GitOps) -> None:
    hold(gitops, "someone-else")
    code, out = rollout(gitops, "reconcile", "--dry-run")
    assert code == 0 and "would apply" in out, out


@pytest.mark.parametrize("command", [["status"], ["abort", "good-bot", "--reason", "x"], ["retry", "good-bot"]])
def test_commands_that_never_take_the_lease_take_no_holder(
    gitops: GitOps, command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        rollout(gitops, *command, "--holder", "me")
    assert exc.value.code == 2 and "unrecognized arguments: --holder me" in capsys.readouterr().err


@pytest.mark.parametrize("holder", ["two words", "a=b", "tab\there"])
def test_a_holder_the_lease_cannot_carry_is_refused(gitops: GitOps, holder: str) -> None:
    """`holder=two words` would read back as an unreadable, so expired, lease: any controller could take it."""
    code, _ = rollout(gitops, "reconcile", "--once", "--holder", holder)
    assert code == 2 and lease_ref(gitops) == ""


SIGTERM_MID_TICK = """
import os, signal, sys
from controller import cli, cutpoints
cutpoints.arm(lambda name: os.kill(os.getpid(), signal.SIGTERM) if name == cutpoints.ROUTER_WRITTEN else None)
sys.exit(cli.main(sys.argv[1:]))
"""


def test_sigterm_in_the_middle_of_a_reconcile_lets_it_finish_and_give_the_lease_back(gitops: GitOps) -> None:
    """SIGTERM right after the router write: the tick still reads back and opens the revert PR, then the
    lease is given back; a SIGTERM that killed the process there would leave it held."""
    add_bad_bot(gitops)
    root = Path(__file__).resolve().parents[2]
    argv = ["reconcile", "--once", "--remote", str(gitops.remote), "--workdir", str(gitops.work / "cli")]
    done = subprocess.run(
        [sys.executable, "-c", SIGTERM_MID_TICK, *argv],
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "read back" in done.stdout and "opened #1" in done.stdout
    assert lease_ref(gitops) == ""


def test_the_lease_is_given_back_after_ctrl_c_killed_git_s_cat_file(gitops: GitOps) -> None:
    """Ctrl-C on a terminal signals the whole process group: the `git cat-file --batch` the controller
    keeps for reading dies with it, and the lease must still be given back on the way out."""
    hold(gitops, "me")
    ws = repo.Workspace.open(str(gitops.remote), gitops.work / "lease-me")
    repo.acquire_lease(ws, holder="me", ttl=timedelta(minutes=2), now=datetime.now(UTC))  # reads through cat-file
    cat_file = ws.repo.git.cat_file_all
    assert cat_file is not None, "the lease was not read through git's long-running cat-file"
    cat_file.proc.kill()  # what SIGINT does to it in a terminal (a shell's background job ignores SIGINT)
    cat_file.proc.wait(timeout=10)
    assert repo.release_lease(ws, holder="me")
    assert lease_ref(gitops) == ""
