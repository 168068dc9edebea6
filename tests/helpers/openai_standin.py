"""The one OpenAI-compatible stand-in for the tests and benches: POST .../chat/completions answers, and
every request is recorded (`seen()`), so a test can check what reached the model. Threaded, on 127.0.0.1
port 0, stopped by its own handle.

Three modes: by default every completion says the server's name (or fails with `status`); given an
`answer(model, messages)` function, it answers what that returns, deterministically per model, and can
time out, answer 429, 500, 400 or 401, or malformed JSON when the `Reply` says so (the eval tests);
`plain`, it answers every request, any method and path, with its name as text (an upstream behind Envoy
whose answer names the cluster that served it).
Self-contained (no other helper imported).
"""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

FAULTS = ("429", "500", "timeout", "malformed", "no-choices", "400", "401-echo")


@dataclass(frozen=True)
class Reply:
    """What an `answer` function makes the stand-in say: content and tool calls, or a fault."""

    content: str | None = None
    tool_calls: tuple[tuple[str, dict[str, Any]], ...] = ()
    fault: str | None = None  # one of FAULTS
    times: int = 0  # fault only on the first `times` requests for this exact body (0: always)
    delay: float = 0.0  # seconds the server takes to answer (for bench/eval_run.py)


Answer = Callable[[str, list[dict[str, Any]]], Reply]


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
        if self.server.plain:
            self._plain(request)
            return
        with self.server.lock:
            self.server.requests += 1
            self.server.seen.append(Seen(self.path, {k.lower(): v for k, v in self.headers.items()}, request))
            key = json.dumps(request, sort_keys=True)
            self.server.bodies[key] = count = self.server.bodies.get(key, 0) + 1
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send(404, {"error": {"message": f"no route {self.path}", "type": "invalid_request_error"}})
            return
        name = self.server.name
        if self.server.status != 200:
            self._send(self.server.status, {"error": {"message": f"{name} fails on purpose", "type": "server_error"}})
            return
        model = str(request.get("model", name))
        if self.server.answer is None:
            self._send(200, self._completion(model, Reply(name)))
            return
        reply = self.server.answer(request["model"], request["messages"])
        if reply.delay:
            self.server.release.wait(reply.delay)  # simulated model latency; stopping cuts it short
        self._fault(reply.fault if reply.fault and (not reply.times or count <= reply.times) else None, model, reply)

    def _fault(self, fault: str | None, model: str, reply: Reply) -> None:
        match fault:
            case "429":
                self._send(429, {"error": {"message": "rate limited"}}, {"Retry-After": "0"})
            case "500":
                self._send(500, {"error": {"message": "upstream exploded"}})
            case "400":
                self._send(400, {"error": {"message": "unknown parameter: temperatur"}})
            case "401-echo":  # a careless server that repeats the key it refused
                self._send(401, {"error": {"message": f"bad key {self.headers.get('Authorization', '')}"}})
            case "timeout":
                self.server.release.wait(30)  # the client gives up first; stopping releases us
                self._send(504, {})
            case "malformed":
                self._send_raw(200, b'{"choices": [{"message": {"content": "half')
            case "no-choices":
                self._send(200, {"object": "chat.completion", "choices": []})
            case _:
                self._send(200, self._completion(model, reply))

    def _completion(self, model: str, reply: Reply) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": reply.content}
        if reply.tool_calls:
            message["tool_calls"] = [
                {"id": f"call_{i}", "type": "function", "function": {"name": n, "arguments": json.dumps(a)}}
                for i, (n, a) in enumerate(reply.tool_calls)
            ]
        return {
            "id": f"chatcmpl-{self.server.name}-{self.server.requests}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
        }

    def do_GET(self) -> None:
        if self.server.plain:
            self._plain(None)
            return
        self._send(200, {"object": "list", "data": [{"id": self.server.name, "object": "model"}]})

    def _plain(self, request: Any) -> None:
        with self.server.lock:
            self.server.requests += 1
            self.server.seen.append(Seen(self.path, {k.lower(): v for k, v in self.headers.items()}, request))
        data = self.server.name.encode()
        self.send_response(200)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self._send_raw(status, json.dumps(body).encode(), headers)

    def _send_raw(self, status: int, data: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, name: str, status: int, answer: Answer | None, plain: bool) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.name = name
        self.status = status
        self.answer = answer
        self.plain = plain
        self.lock = threading.Lock()
        self.release = threading.Event()  # set when stopping: ends simulated latency and timeouts
        self.requests = 0
        self.seen: list[Seen] = []  # every POST (and, plain, every GET), in arrival order
        self.bodies: dict[str, int] = {}  # how often each exact JSON body arrived (for `Reply.times`)


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
    """An OpenAI-compatible server on 127.0.0.1: its address, and what it received."""

    name: str
    server: _Server

    @property
    def api_base(self) -> str:
        """The OpenAI base URL (ending in /v1)."""
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    @property
    def url(self) -> str:
        """The same base URL, as the eval CLI's --endpoint takes it."""
        return self.api_base

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

    def calls(self, model: str) -> int:
        """How many requests asked for `model`."""
        return sum(1 for s in self.seen() if s.model == model)


@contextlib.contextmanager
def standin(
    name: str = "standin", *, status: int = 200, answer: Answer | None = None, plain: bool = False
) -> Iterator[Standin]:
    """A stand-in that answers completions with its name, or with `status` and an error if not 200, or,
    given `answer`, with what it returns, or, `plain`, every request with its name as text; serves until
    the block ends, then releases any held request."""
    server = _Server(name, status, answer, plain)
    thread = threading.Thread(target=server.serve_forever, name=f"standin-{name}", daemon=True)
    thread.start()
    try:
        yield Standin(name, server)
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
