"""Live: a real Prometheus loading `rules.yml` scrapes a stable and a canary stand-in model server
under traffic; every application panel of the dashboard then answers for each variant, and every
recording rule produces a series per variant: the names and labels fit what the stand-ins export."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from controller import observability
from controller.demo import loadgen, model_server
from tests.helpers import net, procs, prom

pytestmark = pytest.mark.slow

ROUTE = "support-chat"
WINDOW = "30s"  # stands in for Grafana's $__rate_interval


@contextlib.contextmanager
def prometheus_with_rules(work: Path, targets: list[str]) -> Iterator[str]:
    rules = Path(str(observability.path(observability.RULES)))
    config = work / "prometheus.yml"
    config.write_text(
        json.dumps(  # JSON is YAML
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(rules)],
                "scrape_configs": [{"job_name": "standins", "static_configs": [{"targets": targets}]}],
            }
        )
    )
    port = net.free_port()
    args = [
        "prometheus",
        f"--config.file={config}",
        f"--storage.tsdb.path={work / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    url = f"http://127.0.0.1:{port}"
    with procs.running(args, log=work / "prometheus.log"):
        prom.prom_poll("Prometheus /-/ready", lambda: httpx.get(f"{url}/-/ready", timeout=2).status_code == 200)
        yield url


def query(url: str, expr: str) -> list[dict[str, object]]:
    answer = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert answer["status"] == "success", (expr, answer)
    result: list[dict[str, object]] = answer["data"]["result"]
    return result


def recorded_rules(url: str) -> list[str]:
    groups = httpx.get(f"{url}/api/v1/rules", params={"type": "record"}, timeout=10).json()["data"]["groups"]
    return [r["name"] for g in groups for r in g["rules"]]


def test_dashboard_panels_and_recording_rules_answer_on_standin_metrics(tmp_path: Path) -> None:
    stable = model_server.Behaviour(latency=0.01, jitter=0.01, eval_pass=0.9)
    tiers = ["free", "pro", "enterprise"]
    with contextlib.ExitStack() as stack:
        servers = {
            v: stack.enter_context(
                model_server.serving(
                    model_server.Model(
                        variant=v,
                        route=ROUTE,
                        model=f"demo/{v}",
                        behaviour=model_server.scenario("errors" if v == "canary" else "good", stable),
                        segments=tiers,
                    )
                )
            )
            for v in ("stable", "canary")
        }
        url = stack.enter_context(prometheus_with_rules(tmp_path, [s.address for s in servers.values()]))
        rules = recorded_rules(url)
        assert len(rules) >= 8, rules
        prom.prom_poll("the first scrape", lambda: len(query(url, "llm_requests_total")) == 2 * 2 * len(tiers))
        for v, server in servers.items():
            plan = loadgen.Plan(url=f"{server.url}/v1", rate=100, max_requests=150, tenants=dict.fromkeys(tiers, 1.0))
            report = loadgen.Traffic(plan).start().wait(timeout=120)
            assert report.sent == 150, (v, report)

        def every_rule_has_both_variants() -> bool:
            return all({s["metric"]["variant"] for s in query(url, name)} == {"stable", "canary"} for name in rules)  # type: ignore[index]

        prom.prom_poll("every recording rule to answer for both variants", every_rule_has_both_variants)

        dashboard = json.loads(observability.path(observability.DASHBOARD).read_text())
        app_panels = [
            p for p in dashboard["panels"] if p["type"] != "row" and p["title"].endswith(("stable", "canary"))
        ]
        assert len(app_panels) >= 10
        for panel in app_panels:
            variant = panel["title"].rsplit(": ", 1)[1]
            for target in panel["targets"]:
                expr = target["expr"].replace("$__rate_interval", WINDOW).replace("$route", ROUTE)
                result = query(url, expr)
                assert result, f"panel {panel['title']!r}: no data for {expr}"
                values = [float(s["value"][1]) for s in result]  # type: ignore[index]
                assert all(v == v for v in values), f"panel {panel['title']!r}: NaN from {expr}"
                if panel["title"].startswith("Error ratio"):
                    assert (values[0] > 0) == (variant == "canary"), (panel["title"], values)
