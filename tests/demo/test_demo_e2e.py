"""The README's main command, end to end on real Envoy, Prometheus and the stand-in models."""

from __future__ import annotations

import io
from pathlib import Path

import git
import pytest

from controller import demo

pytestmark = pytest.mark.slow
CHECKOUT = Path(__file__).parent.parent.parent


def test_a_good_canary_is_promoted_step_by_step_and_completes() -> None:
    out = io.StringIO()
    result = demo.run("good", checkout=CHECKOUT, out=out)
    text = out.getvalue()
    assert result.completed, text
    assert not result.rolled_back
    # one merged PR per step (25%, 50%, 100%), then the completion and the decommission
    assert [t.split(": ", 1)[1].split(" (")[0] for t in result.merged] == [
        "advance to 25%", "advance to 50%", "advance to 100%",
        f"complete, {demo.CANARY_MODEL} is the new stable",
        f"decommission the old stable {demo.STABLE_MODEL}",
    ]  # fmt: skip
    merges = [line for line in result.log if "Merge pull request" in line]
    assert len(merges) == 5 and len(result.log) == 6
    assert "$ git log --oneline main" in text and merges[0] in text  # the demo prints the audit trail
    final = git.Repo(result.repo).commit("main").tree / "rollouts" / demo.NAME / "rollout.yaml"
    spec_text = final.data_stream.read().decode()
    assert f"stable:\n    model: {demo.CANARY_MODEL}" in spec_text and "canary:" not in spec_text


@pytest.mark.parametrize("scenario", ["regression", "errors"])
def test_a_bad_canary_is_rolled_back_in_seconds_with_a_revert_commit(scenario: str) -> None:
    out = io.StringIO()
    result = demo.run(scenario, checkout=CHECKOUT, out=out)
    text = out.getvalue()
    assert result.rolled_back and not result.completed, text
    # canary weight 0 within one scrape interval plus one analysis interval plus 2 s of the regression
    # becoming visible (visible: at the next scrape, at most one scrape interval after it began)
    bound = demo.SCRAPE + (demo.SCRAPE + demo.INTERVAL + 2)
    assert result.rollback_seconds is not None and result.rollback_seconds <= bound, text
    assert any(f"from rollout/{demo.NAME}/rollback-" in line for line in result.log)  # the revert commit
    assert not result.promoted_after_rollback
    assert sum("advance" in t for t in result.merged) == 2  # 25% and 50%, nothing after the rollback
