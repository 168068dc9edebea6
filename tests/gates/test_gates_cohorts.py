"""Gates per cohort, from a real Prometheus: each open cohort judged on its own (its canary against its
stable; a cohort at 100% against stable over the whole route), the worst verdict winning, the rows naming
their cohort; Envoy's own metrics, which carry no cohort label, judge the route as one."""

from __future__ import annotations

from datetime import timedelta

import pytest

from controller import analysis, evidence, gates, prometheus, spec, traffic
from controller.gates import Verdict as V
from tests.helpers import gate_history

S, C = traffic.STABLE, traffic.CANARY
CONFIG = spec.ControllerConfig.model_validate(
    {"apiVersion": "rollouts/v1", "kind": "ControllerConfig", "routers": {"local": {"type": "file"}}}
)
INTERNAL = traffic.CohortSplit("internal", "user_group", ("internal",), 100)
BETA = traffic.CohortSplit("beta", "tenant_tier", ("beta",), 25)
EVAL = spec.Gate.model_validate({"use": "eval_pass_rate", "maxDrop": "3%"})


def target(route: str, state: traffic.RouteState, *, segments: tuple[str, ...] = ()) -> analysis.Target:
    return analysis.Target(
        rollout=f"r-{route}",
        route=route,
        router_type="file",
        gates=(EVAL,),
        segments=segments,
        min_samples=100,
        cohorts=analysis.judged(state),
    )


def judge(metrics: prometheus.Prometheus, t: analysis.Target) -> gates.GateEvidence:
    [e] = analysis.evaluate([t], config=CONFIG, metrics=metrics, at=gate_history.AT, window=timedelta(hours=1))[
        t.rollout
    ]
    assert e.error is None, e.error
    return e


def state(canary: int, *cohorts: traffic.CohortSplit) -> traffic.RouteState:
    return traffic.RouteState({S: 100 - canary, C: canary}, cohorts=cohorts)


def by_cohort(e: gates.GateEvidence) -> dict[str, V]:
    return {gates.where(r): r.verdict for r in e.segments}


def test_a_regression_only_beta_sees_fails_on_beta(metrics: prometheus.Prometheus) -> None:
    e = judge(metrics, target("cohort-bad", state(5, INTERNAL, BETA)))
    assert e.verdict is V.FAIL, evidence.text("r", [e], at="test")
    assert by_cohort(e) == {"cohort internal": V.INCONCLUSIVE, "cohort beta": V.FAIL, "everyone else": V.PASS}


def test_the_same_canary_judged_as_one_route_hides_it(metrics: prometheus.Prometheus) -> None:
    """What cohorts are for: over the whole route, beta's regression drowns in the others' traffic."""
    e = judge(metrics, target("cohort-bad", state(5)))
    assert e.verdict is not V.FAIL, evidence.text("r", [e], at="test")


def test_good_cohorts_pass(metrics: prometheus.Prometheus) -> None:
    e = judge(metrics, target("cohort-good", state(5, INTERNAL, BETA)))
    assert e.verdict is V.PASS, evidence.text("r", [e], at="test")


def test_a_cohort_at_100_is_judged_by_absolute_bounds_only(metrics: prometheus.Prometheus) -> None:
    """No stable of its own, and another cohort's stable is another population: no relative limit there."""
    e = judge(metrics, target("cohort-good", state(0, INTERNAL)))
    [row] = e.segments
    assert (row.cohort, row.verdict, row.counted, e.verdict) == ("internal", V.INCONCLUSIVE, False, V.INCONCLUSIVE)
    assert e.undecidable and "only relative limits" in row.reason
    assert row.canary.samples is not None and row.canary.samples > 1000  # shown, and counted for minSamples
    assert gates.deciding([e]) == []  # it backs nothing and holds nothing
    bounded = spec.Gate.model_validate({"use": "eval_pass_rate", "maxDrop": "3%", "min": "85%"})
    t = target("cohort-good", state(0, INTERNAL))
    t = analysis.Target(t.rollout, t.route, t.router_type, (bounded,), t.segments, t.min_samples, t.cohorts)
    e = judge(metrics, t)
    [row] = e.segments
    assert (row.verdict, e.verdict, e.undecidable) == (V.PASS, V.PASS, False)  # 93% >= 85%, on evidence
    assert row.stable == gates.NO_DATA and "only max and min are judged" in row.reason


def test_segments_split_each_cohort(metrics: prometheus.Prometheus) -> None:
    e = judge(metrics, target("cohort-bad", state(5, BETA), segments=("tenant_tier",)))
    assert by_cohort(e) == {
        "cohort beta, tenant_tier=beta": V.FAIL,
        "everyone else, tenant_tier=free": V.PASS,
        "everyone else, tenant_tier=pro": V.PASS,  # internal users' pro requests are everyone's here
    }


def test_one_query_per_template_whatever_the_cohorts(
    metrics: prometheus.Prometheus, counting: gate_history.Counting
) -> None:
    targets = [target("cohort-bad", state(5, INTERNAL, BETA)), target("cohort-good", state(0, INTERNAL))]
    analysis.evaluate(targets, config=CONFIG, metrics=metrics, at=gate_history.AT, window=timedelta(hours=1))
    assert len(counting.requests) == 1


@pytest.mark.parametrize(
    ("state_", "names"),
    [
        (state(0), []),
        (state(0, INTERNAL), ["internal"]),
        (state(5, INTERNAL, BETA), ["internal", "beta", gates.EVERYONE]),
        (state(30, BETA), ["beta", gates.EVERYONE]),  # beta served less than everyone: judged on its own
    ],
)
def test_which_cohorts_are_judged(state_: traffic.RouteState, names: list[str]) -> None:
    assert [c.name for c in analysis.judged(state_)] == names


def test_everyone_else_is_in_no_open_cohort() -> None:
    *_, everyone = analysis.judged(state(5, INTERNAL, BETA))
    assert everyone.matchers == ('user_group!~"(?:internal)"', 'tenant_tier!~"(?:beta)"')
