"""`edits`: bot edits change `status` (or promote the canary) and keep every other byte of the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller import edits, load, spec

EXAMPLE = (Path(__file__).parent.parent / "fixtures/repo/rollouts/support-bot/rollout.yaml").read_text()
STATUS = {"revision": "6fc33c1e4d1a", "step": 2, "phase": "Progressing", "rolledBack": ["0ld000000001"]}

WITH_STATUS = (
    EXAMPLE
    + """status:   # written only by the controller's pull requests
  revision: 0ld000000000
  step: 4
  phase: Progressing
"""
)
STATUS_IN_MIDDLE = EXAMPLE.replace("spec:\n", "status: {step: 1}\n\n# the desired state\nspec:\n", 1)


def parsed_status(text: str) -> spec.Status | None:
    rollout = load.validate(spec.Rollout, load.parse_yaml("x.yaml", text.encode()))
    return rollout.status


@pytest.mark.parametrize("before", [EXAMPLE, WITH_STATUS, STATUS_IN_MIDDLE], ids=["absent", "present", "middle"])
def test_set_status_changes_status_only(before: str) -> None:
    after = edits.set_status(before, STATUS)
    assert parsed_status(after) == spec.Status.model_validate(STATUS)
    removed = [ln for ln in before.splitlines() if ln not in after.splitlines()]
    assert all(ln.startswith(("status", "  revision", "  step", "  phase")) for ln in removed), removed
    # every line of the original outside the status block is still there, in order
    kept = [ln for ln in before.splitlines() if ln not in removed]
    assert [ln for ln in after.splitlines() if ln in kept] == kept
    assert "# yaml-language-server" in after and "# no promotions from Friday" in after


def test_set_status_keeps_a_comment_on_the_key() -> None:
    after = edits.set_status(WITH_STATUS, STATUS)
    assert "status:   # written only by the controller's pull requests\n  revision: 6fc33c1e4d1a\n" in after
    assert after.startswith(EXAMPLE)  # byte-identical up to the status block


def test_set_status_is_idempotent() -> None:
    once = edits.set_status(EXAMPLE, STATUS)
    assert edits.set_status(once, STATUS) == once


def test_promote_canary_then_decommission() -> None:
    before = edits.set_status(EXAMPLE, STATUS)
    promoted = edits.promote_canary(before)
    old = load.validate(spec.Rollout, load.parse_yaml("x", before.encode())).spec
    new = load.validate(spec.Rollout, load.parse_yaml("x", promoted.encode())).spec
    assert new.stable == old.canary and new.previous == old.stable and new.canary is None
    assert new.steps == old.steps and new.analysis == old.analysis and new.freeze == old.freeze
    unchanged = [ln for ln in before.splitlines() if "stable" not in ln and "canary" not in ln and "model" not in ln]
    assert all(ln in promoted.splitlines() for ln in unchanged)
    gone = edits.drop_previous(promoted)
    final = load.validate(spec.Rollout, load.parse_yaml("x", gone.encode())).spec
    assert final.previous is None and final.stable == old.canary
    assert edits.drop_previous(gone) == gone
