"""Errors that come in bursts, measured by a real Prometheus: the ratio gates read each arm's counts in
time blocks (`templates.blocks`, one subquery per sum) and widen their bounds for clustered failures, so
a canary whose provider happened to have more outage minutes in the window is not rolled back for it,
while a canary that fails steadily more often still is."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from controller import analysis, evidence, judge, prometheus, spec
from controller.gates import Verdict as V
from tests.helpers import gate_history, prom

NOW = gate_history.NOW
HOURS = 6
STABLE_PM, CANARY_PM = 200, 20  # requests per minute: a 9% canary


def _errors_per_minute(route: str, variant: str, minute: int) -> float:
    """`minute` counts back from now. `bursty`: 0.2% errors, and 80% in outage minutes: stable's provider
    is out 3 minutes an hour, the canary's as often over the history but 3 times in the last hour (its
    own outages, not stable's). `steady`: 1% for stable, 4% for the canary, every minute."""
    per_minute = STABLE_PM if variant == "stable" else CANARY_PM
    if route == "steady":
        return per_minute * (0.01 if variant == "stable" else 0.04)
    if variant == "stable":
        out = minute % 60 in (30, 31, 32)
    else:
        out = minute % 20 in (5, 6, 7) if minute < 60 else minute % 60 in (50, 51, 52) and minute // 60 in (2, 4)
    return per_minute * (0.8 if out else 0.002)


def _history() -> str:
    lines = []
    for route in ("bursty", "steady"):
        for variant, per_minute in (("stable", STABLE_PM), ("canary", CANARY_PM)):
            requests = errors = 0.0
            labels = f'route="{route}",variant="{variant}"'
            points = []
            for minute in range(HOURS * 60, -1, -1):
                ts = NOW - minute * 60
                points.append((ts, requests, errors))
                requests += per_minute
                errors += _errors_per_minute(route, variant, minute)
            lines += [f'llm_requests_total{{{labels},outcome="all"}} {r:g} {ts}' for ts, r, _ in points]
            lines += [f"llm_request_errors_total{{{labels}}} {e:g} {ts}" for ts, _, e in points]
    return "\n".join(sorted(lines, key=lambda line: line.split(" ")[0])) + "\n# EOF\n"


@pytest.fixture(scope="module")
def metrics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[prometheus.Prometheus]:
    work = tmp_path_factory.mktemp("prometheus-bursts")
    with prom.backfilled(work, _history()) as server:
        client = prometheus.Prometheus(server.url, timeout=timedelta(seconds=30))
        try:
            yield client
        finally:
            client.close()


CONFIG = spec.ControllerConfig.model_validate(
    {
        "apiVersion": "rollouts/v1",
        "kind": "ControllerConfig",
        "routers": {"local": {"type": "file"}},
        "prometheus": {"url": "http://127.0.0.1:9090"},
        "gateTemplates": {
            "errors": {"kind": "ratio", "bad": "llm_request_errors_total", "total": "llm_requests_total"},
        },
    }
)
GATE = {"use": "errors", "maxIncrease": "50%"}


def _evidence(metrics: prometheus.Prometheus, route: str) -> analysis.gates.GateEvidence:
    target = analysis.Target(
        rollout=f"r-{route}",
        route=route,
        router_type="file",
        gates=(spec.Gate.model_validate(GATE),),
        segments=(),
        min_samples=100,
    )
    at = gate_history.AT
    [e] = analysis.evaluate([target], config=CONFIG, metrics=metrics, at=at, window=timedelta(hours=1))[target.rollout]
    assert e.error is None, e.error
    return e


@pytest.mark.slow
def test_a_canary_with_more_outage_minutes_in_the_window_is_not_rolled_back(metrics: prometheus.Prometheus) -> None:
    e = _evidence(metrics, "bursty")
    [segment] = e.segments
    stable, canary = segment.stable, segment.canary
    assert stable.blocks is not None and canary.blocks is not None
    # the blocks reach back before the hour's window: more requests than the window's
    assert stable.blocks.total > 4 * (stable.samples or 0)
    # the window alone: 3 outage minutes of stable's against 9 of the canary's, a rate 3 times higher
    assert canary.value is not None and stable.value is not None and canary.value > 2.5 * stable.value
    without = judge.judge_ratio(
        stable_good=stable.value * (stable.samples or 0),
        stable_total=stable.samples or 0,
        canary_good=canary.value * (canary.samples or 0),
        canary_total=canary.samples or 0,
        higher_is_better=False,
        max_increase=0.5,
    )
    assert without.verdict is V.FAIL, without.reason  # as independent trials, it would be rolled back
    assert e.verdict is not V.FAIL, evidence.text(e.rollout, [e], at="test")
    assert "events clustered in time" in segment.reason
    s_factor, c_factor = judge.inflation(stable.blocks, canary.blocks)
    assert s_factor > 10 and c_factor > 10


@pytest.mark.slow
def test_a_canary_that_fails_steadily_more_often_is_still_rolled_back(metrics: prometheus.Prometheus) -> None:
    e = _evidence(metrics, "steady")
    [segment] = e.segments
    assert segment.canary.blocks is not None
    assert judge.inflation(segment.stable.blocks, segment.canary.blocks) == pytest.approx((1.0, 1.0), abs=0.05)
    assert e.verdict is V.FAIL, evidence.text(e.rollout, [e], at="test")
