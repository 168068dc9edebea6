"""`rollout eval`: a rollout's golden set run against an OpenAI-compatible endpoint, stable and canary
side by side; once (a report, optionally recorded) or continuously (`--serve`, counters on /metrics)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any, TextIO

from controller import settings
from controller.cli import common, console


def add_parser(sub: Any) -> None:
    e = sub.add_parser(
        "eval",
        help="run a rollout's golden set against an endpoint: stable and canary side by side",
        epilog=common.example("rollout eval support-bot --endpoint http://127.0.0.1:4000 --record"),
    )
    e.add_argument("name", metavar="NAME", help="the rollout")
    e.add_argument("--variant", choices=("stable", "canary", "both"), default="both", help="which variants to run")
    e.add_argument(
        "--endpoint",
        default=None,
        help="an OpenAI-compatible base URL that serves the variants' model ids; on LiteLLM not the rollout's "
        "model group, which splits by weight (default: $ROLLOUT_EVAL_ENDPOINT)",
    )
    e.add_argument("--format", choices=("text", "markdown", "json"), default="text", help="how to print the report")
    e.add_argument("--api-key-env", default="OPENAI_API_KEY", help="the variable holding the API key")
    e.add_argument("--concurrency", type=int, default=4, help="requests in flight at once")
    e.add_argument("--timeout", type=float, default=settings.Timeouts.llm, help="seconds per request")
    e.add_argument("--retries", type=int, default=settings.Retries.llm_retries, help="retries on timeouts, 429 and 5xx")
    e.add_argument("--check", action="store_true", help="only load and check the golden set; call nothing")
    e.add_argument("--record", action="store_true", help="write the report to evals/results/<canary revision>.json")
    e.add_argument(
        "--reuse-recorded", action="store_true", help="show the recorded result for this canary instead, if current"
    )
    e.add_argument("--serve", action="store_true", help="evaluate continuously; counters on /metrics")
    e.add_argument("--port", type=int, default=9464, help="with --serve: the /metrics port on 127.0.0.1")
    e.add_argument("--interval", default="5m", help="with --serve: time between rounds")
    e.add_argument("--rounds", type=int, default=None, help="with --serve: stop after N rounds (default: never)")
    e.add_argument("--repo", default=".", help="a path in a rollouts repository")
    e.set_defaults(func=cmd_eval)


@console.coloured
def cmd_eval(args: argparse.Namespace, out: TextIO) -> int:
    from controller import evalrun, evals, llm, spec

    named = common.named_rollout(args, out)
    if named is None:
        return 1
    tree, root, loaded = named.tree, named.root, named.loaded
    if args.check:  # the golden set only: no endpoint, no requests
        golden = evals.load_set(tree, loaded.name)
        out.write(
            f"{loaded.name}: {len(golden.cases)} golden cases in {len(golden.files)} file(s), set {golden.digest}\n"
        )
        return 0
    endpoint = args.endpoint or os.environ.get("ROLLOUT_EVAL_ENDPOINT")
    if not endpoint:
        raise common.UsageError("give --endpoint URL (an OpenAI-compatible base URL) or set ROLLOUT_EVAL_ENDPOINT")
    if not endpoint.startswith(("http://", "https://")):
        raise common.UsageError(f"--endpoint {endpoint!r}: expected an http:// or https:// base URL")
    if args.concurrency < 1 or args.timeout <= 0 or args.retries < 0:
        raise common.UsageError("--concurrency must be at least 1, --timeout above 0 and --retries at least 0")
    if args.record and (args.variant != "both" or loaded.rollout.spec.canary is None or args.serve):
        raise common.UsageError("--record needs a canary and --variant both")
    if args.variant == "both" and loaded.rollout.spec.canary is None and not args.serve:
        out.write(f"rollout {loaded.name} has no canary: nothing to compare (use --variant stable)\n")
        return 0
    golden = evals.load_set(tree, loaded.name)
    gate = loaded.rollout.spec.offline_eval
    if args.reuse_recorded and args.variant == "both" and (reused := evals.recorded(tree, loaded, golden)):
        judgement = evals.offline_judgement(reused, gate) if gate is not None else None
        out.write(evals.render(reused, args.format, judgement=judgement, recorded=True))
        return 0 if evals.exit_ok(reused, judgement) else 1
    client = llm.Client(
        endpoint, api_key=os.environ.get(args.api_key_env) or None, timeout=args.timeout, retries=args.retries
    )
    try:
        if args.serve:
            try:
                interval = spec.parse_duration(args.interval).total_seconds()
            except ValueError as exc:
                raise common.UsageError(f"--interval {args.interval!r}: {exc}") from exc
            evalrun.serve(
                tree,
                loaded,
                golden,
                client,
                port=args.port,
                interval=interval,
                concurrency=args.concurrency,
                rounds=args.rounds,
                on_ready=lambda port: print(
                    f"serving eval metrics on http://127.0.0.1:{port}/metrics", file=sys.stderr
                ),
            )
            return 0
        with _eval_progress() as progress:
            found = evalrun.run(
                tree, loaded, golden, client, variant=args.variant, concurrency=args.concurrency, progress=progress
            )
    finally:
        client.close()
    judgement = evals.offline_judgement(found, gate) if gate is not None and len(found.variants) == 2 else None
    out.write(evals.render(found, args.format, judgement=judgement))
    if args.record:
        path = root / evals.result_path(loaded.name, loaded.revisions["canary"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(evals.render(found, "json", judgement=judgement), "utf-8")
        print(
            f"wrote {common.display(root, evals.result_path(loaded.name, loaded.revisions['canary']))}", file=sys.stderr
        )
    return 0 if evals.exit_ok(found, judgement) else 1


class _eval_progress:
    """A rich progress bar on stderr when stderr is a terminal; otherwise nothing."""

    def __enter__(self) -> Callable[[int, int], None] | None:
        if not sys.stderr.isatty():
            self._bar = None
            return None
        from rich.console import Console
        from rich.progress import Progress

        self._bar = Progress(console=Console(stderr=True), transient=True)
        self._bar.start()
        task = self._bar.add_task("eval", total=None)
        bar = self._bar

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        return update

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
