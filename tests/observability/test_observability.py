"""The shipped dashboard and rules: `promtool check rules` and `promtool test rules` pass (and a
broken threshold makes them fail), every dashboard expression parses in a real Prometheus, panels
pair stable with canary, and every metric they name is one the stand-ins or the controller export."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from ruamel.yaml import YAML

from controller import observability, templates
from tests.helpers import prom

ROOT = Path(__file__).resolve().parents[2]
HERE = ROOT / "controller" / "observability"
CONTROLLER_METRICS = {
    "rollout_canary_weight",
    "rollout_step",
    "rollout_tick_duration_seconds_bucket",
    "rollout_decisions_total",
    "rollout_errors_total",
    "rollout_last_good_tick_timestamp_seconds",
}
APP_METRICS = {
    "llm_requests_total",
    "llm_request_duration_seconds_bucket",
    "llm_eval_results_total",
    "llm_schema_checks_total",
    "llm_cost_usd_total",
    "llm_tokens_total",
}
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$rollout": ".*", "$route": ".*"}
PROMQL_WORDS = {
    "sum", "max", "min", "by", "rate", "increase", "changes", "histogram_quantile", "time", "or", "and", "on",
    "ignoring", "absent", "group_left", "le", "inf", "unless", "bool",
}  # fmt: skip


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(observability.path(observability.DASHBOARD).read_text())
    return data


def panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def expressions() -> list[str]:
    exprs = [t["expr"] for p in panels() for t in p["targets"]]
    exprs += [a["expr"] for a in dashboard()["annotations"]["list"] if "expr" in a]
    return exprs


def rule_expressions(path: Path) -> list[str]:
    doc = YAML(typ="safe").load(path.read_text())
    return [r["expr"] for g in doc["groups"] for r in g["rules"]]


def metric_names(expr: str) -> set[str]:
    """Names that stand before a selector or range: metric names and recorded series, not labels."""
    without_strings = re.sub(r'"[^"]*"|\$\w+', '""', expr)
    without_matchers = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "{}", without_strings)
    without_grouping = re.sub(r"\b(by|on|ignoring|without|group_left)\s*\([^)]*\)", "", without_matchers)
    names = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", without_grouping))
    return {n for n in names if n.lower() not in PROMQL_WORDS and not n.startswith("$")}


def recorded() -> set[str]:
    doc = YAML(typ="safe").load((HERE / "rules.yml").read_text())
    return {r["record"] for g in doc["groups"] for r in g["rules"] if "record" in r}


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_promtool_check_rules() -> None:
    done = promtool("check", "rules", "rules.yml", cwd=HERE)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_promtool_test_rules() -> None:
    done = promtool("test", "rules", "rules_test.yml", cwd=HERE)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (
            'route_variant:llm_request_errors:ratio_rate1m{variant="stable"} + 0.02',
            'route_variant:llm_request_errors:ratio_rate1m{variant="stable"} + 0.2',
        ),
        (
            "time() - max(rollout_last_good_tick_timestamp_seconds) > 300\n        for: 1m",
            "time() - max(rollout_last_good_tick_timestamp_seconds) > 3000\n        for: 1m",
        ),
        ('kind="Rollback"', 'kind="rollback"'),
    ],
    ids=["error-threshold", "stall-threshold", "decision-kind"],
)
def test_promtool_tests_catch_a_broken_rule(tmp_path: Path, old: str, new: str) -> None:
    text = (HERE / "rules.yml").read_text()
    assert old in text
    (tmp_path / "rules.yml").write_text(text.replace(old, new))
    shutil.copy(HERE / "rules_test.yml", tmp_path / "rules_test.yml")
    done = promtool("test", "rules", "rules_test.yml", cwd=tmp_path)
    assert done.returncode != 0 and "FAILED" in done.stdout + done.stderr


def test_rules_name_only_known_metrics() -> None:
    for expr in rule_expressions(HERE / "rules.yml"):
        assert metric_names(expr) <= APP_METRICS | CONTROLLER_METRICS | recorded(), expr


def test_app_metrics_are_the_ones_the_gate_templates_read() -> None:
    read = set()
    for t in templates.BUILTIN.values():
        if t.app is None:
            continue  # vLLM-only: no application metric
        text = " ".join(str(v) for v in t.app.model_dump().values())
        read |= {m for m in APP_METRICS if m in text}
    assert read == APP_METRICS


@pytest.fixture(scope="module")
def empty_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[prom.PromServer]:
    work = tmp_path_factory.mktemp("prometheus-dashboard")
    with prom.prom_server(work, data_dir=work / "data") as server:
        yield server


def test_every_dashboard_expression_parses_in_prometheus(empty_prometheus: prom.PromServer) -> None:
    exprs = expressions()
    assert len(exprs) > 20
    with httpx.Client(timeout=10) as client:
        for expr in exprs:
            concrete = expr
            for variable, value in GRAFANA_VARIABLES.items():
                concrete = concrete.replace(variable, value)
            assert "$" not in concrete, f"unknown Grafana variable in {expr}"
            answer = client.get(f"{empty_prometheus.url}/api/v1/query", params={"query": concrete}).json()
            assert answer["status"] == "success", (expr, answer.get("error"))
        broken = client.get(f"{empty_prometheus.url}/api/v1/query", params={"query": "sum(rate(x[1m])"}).json()
        assert broken["status"] == "error"  # the check can fail


def test_dashboard_names_only_known_metrics() -> None:
    for expr in expressions():
        assert metric_names(expr) <= APP_METRICS | CONTROLLER_METRICS, expr
    used = set().union(*(metric_names(e) for e in expressions()))
    assert used >= CONTROLLER_METRICS, CONTROLLER_METRICS - used  # weights, step, decisions, health
    assert used >= APP_METRICS, APP_METRICS - used


def test_dashboard_shows_stable_and_canary_side_by_side() -> None:
    by_title = {p["title"]: p for p in panels()}
    pairs = [(t, t.replace(": stable", ": canary")) for t in by_title if t.endswith(": stable")]
    wanted = ["Request rate", "Error ratio", "Latency p50 / p95", "Eval pass rate", "Cost and tokens per request"]
    assert set(wanted) <= {t.removesuffix(": stable") for t, _ in pairs}
    for stable, canary in pairs:
        left, right = by_title[stable], by_title[canary]
        assert left["gridPos"]["y"] == right["gridPos"]["y"] and left["gridPos"]["x"] < right["gridPos"]["x"]
        assert all('variant="stable"' in t["expr"] for t in left["targets"])
        assert all('variant="canary"' in t["expr"] for t in right["targets"])
        assert [t["expr"].replace('"stable"', '"canary"') for t in left["targets"]] == [
            t["expr"] for t in right["targets"]
        ]
    titles = " ".join(by_title)
    assert "Canary weight" in titles and "Current step" in titles


def test_dashboard_layout_is_valid() -> None:
    d = dashboard()
    assert d["uid"] and d["title"] and d["schemaVersion"] >= 36
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for p in d["panels"]:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"panel {p['title']!r} overlaps another"
                cells.add((x, y))
        for t in p.get("targets", []):
            assert t["refId"] and t["expr"]
    names = {v["name"] for v in d["templating"]["list"]}
    assert names == {"datasource", "rollout", "route"}


def test_files_ship_as_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    data = config["tool"]["setuptools"]["package-data"]["controller.observability"]
    for name in (observability.DASHBOARD, observability.RULES, observability.RULES_TEST):
        assert observability.path(name).is_file()
        assert any(Path(name).match(pattern) for pattern in data), name
    with pytest.raises(ValueError):
        observability.path("../cli.py")
