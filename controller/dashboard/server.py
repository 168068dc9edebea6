"""The dashboard's HTTP server: read-only pages, their JSON, our static files and, under `rollout run`,
/metrics and /healthz. GET only (anything else is 405); every answer carries a strict
Content-Security-Policy (no inline script or style, nothing from elsewhere), nosniff and no referrer.
Bound to loopback, its pages and JSON answer only requests that name a loopback host (a DNS-rebinding
page cannot read them); /metrics and /healthz answer under any name, a malformed Host is a 400."""

from __future__ import annotations

import ipaddress
import json
import re
import socket
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from controller import errors, redaction, telemetry
from controller.dashboard import series, source, views

STATIC = Path(__file__).parent / "static"
TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".json": "application/json",
}
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
HTML = "text/html; charset=utf-8"
JSON = "application/json"
_STATIC_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # one file name: no slash, no dot first, no `..` path
_LOOPBACK_NAMES = {"localhost"}

Answer = tuple[int, str, bytes]


def hostname(header: str) -> str | None:
    """The host a request's Host header names (lower case, '' when there is none), or None when it is
    malformed (`[::1`, a bad port, a userinfo or a path in it)."""
    if any(c in header for c in "/@?#\\ \t"):
        return None
    try:
        parts = urllib.parse.urlsplit(f"//{header}")
        _ = parts.port  # a port that is not a number raises
    except ValueError:
        return None
    return parts.hostname or ""


def is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Dashboard:
    """The routes, over a `source.Source`; `answer(path)` is (status, content type, body)."""

    def __init__(
        self,
        src: source.Source,
        *,
        refresh: int = 10,
        metrics: telemetry.Telemetry | None = None,
        pages: bool = True,
        cache: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`metrics`: also answer /metrics and /healthz; `pages` False: only those (`rollout run` on an
        address other than loopback, unless asked for the pages); `cache`: how long a rollout's plots of
        one look serve its pages (their Prometheus queries are asked once per look and `cache`)."""
        self.source, self.refresh, self.telemetry, self.pages = src, refresh, metrics, pages
        self.cache, self._clock = cache, clock
        self._plots_lock = threading.Lock()
        self._plots: dict[tuple[str, datetime], tuple[float, Answer]] = {}

    def answer(self, target: str, *, rebound: bool = False) -> Answer:
        """`rebound`: the request names a host other than loopback at a loopback address (a page of another
        site whose name now points here): refused, except /metrics and /healthz, which show no rollout
        and which a scraper may reach under any name."""
        path = urllib.parse.urlsplit(target).path
        if self.telemetry is not None and (found := self.telemetry.respond(path)) is not None:
            return found
        if not self.pages:
            return 404, "text/plain", b"not found (the dashboard's pages are not served on this address)\n"
        if rebound:
            return 421, "text/plain", b"this dashboard answers only at a loopback address\n"
        if path.startswith("/static/"):
            return self._static(path.removeprefix("/static/"))
        now = datetime.now(UTC)
        if path in ("/", "/index.html"):
            return 200, HTML, views.overview(self.source(), now=now, refresh=self.refresh).encode()
        if path == "/api/rollouts.json":
            return _json(200, views.overview_json(self.source(), now=now))
        if path.startswith("/api/rollouts/"):
            rest = path.removeprefix("/api/rollouts/")
            if rest.endswith("/series"):
                return self._series(urllib.parse.unquote(rest.removesuffix("/series")), now=now)
            if rest.endswith(".json"):
                name = urllib.parse.unquote(rest.removesuffix(".json"))
                shown = views.rollout_json(self.source(), name, now=now)
                return _json(200, shown) if shown is not None else _json(404, {"error": f"no rollout {name!r}"})
        if path.startswith("/rollouts/"):
            name = urllib.parse.unquote(path.removeprefix("/rollouts/"))
            page = views.rollout(self.source(), name, now=now, refresh=self.refresh)
            if page is not None:
                return 200, HTML, page.encode()
            snap = self.source()
            why = snap.error or f"main has no rollout {name!r}, or the last look did not reach it."
            return 404, HTML, views.message("Not found", why).encode()
        return 404, HTML, views.message("Not found", f"Nothing at {path}.").encode()

    def _static(self, name: str) -> Answer:
        """A file of `static/` by its bare name: no directory, no `..`, a known type only."""
        kind = TYPES.get(Path(name).suffix)
        if not _STATIC_NAME.fullmatch(name) or kind is None:
            return 404, HTML, views.message("Not found", "No such file.").encode()
        file = STATIC / name
        if file.resolve().parent != STATIC.resolve() or not file.is_file():
            return 404, HTML, views.message("Not found", "No such file.").encode()
        return 200, kind, file.read_bytes()

    def _series(self, name: str, *, now: datetime) -> Answer:
        """`series.plots` of the rollout on main over its step (the last hour when its start is unknown)."""
        snap = self.source()
        if snap.look is None or snap.look.desired.config is None:
            return _json(503, {"error": snap.error or "no look yet"})
        loaded = snap.look.desired.rollout(name)
        outcome = next((o for o in snap.look.tick.outcomes if o.rollout == name), None)
        if loaded is None:
            return _json(404, {"error": f"no rollout {name!r}"})
        key = (name, snap.at)
        with self._plots_lock:  # one rollout's plots of one look at a time: a burst of loads asks once
            kept = self._plots.get(key)
            if kept is not None and self._clock() - kept[0] < self.cache:
                return kept[1]
            start = outcome.step_since if outcome is not None and outcome.step_since else now - timedelta(hours=1)
            try:
                found = _json(
                    200, series.plots(loaded, snap.look.desired.config, self.source.metrics, start=start, end=now)
                )
            except errors.RolloutError as exc:
                found = _json(502, {"error": redaction.redact(str(exc))})
            self._plots = {k: v for k, v in self._plots.items() if k[1] == snap.at}  # an older look's: gone
            self._plots[key] = (self._clock(), found)
            return found


def _json(code: int, value: Any) -> Answer:
    return code, JSON, json.dumps(value, indent=2).encode()


def handler(dashboard: Dashboard, *, loopback: bool) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "rollout-dashboard"
        sys_version = ""

        def do_GET(self) -> None:
            host = hostname(self.headers.get("Host", ""))
            if host is None:
                self._send(400, "text/plain", b"malformed Host header\n")
                return
            try:
                code, kind, body = dashboard.answer(self.path, rebound=loopback and not is_loopback(host))
            except Exception as exc:  # a page never shows a traceback; stderr names the type
                print(f"rollout dashboard: {self.path!r}: {type(exc).__name__}", file=sys.stderr)
                code, kind, body = 500, HTML, views.message("Error", "The dashboard failed on this page.").encode()
            self._send(code, kind, body)

        def _refuse(self) -> None:
            self._send(405, "text/plain", b"read-only: GET only\n", allow=True)

        do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _refuse

        def _send(self, code: int, kind: str, body: bytes, *, allow: bool = False) -> None:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            for k, v in HEADERS.items():
                self.send_header(k, v)
            if allow:
                self.send_header("Allow", "GET")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


class _Server6(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def serve(dashboard: Dashboard, *, host: str, port: int) -> ThreadingHTTPServer:
    """Serve in a daemon thread; `shutdown()` the server returned to stop. Port 0 picks a free one. An
    IPv6 address (`::1`, `[::1]`) binds IPv6."""
    host = host.removeprefix("[").removesuffix("]")
    kind = _Server6 if ":" in host else ThreadingHTTPServer
    server = kind((host, port), handler(dashboard, loopback=is_loopback(host)))
    server.daemon_threads = True
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True, name="rollout-dashboard"
    ).start()
    return server
