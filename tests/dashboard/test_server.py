"""The dashboard's server over real HTTP on a free port: its routes, 404 and 405, no way out of
/static/, the strict headers on every answer, loopback by default (and a Host that is not loopback
refused there), a look that fails shown on the page, and a burst of page loads taking one look."""

from __future__ import annotations

import http.client
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from controller import errors, load, prometheus, reconcile, telemetry
from controller.dashboard import look, server, source
from tests.helpers import net, plot_history

NOW = datetime.now(UTC)


def a_look() -> look.Look:
    tick = reconcile.Tick(
        at=NOW, sha="f" * 40, outcomes=(reconcile.Outcome(rollout="bot", error="no such rollout file"),)
    )
    return look.Look(tick, [], load.RepoSpec(config=None))


class Counted:
    """A look taken on demand that counts its calls; fails with `why` when set."""

    def __init__(self) -> None:
        self.calls = 0
        self.why = ""
        self.entered = threading.Event()
        self.release = threading.Event()
        self.release.set()

    def __call__(self) -> look.Look:
        self.calls += 1
        self.entered.set()
        self.release.wait(10)
        if self.why:
            raise errors.RepoError(self.why)
        return a_look()


@pytest.fixture
def taken() -> Counted:
    return Counted()


@pytest.fixture
def base(taken: Counted) -> Iterator[str]:
    dashboard = server.Dashboard(source.Cached(taken, ttl=60), refresh=10, metrics=telemetry.Telemetry())
    served = server.serve(dashboard, host="127.0.0.1", port=0)
    try:
        yield f"http://127.0.0.1:{served.server_address[1]}"
    finally:
        served.shutdown()
        served.server_close()


@pytest.mark.parametrize(
    ("path", "code", "kind", "has"),
    [
        ("/", 200, "text/html; charset=utf-8", 'href="/rollouts/bot"'),
        ("/?x=1", 200, "text/html; charset=utf-8", "Rollouts"),
        ("/rollouts/bot", 200, "text/html; charset=utf-8", "no such rollout file"),
        ("/rollouts/nobody", 404, "text/html; charset=utf-8", "no rollout"),
        ("/api/rollouts.json", 200, "application/json", '"rollout": "bot"'),
        ("/api/rollouts/bot.json", 200, "application/json", '"timeline": []'),
        ("/api/rollouts/nobody.json", 404, "application/json", "no rollout"),
        ("/api/rollouts/bot/series", 503, "application/json", "no look"),  # no config in this look
        ("/static/dashboard.css", 200, "text/css; charset=utf-8", "Content-Security-Policy"),
        ("/metrics", 200, CONTENT_TYPE_LATEST, "rollout_tick_duration_seconds"),
        ("/healthz", 503, "text/plain", "no good tick"),
        ("/nothing", 404, "text/html; charset=utf-8", "Not found"),
    ],
    ids=lambda v: str(v)[:30],
)
def test_routes(base: str, path: str, code: int, kind: str, has: str) -> None:
    r = httpx.get(base + path, timeout=10)
    assert (r.status_code, r.headers["content-type"]) == (code, kind), r.text
    assert has in r.text
    assert "Traceback" not in r.text


@pytest.mark.parametrize("path", ["/", "/static/dashboard.css", "/api/rollouts.json", "/nothing", "/metrics"])
def test_every_answer_carries_the_strict_headers(base: str, path: str) -> None:
    r = httpx.get(base + path, timeout=10)
    csp = r.headers["content-security-policy"]
    assert csp.startswith("default-src 'self'") and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])
def test_read_only_every_other_method_is_refused(base: str, method: str, taken: Counted) -> None:
    r = httpx.request(method, base + "/", timeout=10, content=b"x" if method in ("POST", "PUT", "PATCH") else None)
    assert r.status_code == 405 and r.headers["allow"] == "GET"
    assert taken.calls == 0, "a refused request takes no look"


@pytest.mark.parametrize(
    "raw",
    [
        "/static/../server.py",
        "/static/..%2fserver.py",
        "/static/%2e%2e/%2e%2e/pyproject.toml",
        "/static/../../../../etc/passwd",
        "/static//etc/passwd",
        "/static/.hidden.css",
        "/static/dashboard.css/../../server.py",
        "/static/",
        "/static/__init__.py",
    ],
)
def test_nothing_outside_static_is_served(base: str, raw: str) -> None:
    """Raw request targets (httpx would normalise the dots away): each is refused."""
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("GET", raw)
    r = conn.getresponse()
    body = r.read().decode()
    conn.close()
    assert r.status == 404, body
    assert "import" not in body and "root:" not in body and "[project]" not in body


def test_a_host_that_is_not_loopback_is_refused_on_loopback(base: str) -> None:
    """A page of another site that rebinds its name to 127.0.0.1 sends its own name as Host."""
    assert httpx.get(base + "/", headers={"Host": "evil.example"}, timeout=10).status_code == 421
    assert httpx.get(base + "/", headers={"Host": "localhost:1"}, timeout=10).status_code == 200


def raw_get(base: str, path: str, host: str | None) -> tuple[int, str]:
    """A GET with exactly this Host header (None: none at all), which httpx would not send."""
    address, port = base.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(address.strip("[]"), int(port), timeout=10)
    try:
        conn.putrequest("GET", path, skip_host=True)
        if host is not None:
            conn.putheader("Host", host)
        conn.endheaders()
        r = conn.getresponse()
        return r.status, r.read().decode()
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("host", "page", "metrics"),
    [
        ("[::1]:8080", 200, 200),
        ("127.0.0.1", 200, 200),
        (None, 421, 200),  # no Host: no loopback name
        ("", 421, 200),
        ("evil.example", 421, 200),  # a rebinding page: never the pages, /metrics still (a scraper's own name)
        ("localhost.", 421, 200),
        ("[::1", 400, 400),  # malformed: a 400, not a dropped connection
        ("localhost:port", 400, 400),
        ("evil.example@localhost", 400, 400),
    ],
)
def test_the_host_check_gates_the_pages_only_and_a_malformed_host_is_a_400(
    base: str, host: str | None, page: int, metrics: int, capsys: pytest.CaptureFixture[str]
) -> None:
    for path in ("/", "/api/rollouts.json", "/rollouts/bot", "/static/dashboard.css"):
        assert raw_get(base, path, host)[0] == page, path
    for path in ("/metrics", "/healthz"):
        assert raw_get(base, path, host)[0] == (503 if path == "/healthz" and metrics == 200 else metrics), path
    assert "Traceback" not in capsys.readouterr().err


def ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not ipv6_loopback(), reason="this machine has no IPv6 loopback")
@pytest.mark.parametrize("host", ["::1", "[::1]"])
def test_the_ipv6_loopback_can_be_bound(taken: Counted, host: str) -> None:
    served = server.serve(server.Dashboard(source.Cached(taken, ttl=60)), host=host, port=0)
    try:
        base = f"http://[::1]:{served.server_address[1]}"
        r = httpx.get(base + "/", timeout=10)
        assert r.status_code == 200 and 'href="/rollouts/bot"' in r.text  # its Host, [::1]:port, is loopback
        assert raw_get(base, "/", "evil.example")[0] == 421
    finally:
        served.shutdown()
        served.server_close()


def test_a_look_that_fails_is_said_on_the_page_never_a_traceback(base: str, taken: Counted) -> None:
    taken.why = "cannot fetch /srv/<b>rollouts</b>.git"
    r = httpx.get(base + "/", timeout=10)
    assert r.status_code == 200 and "could not look: cannot fetch /srv/&lt;b&gt;rollouts" in r.text
    assert httpx.get(base + "/api/rollouts.json", timeout=10).json()["error"].startswith("could not look")


def test_a_burst_of_page_loads_is_one_look(base: str, taken: Counted) -> None:
    taken.release.clear()  # the first look blocks until every request is in
    answers: list[int] = []
    threads = [
        threading.Thread(target=lambda: answers.append(httpx.get(base + "/", timeout=30).status_code)) for _ in range(8)
    ]
    for t in threads:
        t.start()
    assert taken.entered.wait(10)
    taken.release.set()
    for t in threads:
        t.join(30)
    assert answers == [200] * 8 and taken.calls == 1


def test_loopback_is_the_default_bind_of_the_command() -> None:
    from controller import cli

    args = cli.parser().parse_args(["dashboard"])
    assert args.host == "127.0.0.1"
    assert server.is_loopback("127.0.0.1") and server.is_loopback("::1") and not server.is_loopback("0.0.0.0")


def test_an_unexpected_failure_is_a_500_without_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    class Broken:
        metrics = None

        def __call__(self) -> source.Snapshot:
            raise KeyError("secret-token-value")

    served = server.serve(server.Dashboard(Broken()), host="127.0.0.1", port=0)
    try:
        r = httpx.get(f"http://127.0.0.1:{served.server_address[1]}/", timeout=10)
    finally:
        served.shutdown()
        served.server_close()
    assert r.status_code == 500 and "Traceback" not in r.text and "secret-token-value" not in r.text
    err = capsys.readouterr().err  # read once: a second read is empty
    assert "KeyError" in err and "secret-token-value" not in err


def test_without_pages_only_metrics_and_healthz_are_served(taken: Counted) -> None:
    """`rollout run --metrics-host 0.0.0.0` (a kubelet's probes) serves no page unless --dashboard."""
    from controller import cli

    dashboard = server.Dashboard(source.Cached(taken, ttl=60), metrics=telemetry.Telemetry(), pages=False)
    served = server.serve(dashboard, host="127.0.0.1", port=0)
    base = f"http://127.0.0.1:{served.server_address[1]}"
    try:
        assert httpx.get(base + "/metrics", timeout=10).status_code == 200
        assert httpx.get(base + "/healthz", timeout=10).status_code == 503
        for path in ("/", "/rollouts/bot", "/api/rollouts.json", "/static/dashboard.css"):
            assert httpx.get(base + path, timeout=10).status_code == 404
        assert taken.calls == 0
    finally:
        served.shutdown()
        served.server_close()
    assert cli.parser().parse_args(["run"]).dashboard is False


def test_every_static_file_ships_as_package_data_with_a_type() -> None:
    """An installed `rollout` serves them too: each file of static/ matches the package data, and its
    suffix has a content type (a file the server could not type would be a 404), except the vendored
    files' papers (VENDORED.md, uplot.LICENSE), which are for people reading the package, not pages."""
    import fnmatch
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    files = [p for p in server.STATIC.iterdir() if p.is_file()]
    assert files
    for file in files:
        name = f"static/{file.name}"
        assert any(fnmatch.fnmatch(name, pattern) for pattern in patterns["controller.dashboard"]), name
        assert file.suffix in server.TYPES or file.name in {"VENDORED.md", "uplot.LICENSE"}, file.name


def test_the_run_loops_source_shows_its_last_look_and_never_takes_one() -> None:
    published = source.Published()
    assert published().look is None and "no tick yet" in published().error
    seen = a_look()
    published.publish(seen)
    assert published().look is seen and published().error == ""
    published.fail("could not read the tick's PRs or history: forge down")
    assert published().look is seen and "forge down" in published().error  # the last look, and why it is old
    page = server.Dashboard(published).answer("/")
    assert page[0] == 200 and b"forge down" in page[2] and b'href="/rollouts/bot"' in page[2]


def test_a_look_that_raises_anything_is_kept_and_said_by_its_type() -> None:
    """Not only a RolloutError: any failure is a snapshot kept `ttl` (no new tick per page load), its
    text never shown (it may hold anything)."""
    calls: list[int] = []

    def broken() -> look.Look:
        calls.append(1)
        raise KeyError("secret-token-value")

    cached = source.Cached(broken, ttl=60)
    first, second = cached(), cached()
    assert first is second and len(calls) == 1
    assert first.look is None and first.error == "could not look: KeyError"
    page = server.Dashboard(cached).answer("/")
    assert page[0] == 200 and b"could not look: KeyError" in page[2] and b"secret-token-value" not in page[2]


class CountedPrometheus(prometheus.Prometheus):
    """The real client, counting its range queries (here at a closed port: each panel says so)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.asked = 0

    def query_range(self, expr: str, *, start: datetime, end: datetime, step: timedelta) -> list[prometheus.Series]:
        self.asked += 1
        return super().query_range(expr, start=start, end=end, step=step)


def test_a_rollouts_plots_are_asked_once_per_look_and_cache() -> None:
    metrics = CountedPrometheus(f"http://127.0.0.1:{net.free_port()}")
    loaded = plot_history.rollout("r-app")
    tick = reconcile.Tick(at=NOW, sha="f" * 40, outcomes=(reconcile.Outcome(rollout="r-app"),))
    published = source.Published(metrics=metrics)
    published.publish(look.Look(tick, [], load.RepoSpec(config=plot_history.CONFIG, rollouts=[loaded])))
    now = [0.0]
    dashboard = server.Dashboard(published, cache=5, clock=lambda: now[0])
    first = dashboard.answer("/api/rollouts/r-app/series")
    asked = metrics.asked
    assert first[0] == 200 and asked > 0, first
    assert dashboard.answer("/api/rollouts/r-app/series") == first and metrics.asked == asked  # within the cache
    now[0] = 6.0
    dashboard.answer("/api/rollouts/r-app/series")
    assert metrics.asked == 2 * asked  # the cache ran out: asked again
    published.publish(look.Look(tick, [], load.RepoSpec(config=plot_history.CONFIG, rollouts=[loaded])))
    dashboard.answer("/api/rollouts/r-app/series")
    assert metrics.asked == 3 * asked  # a new look: asked again at once
