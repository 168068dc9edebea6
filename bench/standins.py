"""The demo's stand-ins on real components: the request rate the traffic generator reaches through
Envoy, and how long a canary regression takes to show as a FAIL of the built-in error_rate and
eval_pass_rate gates (Prometheus scraping every second, analysis over a short window).

Run from the repository root: `python bench/standins.py [--runs 5]`. Prints tables; no pass/fail.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # a script: import the checkout it sits in

import httpx

from controller import analysis, gates, prometheus, spec, traffic
from controller.demo import loadgen, model_server
from controller.routers import base, envoy
from tests.helpers import envoy_proc, live, prom

ROLLOUT, ROUTE = "bench", "bench-chat"
TENANTS = {"free": 5.0, "pro": 3.0, "enterprise": 2.0}
STABLE = model_server.Behaviour(latency=0.02, jitter=0.01, eval_pass=0.9)


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


HEALTHY = (gates.Verdict.PASS, gates.Verdict.INCONCLUSIVE)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--runs", type=int, default=5, help="regressions to time, per scenario")
    p.add_argument("--rate", type=float, default=50.0, help="requests per second during the regression runs")
    args = p.parse_args()
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-standins-")))
        models = {
            v: model_server.Model(variant=v, route=ROUTE, model=f"demo/{v}", behaviour=STABLE, segments=list(TENANTS))
            for v in (traffic.STABLE, traffic.CANARY)
        }
        servers = {v: stack.enter_context(model_server.serving(m)) for v, m in models.items()}
        config = envoy.bootstrap(
            [envoy.RouteSpec(ROLLOUT, ROUTE, {v: s.address for v, s in servers.items()})],
            admin="http://127.0.0.1:0",
            listen="127.0.0.1:0",
            runtime_prefix="rollouts",
        )
        proxy = stack.enter_context(envoy_proc.running_envoy(config, work / "envoy"))
        router = envoy.EnvoyRouter("edge", proxy.admin, routes={ROUTE: ROLLOUT})
        stack.callback(router.close)
        base.apply(router, {ROUTE: traffic.RouteState({traffic.STABLE: 50, traffic.CANARY: 50})}).state(ROUTE)
        url = f"{proxy.url}/{ROUTE}/v1"

        print("Throughput through Envoy (stand-ins answer in 20-30 ms; 3 s per row, concurrency 32)")
        print(f"  {'target rps':>10} {'sent':>6} {'achieved rps':>13} {'stable':>7} {'canary':>7} {'failed':>7}")
        for rate in (50, 200, 500, 1000):
            plan = loadgen.Plan(url=url, rate=rate, max_requests=1_000_000, duration=3, concurrency=32, tenants=TENANTS)
            r = loadgen.Traffic(plan).start().wait()
            print(
                f"  {rate:>10} {r.sent:>6} {r.sent / r.seconds:>13.1f} {r.answered.get('stable', 0):>7}"
                f" {r.answered.get('canary', 0):>7} {r.total_failed:>7}"
            )

        (work / "prom").mkdir()
        server = stack.enter_context(prom.prom_server(work / "prom", data_dir=work / "prom" / "data"))
        live.scrape(server, {"/metrics": [s.address for s in servers.values()]})
        prom.prom_poll("the first scrape", lambda: live.scalar(server, "count(llm_requests_total)"))
        metrics = prometheus.Prometheus(server.url)
        stack.callback(metrics.close)
        cfg = spec.ControllerConfig.model_validate(
            {
                "apiVersion": "rollouts/v1",
                "kind": "ControllerConfig",
                "routers": {"edge": {"type": "envoy", "admin": proxy.admin}},
            }
        )
        cases = {
            "errors": spec.Gate.model_validate({"use": "error_rate", "max": "2%"}),
            "regression": spec.Gate.model_validate({"use": "eval_pass_rate", "maxDrop": "3%"}),
        }
        window = timedelta(seconds=20)
        print()
        print(f"Regression to gate FAIL (scrape 1 s, window {window.seconds} s, {args.rate:g} rps, minSamples 20)")
        print(f"  {'scenario':<11} {'runs':>4} {'p50 s':>7} {'p95 s':>7} {'max s':>7}")
        for name, gate in cases.items():
            target = analysis.Target(ROLLOUT, ROUTE, "file", (gate,), (), 20)

            def verdict(t: analysis.Target = target) -> gates.Verdict:
                found = analysis.evaluate([t], config=cfg, metrics=metrics, at=datetime.now(UTC), window=window)
                return found[ROLLOUT][0].verdict

            seconds: list[float] = []
            missed = 0
            for _ in range(args.runs):
                plan = loadgen.Plan(url=url, rate=args.rate, max_requests=1_000_000, duration=600, tenants=TENANTS)
                load = loadgen.Traffic(plan).start()
                try:
                    # healthy: not failing (a relative gate such as maxDrop 3 pts may need more samples than a
                    # 20 s window holds to PASS; what is timed is how long a regression takes to FAIL)
                    prom.prom_poll("a healthy canary", lambda v=verdict: v() in HEALTHY, deadline=120)
                    httpx.post(f"{servers[traffic.CANARY].url}/admin/scenario", json={"name": name}, timeout=5)
                    start = time.monotonic()
                    try:
                        prom.prom_poll(
                            "the FAIL", lambda v=verdict: v() is gates.Verdict.FAIL, deadline=120, every=0.05
                        )
                        seconds.append(time.monotonic() - start)
                    except TimeoutError:
                        missed += 1  # the window never held evidence enough: reported, not a crash
                finally:
                    httpx.post(f"{servers[traffic.CANARY].url}/admin/scenario", json={"name": "good"}, timeout=5)
                    load.stop()
                # let the window forget the regression before the next run
                prom.prom_poll("the window to clear", lambda v=verdict: v() is not gates.Verdict.FAIL, deadline=120)
            if not seconds:
                print(f"  {name:<11} {args.runs:>4}  no FAIL within 120 s in any run")
                continue
            print(
                f"  {name:<11} {len(seconds):>4} {statistics.median(seconds):>7.2f} {quantile(seconds, 0.95):>7.2f}"
                f" {max(seconds):>7.2f}" + (f"  ({missed} run(s) without a FAIL within 120 s)" if missed else "")
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
