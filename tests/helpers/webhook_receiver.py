"""A local webhook receiver for the notification tests: a real HTTP server on loopback (a free port from
tests/helpers/net.py) that records every POST (path, headers, JSON body) and can be told to answer the
first N with 500 or 429 (with a Retry-After), to refuse with 404, to hang until released, or to trickle
its answer a byte at a time. Started and stopped by its own handle (`receiver()`)."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.helpers.net import free_port


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: Any  # the JSON it carried


class Receiver:
    def __init__(self) -> None:
        self.port = free_port()
        self.requests: list[Received] = []  # every POST, answered or not, in order
        self.fail_first = 0  # answer this many POSTs with `fail_status`
        self.fail_status = 500
        self.retry_after: str | None = None  # the Retry-After header of a failing answer
        self.hang = False  # hold every POST until `release()`
        self.holding = 0  # POSTs held right now
        self.trickle: float | None = None  # answer 200 with a long body, one byte every this many seconds
        self._released = threading.Event()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self._server.daemon_threads = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def bodies(self) -> list[Any]:
        with self._lock:
            return [r.body for r in self.requests]

    def release(self) -> None:
        self._released.set()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                with receiver._lock:
                    receiver.requests.append(Received(self.path, dict(self.headers.items()), json.loads(raw)))
                    failing = receiver.fail_first > 0
                    if failing:
                        receiver.fail_first -= 1
                    hang = receiver.hang
                    if hang:
                        receiver.holding += 1
                if hang:
                    receiver._released.wait(60)
                    with receiver._lock:
                        receiver.holding -= 1
                if receiver.trickle is not None:
                    self._trickle(receiver.trickle)
                    return
                status = receiver.fail_status if failing else 200
                self.send_response(status)
                if failing and receiver.retry_after is not None:
                    self.send_header("Retry-After", receiver.retry_after)
                body = b"ok" if status == 200 else b"no"
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _trickle(self, every: float) -> None:
                """Headers at once, then a byte every `every` seconds (each read of the client's is
                answered in time) until the client gives up or the receiver stops."""
                self.send_response(200)
                self.send_header("Content-Length", "1000000")
                self.end_headers()
                try:
                    while not receiver._released.wait(every):
                        self.wfile.write(b".")
                        self.wfile.flush()
                except OSError:  # the client closed the connection
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def start(self) -> None:
        threading.Thread(target=self._server.serve_forever, daemon=True, name="webhook-receiver").start()

    def stop(self) -> None:
        self._released.set()
        self._server.shutdown()
        self._server.server_close()


@contextlib.contextmanager
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.start()
    try:
        yield r
    finally:
        r.stop()
