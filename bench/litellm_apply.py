"""LiteLLM: time to apply and verify a weight change (write the weights file, the proxy callback
applies it, read back from /model/info), idle and under load, and the load's failed requests.

Run from the repository root: `python bench/litellm_apply.py [--changes 30] [--clients 4]`. Starts a
real LiteLLM proxy (needs `pip install -e '.[litellm]'`) on a free loopback port in front of two
OpenAI-compatible stand-ins, and prints a table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # a script: import the checkout it sits in

import httpx

from controller import traffic
from controller.routers import base, litellm
from tests.helpers import litellm_proc, openai_standin

ROUTE, ROLLOUT = "support-chat", "support-bot"
RAMP = (1, 5, 25, 50, 100, 0)


def measure(router: litellm.LitellmRouter, n: int) -> list[float]:
    out = []
    for i in range(n):
        canary = RAMP[i % len(RAMP)]
        start = time.perf_counter()
        base.apply(router, {ROUTE: traffic.RouteState({traffic.STABLE: 100 - canary, traffic.CANARY: canary})}).state(
            ROUTE
        )
        out.append((time.perf_counter() - start) * 1000)
    return out


def row(name: str, ms: list[float]) -> str:
    ordered = sorted(ms)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return f"| {name:<28} | {len(ms):>7} | {statistics.median(ms):>8.1f} | {p99:>8.1f} |"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--changes", type=int, default=30)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    missing = litellm_proc.available()
    if missing:
        print(missing, file=sys.stderr)
        return 2
    with (
        tempfile.TemporaryDirectory() as tmp,
        openai_standin.standin("stable") as stable,
        openai_standin.standin("canary") as canary,
    ):
        group = litellm.GroupSpec(
            ROLLOUT,
            ROUTE,
            {traffic.STABLE: "openai/s", traffic.CANARY: "openai/c"},
            {traffic.STABLE: 100, traffic.CANARY: 0},
        )
        deployments = {
            "openai/s": {"api_base": stable.api_base, "api_key": "x"},
            "openai/c": {"api_base": canary.api_base, "api_key": "x"},
        }
        started = time.perf_counter()
        with litellm_proc.running(litellm.model_list([group], deployments=deployments), Path(tmp)) as proxy:
            startup = time.perf_counter() - started
            router = litellm.LitellmRouter(
                "gateway",
                proxy.url,
                routes={ROUTE: ROLLOUT},
                weights_file=proxy.weights_file,
                master_key=litellm_proc.MASTER_KEY,
            )
            idle = measure(router, args.changes)
            stop = threading.Event()
            outcomes: Counter[str] = Counter()
            lock = threading.Lock()

            def client() -> None:
                with httpx.Client(timeout=30) as http:
                    while not stop.is_set():
                        r = litellm_proc.completion(http, proxy.url, ROUTE)
                        with lock:
                            outcomes["ok" if r.status_code == 200 else f"HTTP {r.status_code}"] += 1

            threads = [threading.Thread(target=client) for _ in range(args.clients)]
            for t in threads:
                t.start()
            load_started = time.perf_counter()
            try:
                loaded = measure(router, args.changes)
            finally:
                stop.set()
                for t in threads:
                    t.join()
            load_seconds = time.perf_counter() - load_started
    print(f"LiteLLM proxy ready in {startup:.1f} s; weights callback interval 0.05 s\n")
    print(f"| {'apply + verify (ms)':<28} | {'changes':>7} | {'p50':>8} | {'p99':>8} |")
    print(f"|{'-' * 30}|{'-' * 9}|{'-' * 10}|{'-' * 10}|")
    print(row("idle", idle))
    print(row(f"under load ({args.clients} clients)", loaded))
    total = sum(outcomes.values())
    failed = total - outcomes["ok"]
    print(
        f"\nload: {total} requests in {load_seconds:.1f} s ({total / load_seconds:.0f}/s), failed: {failed} {dict(outcomes)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
