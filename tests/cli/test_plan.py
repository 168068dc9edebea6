"""`rollout plan` as a user runs it: desired against live, its formats, a git ref, and its exit codes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from controller import traffic
from controller.routers import file as file_router
from tests.helpers.examples import broken, run


def set_live(examples: Path, router: str, route: str, weights: dict[str, int], shadow: int = 0) -> None:
    file_router.FileRouter(router, examples / f".rollout/{router}.json").write(
        {route: traffic.RouteState(weights, shadow)}
    )


def test_plan_shows_drift_made_by_hand(examples: Path) -> None:
    # ticket-triage is new: step 1 is shadow 50%. Someone set 30% canary by hand.
    set_live(examples, "local", "triage", {"stable": 70, "canary": 30})
    # release-notes is steady and in sync: stable 100%.
    set_live(examples, "flags", "release-notes-writer", {"stable": 100})

    code, text = run("plan", "--repo", str(examples))
    assert code == 0, text
    assert "~ ticket-triage" in text
    assert "live: stable 70%, canary 30%" in text and "desired: stable 100%, canary 0%" in text
    assert "self-heal drift: set stable 100%, canary 0%, shadow 50%" in text
    assert "= release-notes" in text
    assert "+ support-bot" in text and "absent" in text  # support-bot's route has no live state yet: created
    assert text.rstrip().endswith("3 rollouts: 1 to change, 1 to create (+), 1 in sync")

    code, md = run("plan", "--repo", str(examples), "--format", "markdown")
    row = next(ln for ln in md.splitlines() if ln.startswith("| ~ ticket-triage"))
    assert "stable 70%, canary 30%" in row and "**yes**" in row and "0% → 50%" in row

    code, raw = run("plan", "--repo", str(examples), "--format", "json")
    plan = {r["rollout"]: r for r in json.loads(raw)["rollouts"]}
    assert plan["ticket-triage"]["drift"] is True
    assert plan["ticket-triage"]["live"]["weights"] == {"stable": 70, "canary": 30}
    assert plan["ticket-triage"]["desired"]["shadow"] == 50
    assert plan["release-notes"]["drift"] is False
    assert plan["support-bot"]["live"] is None and plan["support-bot"]["create"] is True


def test_plan_detailed_exitcode(examples: Path) -> None:
    set_live(examples, "local", "triage", {"stable": 100, "canary": 0}, shadow=50)
    set_live(examples, "flags", "release-notes-writer", {"stable": 100})
    set_live(examples, "gateway", "support-chat", {"stable": 99, "canary": 1})
    assert run("plan", "--repo", str(examples), "--detailed-exitcode")[0] == 0
    set_live(examples, "local", "triage", {"stable": 90, "canary": 10})
    assert run("plan", "--repo", str(examples), "--detailed-exitcode")[0] == 2


def test_plan_from_a_git_ref(examples: Path) -> None:
    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=examples, check=True, capture_output=True)

    git("init", "-q", "-b", "main")
    git("add", "rollouts")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    broken(examples)  # the working tree is broken; main is not
    code, out = run("plan", "--repo", str(examples), "--ref", "main", "--format", "json")
    assert code == 0, out
    assert {r["rollout"] for r in json.loads(out)["rollouts"]} == {"ticket-triage", "support-bot", "release-notes"}
    code, out = run("plan", "--repo", str(examples))
    assert code == 1 and "spec.steps[2].weight" in out


def test_plan_keeps_going_when_a_router_is_broken(examples: Path) -> None:
    (examples / ".rollout").mkdir()
    (examples / ".rollout/local.json").write_text("{not json")
    set_live(examples, "flags", "release-notes-writer", {"stable": 100})
    code, out = run("plan", "--repo", str(examples))
    assert code == 1
    assert "! ticket-triage  router unreachable or unreadable" in out and "not valid JSON" in out
    assert "= release-notes" in out


def test_a_relative_state_dir_override_is_refused(examples: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROLLOUT_STATE_DIR", "state")  # each terminal's own ./state: two places, not one
    code, _ = run("plan", "--repo", str(examples))
    assert code == 2


def test_plan_reads_a_bare_repository(examples: Path, tmp_path: Path) -> None:
    """`--repo` takes a bare repository (a GitOps remote on disk): its HEAD, or its main when HEAD names
    a branch nobody pushed; `--ref` picks another."""

    def git(*args: str, cwd: Path = examples) -> None:
        subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)

    git("init", "-q", "-b", "main")
    git("add", "rollouts")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    remote = tmp_path / "remote.git"
    git("clone", "-q", "--bare", str(examples), str(remote), cwd=tmp_path)
    code, out = run("plan", "--repo", str(remote), "--format", "json")
    assert code == 0, out
    report = json.loads(out)
    assert report["source"].startswith(f"{remote}@HEAD (") and len(report["rollouts"]) == 3
    git("symbolic-ref", "HEAD", "refs/heads/nobody-pushed-this", cwd=remote)
    code, out = run("plan", "--repo", str(remote))
    assert code == 0 and "3 rollouts:" in out, out
    assert run("plan", "--repo", str(remote), "--ref", "no-such-ref")[0] == 1
    # `rollout check` reads both sides from it, and asks for --head: a bare repository has no working tree
    assert run("check", "--repo", str(remote), "--base", "main")[0] == 2
    code, out = run("check", "--repo", str(remote), "--base", "main", "--head", "main")
    assert code == 0, out


@pytest.mark.parametrize(
    ("branch", "off_main"), [("main", False), ("assistant-v2", True)], ids=["on-main", "on-a-branch"]
)
def test_plan_names_the_commit_it_read_and_says_when_it_is_not_main(
    examples: Path, branch: str, off_main: bool
) -> None:
    """A plan on a pull request's branch shows what merging would do: the live state differing from it is
    not drift the controller is about to heal, and the header says so."""
    for argv in (
        ["init", "-q", "-b", branch],
        ["add", "-A"],
        ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"],
    ):
        subprocess.run(["git", *argv], cwd=examples, check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=examples, check=True, capture_output=True, text=True)
    _code, text = run("plan", "--repo", str(examples))
    first = text.splitlines()[0]
    assert f"(working tree of branch {branch} at {head.stdout.strip()[:10]})" in first, first
    assert ("not main: `next` is what merging it would do" in first) is off_main, first


def test_plan_on_a_stale_main_says_to_pull(examples: Path) -> None:
    """A user whose main is behind origin/main (the bot merged since) would read a plan of old weights."""
    git = ["-c", "user.name=t", "-c", "user.email=t@t"]
    for argv in (["init", "-q", "-b", "main"], ["add", "-A"], [*git, "commit", "-qm", "x"]):
        subprocess.run(["git", *argv], cwd=examples, check=True)
    subprocess.run(["git", *git, "commit", "-q", "--allow-empty", "-m", "merged by the bot"], cwd=examples, check=True)
    subprocess.run(["git", "update-ref", "refs/remotes/origin/main", "HEAD"], cwd=examples, check=True)
    subprocess.run(["git", "reset", "-q", "--hard", "HEAD~1"], cwd=examples, check=True)
    _code, text = run("plan", "--repo", str(examples))
    assert "pull to see what the controller reads" in text.splitlines()[0], text
