"""Tiny OpenAI-compatible stand-ins for the LiteLLM and Envoy tests: POST /v1/chat/completions answers with
the server's own name as the message content, and every request is recorded (`seen()`), so a test can
check what reached the model. Each runs in a thread on 127.0.0.1, port 0.

Used by tests/routers/litellm_proc.py; self-contained (no other helper imported).
"""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b"{}"
        try:
            request = json.loads(raw or b"{}")
        except ValueError:
            request = {}
        with self.server.lock:
            self.server.requests += 1
            self.server.seen.append(Seen(self.path, {k.lower(): v for k, v in self.headers.items()}, request))
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send(404, {"error": {"message": f"no route {self.path}", "type": "invalid_request_error"}})
            return
        name = self.server.name
        if self.server.status != 200:
            self._send(self.server.status, {"error": {"message": f"{name} fails on purpose", "type": "server_error"}})
            return
        self._send(
            200,
            {
                "id": f"chatcmpl-{name}-{self.server.requests}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": str(request.get("model", name)),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": name}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
            },
        )

    def do_GET(self) -> None:
        self._send(200, {"object": "list", "data": [{"id": self.server.name, "object": "model"}]})

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, name: str, status: int) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.name = name
        self.status = status
        self.lock = threading.Lock()
        self.requests = 0
        self.seen: list[Seen] = []  # every POST, in arrival order


#: Request fields that are not sampling params.
_NOT_PARAMS = frozenset({"model", "messages", "stream", "stream_options", "user", "extra_body"})


@dataclass(frozen=True)
class Seen:
    """One request as the stand-in received it: path, headers (lower-case names) and JSON body; and,
    of a completion, the model, system message and sampling params it reached the model with."""

    path: str
    headers: dict[str, str]
    body: Any

    @property
    def model(self) -> str:
        return str(self.body.get("model", "")) if isinstance(self.body, dict) else ""

    @property
    def system(self) -> str | None:
        """The first message's content when its role is "system"."""
        messages = self.body.get("messages") if isinstance(self.body, dict) else None
        first = messages[0] if isinstance(messages, list) and messages and isinstance(messages[0], dict) else {}
        content = first.get("content") if first.get("role") == "system" else None
        return content if isinstance(content, str) else None

    @property
    def params(self) -> dict[str, Any]:
        """Every top-level field of the body but the model, the messages and the transport's."""
        body = self.body if isinstance(self.body, dict) else {}
        return {k: v for k, v in body.items() if k not in _NOT_PARAMS}


@dataclass
class Standin:
    """An OpenAI-compatible server on 127.0.0.1 whose every completion says its name."""

    name: str
    server: _Server

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    @property
    def requests(self) -> int:
        with self.server.lock:
            return self.server.requests

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def seen(self) -> list[Seen]:
        with self.server.lock:
            return list(self.server.seen)


@contextlib.contextmanager
def standin(name: str, *, status: int = 200) -> Iterator[Standin]:
    """A stand-in that answers completions with its name, or with `status` and an error if not 200."""
    server = _Server(name, status)
    thread = threading.Thread(target=server.serve_forever, name=f"standin-{name}", daemon=True)
    thread.start()
    try:
        yield Standin(name, server)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
