"""The composite action's offline-eval step, run by bash with stand-in `rollout` and `gh` on PATH:
it evaluates only the changed rollouts that have a golden set, reports, and marks a failure."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[2]
ACTION = ROOT / ".github" / "actions" / "rollout-checks" / "action.yml"
WORKFLOW = ROOT / ".github" / "workflows" / "rollout-checks.yml"


def load(path: Path) -> Any:
    return YAML(typ="safe").load(path.read_text("utf-8"))


def step(step_id: str) -> dict[str, Any]:
    return next(s for s in load(ACTION)["runs"]["steps"] if s.get("id") == step_id)


def test_the_eval_step_runs_only_with_an_endpoint() -> None:
    assert step("eval")["if"] == "inputs.eval-endpoint != '' && github.event_name == 'pull_request'"
    with_ = next(
        s
        for s in load(WORKFLOW)["jobs"]["rollout-checks"]["steps"]
        if s.get("uses") == "./.github/actions/rollout-checks"
    )["with"]
    assert with_["eval-endpoint"] == "${{ vars.ROLLOUT_EVAL_ENDPOINT }}"
    assert with_["eval-api-key"] == "${{ secrets.ROLLOUT_EVAL_API_KEY }}"
    gate = next(s for s in load(ACTION)["runs"]["steps"] if s.get("name") == "Offline eval gate")
    assert gate["if"] == "steps.eval.outputs.result == 'fail'" and "exit 1" in gate["run"]


@pytest.mark.parametrize(
    ("files", "eval_exit", "expect_result", "expect_calls"),
    [
        (["rollouts/ticket-triage/prompts/triage-v8.md"], 1, "fail", ["eval ticket-triage"]),
        (["rollouts/ticket-triage/rollout.yaml", "rollouts/support-bot/rollout.yaml"], 0, "pass", ["eval support-bot", "eval ticket-triage"]),
        (["rollouts/release-notes/rollout.yaml", "README.md"], 0, "skipped", []),  # no golden set
        (["rollouts/gone/rollout.yaml"], 0, "skipped", []),  # deleted rollout
    ],
    ids=["canary-fails", "two-pass", "no-golden-set", "deleted"],
)  # fmt: skip
def test_the_eval_step(
    tmp_path: Path, files: list[str], eval_exit: int, expect_result: str, expect_calls: list[str]
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "rollout").write_text(
        f'#!/usr/bin/env bash\necho "$1 $2 $ROLLOUT_EVAL_ENDPOINT" >> "{tmp_path}/calls"\n'
        f'echo "## Offline eval: $2"\nexit {eval_exit}\n'
    )
    (bin_dir / "gh").write_text("#!/usr/bin/env bash\nprintf '%s\\n' " + " ".join(files) + "\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "ROLLOUT_EVAL_ENDPOINT": "http://127.0.0.1:9/v1",
        "ROLLOUT_EVAL_API_KEY": "sk-x",
        "PR_NUMBER": "7",
        "REPOSITORY": "acme/rollouts",
        "RUNNER_TEMP": str(tmp_path),
        "GITHUB_OUTPUT": str(tmp_path / "output"),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary"),
    }
    result = subprocess.run(
        ["bash", "-e", "-c", step("eval")["run"]], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr  # the gate step fails the job, not this one
    outputs = (tmp_path / "output").read_text().splitlines()
    assert outputs[0] == f"result={expect_result}"
    calls = (tmp_path / "calls").read_text().splitlines() if (tmp_path / "calls").exists() else []
    assert calls == [f"{c} http://127.0.0.1:9/v1" for c in expect_calls]
    if expect_result == "fail":
        assert outputs[1] == "failed=ticket-triage"
        assert "## Offline eval: ticket-triage" in (tmp_path / "summary").read_text()


def test_the_golden_sets_step_checks_every_set(tmp_path: Path) -> None:
    golden = next(s for s in load(ACTION)["runs"]["steps"] if s.get("name") == "Golden sets")
    assert "if" not in golden  # runs on every PR, endpoint or not
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "rollout").write_text(f'#!/usr/bin/env bash\necho "$*" >> "{tmp_path}/calls"\n')
    (bin_dir / "rollout").chmod(0o755)
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(
        ["bash", "-e", "-c", golden["run"]], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "calls").read_text().splitlines() == ["eval support-bot --check", "eval ticket-triage --check"]
