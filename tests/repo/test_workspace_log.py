"""`Workspace.log`: a file's first-parent commits on main, newest first, merges marked, as the dashboard's
timeline shows them; subjects of any text, and only the commits that changed the file."""

from __future__ import annotations

import subprocess
from pathlib import Path

from controller import repo

ENV = {"GIT_AUTHOR_EMAIL": "a@x", "GIT_COMMITTER_EMAIL": "a@x", "GIT_COMMITTER_NAME": "committer"}
SUBJECT = "<script>alert('x')</script> \x01 \"quoted\" & more"


def git(cwd: Path, *args: str, author: str = "alice") -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "GIT_AUTHOR_NAME": author, **ENV}
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, env=env)


def test_the_log_of_a_file_names_who_committed_or_merged_what(tmp_path: Path) -> None:
    remote, work = tmp_path / "remote.git", tmp_path / "work"
    git(tmp_path, "init", "--bare", "-b", "main", str(remote))
    git(tmp_path, "clone", str(remote), str(work))
    (work / "rollouts" / "bot").mkdir(parents=True)
    (work / "rollouts" / "bot" / "rollout.yaml").write_text("a\n")
    git(work, "add", "-A")
    git(work, "commit", "-m", "Add bot")
    git(work, "checkout", "-b", "rollout/bot/advance")
    (work / "rollouts" / "bot" / "rollout.yaml").write_text("b\n")
    git(work, "commit", "-am", "bot: advance to step 2", author="rollout-bot")
    git(work, "checkout", "main")
    (work / "other.txt").write_text("x\n")
    git(work, "add", "-A")
    git(work, "commit", "-m", "not the rollout's file")
    git(work, "merge", "--no-ff", "-m", "Merge #1: bot: advance to step 2", "rollout/bot/advance", author="bob")
    (work / "rollouts" / "bot" / "rollout.yaml").write_text("c\n")
    git(work, "commit", "-am", SUBJECT, author="mallory & 'co' jr")
    git(work, "push", "origin", "main")

    ws = repo.Workspace.open(str(remote), tmp_path / "clone")
    commits = ws.log("rollouts/bot/rollout.yaml")
    assert [(c.subject, c.author, c.merge) for c in commits] == [
        (SUBJECT, "mallory & 'co' jr", False),
        ("Merge #1: bot: advance to step 2", "bob", True),
        ("Add bot", "alice", False),
    ]
    assert commits[0].when >= commits[1].when >= commits[2].when and commits[0].when.tzinfo is not None
    assert len(ws.log("rollouts/bot/rollout.yaml", limit=1)) == 1
    assert ws.log("rollouts/nobody/rollout.yaml") == []
