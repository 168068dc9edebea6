"""`prometheus.Prometheus.query_range` on the wire, against a small local HTTP server answering what each
test sets (the form body it sends, credentials never named, every odd answer a `MetricsError`), and
against a real Prometheus holding a known history (tests/helpers/plot_history.py)."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import pytest

from controller import errors, prometheus
from tests.helpers import net
from tests.helpers.plot_history import NOW, plot_prom  # noqa: F401

START = datetime(2026, 1, 2, 3, 0, 0, tzinfo=UTC)
END = START + timedelta(minutes=2)
MATRIX = {
    "status": "success",
    "data": {"resultType": "matrix", "result": [{"metric": {"v": "a"}, "values": [[1, "2"], [61, "NaN"]]}]},
}


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.answer: tuple[int, bytes] = (200, json.dumps(MATRIX).encode())
        self.seen: list[tuple[str, str, dict[str, str], bytes]] = []


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.seen.append((self.command, self.path, dict(self.headers), body))
        status, answer = self.server.answer
        self.send_response(status)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: object) -> None:
        pass


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


def test_a_range_query_is_sent_in_a_form_body_and_answered_as_series(server: _Server) -> None:
    metrics = prometheus.Prometheus(url(server), token="tok-SECRET")
    [found] = metrics.query_range('sum(x{a="b"})', start=START, end=END, step=timedelta(seconds=30))
    assert found.labels == {"v": "a"}
    assert found.points[0] == (1.0, 2.0) and found.points[1][0] == 61.0 and found.points[1][1] != found.points[1][1]
    [(method, path, headers, body)] = server.seen
    assert (method, path) == ("POST", "/api/v1/query_range")
    assert headers["Authorization"] == "Bearer tok-SECRET"
    assert parse_qs(body.decode()) == {
        "query": ['sum(x{a="b"})'],
        "start": [str(int(START.timestamp()))],
        "end": [str(int(END.timestamp()))],
        "step": ["30"],
    }


@pytest.mark.parametrize(
    ("status", "body", "says"),
    [
        pytest.param(200, b"<html>", "HTTP 200, not JSON", id="not-json"),
        pytest.param(200, b'{"status": "success"}', "HTTP 200, unexpected answer", id="no-data"),
        pytest.param(
            200,
            json.dumps({"data": {"result": [{"metric": {}, "value": [1, "2"]}]}}).encode(),
            "malformed answer",
            id="a-vector",
        ),
        pytest.param(200, b'{"data": {"result": [{"metric": {}, "values": [[1, "x"]]}]}}', "malformed", id="text"),
        pytest.param(
            400,
            json.dumps({"status": "error", "errorType": "bad_data", "error": "exceeded maximum resolution"}).encode(),
            "HTTP 400, bad_data: exceeded maximum resolution",
            id="refused",
        ),
    ],
)
def test_an_odd_answer_is_a_metrics_error(server: _Server, status: int, body: bytes, says: str) -> None:
    server.answer = (status, body)
    with pytest.raises(errors.MetricsError) as caught:
        prometheus.Prometheus(url(server)).query_range("up", start=START, end=END, step=timedelta(seconds=15))
    assert str(caught.value).startswith(f"Prometheus at {url(server)}: range query failed: ") and says in str(
        caught.value
    )


@pytest.mark.parametrize(
    ("start", "end", "step"),
    [(START, END, timedelta(milliseconds=500)), (END, START, timedelta(seconds=15))],
    ids=["step-under-a-second", "ends-before-it-starts"],
)
def test_a_range_it_cannot_ask_is_refused_unasked(
    server: _Server, start: datetime, end: datetime, step: timedelta
) -> None:
    with pytest.raises(errors.MetricsError, match="the step must be at least 1s"):
        prometheus.Prometheus(url(server)).query_range("up", start=start, end=end, step=step)
    assert server.seen == []


def test_an_unreachable_prometheus_is_unavailable_and_no_password_is_named() -> None:
    metrics = prometheus.Prometheus(f"http://ops:pw-SECRET@127.0.0.1:{net.free_port()}")
    with pytest.raises(errors.MetricsUnavailable) as caught:
        metrics.query_range("up", start=START, end=END, step=timedelta(seconds=15))
    assert "range query failed: ConnectionError" in str(caught.value) and "SECRET" not in str(caught.value)


def test_a_real_prometheus_answers_each_step(plot_prom: Any) -> None:  # noqa: F811
    metrics = prometheus.Prometheus(plot_prom.url)
    start, end = datetime.fromtimestamp(NOW - 600, UTC), datetime.fromtimestamp(NOW, UTC)
    expr = 'sum by (variant) (increase(llm_requests_total{route="plots-app"}[5m])) / 5'  # requests per minute
    found = {
        s.labels["variant"]: s.points
        for s in metrics.query_range(expr, start=start, end=end, step=timedelta(seconds=60))
    }
    assert sorted(found) == ["canary", "stable"]
    assert [t for t, _ in found["stable"]] == [float(t) for t in range(NOW - 600, NOW + 1, 60)]
    assert [v for _, v in found["stable"]] == pytest.approx([100.0] * 11)
    assert [v for _, v in found["canary"]] == pytest.approx([20.0] * 11)
    assert metrics.query_range("nothing_here", start=start, end=end, step=timedelta(seconds=60)) == []
