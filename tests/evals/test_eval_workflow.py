"""The composite action's offline-eval step, run by bash with stand-in `rollout` and `gh` on PATH:
it evaluates only the changed rollouts that have a golden set, reports, and marks a failure."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "repo"  # where the steps run: the tests' repository, not rollouts/ here
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
    ("files", "kinds", "eval_exit", "expect_result", "expect_calls"),
    [
        (["rollouts/ticket-triage/prompts/triage-v8.md"], {"ticket-triage": "spec"}, 1, "fail", ["eval ticket-triage"]),
        (["rollouts/ticket-triage/rollout.yaml", "rollouts/support-bot/rollout.yaml"],
         {"ticket-triage": "spec", "support-bot": "spec"}, 0, "pass", ["eval support-bot", "eval ticket-triage"]),
        (["rollouts/release-notes/rollout.yaml", "README.md"], {"release-notes": "spec"}, 0, "skipped", []),  # no golden set
        (["rollouts/gone/rollout.yaml"], {"gone": "removed"}, 0, "skipped", []),  # deleted rollout
        # the bot's records change no variant: a revert must stay mergeable whatever the endpoint says
        (["rollouts/ticket-triage/rollout.yaml"], {"ticket-triage": "rollback"}, 1, "skipped", []),
        (["rollouts/support-bot/rollout.yaml"], {"support-bot": "promotion"}, 1, "skipped", []),
    ],
    ids=["canary-fails", "two-pass", "no-golden-set", "deleted", "revert-not-evaluated", "promotion-not-evaluated"],
)  # fmt: skip
def test_the_eval_step(
    tmp_path: Path,
    files: list[str],
    kinds: dict[str, str],
    eval_exit: int,
    expect_result: str,
    expect_calls: list[str],
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    report = json.dumps({"changes": [{"rollout": name, "kind": kind} for name, kind in kinds.items()]})
    (tmp_path / "check.json").write_text(report)
    (bin_dir / "rollout").write_text(
        f'#!/usr/bin/env bash\nif [ "$1" = check ]; then [ "$3" = base-sha ] || exit 9; '
        f'cat "{tmp_path}/check.json"; exit 1; fi\n'  # exit 1: a check that fails still names the kinds
        f'echo "$1 $2 $ROLLOUT_EVAL_ENDPOINT" >> "{tmp_path}/calls"\n'
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
        "BASE": "base-sha",
        "REPOSITORY": "acme/rollouts",
        "RUNNER_TEMP": str(tmp_path),
        "GITHUB_OUTPUT": str(tmp_path / "output"),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary"),
    }
    result = subprocess.run(
        ["bash", "-e", "-c", step("eval")["run"]], cwd=FIXTURE, env=env, capture_output=True, text=True, timeout=30
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
        ["bash", "-e", "-c", golden["run"]], cwd=FIXTURE, env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "calls").read_text().splitlines() == ["eval support-bot --check", "eval ticket-triage --check"]
