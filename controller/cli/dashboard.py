"""`rollout dashboard`: the read-only web pages of every rollout, served from a dry-run look (the one
`rollout status` takes), cached a few seconds; `rollout run --metrics-port` serves the same pages."""

from __future__ import annotations

import argparse
import signal
import threading
from typing import Any, TextIO

from controller.cli import common, console, run

#: The dashboard's own clone in the workdir: beside `rollout run`'s (`clone`) on the same --workdir, its
#: fetches never race the loop's (git's `cannot lock ref`), and it takes no lock the loop needs.
CLONE = "dashboard-clone"


def add_parser(sub: Any) -> None:
    d = sub.add_parser(
        "dashboard",
        help="read-only web pages: every rollout, its gates, its timeline (loopback only by default)",
        epilog=common.example("rollout dashboard --port 8080 --remote /srv/rollouts.git"),
    )
    d.add_argument("--port", type=int, default=8080, help="the port to serve on (0: a free one, printed)")
    d.add_argument(
        "--host",
        default="127.0.0.1",
        help="the address to bind (default loopback; anything else lets whoever reaches it read every rollout)",
    )
    d.add_argument("--cache", default="5s", help="how long one look serves the pages before the next (at least 1s)")
    d.add_argument("--refresh", default="10s", help="how often the pages reload themselves (at least 1s)")
    run._controller_args(d)
    d.set_defaults(func=cmd_dashboard)


@console.coloured
def cmd_dashboard(args: argparse.Namespace, out: TextIO) -> int:
    """Serve until SIGTERM or Ctrl-C, then exit 0."""
    from controller.dashboard import look, server, source

    ttl = run._seconds("--cache", args.cache)
    refresh = run._seconds("--refresh", args.refresh)
    controller, acting_on, *_ = run.build_controller(args, clone=CLONE)

    def take() -> look.Look:  # `Cached` takes one at a time: the controller is never used by two threads
        return look.take(controller, history=True)

    looks = source.Cached(take, ttl=ttl, metrics=controller.metrics)
    pages = server.Dashboard(looks, refresh=int(refresh), cache=ttl)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        served = server.serve(pages, host=args.host, port=args.port)
    except OSError as exc:
        raise common.UsageError(f"cannot serve on {args.host}:{args.port}: {exc.strerror or exc}") from exc
    host = f"[{args.host}]" if ":" in args.host else args.host
    out.write(f"{acting_on}\ndashboard on http://{host}:{served.server_address[1]}/ (read-only)\n")
    out.flush()
    try:
        stop.wait()
    finally:
        served.shutdown()
    out.write("stopped\n")
    return 0
