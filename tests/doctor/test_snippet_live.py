"""The README's prometheus_client snippet, run as it is in an application process behind a real
Prometheus: `rollout doctor` finds every series of every built-in gate, and `rollout gates` measures
them for both variants and each segment."""

from __future__ import annotations

import json
import re
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import doctor, live, net, procs, prom
from tests.helpers.examples import run

ROOT = Path(__file__).resolve().parents[2]
GATES = """\
      - {use: error_rate, max: 5%, onFail: rollback}
      - {use: latency_p95, maxIncrease: 10%, onFail: rollback}
      - {use: eval_pass_rate, maxDrop: 3%, onFail: rollback}
      - {use: schema_valid_rate, min: 90%, onFail: rollback}
      - {use: feedback_negative_rate, maxIncrease: 50%, onFail: rollback}
      - {use: cost_per_request, maxIncrease: 20%, onFail: pause}
      - {use: tokens_per_request, maxIncrease: 20%, onFail: pause}
"""

# what an application does with the snippet: serve /metrics, and record its requests
DRIVER = """
import random, sys, time
from prometheus_client import start_http_server

start_http_server(int(sys.argv[1]), addr="127.0.0.1")
rng = random.Random(7)
while True:
    for variant in ("stable", "canary"):
        for tier in ("free", "pro"):
            served = served_variant(headers={"x-rollout-variant": variant})
            record("snippet", served, tier, seconds=rng.lognormvariate(-1, 0.3), ok=rng.random() > 0.01,
                   usd=0.002, tokens=200, eval_passed=rng.random() < 0.9, schema_valid=True)
            feedback("snippet", served, tier, up=rng.random() < 0.9)
    time.sleep(0.005)  # pacing the traffic, not waiting for anything
"""


def snippet() -> str:
    """The python block of the README's "An application's metrics" section."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### An application's metrics") :]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found, "the README's metrics snippet is gone"
    return found.group(1)


@pytest.fixture
def app(tmp_path: Path) -> Iterator[str]:
    """The snippet and its driver in a process of their own: host:port of its /metrics."""
    port = net.free_port()
    script = tmp_path / "app.py"
    script.write_text(snippet() + textwrap.dedent(DRIVER))
    log = tmp_path / "app.log"
    process = procs.spawn([sys.executable, str(script), str(port)], log=log)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        procs.stop(process)


@pytest.fixture
def prom_live(tmp_path: Path) -> Iterator[prom.PromServer]:
    work = tmp_path / "prometheus"
    work.mkdir()
    with prom.prom_server(work, data_dir=work / "data") as server:
        yield server


@pytest.mark.slow
def test_the_readme_snippet_meets_the_contract(tmp_path: Path, app: str, prom_live: prom.PromServer) -> None:
    live.scrape(prom_live, {"/metrics": [app]})
    # every series over at least three scrapes, for both variants: then increase() has a value
    ready = 'count(count_over_time(llm_schema_checks_total{route="snippet"}[1m]) >= 3)'
    prom.prom_poll("the snippet's series in Prometheus", lambda: live.scalar(prom_live, ready) == 4 or None)

    root = doctor.write_repo(tmp_path / "repo", prom_live.url, names=["fine"])
    rollout = root / "rollouts/fine/rollout.yaml"
    text = rollout.read_text().replace("route: fine", "route: snippet")
    rollout.write_text(text[: text.index("    gates:\n") + len("    gates:\n")] + GATES)

    code, out = run_json("doctor", "fine", "--repo", str(root), "--window", "1m")
    assert code == 0, out
    assert {g["gate"]: g["status"] for g in out["gates"]} == dict.fromkeys(
        (
            "error_rate",
            "latency_p95",
            "eval_pass_rate",
            "schema_valid_rate",
            "feedback_negative_rate",
            "cost_per_request",
            "tokens_per_request",
        ),
        "OK",
    )
    latency = next(g for g in out["gates"] if g["gate"] == "latency_p95")
    assert len(latency["buckets"]) == 110 and "maxIncrease 10% can pass" in latency["resolution"]

    _, measured = run_json("gates", "fine", "--repo", str(root), "--window", "1m")
    for gate in measured["gates"][:-1]:  # the last is the traffic-split check
        assert {s["segment"]["tenant_tier"] for s in gate["segments"]} == {"free", "pro"}, gate
        for row in gate["segments"]:
            assert row["stable"]["samples"] > 0 and row["canary"]["samples"] > 0, gate


def run_json(*argv: str) -> tuple[int, Any]:
    code, out = run(*argv, "--format", "json")
    return code, json.loads(out)
