"""A small web server for browser tests of the dashboard's static files without the dashboard server:
fixed HTML pages, the files of one static directory under `/static/`, and JSON answers computed per
request, every response carrying the Content-Security-Policy the test names. Stopped by its handle
(the context manager) when the test ends."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.helpers import net

TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}


class _Site(http.server.ThreadingHTTPServer):
    daemon_threads = True
    pages: Mapping[str, str]
    static: Mapping[str, Path]
    answers: Mapping[str, Callable[[], Any]]
    csp: str
    served: list[str]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Site

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        self.server.served.append(path)
        if path in self.server.pages:
            self._send(200, "text/html; charset=utf-8", self.server.pages[path].encode())
        elif path in self.server.answers:
            body = json.dumps(self.server.answers[path](), allow_nan=False).encode()
            self._send(200, "application/json", body)
        elif path == "/favicon.ico":  # a browser asks for it unbidden: none, and no error in its console
            self._send(204, "image/x-icon", b"")
        elif path in self.server.static:
            file = self.server.static[path]
            self._send(200, TYPES.get(file.suffix, "text/plain; charset=utf-8"), file.read_bytes())
        else:
            self._send(404, "text/plain; charset=utf-8", b"not found")

    def _send(self, status: int, kind: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", self.server.csp)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def static_site(
    *,
    static: Path,
    pages: Mapping[str, str],
    answers: Mapping[str, Callable[[], Any]],
    csp: str = "default-src 'self'",
) -> Iterator[tuple[str, list[str]]]:
    """(the site's base URL, the paths it was asked for) while the site runs on a free loopback port."""
    site = _Site(("127.0.0.1", net.free_port()), _Handler)
    site.pages, site.answers, site.csp, site.served = pages, answers, csp, []
    site.static = {f"/static/{f.name}": f for f in static.iterdir() if f.is_file()}  # no path is built from a URL
    thread = threading.Thread(target=site.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{site.server_address[1]}", site.served
    finally:
        site.shutdown()
        site.server_close()
        thread.join(timeout=5)
