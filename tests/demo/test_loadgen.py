"""The traffic generator against real stand-in servers: bounded by count and by time, stoppable,
counting answers per variant and failures; tenant parsing; the command line's JSON report."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import exposition
from prometheus_client import parser as prom_parser

from controller.demo import loadgen
from controller.demo import model_server as ms

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def canary() -> Iterator[ms.Running]:
    behaviour = ms.Behaviour(latency=0, jitter=0, error_rate=0.25)
    with ms.serving(ms.Model(variant="canary", route="r", model="m", behaviour=behaviour)) as running:
        yield running


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        ("free=5,pro=3", {"free": 5.0, "pro": 3.0}),
        ("a, b=2 ,", {"a": 1.0, "b": 2.0}),
        ("", {}),
    ],
    ids=["weights", "bare-and-spaces", "empty"],
)
def test_parse_tenants(text: str, expect: dict[str, float]) -> None:
    assert loadgen.parse_tenants(text) == expect


@pytest.mark.parametrize(
    "changes",
    [
        {"rate": 0},
        {"max_requests": -1},
        {"concurrency": 0},
        {"tenants": {}},
        {"tenants": {"a": 0}},
        {"rating_share": 1.5},
    ],
    ids=["no-rate", "negative-count", "no-workers", "no-tenants", "zero-weight", "share-above-1"],
)
def test_plan_refuses_nonsense(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        loadgen.Plan(url="http://127.0.0.1:1/v1", **changes)  # type: ignore[arg-type]


def test_stops_after_max_requests_and_counts_per_variant(canary: ms.Running) -> None:
    plan = loadgen.Plan(
        url=f"{canary.url}/v1", rate=500, max_requests=40, duration=300, concurrency=4, tenants={"gold": 1}
    )
    report = loadgen.Traffic(plan).start().wait(timeout=120)
    assert report.sent == 40
    assert report.answered == {"canary": 30} and report.failed == {"canary": 10}
    assert report.by_tenant == {"gold": 40}  # one segment, so the 25% is exact
    assert report.total_failed == 10
    assert canary.model.served == 40


def test_users_rate_answers_at_the_variant_that_served_them() -> None:
    """Every answer rated (share 1): thumbs up where the answer says it is helpful, down where not, sent to
    the answering variant's /v1/feedback and counted there, in its own llm_feedback_total, per tenant."""
    behaviour = ms.Behaviour(latency=0, jitter=0, liked=0.75)
    model = ms.Model(variant="canary", route="r", model="m", behaviour=behaviour, segments=["gold"])
    with ms.serving(model) as canary:
        plan = loadgen.Plan(
            url=f"{canary.url}/v1",
            rate=500,
            max_requests=40,
            concurrency=4,
            tenants={"gold": 1},
            feedback={"canary": f"{canary.url}/v1/feedback"},
            rating_share=1.0,
        )
        report = loadgen.Traffic(plan).start().wait(timeout=120)
    assert report.errors == {}, report.errors
    assert report.rated == {"canary": {"up": 30, "down": 10}}  # exact: 75% liked
    counted = {
        s.labels["value"]: s.value
        for family in prom_parser.text_string_to_metric_families(
            exposition.generate_latest(model.metrics.registry).decode()
        )
        for s in family.samples
        if s.name == "llm_feedback_total" and s.labels["tenant_tier"] == "gold"
    }
    assert counted == {"up": 30, "down": 10}


def test_no_ratings_without_a_feedback_url(canary: ms.Running) -> None:
    plan = loadgen.Plan(url=f"{canary.url}/v1", rate=500, max_requests=10, concurrency=2, rating_share=1.0)
    assert loadgen.Traffic(plan).start().wait(timeout=120).rated == {}


@pytest.mark.parametrize(
    ("text", "expect"),
    [("canary=http://a/f, stable=http://b/f", {"canary": "http://a/f", "stable": "http://b/f"}), ("", {})],
)
def test_parse_feedback_urls(text: str, expect: dict[str, str]) -> None:
    assert loadgen.parse_pairs(text) == expect


@pytest.mark.parametrize("text", ["canary", "=http://a", "canary="])
def test_parse_feedback_urls_refuses_what_is_not_variant_equals_url(text: str) -> None:
    with pytest.raises(ValueError, match="expected variant=URL"):
        loadgen.parse_pairs(text)


def test_stops_after_its_duration(canary: ms.Running) -> None:
    plan = loadgen.Plan(url=f"{canary.url}/v1", rate=20, max_requests=100_000, duration=0.5)
    report = loadgen.Traffic(plan).start().wait(timeout=120)
    assert 0 < report.sent < 100  # the clock ended it, long before the count
    assert canary.model.served == report.sent


def test_stop_ends_it_early_and_waits_for_requests_in_flight(canary: ms.Running) -> None:
    t = loadgen.Traffic(loadgen.Plan(url=f"{canary.url}/v1", rate=50, max_requests=100_000, duration=600)).start()
    assert t.running
    report = t.stop()
    assert not t.running
    assert canary.model.served == report.sent == sum(report.answered.values()) + sum(report.failed.values())


def test_transport_errors_are_counted_not_raised() -> None:
    plan = loadgen.Plan(url="http://127.0.0.1:9/v1", rate=100, max_requests=5, timeout=2)
    report = loadgen.Traffic(plan).start().wait(timeout=120)
    assert report.sent == 5 and sum(report.errors.values()) == 5 and not report.answered


def test_command_line_prints_a_json_report(canary: ms.Running) -> None:
    args = [sys.executable, "-m", "controller.demo.loadgen", "--url", f"{canary.url}/v1"]
    args += ["--rate", "200", "--max-requests", "8", "--tenants", "gold=1"]
    done = subprocess.run(args, cwd=ROOT, capture_output=True, timeout=60, check=True)
    report = json.loads(done.stdout)
    assert report["sent"] == 8 and report["by_tenant"] == {"gold": 8}
    assert report["answered"] == {"canary": 6} and report["failed"] == {"canary": 2}
