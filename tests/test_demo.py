"""The README's main command on the embedded defaults: a throwaway repo, validated, planned, drift shown."""

from __future__ import annotations

import io
from pathlib import Path

import git

from controller import cli

ROOT = Path(__file__).parent.parent


def test_demo_runs_end_to_end() -> None:
    out = io.StringIO()
    assert cli.main(["demo", "--examples", str(ROOT)], out) == 0
    text = out.getvalue()
    assert "valid: no problems found" in text
    assert "3 rollout(s): 3 to change, 0 in sync" in text  # nothing live at first
    assert "3 rollout(s): 0 to change, 3 in sync" in text  # after applying the desired state
    drift_row = next(ln for ln in text.splitlines() if ln.startswith("| support-bot"))
    assert "stable 70%, canary 30%" in drift_row and "**yes**" in drift_row
    clone = Path(text.split("Demo repository: ", 1)[1].split(" ", 1)[0])
    remote = git.Repo(clone.parent / "remote.git")
    assert remote.head.commit.message.startswith("Add the example rollouts")
