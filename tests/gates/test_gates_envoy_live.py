"""Live: real Envoy splitting 50/50 between two upstreams, scraped by the session Prometheus every
second. A canary failing 25% of requests gives error_rate FAIL; a healthy canary gives PASS. (About 200
canary requests: the judge's lower bound for a 10% error rate would not yet clear a 2% max.)"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from controller import analysis, evidence, prometheus, spec
from controller.gates import Verdict as V
from tests.helpers import procs, prom

pytestmark = pytest.mark.slow

BAD, GOOD = "live-bad", "live-good"


def upstream(fail_every: int) -> ThreadingHTTPServer:
    """A tiny upstream; with fail_every=4 every fourth request gets a 503."""
    counter = itertools.count(1)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with lock:
                n = next(counter)
            code = 503 if fail_every and n % fail_every == 0 else 200
            self.send_response(code)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    return ThreadingHTTPServer(("127.0.0.1", 0), Handler)


@pytest.fixture
def upstreams() -> Iterator[dict[str, int]]:
    servers = {"healthy": upstream(0), "failing": upstream(4)}
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers.values()]
    for t in threads:
        t.start()
    try:
        yield {name: int(s.server_address[1]) for name, s in servers.items()}
    finally:
        for s in servers.values():
            s.shutdown()
            s.server_close()


def bootstrap(ports: dict[str, int]) -> dict[str, object]:
    backends = {
        spec.cluster_name(BAD, "stable"): ports["healthy"],
        spec.cluster_name(BAD, "canary"): ports["failing"],
        spec.cluster_name(GOOD, "stable"): ports["healthy"],
        spec.cluster_name(GOOD, "canary"): ports["healthy"],
    }

    def address(port: int) -> dict[str, object]:
        return {"socket_address": {"address": "127.0.0.1", "port_value": port}}

    def split(rollout: str) -> dict[str, object]:
        return {
            "match": {"prefix": f"/{rollout}"},
            "route": {
                "weighted_clusters": {
                    "clusters": [
                        {"name": spec.cluster_name(rollout, "stable"), "weight": 50},
                        {"name": spec.cluster_name(rollout, "canary"), "weight": 50},
                    ]
                }
            },
        }

    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "ingress",
        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [split(BAD), split(GOOD)]}]},
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
            }
        ],
    }
    return {
        "admin": {"address": address(0)},
        "stats_flush_interval": "1s",
        "static_resources": {
            "listeners": [
                {
                    "name": "ingress",
                    "address": address(0),
                    "filter_chains": [
                        {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}
                    ],
                }
            ],
            "clusters": [
                {
                    "name": name,
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "load_assignment": {
                        "cluster_name": name,
                        "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address(port)}}]}],
                    },
                }
                for name, port in backends.items()
            ],
        },
    }


@pytest.fixture
def envoy(tmp_path: Path, upstreams: dict[str, int]) -> Iterator[tuple[str, str]]:
    """(listener URL, admin URL) of a real Envoy."""
    config = tmp_path / "envoy.json"
    config.write_text(json.dumps(bootstrap(upstreams)))
    admin_path = tmp_path / "admin.txt"
    args = ["envoy", "-c", str(config), "--admin-address-path", str(admin_path), "--disable-hot-restart"]
    args += ["--concurrency", "1", "-l", "warning"]
    with procs.running(args, log=tmp_path / "envoy.log"):
        admin = "http://" + prom.prom_poll(
            "Envoy admin address", lambda: admin_path.exists() and admin_path.read_text().strip()
        )

        def listener() -> str | None:
            statuses = httpx.get(f"{admin}/listeners?format=json", timeout=2).json()["listener_statuses"]
            port = statuses[0]["local_address"]["socket_address"].get("port_value")
            return f"http://127.0.0.1:{port}" if port else None

        yield prom.prom_poll("Envoy listener", listener), admin


def scraped_total(url: str) -> float:
    expr = 'sum(envoy_cluster_upstream_rq_total{envoy_cluster_name=~"live-.*"})'
    result = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=5).json()["data"]["result"]
    return float(result[0]["value"][1]) if result else -1.0


def test_error_rate_from_live_envoy(prom_server: prom.PromServer, envoy: tuple[str, str]) -> None:
    listener, admin = envoy
    prom_server.set_targets([admin.removeprefix("http://")])
    try:
        prom.prom_poll("Prometheus to scrape Envoy", lambda: scraped_total(prom_server.url) == 0)
        sent = 0
        with httpx.Client(timeout=5) as client:
            for _batch in range(4):
                for _ in range(100):
                    for rollout in (BAD, GOOD):
                        client.get(f"{listener}/{rollout}")
                        sent += 1
                # wait until Prometheus has seen this batch, so counters grow across several scrapes
                prom.prom_poll(f"{sent} requests scraped", lambda n=sent: scraped_total(prom_server.url) == n)

        config = spec.ControllerConfig.model_validate(
            {
                "apiVersion": "rollouts/v1",
                "kind": "ControllerConfig",
                "routers": {"edge": {"type": "envoy", "admin": admin}},
            }
        )
        gate = (spec.Gate.model_validate({"use": "error_rate", "max": "2%"}),)
        targets = [analysis.Target(name, "r", "envoy", gate, ("tenant_tier",), 50) for name in (BAD, GOOD)]
        metrics = prometheus.Prometheus(prom_server.url)
        try:
            found = analysis.evaluate(
                targets, config=config, metrics=metrics, at=datetime.now(UTC), window=timedelta(minutes=5)
            )
        finally:
            metrics.close()
    finally:
        prom_server.set_targets([])

    [bad] = found[BAD]
    [good] = found[GOOD]
    print(evidence.text(BAD, found[BAD], at="now") + evidence.text(GOOD, found[GOOD], at="now"))
    assert bad.source == "envoy" and "envoy_cluster_upstream_rq_xx" in bad.query
    assert bad.verdict is V.FAIL, bad
    assert good.verdict is V.PASS, good
    [bad_row], [good_row] = bad.segments, good.segments
    assert bad_row.stable.value == 0.0  # its 5xx series never existed: a measured zero, not no data
    assert bad_row.canary.value is not None and bad_row.canary.value > 0.02
    assert good_row.canary.value == 0.0
