"""controller.split (pure): which rollouts get the traffic-split check, the fixed origins it counts
from as a step ages, and the row of evidence it makes from request counts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller import gates, judge, load, spec, split, traffic

V = gates.Verdict
INTERVAL = timedelta(minutes=5)  # the analysis interval
SINCE = datetime(2026, 11, 18, 12, 3, 17, tzinfo=UTC)  # a step that began off the grid
CANARY_REV = "c0ffee000001"


def config(router_type: str = "file") -> spec.ControllerConfig:
    routers: dict[str, Any] = {
        "file": {"type": "file"},
        "envoy": {"type": "envoy", "admin": "http://127.0.0.1:9901"},
        "litellm": {"type": "litellm", "url": "http://127.0.0.1:4000"},
        "flagd": {"type": "flagd", "path": "flags.json"},
    }
    return spec.ControllerConfig.model_validate(
        {"apiVersion": "rollouts/v1", "kind": "ControllerConfig", "routers": {"edge": routers[router_type]}}
    )


def rollout(
    *, step: int = 2, analysis: dict[str, Any] | None = None, phase: str = "Progressing", canary: bool = True
) -> load.LoadedRollout:
    data: dict[str, Any] = {
        "apiVersion": "rollouts/v1",
        "kind": "Rollout",
        "metadata": {"name": "bot"},
        "spec": {
            "router": "edge",
            "route": "chat",
            "stable": {"model": "m-2025-01-01"},
            "steps": [
                {"shadow": 100, "for": "1h"},
                {"weight": 0, "for": "1h"},
                {"weight": 10, "for": "2h", "minSamples": 500},
                {"weight": 100},
            ],
            "analysis": {"interval": "5m", **(analysis or {})},
        },
        "status": {"revision": CANARY_REV, "step": step, "phase": phase},
    }
    revisions = {"stable": "5ab1e0000001"}
    if canary:
        data["spec"]["canary"] = {"model": "m-2025-06-01"}
        revisions["canary"] = CANARY_REV
    return load.LoadedRollout("rollouts/bot/rollout.yaml", spec.Rollout.model_validate(data), revisions, {})


# -- which rollouts -------------------------------------------------------------------------------

APPLIES = [
    ("weight-10-file", rollout(), "file", True),
    ("weight-10-envoy", rollout(), "envoy", True),
    ("weight-10-litellm", rollout(), "litellm", True),
    ("flagd-splits-by-user", rollout(), "flagd", False),
    ("opted-out", rollout(analysis={"trafficSplit": False}), "file", False),
    ("shadow-step", rollout(step=0), "file", False),
    ("weight-0", rollout(step=1), "file", False),
    ("weight-100", rollout(step=3), "file", False),
    ("rolled-back", rollout(phase="RolledBack"), "file", False),
    ("no-canary", rollout(canary=False), "file", False),
]


@pytest.mark.parametrize(("loaded", "router", "want"), [c[1:] for c in APPLIES], ids=[c[0] for c in APPLIES])
def test_applies(loaded: load.LoadedRollout, router: str, want: bool) -> None:
    assert split.applies(loaded, config(router)) is want
    found = split.target(loaded, config(router), since=SINCE, at=SINCE + timedelta(hours=1))
    assert (found is not None) is want


def test_target_expects_the_weight_and_asks_the_gates_minimum() -> None:
    t = split.target(rollout(), config(), since=SINCE, at=SINCE + timedelta(hours=1))
    assert t is not None and t.look is not None
    assert (t.weight, t.expected, t.min_samples, t.router_type) == (10, 0.1, 500, "file")
    assert split.target(rollout(), config(), since=None, at=SINCE).look is None  # type: ignore[union-attr]


# -- the origins ------------------------------------------------------------------------------------

LOOKS = [
    # (id, age, level or None)
    ("first-interval", timedelta(minutes=4), None),
    ("second-interval", timedelta(minutes=9), None),  # the origin (12:10) is not an interval back yet
    ("level-0", timedelta(minutes=12), 0),
    ("level-0-late", timedelta(minutes=39), 0),
    ("level-1", timedelta(minutes=40), 1),
    ("level-2", timedelta(minutes=80), 2),
    ("a-day", timedelta(days=1), 6),
    ("a-week", timedelta(days=7), 8),
]


@pytest.mark.parametrize(("age", "level"), [c[1:] for c in LOOKS], ids=[c[0] for c in LOOKS])
def test_look(age: timedelta, level: int | None) -> None:
    found = split.look(since=SINCE, at=SINCE + age, interval=INTERVAL)
    if level is None:
        assert found is None
        return
    assert found is not None and found.level == level
    grid = INTERVAL * 2**level
    assert found.origin.timestamp() % grid.total_seconds() == 0  # on the grid, so rollouts share windows
    assert SINCE + grid <= found.origin < SINCE + 2 * grid  # leaves out the first interval at least
    assert found.window >= INTERVAL and found.window >= age / 2 - INTERVAL  # keeps at least about half the step
    assert found.alpha == judge.DEFAULT_SPLIT_ALPHA / 2 ** (level + 1)
    assert found.promql_window == f"{int(found.window.total_seconds() * 1000)}ms"


def test_one_origin_per_level_and_the_levels_spend_at_most_alpha() -> None:
    """A level is one growing count (one origin), so its test is valid over all its looks; the union
    over a step's levels spends at most alpha."""
    origins: dict[int, set[datetime]] = {}
    alphas: dict[int, float] = {}
    for minutes in range(0, 14 * 24 * 60, 1):
        found = split.look(since=SINCE, at=SINCE + timedelta(minutes=minutes, seconds=23), interval=INTERVAL)
        if found is not None:
            origins.setdefault(found.level, set()).add(found.origin)
            alphas[found.level] = found.alpha
    assert all(len(o) == 1 for o in origins.values()), origins
    assert list(origins) == sorted(origins) == list(range(len(origins)))
    assert sum(alphas.values()) <= judge.DEFAULT_SPLIT_ALPHA


def test_rollouts_at_similar_ages_share_a_few_windows() -> None:
    """A thousand steps begun at any second of the last week: the windows one query needs are bounded
    by the levels, not by the rollouts."""
    at = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)
    windows = set()
    for n in range(1000):
        since = at - timedelta(seconds=(n * 604_799) // 1000 + 1)
        found = split.look(since=since, at=at, interval=INTERVAL)
        if found is not None:
            windows.add(found.promql_window)
    assert 10 < len(windows) <= 7 + 5 * 10


# -- evidence ---------------------------------------------------------------------------------------


def target(look: split.Look | None = None) -> split.Target:
    at = SINCE + timedelta(hours=1)
    return split.Target("bot", "chat", "envoy", 10, 0.1, 100, look or split.look(since=SINCE, at=at, interval=INTERVAL))


def test_evidence_of_a_mismatch() -> None:
    e = split.evidence(target(), source="envoy", query="q", counts={traffic.STABLE: 1022.0, traffic.CANARY: 978.0})
    assert (e.verdict, e.name, e.on_fail, e.thresholds, e.kind) == (
        V.FAIL,
        "traffic_split",
        "hold",
        {"share": 0.1},
        "split",
    )
    [row] = e.segments
    assert row.counted and row.canary.samples == 978 and row.stable.samples == 1022
    assert row.canary.value == pytest.approx(0.489)
    assert row.reason.startswith("the router is not splitting as configured: canary 48.90% of 2,000 requests")
    assert "weight 10" in row.reason and "requests since 2026-11-18T12:20:00Z" in row.reason
    [check] = row.checks
    assert (check.name, check.unit, check.limit) == ("share", "rate", 0.1)
    assert split.is_split(e)


@pytest.mark.parametrize(
    ("counts", "want"),
    [
        ({traffic.STABLE: 9000.0, traffic.CANARY: 1000.0}, V.PASS),
        ({traffic.STABLE: 5000.0}, V.FAIL),  # no canary series at all: it got nothing
        ({traffic.CANARY: 50.0}, V.FAIL),  # no stable series: everything went to the canary
        (None, V.INCONCLUSIVE),  # neither: no data
    ],
    ids=["right", "canary-series-absent", "stable-series-absent", "no-series"],
)
def test_evidence_reads_an_absent_variant_as_no_requests(counts: dict[str, float] | None, want: V) -> None:
    assert split.evidence(target(), source="app", counts=counts).verdict is want


def test_evidence_before_the_check_is_judged_and_on_error() -> None:
    young = split.Target("bot", "chat", "file", 10, 0.1, 100, None, waiting="not judged in the step's first 10m")
    e = split.evidence(young, source="app")
    assert e.verdict is V.INCONCLUSIVE and not e.segments[0].counted
    assert "first 10m" in e.segments[0].reason
    broken = split.evidence(target(), source="app", query="q", error="prometheus is down")
    assert broken.verdict is V.ERROR and broken.error == "prometheus is down"
