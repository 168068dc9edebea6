"""A user at the keyboard: `rollout` as typed (in-process), git in a clone, and the pull requests a
human opens and merges through the local forge (`rollout pr`). For the tests that walk a user's path
from `rollout init --local` (tests/cli/test_walkthrough.py, tests/routers/test_litellm_scaffold.py)."""

from __future__ import annotations

import io
import re
import subprocess
from pathlib import Path

import pytest

from controller import cli
from tests.helpers import net


def at_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user's home under `tmp_path` (the state directory is its default, ~/.local/state/rollout),
    git's identity Alice, and `tmp_path` the current directory. Returns the home."""
    home = tmp_path / "home"
    for var, value in {
        "HOME": home,
        "XDG_STATE_HOME": home / ".local/state",
        "XDG_CACHE_HOME": home / ".cache",
        "GIT_AUTHOR_NAME": "Alice",
        "GIT_AUTHOR_EMAIL": "alice@example.com",
        "GIT_COMMITTER_NAME": "Alice",
        "GIT_COMMITTER_EMAIL": "alice@example.com",
    }.items():
        monkeypatch.setenv(var, str(value))
    monkeypatch.delenv("ROLLOUT_STATE_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    return home


def rollout(*argv: str) -> str:
    """`rollout ARGV` as the user types it (in-process); its output. Exit codes other than 0 fail."""
    out = io.StringIO()
    code = cli.main(list(argv), out)
    assert code == 0, f"rollout {' '.join(argv)} exited {code}:\n{out.getvalue()}"
    return out.getvalue()


def git(repo: Path, *argv: str) -> str:
    return subprocess.run(["git", *argv], cwd=repo, check=True, capture_output=True, text=True).stdout


def open_prs() -> list[tuple[int, str]]:
    listing = rollout("pr", "list")
    return [(int(m[1]), m[2]) for m in re.finditer(r"^#(\d+)\s+open\s+.*?  (\S.*?)  \[", listing, re.M)]


def tick_until_pr(title: str) -> int:
    """`rollout reconcile --once` until the controller has opened a PR whose title contains `title`."""

    def opened() -> int | None:
        rollout("reconcile", "--once")
        return next((n for n, t in open_prs() if title in t), None)

    return net.wait_for(f"a PR {title!r}", opened, deadline=30, every=0.5)


def merge(number: int, *, force: bool = False) -> None:
    """Show, approve and merge PR `number`; `force`: as an administrator, past a check that does not pass."""
    rollout("pr", "show", str(number))
    rollout("pr", "approve", str(number), "--by", "alice")
    rollout("pr", "merge", str(number), *(["--force"] if force else []))


def human_pr(clone: Path, branch: str, title: str) -> int:
    """The human commits the working tree's changes on `branch`, pushes it and opens a PR from it."""
    git(clone, "switch", "-q", "-c", branch)
    git(clone, "add", "-A")
    git(clone, "commit", "-q", "-m", title)
    git(clone, "push", "-q", "-u", "origin", branch)
    opened = rollout("pr", "create", "--title", title)
    found = re.match(r"opened #(\d+) ", opened)
    assert found, opened
    return int(found[1])


def main_file(clone: Path, path: str) -> str:
    git(clone, "switch", "-q", "main")
    git(clone, "pull", "-q", "--ff-only")
    return (clone / path).read_text()
