"""`rollout demo`: the argument glue around `controller.demo`, which runs the closed loop on Envoy,
Prometheus and stand-in models."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, TextIO

from controller.cli import common


def add_parser(sub: Any) -> None:
    d = sub.add_parser(
        "demo",
        help="a real rollout, closed loop, on Envoy, Prometheus and stand-in models",
        epilog=common.example("rollout demo --scenario regression"),
    )
    d.add_argument(
        "--scenario",
        choices=("good", "regression", "latency", "errors", "feedback", "cohorts"),
        default="good",
        help="good completes; regression, latency and errors misbehave at 50%% and are rolled back; so does "
        "feedback, which only users' thumbs down reveal; cohorts "
        "opens the internal tenant, then the beta tier, whose requests alone regress, and is rolled back everywhere",
    )
    d.add_argument("--examples", default=".", help="the project checkout (default: .)")
    d.add_argument("--plain", action="store_true", help="plain lines instead of the live view")
    d.add_argument(
        "--manual",
        action="store_true",
        help="you review and merge the pull requests from a second terminal (it prints the commands); "
        "runs until Ctrl-C",
    )
    d.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace, out: TextIO) -> int:
    from controller import demo, load

    checkout = Path(args.examples).resolve()
    if not (checkout / load.CONFIG_FILE).is_file():
        raise common.UsageError(f"run the demo from the project checkout (no rollouts/ in {checkout})")
    try:
        result = demo.run(
            args.scenario,
            checkout=checkout,
            out=out,
            live_view=out.isatty() and not args.plain,
            manual=args.manual,
        )
    except RuntimeError as exc:
        raise common.UsageError(str(exc)) from exc
    if args.manual:  # the user drove it, and stopped it
        return 0
    if args.scenario == "good":
        ok = result.completed
        out.write(f"\n{'completed' if ok else 'did not complete'}: {len(result.merged)} pull requests merged\n")
    else:
        ok = result.rolled_back and not result.promoted_after_rollback
        seconds = result.rollback_seconds
        out.write(
            f"\n{'rolled back' if ok else 'not rolled back'}"
            + (
                f": the live canary weight was 0 again {seconds:.1f}s after it began to misbehave\n"
                if seconds
                else "\n"
            )
        )
    return 0 if ok else 1
