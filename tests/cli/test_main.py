"""The `rollout` command as a whole: `python -m controller`, the test-only kill switch, and the line
each controller command starts with."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from controller import cli
from controller.cli import run
from tests.helpers.examples import ROOT, copy_examples


def test_python_dash_m_runs_the_same_command(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "controller", "validate", "rollouts"],
        cwd=copy_examples(tmp_path),
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_what_a_command_acts_on_never_shows_the_remote_s_credentials() -> None:
    line = run._acting_on("https://x-access-token:ghs_SECRET123@github.com/acme/rollouts.git", "a" * 40, Path("/s"))
    assert "ghs_SECRET123" not in line and "github.com/acme/rollouts.git" in line and "/s" in line


def test_an_unknown_kill_point_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The test-only kill switch refuses a name it does not know, before the command runs: a typo in a
    fault test must not pass for a process that survived its cut point."""
    monkeypatch.setenv(cli.KILL_ENV, "router.writen")
    assert cli.main(["schema", "--check"]) == 2
    assert "not a cut point" in capsys.readouterr().err


def test_ctrl_c_before_a_command_handles_it_exits_130_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from controller.cli import validate

    def interrupted(*_: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(validate, "cmd_validate", interrupted)
    assert cli.main(["validate"]) == cli.EXIT_INTERRUPTED == 130
    assert "Traceback" not in capsys.readouterr().err


def test_the_loop_says_a_waiting_decision_once() -> None:
    """`rollout run` prints a rollout's line when its decision, reason (digits aside) or error changes, or
    when it acted; a PR waiting for review is not announced every tick. One tick (`reconcile`) says all."""
    from datetime import UTC, datetime

    from controller import plan, reconcile

    at = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)

    def tick(reason: str, *actions: str) -> reconcile.Tick:
        waiting = reconcile.Outcome("bot", decision=plan.Decision(plan.Kind.ADVANCE, reason), actions=actions)
        return reconcile.Tick(at, outcomes=(waiting,))

    said: dict[str, object] = {}
    printed = [
        run._tick_lines(t, said)
        for t in (
            tick("step 1 done and every gate passed", "opened or updated #1"),
            tick("step 1 done and every gate passed"),
            tick("step 1 done and every gate passed"),
            tick("2 of 300 samples"),
            tick("7 of 300 samples"),
        )
    ]
    assert [len(lines) for lines in printed] == [2, 0, 0, 1, 0]
    assert len(run._tick_lines(tick("step 1 done and every gate passed"))) == 1  # no memory: every line
