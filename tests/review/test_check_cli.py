"""`rollout check --base REF` on a real git repository: the head is the working tree (or --head), the
exit code says mergeable (0) or not (1). Promotions against a real Prometheus are in
tests/reconcile/test_github_checks.py; here none is needed, or none is configured."""

from __future__ import annotations

import io
import json
from pathlib import Path

import git
import pytest

from controller import cli, edits, load, repo

CONFIG = "apiVersion: rollouts/v1\nkind: ControllerConfig\nrouters: {local: {type: file, path: routes.json}}\n"
ROLLOUT = """apiVersion: rollouts/v1
kind: Rollout
metadata: {name: bot}
spec:
  router: local
  route: chat
  stable: {model: acme/chat-2025-01-01}
  canary: {model: acme/chat-2025-06-01}
  steps:
    - {shadow: 100, for: 1h}
    - {weight: 10, for: 1h}
    - {weight: 100}
  analysis:
    gates:
      - {use: error_rate, max: 1%, onFail: rollback}
"""


@pytest.fixture
def checkout(tmp_path: Path) -> tuple[Path, str]:
    """A rollouts repository with one commit (the base) and the bot at step 1; (path, base sha)."""
    r = git.Repo.init(tmp_path / "repo", initial_branch="main")
    root = Path(r.working_dir)
    (root / "rollouts" / "bot").mkdir(parents=True)
    (root / "rollouts" / "controller.yaml").write_text(CONFIG)
    (root / "rollouts" / "bot" / "rollout.yaml").write_text(ROLLOUT)
    r.git.add("-A")
    r.git.commit(
        "-m",
        "base",
        env={
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@x",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@x",
        },
    )
    return root, r.head.commit.hexsha


def set_status(root: Path, **status: object) -> None:
    path = root / "rollouts" / "bot" / "rollout.yaml"
    loaded = load.load_repo(repo.WorkTree(root)).rollout("bot")
    assert loaded is not None
    path.write_text(edits.set_status(path.read_text(), {"revision": loaded.revisions["canary"], **status}))


def check(root: Path, base: str, *extra: str) -> tuple[int, str]:
    out = io.StringIO()
    code = cli.main(["check", "--base", base, "--repo", str(root), *extra], out=out)
    return code, out.getvalue()


def test_a_revert_is_mergeable_and_says_what_it_records(checkout: tuple[Path, str]) -> None:
    root, base = checkout
    loaded = load.load_repo(repo.WorkTree(root)).rollout("bot")
    assert loaded is not None
    set_status(root, step=0, phase="RolledBack", rolledBack=[loaded.revisions["canary"]])
    code, out = check(root, base)
    assert code == 0, out
    assert out.splitlines()[0] == "mergeable: 1 rollback"
    assert f"bot (rollback): merging records the rollback of revision {loaded.revisions['canary']}" in out


def test_a_promotion_without_prometheus_is_not_mergeable(checkout: tuple[Path, str]) -> None:
    root, base = checkout
    set_status(root, step=1, phase="Progressing")
    code, out = check(root, base, "--format", "json")
    assert code == 1
    doc = json.loads(out)
    assert doc["mergeable"] is False
    [change] = doc["changes"]
    assert (change["kind"], change["verdict"]) == ("promotion", "ERROR")
    assert "sets no prometheus.url" in change["why"]


def test_nothing_changed_is_mergeable(checkout: tuple[Path, str]) -> None:
    root, base = checkout
    (root / "README.md").write_text("hello\n")
    assert check(root, base) == (0, "mergeable: changes no rollout\n\n")


def test_a_rollout_that_does_not_load_is_not_mergeable(checkout: tuple[Path, str]) -> None:
    root, base = checkout
    (root / "rollouts" / "bot" / "rollout.yaml").write_text(ROLLOUT.replace("weight: 100", "weight: 5"))
    code, out = check(root, base, "--format", "markdown")
    assert code == 1 and "NOT mergeable: 1 file that does not load" in out and "rollout.yaml" in out


def test_head_can_be_a_ref(checkout: tuple[Path, str]) -> None:
    root, base = checkout
    set_status(root, step=1, phase="Progressing")
    assert check(root, base, "--head", base) == (0, "mergeable: changes no rollout\n\n")


def test_an_unknown_base_is_an_error(checkout: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    root, _base = checkout
    assert check(root, "no-such-ref")[0] == 1
    assert "cannot resolve git ref 'no-such-ref'" in capsys.readouterr().err


def test_a_problem_main_already_has_does_not_block_a_revert(checkout: tuple[Path, str]) -> None:
    root, _ = checkout
    r = git.Repo(root)
    (root / "rollouts" / "broken").mkdir()
    (root / "rollouts" / "broken" / "rollout.yaml").write_text("apiVersion: rollouts/v1\nkind: Rollout\n")
    r.git.add("-A")
    r.git.commit("-m", "a broken rollout reached main", env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x",
                 "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@x"})  # fmt: skip
    base = r.head.commit.hexsha
    loaded = load.load_repo(repo.WorkTree(root)).rollout("bot")
    assert loaded is not None
    set_status(root, step=0, phase="RolledBack", rolledBack=[loaded.revisions["canary"]])
    code, out = check(root, base)
    assert code == 0, out  # the record of a rollback is never held hostage by another file
    (root / "rollouts" / "bot" / "rollout.yaml").write_text("kind: Rollout\n")  # a problem this PR brings
    assert check(root, base)[0] == 1
