"""The dashboard plots' metric history: rollouts whose every plotted quantity is known, backfilled by
promtool into a real Prometheus (`plot_prom`), with one change half-way (`CHANGE`: the canary's error
rate goes from 1% to 5%) so that a test sees the points move at the right time.

Rollouts (`rollout(name)` builds each, `CONFIG` names their routers):
- `r-app` (file router, route plots-app): every built-in quantity; `EXPECTED` says each value.
- `r-seg` (route plots-seg, segments [tenant_tier]): eval pass rates per tier, nothing else (the other
  panels have no data).
- `r-envoy` (Envoy router): Envoy's requests and 5xx; no application metrics.
- `r-litellm` (LiteLLM router), `r-vllm` (`analysis.metrics: vllm`): their own metrics only; `FLAVOURED`
  says each value.
- `r-cohort` (route cohort-bad of `gate_history.cohort_history()`): cohorts internal (at 100%), beta (25%)
  and everyone else (5%).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from controller import load, spec
from tests.helpers import gate_history, prom

NOW = int(time.time()) // 60 * 60
SPAN = 3 * 3600  # the history reaches back this far
FIRST = NOW - SPAN
CHANGE = NOW - 90 * 60  # the canary's error rate goes from 1% to 5% here
WINDOW = 300  # the rollouts' analysis.interval (the plots' rate window), seconds

CONFIG = spec.ControllerConfig.model_validate(
    {
        "apiVersion": "rollouts/v1",
        "kind": "ControllerConfig",
        "routers": {
            "local": {"type": "file"},
            "edge": {"type": "envoy", "admin": "http://127.0.0.1:9901"},
            "gateway": {"type": "litellm", "url": "http://127.0.0.1:4000"},
        },
    }
)


@dataclass(frozen=True)
class Counter:
    """A counter growing by `per_minute(ts)` per minute."""

    name: str
    labels: Mapping[str, str]
    per_minute: Callable[[int], float]


def _const(v: float) -> Callable[[int], float]:
    return lambda ts: v


def _changing(before: float, after: float) -> Callable[[int], float]:
    return lambda ts: before if ts <= CHANGE else after


def _app() -> list[Counter]:
    route = {"route": "plots-app"}
    out: list[Counter] = []
    #                  requests/min, error share before and after CHANGE, p95 shares, eval pass, $ and tokens per answer
    for variant, rpm, err, latency, evals, usd, tokens in (
        ("stable", 100.0, (0.01, 0.01), {"0.1": 0.5, "0.2": 0.95, "0.5": 1.0, "+Inf": 1.0}, 0.9, 0.002, 400),
        ("canary", 20.0, (0.01, 0.05), {"0.1": 0.2, "0.2": 0.5, "0.5": 0.95, "+Inf": 1.0}, 0.8, 0.003, 600),
    ):
        labels = {**route, "variant": variant}
        bad = _changing(rpm * err[0], rpm * err[1])
        ok = _changing(rpm * (1 - err[0]), rpm * (1 - err[1]))
        out.append(Counter("llm_requests_total", {**labels, "outcome": "error"}, bad))
        out.append(Counter("llm_requests_total", {**labels, "outcome": "ok"}, ok))
        for le, share in latency.items():
            out.append(Counter("llm_request_duration_seconds_bucket", {**labels, "le": le}, _const(rpm * share)))
        out.append(Counter("llm_eval_results_total", {**labels, "result": "pass"}, _const(50 * evals)))
        out.append(Counter("llm_eval_results_total", {**labels, "result": "fail"}, _const(50 * (1 - evals))))
        out.append(Counter("llm_cost_usd_total", labels, lambda ts, ok=ok, usd=usd: ok(ts) * usd))
        out.append(Counter("llm_tokens_total", labels, lambda ts, ok=ok, tokens=tokens: ok(ts) * tokens))
    return out


#: r-app's plotted values: (metric, variant) -> (before CHANGE, after CHANGE), in the panel's unit.
EXPECTED: Mapping[tuple[str, str], tuple[float, float]] = {
    ("error_rate", "stable"): (1.0, 1.0),
    ("error_rate", "canary"): (1.0, 5.0),
    ("latency_p95", "stable"): (0.2, 0.2),
    ("latency_p95", "canary"): (0.5, 0.5),
    ("eval_pass_rate", "stable"): (90.0, 90.0),
    ("eval_pass_rate", "canary"): (80.0, 80.0),
    ("cost_per_request", "stable"): (0.002, 0.002),
    ("cost_per_request", "canary"): (0.003, 0.003),
    ("tokens_per_request", "stable"): (400.0, 400.0),
    ("tokens_per_request", "canary"): (600.0, 600.0),
}

#: a segment label's value that is markup: the page must show it as text
HOSTILE = '<img src=x onerror="document.title=1"><b>bold</b>'
#: r-seg's eval pass rates (%): tier -> variant -> value
SEGMENTED = {
    "free": {"stable": 90.0, "canary": 85.0},
    "pro": {"stable": 95.0, "canary": 70.0},
    HOSTILE: {"stable": 50.0, "canary": 60.0},
}
#: r-envoy's error rates (%): the canary has had no 5xx, so its 5xx series does not exist
ENVOY = {"stable": 2.0, "canary": 0.0}


def _segmented() -> list[Counter]:
    out = []
    for tier, by in SEGMENTED.items():
        for variant, rate in by.items():
            labels = {"route": "plots-seg", "variant": variant, "tenant_tier": tier}
            out.append(Counter("llm_eval_results_total", {**labels, "result": "pass"}, _const(rate / 100 * 40)))
            out.append(Counter("llm_eval_results_total", {**labels, "result": "fail"}, _const((1 - rate / 100) * 40)))
    return out


def _envoy() -> list[Counter]:
    out = []
    for variant, rpm in (("stable", 100.0), ("canary", 50.0)):
        cluster = {"envoy_cluster_name": f"r-envoy_{variant}"}
        out.append(Counter("envoy_cluster_upstream_rq_total", cluster, _const(rpm)))
        if ENVOY[variant]:
            labels = {**cluster, "envoy_response_code_class": "5"}
            out.append(Counter("envoy_cluster_upstream_rq_xx", labels, _const(rpm * ENVOY[variant] / 100)))
    return out


#: r-litellm's and r-vllm's plotted values, from LiteLLM's and vLLM's own metrics: (rollout, metric, variant) -> value
FLAVOURED: Mapping[tuple[str, str, str], float] = {
    ("r-litellm", "error_rate", "stable"): 3.0,
    ("r-litellm", "error_rate", "canary"): 10.0,
    ("r-litellm", "latency_p95", "stable"): 0.2,
    ("r-litellm", "latency_p95", "canary"): 0.5,
    ("r-litellm", "cost_per_request", "stable"): 0.001,
    ("r-litellm", "cost_per_request", "canary"): 0.0005,
    ("r-litellm", "tokens_per_request", "stable"): 500.0,
    ("r-litellm", "tokens_per_request", "canary"): 300.0,
    ("r-vllm", "error_rate", "stable"): 2.0,
    ("r-vllm", "error_rate", "canary"): 4.0,
    ("r-vllm", "latency_p95", "stable"): 2.0,
    ("r-vllm", "latency_p95", "canary"): 5.0,
}
_P95 = {  # cumulative shares putting the 95th percentile exactly on a bound
    0.2: {"0.1": 0.5, "0.2": 0.95, "0.5": 1.0, "+Inf": 1.0},
    0.5: {"0.1": 0.2, "0.2": 0.5, "0.5": 0.95, "+Inf": 1.0},
    2.0: {"1": 0.5, "2": 0.95, "5": 1.0, "+Inf": 1.0},
    5.0: {"1": 0.2, "2": 0.5, "5": 0.95, "+Inf": 1.0},
}


def _litellm() -> list[Counter]:
    out = []
    for variant, rpm in (("stable", 100.0), ("canary", 20.0)):
        model = {"model_id": f"r-litellm_{variant}"}
        answered = rpm * (1 - FLAVOURED[("r-litellm", "error_rate", variant)] / 100)
        out.append(Counter("litellm_deployment_total_requests_total", model, _const(rpm)))
        out.append(Counter("litellm_deployment_failure_responses_total", model, _const(rpm - answered)))
        out.append(Counter("litellm_deployment_success_responses_total", model, _const(answered)))
        tokens = FLAVOURED[("r-litellm", "tokens_per_request", variant)]
        usd = FLAVOURED[("r-litellm", "cost_per_request", variant)]
        out.append(Counter("litellm_total_tokens_metric_total", model, _const(answered * tokens)))
        out.append(Counter("litellm_spend_metric_total", model, _const(answered * usd)))
        for le, share in _P95[FLAVOURED[("r-litellm", "latency_p95", variant)]].items():
            labels = {**model, "le": le}
            out.append(Counter("litellm_request_total_latency_metric_bucket", labels, _const(rpm * share)))
    return out


def _vllm() -> list[Counter]:
    out = []
    for variant, rpm in (("stable", 100.0), ("canary", 25.0)):
        labels = {"route": "plots-vllm", "variant": variant, "model_name": "m"}
        failed = rpm * FLAVOURED[("r-vllm", "error_rate", variant)] / 100
        for reason, per_minute in (("stop", rpm - failed - 1), ("length", 1.0), ("abort", failed)):
            out.append(Counter("vllm:request_success_total", {**labels, "finished_reason": reason}, _const(per_minute)))
        for le, share in _P95[FLAVOURED[("r-vllm", "latency_p95", variant)]].items():
            bucket = {**labels, "le": le}
            out.append(Counter("vllm:e2e_request_latency_seconds_bucket", bucket, _const(rpm * share)))
    return out


def history() -> list[Counter]:
    cohorts = [Counter(s.name, s.labels, _const(s.per_minute)) for s in gate_history.cohort_history()]
    return _app() + _segmented() + _envoy() + _litellm() + _vllm() + cohorts


def openmetrics(counters: list[Counter], *, step: int = 60) -> str:
    """OpenMetrics text for promtool: every counter from FIRST to NOW every `step` seconds; ends with # EOF."""
    lines = []
    for c in sorted(counters, key=lambda c: (c.name, sorted(c.labels.items()))):
        body = ",".join(f'{k}="{prom.escape(v)}"' for k, v in sorted(c.labels.items()))
        value = 0.0
        for ts in range(FIRST, NOW + 1, step):
            lines.append(f"{c.name}{{{body}}} {value:.9g} {ts}")
            value += c.per_minute(ts + step) * step / 60
    return "\n".join([*lines, "# EOF"]) + "\n"


@pytest.fixture(scope="module")
def plot_prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[prom.PromServer]:
    """A real Prometheus holding `history()`, stopped by its handle."""
    work = tmp_path_factory.mktemp("plots-prometheus")
    data = work / "data"
    prom.prom_backfill(openmetrics(history()), data_dir=data, work=work)
    with prom.prom_server(work, data_dir=data) as server:
        yield server


_ROLLOUTS: dict[str, dict[str, Any]] = {
    "r-app": {"router": "local", "route": "plots-app", "analysis": {"interval": "5m"}},
    "r-seg": {"router": "local", "route": "plots-seg", "analysis": {"interval": "5m", "segments": ["tenant_tier"]}},
    "r-envoy": {"router": "edge", "route": "plots-envoy", "analysis": {"interval": "5m"}},
    "r-litellm": {"router": "gateway", "route": "plots-litellm", "analysis": {"interval": "5m"}},
    "r-vllm": {"router": "local", "route": "plots-vllm", "analysis": {"interval": "5m", "metrics": "vllm"}},
    "r-cohort": {
        "router": "local",
        "route": "cohort-bad",
        "analysis": {"interval": "5m"},
        "cohorts": [
            {"name": "internal", "match": {"user_group": "internal"}},
            {"name": "beta", "match": {"tenant_tier": "beta"}},
        ],
        "steps": [
            {"cohort": "internal", "weight": 100},
            {"cohort": "beta", "weight": 25},
            {"weight": 5},
            {"weight": 100},
        ],
    },
}
CANARY_REV = "c0ffee000001"


def rollout(name: str) -> load.LoadedRollout:
    """One of the rollouts above at its third step (everyone's canary at 5%), its canary in force."""
    extra = dict(_ROLLOUTS[name])
    analysis = {"gates": [{"use": "error_rate", "max": "2%"}], **extra.pop("analysis")}
    data: dict[str, Any] = {
        "apiVersion": "rollouts/v1",
        "kind": "Rollout",
        "metadata": {"name": name},
        "spec": {
            "stable": {"model": "m-2025-01-01"},
            "canary": {"model": "m-2025-06-01"},
            "steps": [{"weight": 1}, {"weight": 2}, {"weight": 5}, {"weight": 100}],
            "analysis": analysis,
            **extra,
        },
        "status": {"revision": CANARY_REV, "step": 2, "phase": "Progressing"},
    }
    revisions = {"stable": "5ab1e0000001", "canary": CANARY_REV}
    return load.LoadedRollout(f"rollouts/{name}/rollout.yaml", spec.Rollout.model_validate(data), revisions, {})
