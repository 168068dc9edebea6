"""Bench: gate evaluation against a real Prometheus as the number of rollouts grows.

Prints requests per evaluation (should equal the number of templates) and wall time per evaluation.
Run: python bench/gates_bench.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controller import analysis, prometheus, spec
from tests.helpers import prom

GATES = (
    {"use": "eval_pass_rate", "maxDrop": "3%"},
    {"use": "error_rate", "max": "1%"},
    {"use": "latency_p95", "maxIncrease": "10%"},
)
CONFIG = spec.ControllerConfig.model_validate(
    {"apiVersion": "rollouts/v1", "kind": "ControllerConfig", "routers": {"local": {"type": "file"}}}
)


def history(routes: int, now: int) -> str:
    series = []
    for r in range(routes):
        for variant in ("stable", "canary"):
            for tier in ("free", "pro"):
                labels = {"route": f"route-{r}", "variant": variant, "tenant_tier": tier}
                series += [
                    prom.PromSeries("llm_eval_results_total", {**labels, "result": "pass"}, 18),
                    prom.PromSeries("llm_eval_results_total", {**labels, "result": "fail"}, 2),
                    prom.PromSeries("llm_requests_total", {**labels, "outcome": "ok"}, 20),
                    prom.PromSeries("llm_request_duration_seconds_bucket", {**labels, "le": "0.5"}, 15),
                    prom.PromSeries("llm_request_duration_seconds_bucket", {**labels, "le": "+Inf"}, 20),
                ]
    return prom.prom_openmetrics(series, now=now, span=2 * 3600, step=60)


def main() -> None:
    sizes = (1, 10, 100, 300)
    now = int(time.time()) // 60 * 60
    work = Path(tempfile.mkdtemp(prefix="gates-bench-"))
    prom.prom_backfill(history(max(sizes), now), data_dir=work / "data", work=work)
    requests: list[str] = []
    with prom.prom_server(work, data_dir=work / "data") as server:
        session = prometheus.Session()
        session.hooks["response"].append(lambda r, *args, **kwargs: requests.append(str(r.request.url)))
        metrics = prometheus.Prometheus(server.url, session=session, timeout=timedelta(seconds=60))
        gates = tuple(spec.Gate.model_validate(g) for g in GATES)
        print(f"{'rollouts':>8} {'templates':>9} {'requests':>8} {'ms/eval':>8} {'gates':>6}")
        for n in sizes:
            targets = [analysis.Target(f"r{i}", f"route-{i}", "file", gates, ("tenant_tier",), 100) for i in range(n)]
            analysis.evaluate(
                targets, config=CONFIG, metrics=metrics, at=datetime.fromtimestamp(now, UTC), window=timedelta(hours=1)
            )
            requests.clear()
            runs = 5
            start = time.perf_counter()
            for _ in range(runs):
                found = analysis.evaluate(
                    targets,
                    config=CONFIG,
                    metrics=metrics,
                    at=datetime.fromtimestamp(now, UTC),
                    window=timedelta(hours=1),
                )
            ms = (time.perf_counter() - start) / runs * 1000
            judged = sum(len(v) for v in found.values())
            print(f"{n:>8} {len(GATES):>9} {len(requests) // runs:>8} {ms:>8.1f} {judged:>6}")
        metrics.close()


if __name__ == "__main__":
    main()
