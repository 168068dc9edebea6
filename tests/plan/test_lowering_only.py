"""plan.lowering_only: what a rollout whose prompts MLflow could not be reached for may still do. A table
of decisions on a live route, and what each becomes: only what lowers exposure, each variant serving what
it serves; everything else holds, saying why."""

from __future__ import annotations

import pytest

from controller import plan, traffic

WHY = "MLflow could not be reached: prompt 'prompts:/triage/8' could not be read from http://127.0.0.1:9"
SERVED = {"stable": traffic.Served("m-1", revision="5ab1e0000001"), "canary": traffic.Served("m-2", revision="c0ffee")}
LIVE = traffic.RouteState({"stable": 90, "canary": 10}, 0, SERVED)
MAIN = {"stable": traffic.Served("m-1", revision="unread"), "canary": traffic.Served("m-2", revision="c0ffee")}


def state(stable: int, canary: int, shadow: int = 0, served: dict[str, traffic.Served] = MAIN) -> traffic.RouteState:
    return traffic.RouteState({"stable": stable, "canary": canary}, shadow, served)


CASES = [
    # (id, decision, live, kind, the route written (weights, shadow) or None)
    (
        "rollback",
        plan.Decision(plan.Kind.ROLLBACK, "gate failed", route=state(100, 0)),
        LIVE,
        plan.Kind.ROLLBACK,
        (0, 0),
    ),
    (
        "rollback-unread-router",
        plan.Decision(plan.Kind.ROLLBACK, "aborted", route=state(100, 0)),
        None,
        plan.Kind.ROLLBACK,
        (0, 0),
    ),
    ("apply-lower", plan.Decision(plan.Kind.APPLY, "rolled back", route=state(100, 0)), LIVE, plan.Kind.APPLY, (0, 0)),
    ("apply-raise", plan.Decision(plan.Kind.APPLY, "apply main", route=state(50, 50)), LIVE, plan.Kind.HOLD, None),
    (
        "apply-same-traffic",
        plan.Decision(plan.Kind.APPLY, "apply main", route=state(90, 10)),
        LIVE,
        plan.Kind.HOLD,
        None,
    ),
    ("apply-no-live", plan.Decision(plan.Kind.APPLY, "apply main", route=state(100, 0)), None, plan.Kind.HOLD, None),
    ("advance", plan.Decision(plan.Kind.ADVANCE, "gates pass", to_step=2), LIVE, plan.Kind.HOLD, None),
    ("complete", plan.Decision(plan.Kind.COMPLETE, "last step done"), LIVE, plan.Kind.HOLD, None),
    ("pause", plan.Decision(plan.Kind.PAUSE, "gate failed"), LIVE, plan.Kind.HOLD, None),
    ("decommission", plan.Decision(plan.Kind.DECOMMISSION, "kept warm"), LIVE, plan.Kind.HOLD, None),
]


@pytest.mark.parametrize(("decision", "live", "kind", "written"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_lowering_only(
    decision: plan.Decision, live: traffic.RouteState | None, kind: plan.Kind, written: tuple[int, int] | None
) -> None:
    out = plan.lowering_only(decision, live, WHY)
    assert out.kind is kind
    if written is None:
        assert out.route is None and out.reason == f"{WHY}; only a rollback or abort is done until it answers"
        return
    assert out.route is not None and (out.route.weight("canary"), out.route.shadow) == written
    assert traffic.exposure_free(out.route)
    if live is not None:  # what each variant serves is the live route's: the unread templates are not written
        assert out.route.served == live.served and out.route.weight("stable") == 100
