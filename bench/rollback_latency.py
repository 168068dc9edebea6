"""Detection-to-rollback time of the closed-loop demo, next to the fastest rollback Flagger documents.

Runs `rollout demo --scenario regression` N times (real Envoy, Prometheus and stand-in models) and
prints, in one table, the seconds from the canary starting to misbehave to the live canary weight
being 0 again: p50, p95 and max, beside Flagger's documented default (its `interval` of 60 s times
the `threshold: 5` failed checks of its examples). Usage: python bench/rollback_latency.py [--runs 10]
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controller import demo

FLAGGER_INTERVAL_S = 60  # Flagger's default schedule interval
FLAGGER_THRESHOLD = 5  # failed checks before rollback, in Flagger's documented examples


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--scenario", default="regression", choices=("regression", "errors", "latency"))
    args = p.parse_args()
    checkout = Path(__file__).resolve().parent.parent
    seconds: list[float] = []
    for i in range(args.runs):
        result = demo.run(args.scenario, checkout=checkout, out=io.StringIO())
        if result.rollback_seconds is None or not result.rolled_back:
            print(f"run {i + 1}: no rollback (a failure of the demo)", file=sys.stderr)
            return 1
        seconds.append(result.rollback_seconds)
        print(f"run {i + 1}/{args.runs}: {result.rollback_seconds:.1f} s", file=sys.stderr)
    flagger = FLAGGER_INTERVAL_S * FLAGGER_THRESHOLD
    p50, p95 = statistics.median(seconds), percentile(seconds, 0.95)
    print(f"\nrollback after a regression begins ({args.scenario}, {args.runs} runs)\n")
    print(f"{'':34} {'p50 s':>8} {'p95 s':>8} {'max s':>8}")
    print(f"{'rollout (scrape 1 s, tick 1 s)':34} {p50:8.1f} {p95:8.1f} {max(seconds):8.1f}")
    print(f"{'Flagger default (60 s x 5 checks)':34} {flagger:8.1f} {flagger:8.1f} {flagger:8.1f}")
    print(f"\nratio Flagger / ours at p50: {flagger / p50:.0f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
