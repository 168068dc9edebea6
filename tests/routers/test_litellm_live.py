"""Live: the session's real LiteLLM proxy in front of OpenAI-compatible stand-ins. The observed split,
a live change under load with zero failed requests, a rollback that takes the canary out of rotation,
and LiteLLM's own metrics scraped by a real Prometheus and judged by a gate."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from controller import analysis, evidence, prometheus, spec
from controller.gates import Verdict
from controller.routers import base
from tests.helpers import litellm_proc, prom
from tests.helpers.routes import read_one
from tests.routers.conftest import GATE_ROLLOUT, GATE_ROUTE, ROUTES, LitellmStack, litellm_router

pytestmark = pytest.mark.slow

S, C = base.STABLE, base.CANARY
ROUTE = ROUTES[1]


def split(canary: int) -> base.RouteState:
    return base.RouteState({S: 100 - canary, C: canary})


def answers(stack: LitellmStack, route: str, n: int) -> Counter[str]:
    """Who answered `n` completions on `route` (the stand-ins answer with their name)."""
    seen: Counter[str] = Counter()
    with httpx.Client(timeout=30) as client:
        for _ in range(n):
            response = litellm_proc.completion(client, stack.proxy.url, route)
            assert response.status_code == 200, response.text
            seen[response.json()["choices"][0]["message"]["content"]] += 1
    return seen


@pytest.mark.parametrize(
    ("canary", "low", "high"), [(0, 0, 0), (25, 15, 80), (100, 200, 200)], ids=["0%", "25%", "100%"]
)
def test_observed_split(litellm_stack: LitellmStack, canary: int, low: int, high: int) -> None:
    """200 requests: exact at 0% and 100%; at 25% (mean 50, sd 6) far from 0 and from an even split."""
    base.apply(litellm_router(litellm_stack), {ROUTE: split(canary)}).state(ROUTE)
    seen = answers(litellm_stack, ROUTE, 200)
    assert sum(seen.values()) == 200
    assert low <= seen["canary"] <= high, seen


def test_live_change_under_load_drops_nothing(litellm_stack: LitellmStack) -> None:
    """Four clients send completions nonstop while the ramp 1 -> 5 -> 25 -> 50 -> 100 -> 0 is applied."""
    router = litellm_router(litellm_stack)
    base.apply(router, {ROUTE: split(0)}).state(ROUTE)
    stop = threading.Event()
    results: Counter[str] = Counter()
    lock = threading.Lock()

    def client() -> None:
        with httpx.Client(timeout=30) as http:
            while not stop.is_set():
                try:
                    response = litellm_proc.completion(http, litellm_stack.proxy.url, ROUTE)
                    outcome = (
                        response.json()["choices"][0]["message"]["content"]
                        if response.status_code == 200
                        else (f"HTTP {response.status_code}")
                    )
                except (httpx.HTTPError, ValueError, KeyError) as exc:
                    outcome = type(exc).__name__
                with lock:
                    results[outcome] += 1

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for canary in (1, 5, 25, 50, 100, 0):
            live = base.apply(router, {ROUTE: split(canary)}).state(ROUTE)
            assert live.weight(C) == canary
            # let some traffic through at this weight before the next change
            with lock:
                target = sum(results.values()) + 20
            litellm_proc.wait_for("traffic at this weight", lambda n=target: sum(results.values()) >= n, deadline=60)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    failures = {k: v for k, v in results.items() if k not in ("stable", "canary")}
    assert failures == {}, results
    assert results["stable"] > 0 and results["canary"] > 0


def test_rollback_takes_the_canary_out_of_rotation(litellm_stack: LitellmStack) -> None:
    router = litellm_router(litellm_stack)
    base.apply(router, {ROUTE: split(50)}).state(ROUTE)
    assert answers(litellm_stack, ROUTE, 40)["canary"] > 0
    live = base.apply(router, {ROUTE: split(0)}).state(ROUTE)
    assert (live.weight(S), live.weight(C)) == (100, 0)
    ids = {(g, i) for g, i, _w in litellm_stack.proxy.weights()}
    assert (ROUTE, spec.cluster_name("support-bot", C)) not in ids  # withdrawn, not left at weight 0
    before = litellm_stack.upstreams["canary"].requests
    assert answers(litellm_stack, ROUTE, 40) == Counter(stable=40)
    # the canary stand-in also serves the other contract route; nothing more reached it from this one
    assert litellm_stack.upstreams["canary"].requests == before


def test_wrong_master_key_is_an_error_that_never_shows_the_key(litellm_stack: LitellmStack) -> None:
    from controller import errors

    secret = "sk-wrong-but-secret-123"
    router = litellm_router(litellm_stack, master_key=secret)
    with pytest.raises(errors.RouterError) as raised:
        read_one(router, ROUTE)
    assert "master key" in str(raised.value) and secret not in str(raised.value)


# -- metrics: LiteLLM's /metrics scraped by a real Prometheus, judged by a gate ----------------------


def requests_scraped(url: str) -> float:
    expr = f'sum(litellm_deployment_total_requests_total{{model_group="{GATE_ROUTE}"}})'
    result = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=5).json()["data"]["result"]
    return float(result[0]["value"][1]) if result else -1.0


def test_gate_judges_litellm_metrics_then_rollback(litellm_stack: LitellmStack, tmp_path: Path) -> None:
    """The gated route's canary fails every request: error_rate FAILs on LiteLLM's own counters (and
    tokens_per_request holds rather than passing a canary that spends nothing), the rollback takes it
    out, and from then on every request succeeds."""
    router = litellm_router(litellm_stack)
    base.apply(router, {GATE_ROUTE: split(50)}).state(GATE_ROUTE)
    sent = 0
    with prom.prom_server(tmp_path, data_dir=tmp_path / "data") as server:
        server.set_targets([litellm_stack.proxy.url.removeprefix("http://")], metrics_path="/metrics/")
        with httpx.Client(timeout=30) as client:
            for _batch in range(3):
                for _ in range(30):
                    litellm_proc.completion(client, litellm_stack.proxy.url, GATE_ROUTE)
                    sent += 1
                prom.prom_poll(f"{sent} requests scraped", lambda n=sent: requests_scraped(server.url) >= n)
        config = spec.ControllerConfig.model_validate(
            {
                "apiVersion": "rollouts/v1",
                "kind": "ControllerConfig",
                "routers": {"gateway": {"type": "litellm", "url": litellm_stack.proxy.url}},
            }
        )
        gates = tuple(
            spec.Gate.model_validate(g)
            for g in (
                {"use": "error_rate", "max": "1%"},
                {"use": "tokens_per_request", "maxIncrease": "50%", "max": 100_000},
            )
        )
        target = analysis.Target(GATE_ROLLOUT, GATE_ROUTE, "litellm", gates, (), 5)
        metrics = prometheus.Prometheus(server.url)
        try:
            found = analysis.evaluate(
                [target], config=config, metrics=metrics, at=datetime.now(UTC), window=timedelta(minutes=5)
            )
        finally:
            metrics.close()
    errors_gate, tokens_gate = found[GATE_ROLLOUT]
    print(evidence.text(GATE_ROLLOUT, found[GATE_ROLLOUT], at="now"))
    assert errors_gate.source == "litellm" and "litellm_deployment_failure_responses_total" in errors_gate.query
    assert errors_gate.verdict is Verdict.FAIL, errors_gate
    [row] = errors_gate.segments
    assert row.stable.value == 0.0 and row.canary.value is not None and row.canary.value > 0.5
    assert tokens_gate.source == "litellm"
    # tokens per answered request: stable's are real; the canary answered nothing, so it has no
    # samples and the gate holds rather than passing a canary that spends nothing
    assert "litellm_deployment_success_responses_total" in tokens_gate.query
    [row] = tokens_gate.segments
    assert row.stable.value is not None and row.stable.value >= 1, row
    assert not row.canary.samples, row
    assert tokens_gate.verdict is Verdict.INCONCLUSIVE, tokens_gate

    live = base.apply(router, {GATE_ROUTE: split(0)}).state(GATE_ROUTE)  # the rollback a FAIL triggers
    assert live.weight(C) == 0
    with httpx.Client(timeout=30) as client:
        codes = Counter(
            litellm_proc.completion(client, litellm_stack.proxy.url, GATE_ROUTE).status_code for _ in range(30)
        )
    assert codes == Counter({200: 30})
