"""plan.decide: one table of situations and the decision each must produce, plus invariants."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller import analysis, gates, load, plan, spec, traffic

NOW = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)  # a Wednesday
CANARY_REV = "c0ffee000001"
V = gates.Verdict


def rollout(
    *,
    step: int | None = None,
    phase: str = "Progressing",
    canary: bool = True,
    status_rev: str = CANARY_REV,
    freeze: list[dict[str, str]] | None = None,
    rolled_back: list[str] | None = None,
    retried: list[str] | None = None,
) -> load.LoadedRollout:
    data: dict[str, Any] = {
        "apiVersion": "rollouts/v1",
        "kind": "Rollout",
        "metadata": {"name": "bot"},
        "spec": {
            "router": "local",
            "route": "chat",
            "stable": {"model": "m-2025-01-01"},
            "steps": [
                {"shadow": 100, "for": "1h", "minSamples": 100},
                {"weight": 5, "for": "2h", "minSamples": 200},
                {"weight": 50, "for": "2h"},
                {"weight": 100},
            ],
            "freeze": freeze or [],
        },
    }
    revisions = {"stable": "5ab1e0000001"}
    if canary:
        data["spec"]["canary"] = {"model": "m-2025-06-01"}
        revisions["canary"] = CANARY_REV
    if step is not None:
        data["status"] = {
            "revision": status_rev,
            "step": step,
            "phase": phase,
            "rolledBack": rolled_back or [],
            "retried": retried or [],
        }
    return load.LoadedRollout("rollouts/bot/rollout.yaml", spec.Rollout.model_validate(data), revisions, {})


def completed() -> load.LoadedRollout:
    """After a completion PR: the old stable is `previous`, kept warm for keepPreviousFor (1h)."""
    loaded = rollout(step=3, phase="Completed", canary=False)
    data = loaded.rollout.model_dump(by_alias=True, mode="json", exclude_none=True)
    data["spec"]["previous"] = {"model": "m-2024-01-01"}
    return load.LoadedRollout(
        loaded.path, spec.Rollout.model_validate(data), loaded.revisions | {"previous": "0ld"}, {}
    )


def served_old() -> traffic.RouteState:
    """The right weights, but the canary slot still serves an older revision."""
    return traffic.RouteState(
        {"stable": 95, "canary": 5}, 0, {"canary": traffic.Served("m-2025-03-01", revision="0ld")}
    )


def state(stable: int, canary: int | None = None, shadow: int = 0) -> traffic.RouteState:
    weights = {"stable": stable} | ({"canary": canary} if canary is not None else {})
    return traffic.RouteState(weights, shadow)


def facts(live: traffic.RouteState | None, *verdicts: tuple[str, V, str], **kw: Any) -> plan.Facts:
    results = tuple(plan.GateResult(g, v, spec.OnFail(on_fail)) for g, v, on_fail in verdicts)
    kw.setdefault("step_since", NOW - timedelta(hours=3))
    kw.setdefault("samples", 10_000)
    return plan.Facts(now=NOW, live=live, verdicts=results, **kw)


PASS = ("error_rate", V.PASS, "rollback")
EVAL_PASS = ("eval_pass_rate", V.PASS, "rollback")
EVAL_FAIL = ("eval_pass_rate", V.FAIL, "rollback")
COST_FAIL = ("cost_per_request", V.FAIL, "pause")
NO_DATA = ("eval_pass_rate", V.INCONCLUSIVE, "rollback")
BROKEN = ("eval_pass_rate", V.ERROR, "rollback")
FRIDAY_FREEZE = [{"cron": "0 0 * * 3", "duration": "24h"}]  # Wednesday all day, in UTC

BACK = state(100, 0)
S1 = state(95, 5)
# a route that a variant no rollout manages shares (a deployment added by hand during an incident)
SHARED = traffic.RouteState({"stable": 70, "canary": 10}, 0, others={"hotfix": 20})
SHARED_BACK = traffic.RouteState({"stable": 80, "canary": 0}, 0, others={"hotfix": 20})
# a route whose router would not honour the weights (a LiteLLM proxy routing by least-busy)
IGNORED = "the proxy routes model group 'chat' by routing_strategy 'least-busy', which ignores weights"


def held(stable: int, canary: int) -> traffic.RouteState:
    return traffic.RouteState({"stable": stable, "canary": canary}, 0, hold=IGNORED)


# (id, rollout, facts, expected kind, expected route or to_step, reason fragment)
CASES: list[tuple[str, load.LoadedRollout, plan.Facts, plan.Kind, Any, str]] = [
    # a shadow step whose only gate is judged on users' feedback, which no user gives on a shadow (lint R013)
    (
        "shadow-feedback-only",
        rollout(step=0),
        plan.Facts(
            now=NOW,
            live=state(100, 0, 100),
            verdicts=(plan.GateResult("feedback_negative_rate", V.INCONCLUSIVE, spec.OnFail.ROLLBACK, "", True),),
            step_since=NOW - timedelta(hours=3),
            samples=10_000,
        ),
        plan.Kind.HOLD,
        None,
        "no gate can judge this shadow step: feedback_negative_rate",
    ),
    # steady state, no canary
    ("steady-in-sync", rollout(canary=False), facts(state(100)), plan.Kind.HOLD, None, "no canary"),
    ("steady-absent", rollout(canary=False), facts(None), plan.Kind.APPLY, state(100), "no canary"),
    ("steady-drift", rollout(canary=False), facts(state(90, 10)), plan.Kind.APPLY, state(100), "no canary"),
    # a new canary revision on main starts at step 0 (shadow 100)
    ("new-revision-absent", rollout(), facts(None), plan.Kind.APPLY, state(100, 0, 100), "apply main"),
    ("new-revision-live-old", rollout(), facts(state(100)), plan.Kind.APPLY, state(100, 0, 100), "apply main"),
    (
        "status-for-older-revision",
        rollout(step=2, status_rev="0ld000000000"),
        facts(state(50, 50)),
        plan.Kind.APPLY,
        state(100, 0, 100),
        "apply main",
    ),
    # drift: self-heal to what main says, in both directions
    ("drift-up-healed-down", rollout(step=1), facts(state(70, 30), PASS), plan.Kind.APPLY, S1, "apply main"),
    ("drift-down-healed-up", rollout(step=1), facts(state(100, 0), PASS), plan.Kind.APPLY, S1, "apply main"),
    ("drift-shadow-lost", rollout(step=0), facts(state(100, 0), PASS), plan.Kind.APPLY, state(100, 0, 100), "apply"),
    # promotion
    ("advance", rollout(step=1), facts(S1, PASS, EVAL_PASS), plan.Kind.ADVANCE, 2, "every gate passed"),
    ("advance-from-shadow", rollout(step=0), facts(state(100, 0, 100), PASS), plan.Kind.ADVANCE, 1, "passed"),
    ("no-gates-advance", rollout(step=1), facts(S1), plan.Kind.ADVANCE, 2, "passed"),
    ("complete", rollout(step=3), facts(state(0, 100), PASS), plan.Kind.COMPLETE, None, "every gate passed"),
    # holds: time, samples, data
    (
        "too-early",
        rollout(step=1),
        facts(S1, PASS, step_since=NOW - timedelta(minutes=30)),
        plan.Kind.HOLD,
        None,
        "needs 1h30m more",
    ),
    ("start-unknown", rollout(step=1), facts(S1, PASS, step_since=None), plan.Kind.HOLD, None, "start time"),
    ("too-few-samples", rollout(step=1), facts(S1, PASS, samples=150), plan.Kind.HOLD, None, "150 of 200 samples"),
    ("samples-unknown", rollout(step=1), facts(S1, PASS, samples=None), plan.Kind.HOLD, None, "sample count"),
    ("no-min-samples-step", rollout(step=2), facts(state(50, 50), PASS, samples=None), plan.Kind.ADVANCE, 3, ""),
    (
        "inconclusive",
        rollout(step=1),
        facts(S1, PASS, NO_DATA),
        plan.Kind.HOLD,
        None,
        "gates undecided: eval_pass_rate",
    ),
    ("error", rollout(step=1), facts(S1, PASS, BROKEN), plan.Kind.HOLD, None, "could not be measured"),
    (
        "error-beats-inconclusive",
        rollout(step=1),
        facts(S1, BROKEN, ("x", V.INCONCLUSIVE, "rollback")),
        plan.Kind.HOLD,
        None,
        "could not be measured",
    ),
    # rollback: now, whatever else is true
    ("fail-rollback", rollout(step=1), facts(S1, PASS, EVAL_FAIL), plan.Kind.ROLLBACK, BACK, "eval_pass_rate failed"),
    (
        "fail-rollback-in-shadow",
        rollout(step=0),
        facts(state(100, 0, 100), EVAL_FAIL),
        plan.Kind.ROLLBACK,
        BACK,
        "failed",
    ),
    ("fail-rollback-while-drifted", rollout(step=1), facts(state(50, 50), EVAL_FAIL), plan.Kind.ROLLBACK, BACK, ""),
    ("fail-rollback-too-early", rollout(step=1), facts(S1, EVAL_FAIL, step_since=NOW), plan.Kind.ROLLBACK, BACK, ""),
    (
        "fail-rollback-in-freeze",
        rollout(step=1, freeze=FRIDAY_FREEZE),
        facts(S1, EVAL_FAIL),
        plan.Kind.ROLLBACK,
        BACK,
        "",
    ),
    (
        "fail-rollback-beats-pause",
        rollout(step=1),
        facts(S1, COST_FAIL, EVAL_FAIL),
        plan.Kind.ROLLBACK,
        BACK,
        "eval_pass_rate",
    ),
    ("abort", rollout(step=2), facts(state(50, 50), PASS, abort=True), plan.Kind.ROLLBACK, BACK, "aborted"),
    ("abort-new-revision", rollout(), facts(None, abort=True), plan.Kind.ROLLBACK, BACK, "aborted"),
    # a shared route: lowering takes only the canary out and leaves the others; raising is refused
    ("shared-rollback", rollout(step=1), facts(SHARED, EVAL_FAIL), plan.Kind.ROLLBACK, SHARED_BACK, "failed"),
    ("shared-abort", rollout(step=1), facts(SHARED, abort=True), plan.Kind.ROLLBACK, SHARED_BACK, "aborted"),
    (
        "shared-shadow-abort",
        rollout(step=0),
        facts(traffic.RouteState({"stable": 80, "canary": 0}, 100, others={"hotfix": 20}), abort=True),
        plan.Kind.ROLLBACK,
        SHARED_BACK,
        "aborted",
    ),
    ("shared-no-raise", rollout(step=1), facts(SHARED_BACK, PASS), plan.Kind.HOLD, None, "hotfix (weight 20)"),
    ("shared-no-start", rollout(), facts(SHARED_BACK), plan.Kind.HOLD, None, "no rollout manages"),
    ("shared-steady", rollout(canary=False), facts(SHARED_BACK), plan.Kind.HOLD, None, "no canary"),
    (
        "shared-lowered-to-main-s-weight",  # main says 10% (a promotion reverted), live has 50%: lowered at once
        rollout(step=1),
        facts(traffic.RouteState({"stable": 30, "canary": 50}, 0, others={"hotfix": 20}), PASS),
        plan.Kind.APPLY,
        traffic.RouteState({"stable": 75, "canary": 5}, 0, others={"hotfix": 20}),
        "apply main",
    ),
    (
        "shared-in-step-proposes",
        rollout(step=1),
        facts(traffic.RouteState({"stable": 75, "canary": 5}, 0, others={"hotfix": 20}), PASS),
        plan.Kind.ADVANCE,
        2,
        "",
    ),
    (
        "shared-rolled-back-heals-canary-only",
        rollout(step=1, phase="RolledBack"),
        facts(SHARED),
        plan.Kind.APPLY,
        SHARED_BACK,
        "rolled back",
    ),
    (
        "shared-rollback-pending-holds",
        rollout(step=1),
        facts(SHARED_BACK, rollback_pr_open=True),
        plan.Kind.HOLD,
        None,
        "revert PR",
    ),
    # a router that would not honour the weights: never raise the canary there, always lower it
    ("ignored-no-start", rollout(step=1), facts(held(100, 0), PASS), plan.Kind.HOLD, None, "'least-busy'"),
    ("ignored-no-heal-up", rollout(step=1), facts(held(100, 0)), plan.Kind.HOLD, None, "not setting stable 95%"),
    ("ignored-in-step-holds", rollout(step=1), facts(held(95, 5), PASS, EVAL_PASS), plan.Kind.HOLD, None, "ignores"),
    ("ignored-abort", rollout(step=1), facts(held(95, 5), abort=True), plan.Kind.ROLLBACK, BACK, "aborted"),
    ("ignored-rollback", rollout(step=1), facts(held(95, 5), EVAL_FAIL), plan.Kind.ROLLBACK, BACK, "failed"),
    (
        "ignored-rolled-back-heals",
        rollout(step=1, phase="RolledBack"),
        facts(held(90, 10)),
        plan.Kind.APPLY,
        BACK,
        "rolled back",
    ),
    ("ignored-steady", rollout(canary=False), facts(held(100, 0)), plan.Kind.HOLD, None, "no canary"),
    # after a rollback: hold the rolled-back weights
    (
        "rollback-pr-open-holds",
        rollout(step=1),
        facts(BACK, PASS, rollback_pr_open=True),
        plan.Kind.HOLD,
        None,
        "revert PR records it",
    ),
    (
        "rollback-pr-open-reapplies",
        rollout(step=1),
        facts(S1, PASS, rollback_pr_open=True),
        plan.Kind.APPLY,
        BACK,
        "rollback pending",
    ),
    (
        "rolled-back-phase",
        rollout(step=1, phase="RolledBack"),
        facts(BACK, PASS),
        plan.Kind.HOLD,
        None,
        "rollout retry",
    ),
    ("rolled-back-drift", rollout(step=1, phase="RolledBack"), facts(S1, PASS), plan.Kind.APPLY, BACK, "rolled back"),
    (
        "rolled-back-never-promoted",
        rollout(step=1, phase="RolledBack"),
        facts(BACK, PASS, EVAL_PASS),
        plan.Kind.HOLD,
        None,
        "rolled back",
    ),
    (
        "rolled-back-list",
        rollout(step=0, status_rev="0ld000000000", rolled_back=[CANARY_REV]),
        facts(BACK),
        plan.Kind.HOLD,
        None,
        "rolled back",
    ),
    (
        "retried-starts-again",
        rollout(step=0, status_rev="0ld000000000", rolled_back=[CANARY_REV], retried=[CANARY_REV]),
        facts(BACK),
        plan.Kind.APPLY,
        state(100, 0, 100),
        "",
    ),
    # pause gates hold and tell a human
    ("fail-pause", rollout(step=1), facts(S1, PASS, COST_FAIL), plan.Kind.PAUSE, None, "cost_per_request failed"),
    ("fail-pause-while-drifted-heals-first", rollout(step=1), facts(state(60, 40), COST_FAIL), plan.Kind.APPLY, S1, ""),
    # freeze windows stop promotion, not rollback
    (
        "freeze-holds-promotion",
        rollout(step=1, freeze=FRIDAY_FREEZE),
        facts(S1, PASS),
        plan.Kind.HOLD,
        None,
        "freeze window",
    ),
    (
        "freeze-other-day",
        rollout(step=1, freeze=[{"cron": "0 0 * * 5", "duration": "24h"}]),
        facts(S1, PASS),
        plan.Kind.ADVANCE,
        2,
        "",
    ),
    (
        "freeze-timezone",
        rollout(step=1, freeze=[{"cron": "0 13 * * 3", "duration": "1h", "timezone": "Europe/Paris"}]),
        facts(S1, PASS),
        plan.Kind.HOLD,
        None,
        "freeze",
    ),
    ("paused-holds", rollout(step=1, phase="Paused"), facts(S1, PASS), plan.Kind.HOLD, None, "paused"),
    ("paused-still-rolls-back", rollout(step=1, phase="Paused"), facts(S1, EVAL_FAIL), plan.Kind.ROLLBACK, BACK, ""),
    ("paused-heals-drift", rollout(step=1, phase="Paused"), facts(state(60, 40)), plan.Kind.APPLY, S1, ""),
    # a pause PR open, not merged (a pause gate's, or `rollout hold`'s): it holds as main's Paused does
    ("pause-pr-holds", rollout(step=1), facts(S1, PASS, pause_pr_open=True), plan.Kind.HOLD, None, "pause PR is open"),
    (
        "pause-pr-holds-last-step",
        rollout(step=3),
        facts(state(0, 100), PASS, pause_pr_open=True),
        plan.Kind.HOLD,
        None,
        "pause PR",
    ),
    (
        "pause-pr-still-rolls-back",
        rollout(step=1),
        facts(S1, EVAL_FAIL, pause_pr_open=True),
        plan.Kind.ROLLBACK,
        BACK,
        "",
    ),
    (
        "pause-pr-still-aborts",
        rollout(step=1),
        facts(S1, PASS, pause_pr_open=True, abort=True),
        plan.Kind.ROLLBACK,
        BACK,
        "by hand",
    ),
    ("pause-pr-heals-drift", rollout(step=1), facts(state(60, 40), pause_pr_open=True), plan.Kind.APPLY, S1, ""),
    ("pause-pr-gate-pauses", rollout(step=1), facts(S1, COST_FAIL, pause_pr_open=True), plan.Kind.PAUSE, None, "cost"),
    (
        "previous-warm",
        completed(),
        facts(state(100), step_since=NOW - timedelta(minutes=10)),
        plan.Kind.HOLD,
        None,
        "stays warm",
    ),
    (
        "previous-decommission",
        completed(),
        facts(state(100), step_since=NOW - timedelta(hours=2)),
        plan.Kind.DECOMMISSION,
        None,
        "kept warm",
    ),
    (
        "previous-drift-first",
        completed(),
        facts(state(50, 50), step_since=NOW - timedelta(hours=2)),
        plan.Kind.APPLY,
        state(100),
        "no canary",
    ),
    ("served-revision-drift", rollout(step=1), facts(served_old()), plan.Kind.APPLY, S1, "apply main"),
    (
        "complete-at-100-without-stable-data",
        rollout(step=3),
        facts(state(0, 100), NO_DATA),
        plan.Kind.COMPLETE,
        None,
        "no gate failed (eval_pass_rate undecided",  # never "every gate passed" when one did not
    ),
    (
        "complete-at-100-not-on-error",
        rollout(step=3),
        facts(state(0, 100), BROKEN),
        plan.Kind.HOLD,
        None,
        "could not be measured",
    ),
    ("complete-at-100-not-on-fail", rollout(step=3), facts(state(0, 100), EVAL_FAIL), plan.Kind.ROLLBACK, BACK, ""),
    (
        "freeze-complete",
        rollout(step=3, freeze=FRIDAY_FREEZE),
        facts(state(0, 100), PASS),
        plan.Kind.HOLD,
        None,
        "freeze",
    ),
]


@pytest.mark.parametrize(
    ("loaded", "observed", "kind", "detail", "reason"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_decide(loaded: load.LoadedRollout, observed: plan.Facts, kind: plan.Kind, detail: Any, reason: str) -> None:
    decision = plan.decide(loaded, observed)
    assert decision.kind is kind, decision.reason
    assert reason in decision.reason
    if kind in (plan.Kind.APPLY, plan.Kind.ROLLBACK):
        assert decision.route is not None and decision.route.same_traffic(detail)
    elif kind is plan.Kind.ADVANCE:
        assert decision.to_step == detail
    else:
        assert decision.route is None


def test_table_is_large() -> None:
    assert len(CASES) >= 40


verdict_lists = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c"]), st.sampled_from(list(V)), st.sampled_from(["rollback", "pause"])),
    max_size=4,
)
live_states = st.one_of(
    st.none(),
    st.builds(lambda c, sh: state(100 - c, c, sh), st.integers(0, 100), st.sampled_from([0, 50, 100])),
)


@settings(max_examples=400, deadline=None)
@given(
    step=st.one_of(st.none(), st.integers(0, 3)),
    phase=st.sampled_from(["Progressing", "Paused", "RolledBack"]),
    live=live_states,
    verdicts=verdict_lists,
    hours=st.integers(0, 5),
    samples=st.one_of(st.none(), st.integers(0, 500)),
    abort=st.booleans(),
    pr_open=st.booleans(),
    pause_open=st.booleans(),
)
def test_invariants(
    step: int | None,
    phase: str,
    live: traffic.RouteState | None,
    verdicts: list[tuple[str, V, str]],
    hours: int,
    samples: int | None,
    abort: bool,
    pr_open: bool,
    pause_open: bool,
) -> None:
    loaded = rollout(step=step, phase=phase)
    observed = facts(
        live,
        *verdicts,
        step_since=NOW - timedelta(hours=hours),
        samples=samples,
        abort=abort,
        rollback_pr_open=pr_open,
        pause_pr_open=pause_open,
    )
    decision = plan.decide(loaded, observed)
    # canary weight never exceeds what main (a merged commit) says: an APPLY writes at most the desired weight
    if decision.route is not None:
        assert decision.route.weight("canary") <= plan.desired_state(loaded).weight("canary")
        assert sum(decision.route.weights.values()) == 100 and any(decision.route.weights.values())
    # a rollback always ends at canary 0 and shadow 0
    if decision.kind is plan.Kind.ROLLBACK:
        assert decision.route is not None and decision.route.weight("canary") == 0 and decision.route.shadow == 0
    # promotion only when nothing failed, errored or lacked data, and never after a rollback
    if decision.kind in (plan.Kind.ADVANCE, plan.Kind.COMPLETE):
        # at the last step, at 100%, stable has no traffic to compare with: undecided gates complete
        undecided_ok = decision.kind is plan.Kind.COMPLETE and plan.desired_state(loaded).weight("canary") == 100
        assert all(v is V.PASS or (undecided_ok and v is V.INCONCLUSIVE) for _, v, _ in verdicts)
        assert not abort and not pr_open and phase != "RolledBack"
        assert not pause_open and phase != "Paused"  # a pause, merged or only proposed, holds
    # any failing rollback gate rolls back, or the rollout is already rolled back
    if any(v is V.FAIL and f == "rollback" for _, v, f in verdicts) and not (pr_open or phase == "RolledBack"):
        assert decision.kind is plan.Kind.ROLLBACK


@pytest.mark.parametrize(
    ("in_step", "expected"),
    [(None, 60), (30, 60), (60, 60), (119, 60), (120, 120), (300, 300), (599, 480), (3600, 1920), (10**7, 60 * 2**13)],
    ids=["unknown", "shorter", "one", "almost-two", "two", "five", "almost-ten", "hour", "capped"],
)
def test_measuring_window(in_step: int | None, expected: int) -> None:
    got = analysis.window(timedelta(minutes=1), None if in_step is None else timedelta(seconds=in_step))
    assert got == timedelta(seconds=expected)
    assert got <= max(timedelta(minutes=1), timedelta(seconds=in_step or 0))  # never before the step began


@pytest.mark.parametrize(
    ("in_step", "in_life", "expected"),
    [(30, 30, 16), (30, 600, 60), (0, 0, 1), (59, 59, 32), (3600, 3600, 1920), (3600, 100, 64)],
    ids=["new-canary", "old-canary-young-step", "just-begun", "almost-one", "life-is-the-step", "retried-lately"],
)
def test_measuring_window_never_reaches_before_the_canary_s_life(in_step: int, in_life: int, expected: int) -> None:
    """The metrics name a variant, not its revision: a window reaching back past the canary's life (its
    revision's arrival, its last rollback or retry) would judge it on what another canary answered."""
    got = analysis.window(timedelta(minutes=1), timedelta(seconds=in_step), timedelta(seconds=in_life))
    assert got == timedelta(seconds=expected)
    assert got <= max(timedelta(seconds=1), timedelta(seconds=in_life))


def test_plan_shows_why_a_route_whose_router_ignores_weights_is_held() -> None:
    shown = plan.diff(rollout(step=1), held(100, 0))
    assert shown.action.startswith("hold, not setting stable 95%, canary 5%") and "'least-busy'" in shown.action
    assert plan.diff(rollout(canary=False), held(100, 0)).action == "nothing to roll out: no canary"


PHASES = [
    ("new-revision", rollout(), False, "Progressing"),
    ("status-of-another-revision", rollout(step=2, status_rev="0ther"), False, "Progressing"),
    ("progressing", rollout(step=1), False, "Progressing"),
    ("paused", rollout(step=1, phase="Paused"), False, "Paused"),
    ("rolled-back-on-main", rollout(step=1, phase="RolledBack"), False, "RolledBack"),
    (
        "rolled-back-in-an-earlier-status",
        rollout(step=0, status_rev="0ther", rolled_back=[CANARY_REV]),
        False,
        "RolledBack",
    ),
    ("revert-pr-open", rollout(step=1), True, "RolledBack"),
    ("completed", completed(), False, "Completed"),
    ("no-canary", rollout(canary=False), False, None),
    ("no-canary-revert-pending-is-no-rollback", rollout(canary=False), True, None),
]


@pytest.mark.parametrize(("loaded", "rolling_back", "expected"), [c[1:] for c in PHASES], ids=[c[0] for c in PHASES])
def test_the_phase_is_the_schemas(loaded: load.LoadedRollout, rolling_back: bool, expected: str | None) -> None:
    """Every command shows one of the schema's phases (or none, for a stable variant alone); a rollout
    rolled back on main, or by this tick with its revert PR open, is never shown Progressing."""
    got = plan.phase(loaded, rolling_back=rolling_back)
    assert (got.value if got else None) == expected
    assert got is None or got in set(spec.Phase)
    assert plan.diff(loaded, state(100)).phase == (got if not rolling_back else plan.phase(loaded))
