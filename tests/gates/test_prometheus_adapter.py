"""The metrics adapter's wire behaviour against a small local HTTP server that answers what each test
sets: credentials sent and never named, no retry, no redirect followed, a timeout honoured, and every
odd answer a `MetricsError`. The answers of a real Prometheus are tested in test_gates_history.py."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from controller import errors, prometheus, spec

AT = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
VECTOR = {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {"v": "a"}, "value": [1, "2"]}]}}


@dataclass
class Seen:
    """What the server received, and what it answers next: (status, headers, body, delay in seconds)."""

    answer: tuple[int, dict[str, str], bytes, float] = (200, {}, json.dumps(VECTOR).encode(), 0.0)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def _answer(self) -> None:
        seen = self.server.seen
        seen.requests.append((self.command, self.path, dict(self.headers)))
        seen.bodies.append(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        status, headers, body, delay = seen.answer
        time.sleep(delay)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.seen = Seen()

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # the client that timed out has hung up before the slow answer


@pytest.fixture
def server() -> Iterator[_Server]:
    s = _Server()
    thread = threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield s
    finally:
        s.shutdown()
        s.server_close()


def url(s: _Server, userinfo: str = "") -> str:
    return f"http://{userinfo}127.0.0.1:{s.server_address[1]}"


def failure(metrics: prometheus.Prometheus) -> str:
    with pytest.raises(errors.MetricsError) as caught:
        metrics.query("up", at=AT)
    return str(caught.value)


def test_a_query_is_sent_with_its_time_and_answered_as_samples(server: _Server) -> None:
    metrics = prometheus.Prometheus(url(server) + "/")
    assert metrics.query('sum(x{a="b"})', at=AT) == [prometheus.Sample({"v": "a"}, 2.0)]
    [(method, path, headers)] = server.seen.requests
    parts = urlsplit(path)
    assert method == "POST" and parts.path == "/api/v1/query" and not parts.query
    # a form body, as Prometheus's API allows: a batched query of 1000 rollouts is too long for a URL
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    [body] = server.seen.bodies
    assert parse_qs(body.decode()) == {"query": ['sum(x{a="b"})'], "time": [f"{AT.timestamp():.3f}"]}
    assert "Authorization" not in headers


def test_a_long_query_travels_in_the_body(server: _Server) -> None:
    long = "sum(x{" + ",".join(f'r{i}="{i}"' for i in range(5000)) + "})"  # ~60 KB
    assert prometheus.Prometheus(url(server)).query(long, at=AT)
    [(_, path, _)] = server.seen.requests
    assert len(path) < 100 and parse_qs(server.seen.bodies[0].decode())["query"] == [long]


@pytest.mark.parametrize(
    ("token", "sent"),
    [("tok-SECRET\n", "Bearer tok-SECRET"), ("  tok-SECRET  ", "Bearer tok-SECRET"), ("", None)],
    ids=["trailing-newline", "spaces", "empty"],
)
def test_a_token_read_from_a_file_is_trimmed(server: _Server, token: str, sent: str | None) -> None:
    assert prometheus.Prometheus(url(server), token=token).query("up", at=AT)
    assert server.seen.requests[0][2].get("Authorization") == sent


@pytest.mark.parametrize("token", ["tok\nSECRET", "tök-SECRET", "tok\x00SECRET"], ids=["newline", "latin", "nul"])
def test_a_token_a_header_cannot_carry_is_refused_without_naming_it(server: _Server, token: str) -> None:
    with pytest.raises(errors.MetricsError) as caught:
        prometheus.Prometheus(url(server), token=token)
    assert "SECRET" not in str(caught.value) and "bearer token" in str(caught.value)
    assert server.seen.requests == []


def test_no_data_is_an_empty_list(server: _Server) -> None:
    server.seen.answer = (
        200,
        {},
        json.dumps({"status": "success", "data": {"resultType": "vector", "result": []}}).encode(),
        0,
    )
    assert prometheus.Prometheus(url(server)).query("up", at=AT) == []


def test_the_bearer_token_is_sent_and_never_named(server: _Server) -> None:
    server.seen.answer = (503, {}, b"token tok-SECRET expired", 0)
    metrics = prometheus.Prometheus(url(server), token="tok-SECRET")
    message = failure(metrics)
    assert message == f"Prometheus at {url(server)}: query failed: HTTP 503, not JSON"
    [(_, _, headers)] = server.seen.requests  # a 503 is not retried
    assert headers["Authorization"] == "Bearer tok-SECRET"


def test_from_config_reads_the_token_from_the_named_variable(server: _Server) -> None:
    config = spec.PrometheusConfig(url=url(server), timeout=timedelta(seconds=3), bearer_token_env="PROM_TOKEN")
    metrics = prometheus.Prometheus.from_config(config, env={"PROM_TOKEN": "tok-SECRET", "OTHER": "x"})
    assert metrics.query("up", at=AT)
    [(_, _, headers)] = server.seen.requests
    assert headers["Authorization"] == "Bearer tok-SECRET"
    assert "SECRET" not in repr(metrics) and "SECRET" not in metrics.display
    unset = prometheus.Prometheus.from_config(config, env={})  # no token: no header, not an error
    assert unset.query("up", at=AT)
    assert "Authorization" not in server.seen.requests[-1][2]


def test_a_netrc_entry_does_not_replace_the_token(
    server: _Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password netrc-pass\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    assert prometheus.Prometheus(url(server), token="tok-SECRET").query("up", at=AT)
    assert server.seen.requests[0][2]["Authorization"] == "Bearer tok-SECRET"


def test_a_password_in_the_url_is_basic_auth_and_never_named(server: _Server) -> None:
    metrics = prometheus.Prometheus(url(server, "ops:pa%40ss-SECRET@"))
    assert metrics.display == url(server)
    assert metrics.query("up", at=AT)
    [(_, path, headers)] = server.seen.requests
    assert headers["Authorization"] == "Basic b3BzOnBhQHNzLVNFQ1JFVA=="  # ops:pa@ss-SECRET
    assert "SECRET" not in path
    server.shutdown()
    server.server_close()
    message = failure(metrics)
    assert "SECRET" not in message and message.startswith(
        f"Prometheus at {url(server)}: query failed: ConnectionError:"
    )


def test_an_error_answer_names_prometheus_error(server: _Server) -> None:
    body = {"status": "error", "errorType": "bad_data", "error": "parse error: unclosed left parenthesis"}
    server.seen.answer = (400, {}, json.dumps(body).encode(), 0)
    assert failure(prometheus.Prometheus(url(server))).endswith(
        "query failed: HTTP 400, bad_data: parse error: unclosed left parenthesis"
    )


@pytest.mark.parametrize(
    ("status", "body", "says"),
    [
        pytest.param(200, b"<html>", "HTTP 200, not JSON", id="not-json"),
        pytest.param(200, b'{"status": "success"}', "HTTP 200, unexpected answer", id="no-data"),
        pytest.param(500, b"[1, 2]", "HTTP 500, unexpected answer", id="error-not-an-object"),
        pytest.param(200, b'{"data": {"result": [1, "2"]}}', "malformed answer", id="a-scalar"),
        pytest.param(
            200, b'{"data": {"result": [{"metric": {}, "value": [1, "x"]}]}}', "malformed answer", id="nan-text"
        ),
    ],
)
def test_an_odd_answer_is_a_metrics_error(server: _Server, status: int, body: bytes, says: str) -> None:
    server.seen.answer = (status, {}, body, 0)
    assert says in failure(prometheus.Prometheus(url(server)))


def test_a_redirect_is_not_followed(server: _Server) -> None:
    server.seen.answer = (302, {"Location": "http://127.0.0.1:9/elsewhere"}, b"", 0)
    assert failure(prometheus.Prometheus(url(server))).endswith("query failed: HTTP 302, a redirect (not followed)")
    assert len(server.seen.requests) == 1


def test_a_slow_answer_fails_after_the_timeout_once(server: _Server) -> None:
    server.seen.answer = (200, {}, json.dumps(VECTOR).encode(), 2.0)
    metrics = prometheus.Prometheus(url(server), timeout=timedelta(seconds=0.3))
    started = time.monotonic()
    message = failure(metrics)
    assert time.monotonic() - started < 1.5, "one timeout, no retry"
    assert "query failed: ReadTimeout:" in message
    assert len(server.seen.requests) == 1
