"""plan.decide with the traffic-split check: a mismatch (FAIL) or an unmeasured split (ERROR) holds
promotion and never rolls back or pauses; a split not judged yet (INCONCLUSIVE) does not hold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller import gates, load, plan, spec, traffic

NOW = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)
CANARY_REV = "c0ffee000001"
V = gates.Verdict
MISMATCH = "the router is not splitting as configured: canary 48.90% of 2,000 requests, expected 10.00%"


def rollout(*, step: int = 1, phase: str = "Progressing") -> load.LoadedRollout:
    data: dict[str, Any] = {
        "apiVersion": "rollouts/v1",
        "kind": "Rollout",
        "metadata": {"name": "bot"},
        "spec": {
            "router": "local",
            "route": "chat",
            "stable": {"model": "m-2025-01-01"},
            "canary": {"model": "m-2025-06-01"},
            "steps": [{"shadow": 100, "for": "1h"}, {"weight": 10, "for": "2h"}, {"weight": 50}, {"weight": 100}],
        },
        "status": {"revision": CANARY_REV, "step": step, "phase": phase},
    }
    revisions = {"stable": "5ab1e0000001", "canary": CANARY_REV}
    return load.LoadedRollout("rollouts/bot/rollout.yaml", spec.Rollout.model_validate(data), revisions, {})


LIVE = traffic.RouteState({"stable": 90, "canary": 10}, 0)


def facts(gate: tuple[V, str] | None, split: tuple[V, str] | None, **kw: Any) -> plan.Facts:
    verdicts = () if gate is None else (plan.GateResult("error_rate", gate[0], spec.OnFail(gate[1])),)
    check = None if split is None else plan.GateResult(gates.TRAFFIC_SPLIT, split[0], reason=split[1])
    kw.setdefault("live", LIVE)
    return plan.Facts(now=NOW, verdicts=verdicts, step_since=NOW - timedelta(hours=3), traffic_split=check, **kw)


CASES = [
    # (id, loaded, facts, kind, words in the reason)
    ("right-split-advances", rollout(), facts((V.PASS, "rollback"), (V.PASS, "")), plan.Kind.ADVANCE, ""),
    ("mismatch-holds", rollout(), facts((V.PASS, "rollback"), (V.FAIL, MISMATCH)), plan.Kind.HOLD, MISMATCH),
    ("mismatch-holds-without-gates", rollout(), facts(None, (V.FAIL, MISMATCH)), plan.Kind.HOLD, "traffic_split:"),
    (
        "unmeasured-split-holds",
        rollout(),
        facts((V.PASS, "rollback"), (V.ERROR, "prometheus is down")),
        plan.Kind.HOLD,
        "traffic_split could not be measured: prometheus is down",
    ),
    (
        "not-judged-yet-does-not-hold",
        rollout(),
        facts((V.PASS, "rollback"), (V.INCONCLUSIVE, "not judged in the step's first 10m")),
        plan.Kind.ADVANCE,
        "every gate passed",
    ),
    ("no-split-check", rollout(), facts((V.PASS, "rollback"), None), plan.Kind.ADVANCE, ""),
    # a failing rollback gate still rolls back, and a pause gate still pauses: the canary's fault first
    (
        "rollback-gate-wins",
        rollout(),
        facts((V.FAIL, "rollback"), (V.FAIL, MISMATCH)),
        plan.Kind.ROLLBACK,
        "error_rate failed",
    ),
    ("pause-gate-wins", rollout(), facts((V.FAIL, "pause"), (V.FAIL, MISMATCH)), plan.Kind.PAUSE, "error_rate"),
    # drift is healed before the split is read: the router must first say what main says
    (
        "drift-heals-first",
        rollout(),
        facts((V.PASS, "rollback"), (V.FAIL, MISMATCH), live=traffic.RouteState({"stable": 100, "canary": 0}, 0)),
        plan.Kind.APPLY,
        "apply main",
    ),
    (
        "completes-at-the-end",
        rollout(step=3),
        facts((V.PASS, "rollback"), None, live=traffic.RouteState({"stable": 0, "canary": 100}, 0)),
        plan.Kind.COMPLETE,
        "",
    ),
]


@pytest.mark.parametrize(("loaded", "f", "kind", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_decide(loaded: load.LoadedRollout, f: plan.Facts, kind: plan.Kind, words: str) -> None:
    d = plan.decide(loaded, f)
    assert d.kind is kind, d.reason
    assert words in d.reason
    if f.traffic_split is not None and f.traffic_split.verdict is V.FAIL:
        assert d.kind is not plan.Kind.ADVANCE  # a mismatch never lets exposure grow
