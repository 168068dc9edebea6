"""`rollout pr create`: a person's pull request on the local forge, from a branch pushed to the remote,
reviewed and merged with `rollout pr` like the controller's, and recorded the same way: a merge commit
on main that names the PR."""

from __future__ import annotations

import subprocess
from pathlib import Path

import git
import pytest

from controller import load, worktree
from tests.helpers import net
from tests.helpers.examples import run


def sh(repo: Path, *argv: str) -> str:
    return subprocess.run(["git", *argv], cwd=repo, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def clone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A team repository from `rollout init --local`, the current directory, a change committed on the
    branch `v2` (not pushed yet); $ROLLOUT_REMOTE names its remote."""
    for var in ("GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME"):
        monkeypatch.setenv(var, "Alice")
    for var in ("GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL"):
        monkeypatch.setenv(var, "alice@example.com")
    assert run("init", str(tmp_path / "team"), "--local")[0] == 0
    root = tmp_path / "team"
    monkeypatch.setenv("ROLLOUT_REMOTE", str(tmp_path / "team.git"))
    monkeypatch.chdir(root)
    sh(root, "switch", "-q", "-c", "v2")
    (root / "rollouts/assistant/prompts/assistant-v1.md").write_text("You are brief.\n")
    sh(root, "commit", "-q", "-am", "a shorter prompt")
    return root


def test_a_person_opens_approves_and_merges_a_pr(clone: Path, tmp_path: Path) -> None:
    sh(clone, "push", "-q", "origin", "v2")
    code, out = run("pr", "create", "--title", "assistant: a shorter prompt", "--body", "Why: tokens.")
    assert (code, out) == (0, f"opened #1 assistant: a shorter prompt (v2 -> main) in {tmp_path / 'team.git'}\n")
    code, out = run("pr", "show", "1")
    assert "v2 -> main" in out and "Why: tokens." in out
    listed = run("pr", "list")[1]
    assert listed.rstrip().endswith("assistant: a shorter prompt"), listed  # no labels: no empty `[]`
    assert run("pr", "merge", "1")[0] == 2  # not approved yet
    assert run("pr", "approve", "1", "--by", "bob")[0] == 0
    code, out = run("pr", "merge", "1")
    assert code == 0, out
    main = git.Repo(tmp_path / "team.git").commit("main")
    assert main.summary == "assistant: a shorter prompt (#1)"  # as the controller's merges are recorded
    assert "Merge pull request #1 from v2" in main.message  # the body names the branch
    assert "v2" not in [h.name for h in git.Repo(tmp_path / "team.git").heads]  # a merged branch is deleted
    assert [p.hexsha for p in main.parents][1] == git.Repo(clone).head.commit.hexsha
    assert "merged" in run("pr", "list", "--all")[1]


def test_creating_again_after_a_push_updates_the_pr_and_dismisses_its_approval(clone: Path) -> None:
    sh(clone, "push", "-q", "origin", "v2")
    assert run("pr", "create", "--title", "first")[0] == 0
    assert run("pr", "approve", "1")[0] == 0
    (clone / "rollouts/assistant/prompts/assistant-v1.md").write_text("You are very brief.\n")
    sh(clone, "commit", "-q", "-am", "shorter still")
    sh(clone, "push", "-q", "origin", "v2")
    assert run("pr", "merge", "1")[0] == 1  # the branch moved since the approval
    assert run("pr", "create", "--title", "second")[1].startswith("updated #1 second")
    assert run("pr", "merge", "1")[0] == 2  # the new head needs its own approval


@pytest.mark.parametrize(
    ("argv", "code", "says"),
    [
        (["--head", "nowhere"], 1, "no branch 'nowhere'"),
        ([], 1, "no branch 'v2'"),  # committed, not pushed
        (["--head", "main"], 2, "the controllers read main"),
        (["--head", "main", "--base", "v2"], 2, "the controllers read main"),  # merged, main would be deleted
        (["--head", "rollout/assistant/advance-1-abc"], 2, "the controller's own"),
    ],
    ids=["unknown-branch", "not-pushed", "base-itself", "main-into-another", "controller-branch"],
)
def test_refused(clone: Path, argv: list[str], code: int, says: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("pr", "create", "--title", "x", *argv)[0] == code
    assert says in capsys.readouterr().err
    assert run("pr", "list", "--all")[1] == "no pull requests\n"


def test_a_branch_with_nothing_new_is_refused(clone: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sh(clone, "switch", "-q", "main")
    sh(clone, "switch", "-q", "-c", "empty")
    sh(clone, "push", "-q", "origin", "empty")
    assert run("pr", "create", "--title", "x")[0] == 1
    assert "no commits that 'main' does not have" in capsys.readouterr().err


def test_the_remote_is_named_never_guessed(clone: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sh(clone, "push", "-q", "origin", "v2")
    monkeypatch.delenv("ROLLOUT_REMOTE")
    assert run("pr", "create", "--title", "x")[0] == 2  # origin is there, and still not used


def test_a_new_base_dismisses_the_approval(clone: Path) -> None:
    """An approval is of these commits into that branch: pointing the PR at another base asks again."""
    sh(clone, "push", "-q", "origin", "v2", "main:staging")
    assert run("pr", "create", "--title", "x", "--base", "staging")[0] == 0
    assert run("pr", "approve", "1")[0] == 0
    assert run("pr", "create", "--title", "x", "--base", "main")[1].startswith("updated #1")
    assert run("pr", "merge", "1")[0] == 2  # not approved any more


def test_a_merged_branch_that_another_pr_builds_on_is_kept(clone: Path, tmp_path: Path) -> None:
    sh(clone, "push", "-q", "origin", "v2")
    sh(clone, "switch", "-q", "-c", "v3")
    (clone / "rollouts/assistant/prompts/assistant-v2.md").write_text("You are kind.\n")
    sh(clone, "commit", "-q", "-am", "kinder")
    sh(clone, "push", "-q", "origin", "v3")
    assert run("pr", "create", "--title", "v2", "--head", "v2")[0] == 0
    assert run("pr", "create", "--title", "v3 on v2", "--head", "v3", "--base", "v2")[0] == 0
    assert run("pr", "approve", "1")[0] == 0 and run("pr", "merge", "1")[0] == 0
    heads = [h.name for h in git.Repo(tmp_path / "team.git").heads]
    assert "v2" in heads and "main" in heads  # #2 still merges into v2


def test_a_person_s_pr_that_raises_exposure_needs_passing_gates(
    clone: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`rollout pr merge` runs what the checks workflow runs on GitHub: a PR that lets a canary get more
    traffic needs passing gates, whoever opened it. Prometheus is down here, so they cannot pass."""
    config = clone / "rollouts/controller.yaml"
    sh(clone, "switch", "-q", "main")
    config.write_text(config.read_text().replace("http://127.0.0.1:9090", f"http://127.0.0.1:{net.free_port()}"))
    sh(clone, "commit", "-q", "-am", "our Prometheus")
    sh(clone, "push", "-q", "origin", "main")
    sh(clone, "switch", "-q", "-c", "jump")
    spec = clone / "rollouts/assistant/rollout.yaml"
    spec.write_text(spec.read_text().replace("  # canary:\n", "  canary:\n").replace("  #   ", "    "))
    revision = load.load_repo(worktree.WorkTree(clone)).rollout("assistant").revisions["canary"]  # type: ignore[union-attr]
    spec.write_text(spec.read_text() + f"status: {{revision: {revision}, step: 2, phase: Progressing}}\n")
    sh(clone, "commit", "-q", "-am", "straight to step 3")
    sh(clone, "push", "-q", "origin", "jump")
    assert run("pr", "create", "--title", "jump")[0] == 0 and run("pr", "approve", "1")[0] == 0
    code, out = run("pr", "merge", "1")
    assert code == 1 and "merge with --force" in out, out
    assert git.Repo(tmp_path / "team.git").commit("main").summary == "our Prometheus"  # nothing merged
    code, out = run("pr", "merge", "1", "--force")  # an administrator's merge, on purpose
    assert code == 0, out


def test_showing_a_pr_never_drives_the_terminal(clone: Path) -> None:
    """A title or body someone pushed with an escape sequence (here: set the window title) is spelled out."""
    sh(clone, "push", "-q", "origin", "v2")
    evil = "x\x1b]0;pwned\x07"
    assert run("pr", "create", "--title", evil, "--body", f"line one\n{evil}")[0] == 0
    for argv in (["pr", "list"], ["pr", "show", "1"]):
        out = run(*argv)[1]
        assert "\x1b" not in out and "\x07" not in out and "\\x1b]0;pwned\\x07" in out, out


def test_a_new_pr_from_a_merged_branch_name_is_opened_then_updated(clone: Path) -> None:
    """The same branch name once merged (and deleted), pushed again: a new PR; pushing more updates it."""
    sh(clone, "push", "-q", "origin", "v2")
    assert run("pr", "create", "--title", "one")[0] == 0
    assert run("pr", "approve", "1")[0] == 0 and run("pr", "merge", "1")[0] == 0
    (clone / "rollouts/assistant/prompts/assistant-v1.md").write_text("You are terse.\n")
    sh(clone, "commit", "-q", "-am", "terser")
    sh(clone, "push", "-q", "-f", "origin", "v2")
    assert run("pr", "create", "--title", "two")[1].startswith("opened #2 two")
    assert run("pr", "create", "--title", "two, again")[1].startswith("updated #2 two, again")
