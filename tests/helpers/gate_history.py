"""The gates tests' metric history: deterministic series backfilled by promtool relative to `NOW`, one
real Prometheus per session holding them (`prom_server`), a counting requests session (`counting`,
`metrics`), and for the live tests a real Prometheus per module (`prom_live`: empty TSDB, scraping
every second whatever a test points it at with `tests.helpers.live.scrape()`), stopped by its handle;
tests/gates/conftest.py imports the fixtures."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from controller import prometheus
from tests.helpers import prom

NOW = int(time.time()) // 60 * 60
AT = datetime.fromtimestamp(NOW, UTC)
WEIRD_ROUTE = 'we"ird\\route\nname'


def _ratio(
    name: str, route: str, variant: str, label: str, good: str, good_pm: float, total_pm: float, **seg: str
) -> list[prom.PromSeries]:
    base = {"route": route, "variant": variant, **seg}
    bad_value = {"pass": "fail", "valid": "invalid", "ok": "error"}[good]
    out = [prom.PromSeries(name, {**base, label: good}, good_pm)]
    if total_pm - good_pm > 0:
        out.append(prom.PromSeries(name, {**base, label: bad_value}, total_pm - good_pm))
    return out


def _evals(route: str, variant: str, rate: float, per_minute: float, **seg: str) -> list[prom.PromSeries]:
    return _ratio("llm_eval_results_total", route, variant, "result", "pass", per_minute * rate, per_minute, **seg)


def _latency(route: str, variant: str, shares: dict[str, float], per_minute: float) -> list[prom.PromSeries]:
    labels = {"route": route, "variant": variant}
    return [
        prom.PromSeries("llm_request_duration_seconds_bucket", {**labels, "le": le}, per_minute * share)
        for le, share in shares.items()
    ]


def history() -> list[prom.PromSeries]:
    s: list[prom.PromSeries] = []
    # canary better: evals 93% against 90%, faster, cheaper, same error rate
    s += _evals("better", "stable", 0.90, 20) + _evals("better", "canary", 0.93, 20)
    s += _latency("better", "stable", {"0.1": 0.2, "0.25": 0.5, "0.5": 0.8, "1": 0.97, "+Inf": 1.0}, 20)
    s += _latency("better", "canary", {"0.1": 0.3, "0.25": 0.6, "0.5": 0.9, "1": 0.99, "+Inf": 1.0}, 20)
    for variant, usd in (("stable", 0.02), ("canary", 0.018)):
        s += _ratio("llm_requests_total", "better", variant, "outcome", "ok", 199, 200)  # 12,000 an hour
        s.append(prom.PromSeries("llm_cost_usd_total", {"route": "better", "variant": variant}, usd))
    # canary 10 points worse on evals (5 points in 1200 samples is not yet evidence beyond a 3-point limit)
    s += _evals("worse", "stable", 0.90, 20) + _evals("worse", "canary", 0.80, 20)
    # too few samples: 18 canary evals in an hour
    s += _evals("few", "stable", 0.90, 20) + _evals("few", "canary", 0.5, 0.3)
    # one bad segment among good ones, and a tiny bad one that does not count
    for tier, canary_rate, per_minute in (
        ("free", 0.91, 20),
        ("pro", 0.90, 20),
        ("enterprise", 0.80, 20),
        ("trial", 0.1, 0.1),
    ):
        s += _evals("segmented", "stable", 0.90, 20, tenant_tier=tier)
        s += _evals("segmented", "canary", canary_rate, per_minute, tenant_tier=tier)
    # stable has had 5xx; the canary's error series does not exist at all
    s += _ratio("llm_requests_total", "absent5xx", "stable", "outcome", "ok", 19.5, 20)
    s += _ratio("llm_requests_total", "absent5xx", "canary", "outcome", "ok", 20, 20)
    # the canary fails every request, so it spends nothing: per answered request it has no samples
    for variant, usd, answered in (("stable", 0.02, 20), ("canary", 0.0, 0)):
        s += _ratio("llm_requests_total", "unanswered", variant, "outcome", "ok", answered, 20)
        s.append(prom.PromSeries("llm_cost_usd_total", {"route": "unanswered", "variant": variant}, usd))
    # the canary fails 30% of its requests; those it answers cost what stable's do
    for variant, answered in (("stable", 19.9), ("canary", 14.0)):
        s += _ratio("llm_requests_total", "failing", variant, "outcome", "ok", answered, 20)
        s.append(prom.PromSeries("llm_cost_usd_total", {"route": "failing", "variant": variant}, answered * 0.001))
    # the same on LiteLLM's own metrics, by deployment id (rollout r-litellm-failing): tokens per answer
    for variant, answered in (("stable", 19.9), ("canary", 14.0)):
        model = {"model_id": f"r-litellm-failing_{variant}"}
        s.append(prom.PromSeries("litellm_deployment_total_requests_total", model, 20))
        s.append(prom.PromSeries("litellm_deployment_success_responses_total", model, answered))
        s.append(prom.PromSeries("litellm_total_tokens_metric_total", model, answered * 500))
    # a route whose name would break a carelessly built query
    s += _evals(WEIRD_ROUTE, "stable", 0.9, 20) + _evals(WEIRD_ROUTE, "canary", 0.9, 20)
    return s + sequential_history() + split_history() + cohort_history()


def cohort_history() -> list[prom.PromSeries]:
    """Two routes with cohorts open: internal users all on the canary (user_group=internal), beta
    tenants a quarter on it (tenant_tier=beta), everyone else 5%. On `cohort-bad` only beta's canary
    answers worse (70% against 90%); on `cohort-good` every canary is at least as good as stable."""
    s: list[prom.PromSeries] = []
    for route, beta_canary in (("cohort-bad", 0.70), ("cohort-good", 0.93)):
        s += _evals(route, "canary", 0.93, 20, user_group="internal", tenant_tier="pro")
        s += _evals(route, "stable", 0.90, 30, user_group="external", tenant_tier="beta")
        s += _evals(route, "canary", beta_canary, 10, user_group="external", tenant_tier="beta")
        for tier in ("free", "pro"):
            s += _evals(route, "stable", 0.90, 40, user_group="external", tenant_tier=tier)
            s += _evals(route, "canary", 0.93, 20, user_group="external", tenant_tier=tier)
    return s


# -- a step that began when the history did, for the sequential verdicts ------------------------------

STEP_START = NOW - 3 * 3600
STABLE_PM, CANARY_PM = 200, 50  # a 20% canary: evals and requests per minute
LATENCY_LE = [0.05 * 1.1**k for k in range(60)]


def _lognormal_shares(median: float, sigma: float = 0.6) -> list[float]:
    """Cumulative share of latencies at or below each bound of LATENCY_LE, then 1.0 for +Inf."""
    return [0.5 * (1 + math.erf((math.log(le) - math.log(median)) / (sigma * math.sqrt(2)))) for le in LATENCY_LE] + [
        1.0
    ]


def _histogram(
    name: str, labels: dict[str, str], median: float, per_minute: float, *, ms: bool = False
) -> list[prom.PromSeries]:
    bounds = [f"{le * 1000:.6g}" if ms else f"{le:.6g}" for le in LATENCY_LE] + ["+Inf"]
    return [
        prom.PromSeries(name, {**labels, "le": le}, per_minute * share)
        for le, share in zip(bounds, _lognormal_shares(median), strict=True)
    ]


def sequential_history() -> list[prom.PromSeries]:
    s: list[prom.PromSeries] = []
    for route, canary_eval, canary_median in (("seq-same", 0.90, 0.8), ("seq-worse", 0.85, 0.8 * 1.3)):
        s += _evals(route, "stable", 0.90, STABLE_PM) + _evals(route, "canary", canary_eval, CANARY_PM)
        for variant, median, pm in (("stable", 0.8, STABLE_PM), ("canary", canary_median, CANARY_PM)):
            s += _histogram("llm_request_duration_seconds_bucket", {"route": route, "variant": variant}, median, pm)
    # no errors anywhere: a relative error gate alone can never decide
    for variant, pm in (("stable", STABLE_PM), ("canary", CANARY_PM)):
        s.append(prom.PromSeries("llm_requests_total", {"route": "clean", "variant": variant, "outcome": "ok"}, pm))
    # Envoy's histogram is in milliseconds: the canary is 30% slower
    for variant, median, pm in (("stable", 0.8, STABLE_PM), ("canary", 0.8 * 1.3, CANARY_PM)):
        labels = {"envoy_cluster_name": f"seq-envoy_{variant}"}
        s += _histogram("envoy_cluster_upstream_rq_time_bucket", labels, median, pm, ms=True)
    return s


# -- request counts for the traffic-split check: weight 10 everywhere ---------------------------------


def split_history() -> list[prom.PromSeries]:
    s: list[prom.PromSeries] = []
    for route, stable_pm, canary_pm in (("split-right", 180, 20), ("split-wrong", 100, 100), ("split-few", 4.5, 0.5)):
        for variant, pm in (("stable", stable_pm), ("canary", canary_pm)):
            labels = {"route": route, "variant": variant, "outcome": "ok"}
            s.append(prom.PromSeries("llm_requests_total", labels, pm))
    for tier, stable_pm, canary_pm in (("free", 100, 11), ("pro", 80, 9)):  # 10% over both segments
        labels = {"route": "split-segmented", "outcome": "ok", "tenant_tier": tier}
        s.append(prom.PromSeries("llm_requests_total", {**labels, "variant": "stable"}, stable_pm))
        s.append(prom.PromSeries("llm_requests_total", {**labels, "variant": "canary"}, canary_pm))
    # Envoy sends half to the canary; LiteLLM splits right
    for variant, pm in (("stable", 100), ("canary", 100)):
        s.append(
            prom.PromSeries("envoy_cluster_upstream_rq_total", {"envoy_cluster_name": f"split-envoy_{variant}"}, pm)
        )
    for variant, pm in (("stable", 90), ("canary", 10)):
        s.append(
            prom.PromSeries("litellm_deployment_total_requests_total", {"model_id": f"split-litellm_{variant}"}, pm)
        )
    return s


@pytest.fixture(scope="session")
def prom_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[prom.PromServer]:
    work = tmp_path_factory.mktemp("prometheus")
    data = work / "data"
    prom.prom_backfill(prom.prom_openmetrics(history(), now=NOW), data_dir=data, work=work)
    with prom.prom_server(work, data_dir=data) as server:
        yield server


@pytest.fixture(scope="module")
def prom_live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[prom.PromServer]:
    work = tmp_path_factory.mktemp("prometheus-live")
    with prom.prom_server(work, data_dir=work / "data") as server:
        yield server


@dataclass
class Counting:
    """A real requests session that counts the requests it sends (a response hook, not a mock)."""

    requests: list[str] = field(default_factory=list)

    def session(self) -> prometheus.Session:
        session = prometheus.Session()
        session.hooks["response"].append(lambda r, *args, **kwargs: self.requests.append(str(r.request.url)))
        return session


@pytest.fixture
def counting() -> Counting:
    return Counting()


@pytest.fixture
def metrics(prom_server: prom.PromServer, counting: Counting) -> Iterator[prometheus.Prometheus]:
    client = prometheus.Prometheus(prom_server.url, session=counting.session(), timeout=timedelta(seconds=30))
    try:
        yield client
    finally:
        client.close()
