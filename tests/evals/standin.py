"""A small OpenAI-compatible chat-completions server for the eval tests: threaded, on 127.0.0.1
port 0, answering deterministically per model id through an `answer(model, messages)` function,
and able to time out, answer 429 or 500, or answer malformed JSON when the function says so."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FAULTS = ("429", "500", "timeout", "malformed", "no-choices", "400", "401-echo")


@dataclass(frozen=True)
class Reply:
    content: str | None = None
    tool_calls: tuple[tuple[str, dict[str, Any]], ...] = ()
    fault: str | None = None  # one of FAULTS
    times: int = 0  # fault only on the first `times` requests for this exact body (0: always)
    delay: float = 0.0  # seconds the server takes to answer (for bench/eval_run.py)


Answer = Callable[[str, list[dict[str, Any]]], Reply]


@dataclass
class StandIn:
    answer: Answer
    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    seen: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def calls(self, model: str) -> int:
        return sum(1 for r in self.requests if r.get("model") == model)


def _completion(model: str, reply: Reply) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.content}
    if reply.tool_calls:
        message["tool_calls"] = [
            {"id": f"call_{i}", "type": "function", "function": {"name": n, "arguments": json.dumps(a)}}
            for i, (n, a) in enumerate(reply.tool_calls)
        ]
    return {
        "id": "chatcmpl-standin",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def _handler(state: StandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._send(404, b'{"error": {"message": "not found"}}')
                return
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            body = json.loads(raw)
            with state.lock:
                state.requests.append(body)
                state.headers.append(dict(self.headers))
                key = json.dumps(body, sort_keys=True)
                state.seen[key] = state.seen.get(key, 0) + 1
                count = state.seen[key]
            reply = state.answer(body["model"], body["messages"])
            if reply.delay:
                state.release.wait(reply.delay)  # simulated model latency; stop() cuts it short
            fault = reply.fault if reply.fault and (not reply.times or count <= reply.times) else None
            match fault:
                case "429":
                    self._send(429, b'{"error": {"message": "rate limited"}}', {"Retry-After": "0"})
                case "500":
                    self._send(500, b'{"error": {"message": "upstream exploded"}}')
                case "400":
                    self._send(400, b'{"error": {"message": "unknown parameter: temperatur"}}')
                case "401-echo":  # a careless server that repeats the key it refused
                    echoed = json.dumps({"error": {"message": f"bad key {self.headers.get('Authorization', '')}"}})
                    self._send(401, echoed.encode())
                case "timeout":
                    state.release.wait(30)  # the client gives up first; stop() releases us
                    self._send(504, b"{}")
                case "malformed":
                    self._send(200, b'{"choices": [{"message": {"content": "half')
                case "no-choices":
                    self._send(200, b'{"object": "chat.completion", "choices": []}')
                case _:
                    self._send(200, json.dumps(_completion(body["model"], reply)).encode())

    return Handler


@contextmanager
def standin(answer: Answer) -> Iterator[StandIn]:
    """Serve until the block ends, then stop by our own handle and release any held request."""
    state = StandIn(answer)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="standin", daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
