"""`evals.before_ramp`: the reconciler's pure pre-check. A canary whose ramp has not started and
whose offline gate has not passed gets no traffic; a passed gate or a started ramp goes on."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller import evals, gates, load, plan, repo, traffic
from tests.helpers import golden

FAIL = gates.Judgement(gates.Verdict.FAIL, "drop 10 points > maxDrop 5")
NOT_YET = gates.Judgement(gates.Verdict.INCONCLUSIVE, "no offline eval recorded")
PASS = gates.Judgement(gates.Verdict.PASS, "drop 0 points <= maxDrop 5")
STABLE_ONLY = traffic.RouteState({"stable": 100, "canary": 0})
RAMPING = traffic.RouteState({"stable": 95, "canary": 5})


def loaded(tmp_path: Path, status: str) -> load.LoadedRollout:
    root = golden.write_repo(tmp_path / "r")
    first = load.load_repo(repo.WorkTree(root)).rollout(golden.ROLLOUT)
    assert first is not None
    if status:
        path = root / "rollouts" / golden.ROLLOUT / "rollout.yaml"
        path.write_text(path.read_text() + status.replace("REV", first.revisions["canary"]))
    again = load.load_repo(repo.WorkTree(root)).rollout(golden.ROLLOUT)
    assert again is not None
    return again


STARTED = "status: {revision: REV, step: 1, phase: Progressing}\n"
ROLLED_BACK = "status: {revision: REV, step: 1, phase: RolledBack, rolledBack: [REV]}\n"
OTHER = "status: {revision: 0123456789ab, step: 1, phase: Completed}\n"  # a step of these steps: loading refuses others


@pytest.mark.parametrize(
    ("status", "live", "judged", "kind"),
    [
        ("", None, None, None),
        ("", None, PASS, None),
        ("", None, FAIL, plan.Kind.APPLY),
        ("", RAMPING, NOT_YET, plan.Kind.APPLY),
        ("", STABLE_ONLY, FAIL, plan.Kind.HOLD),
        (OTHER, STABLE_ONLY, NOT_YET, plan.Kind.HOLD),
        (STARTED, RAMPING, FAIL, None),
        (ROLLED_BACK, STABLE_ONLY, FAIL, None),
    ],
    ids=["no-gate", "passed", "failed-apply-stable", "not-recorded-shrinks", "failed-hold", "previous-revision",
         "ramp-started", "rolled-back"],
)  # fmt: skip
def test_before_ramp(
    tmp_path: Path, status: str, live: traffic.RouteState | None, judged: gates.Judgement | None, kind: plan.Kind | None
) -> None:
    decision = evals.before_ramp(loaded(tmp_path, status), live=live, judged=judged)
    assert (decision.kind if decision else None) is kind
    if decision is not None:
        assert decision.reason.startswith(f"offline eval {judged.verdict if judged else ''}")
        if decision.route is not None:
            assert decision.route.same_traffic(STABLE_ONLY)
