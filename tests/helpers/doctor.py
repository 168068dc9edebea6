"""The doctor tests' world: a rollouts repository whose rollouts each break the metrics contract in one
way, and the Prometheus history (backfilled by promtool, ending at the minute its Prometheus starts) that shows it. Used by
tests/doctor/ (its conftest starts the Prometheus)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from controller import templates
from tests.helpers import prom

FINE_LE = [round(0.05 * 1.05**k, 6) for k in range(80)]  # 5% apart: a 10% limit can pass anywhere
TIERS = ("free", "pro")

CONFIG = """\
apiVersion: rollouts/v1
kind: ControllerConfig
routers:
  local: {type: file, path: routes.json}
  gateway: {type: litellm, url: "http://127.0.0.1:9", weightsFile: weights.json}
  edge: {type: envoy, admin: "http://127.0.0.1:9", upstreams: {acme/m-1: "127.0.0.1:9001", acme/m-2: "127.0.0.1:9002"}}
prometheus: {url: "%s", timeout: %s}
"""

APP_GATES = """\
      - {use: error_rate, max: 1%, onFail: rollback}
      - {use: latency_p95, maxIncrease: 10%, onFail: rollback}
      - {use: eval_pass_rate, maxDrop: 3%, onFail: rollback}
      - {use: cost_per_request, maxIncrease: 20%, onFail: pause}
"""
#: rollout -> (router, gates, segments): each app rollout's route is its name
ROLLOUTS: dict[str, tuple[str, str, str]] = {
    "fine": ("local", APP_GATES, "[tenant_tier]"),  # everything exported, labelled, fine buckets
    "noeval": ("local", APP_GATES, "[tenant_tier]"),  # no llm_eval_results_total for its route
    "novariant": ("local", "      - {use: error_rate, max: 1%, onFail: rollback}\n", "[]"),  # no variant label
    "noseg": ("local", "      - {use: error_rate, max: 1%, onFail: rollback}\n", "[tenant_tier]"),  # canary lacks it
    "nocanary": ("local", "      - {use: error_rate, max: 1%, onFail: rollback}\n", "[]"),  # stable only
    "coarse": (  # LiteLLM's default buckets around 1.2 s, a 10% latency limit
        "gateway",
        "      - {use: error_rate, max: 1%, onFail: rollback}\n"
        "      - {use: latency_p95, maxIncrease: 10%, onFail: rollback}\n",
        "[]",
    ),
    "edge-ok": (  # Envoy's own stats, its histogram in milliseconds
        "edge",
        "      - {use: error_rate, max: 1%, onFail: rollback}\n"
        "      - {use: latency_p95, maxIncrease: 10%, onFail: rollback}\n",
        "[]",
    ),
}


def write_repo(
    root: Path, prometheus_url: str, *, names: Sequence[str] = tuple(ROLLOUTS), timeout: str = "10s"
) -> Path:
    """A rollouts repository at `root` with the named rollouts of ROLLOUTS."""
    (root / "rollouts").mkdir(parents=True, exist_ok=True)
    (root / "rollouts" / "controller.yaml").write_text(CONFIG % (prometheus_url, timeout))
    for name in names:
        router, gates, segments = ROLLOUTS[name]
        (root / "rollouts" / name).mkdir(exist_ok=True)
        (root / "rollouts" / name / "rollout.yaml").write_text(
            "apiVersion: rollouts/v1\nkind: Rollout\n"
            f"metadata: {{name: {name}}}\n"
            f"spec:\n  router: {router}\n  route: {name}\n"
            "  stable: {model: acme/m-1}\n  canary: {model: acme/m-2}\n"
            "  steps:\n    - {weight: 5, for: 1h}\n    - {weight: 100}\n"
            f"  analysis:\n    segments: {segments}\n    gates:\n{gates}"
        )
    return root


def _cumulative(bounds: Sequence[float], median: float) -> list[float]:
    """Lognormal latencies around `median`: the share at or below each bound."""
    return [0.5 * (1 + math.erf((math.log(le) - math.log(median)) / (0.4 * math.sqrt(2)))) for le in bounds]


def _histogram(
    name: str,
    labels: dict[str, str],
    bounds: Sequence[float],
    shares: Sequence[float],
    pm: float,
    *,
    scale: float = 1.0,
) -> list[prom.PromSeries]:
    les = [f"{le / scale:.6g}" for le in bounds] + ["+Inf"]
    return [prom.PromSeries(name, {**labels, "le": le}, pm * s) for le, s in zip(les, [*shares, 1.0], strict=True)]


def _app(
    route: str, *, evals: bool = True, canary_tier: bool = True, variant: bool = True, canary: bool = True
) -> list[prom.PromSeries]:
    out: list[prom.PromSeries] = []
    for v in ("stable", "canary") if canary and variant else ("stable",):
        for tier in TIERS if v == "stable" or canary_tier else ("",):
            labels = {"route": route, **({"variant": v} if variant else {}), **({"tenant_tier": tier} if tier else {})}
            out += [
                prom.PromSeries("llm_requests_total", {**labels, "outcome": "ok"}, 99),
                prom.PromSeries("llm_requests_total", {**labels, "outcome": "error"}, 1),
                prom.PromSeries("llm_cost_usd_total", labels, 0.2),
            ]
            out += _histogram("llm_request_duration_seconds_bucket", labels, FINE_LE, _cumulative(FINE_LE, 0.8), 100)
            if evals:
                out += [
                    prom.PromSeries("llm_eval_results_total", {**labels, "result": "pass"}, 9),
                    prom.PromSeries("llm_eval_results_total", {**labels, "result": "fail"}, 1),
                ]
    return out


def history() -> list[prom.PromSeries]:
    s = _app("fine") + _app("noeval", evals=False) + _app("novariant", variant=False)
    s += _app("noseg", canary_tier=False) + _app("nocanary", canary=False)
    litellm = templates.LITELLM_DEFAULT_LATENCY_BUCKETS
    for v in ("stable", "canary"):
        model = {"model_id": f"coarse_{v}"}
        s.append(prom.PromSeries("litellm_deployment_total_requests_total", model, 100))
        s += _histogram("litellm_request_total_latency_metric_bucket", model, litellm, _cumulative(litellm, 1.2), 100)
        cluster = {"envoy_cluster_name": f"edge-ok_{v}"}
        s.append(prom.PromSeries("envoy_cluster_upstream_rq_total", cluster, 100))
        s += _histogram(
            "envoy_cluster_upstream_rq_time_bucket", cluster, FINE_LE, _cumulative(FINE_LE, 0.8), 100, scale=0.001
        )
    return s
