"""The file router's reference reader: cohorts first, sticky per user, and a canary user stays one as the weight grows."""

from __future__ import annotations

from pathlib import Path

from controller import traffic
from controller.routers import base, file

S, C = traffic.STABLE, traffic.CANARY
BETA = traffic.CohortSplit("beta", "tenant_tier", ("beta", "trial"), 50)
INTERNAL = traffic.CohortSplit("internal", "user_group", ("internal",), 100)
USERS = [f"user-{i}" for i in range(4000)]


def entry(tmp_path: Path, canary: int, *cohorts: traffic.CohortSplit) -> dict:
    router = file.FileRouter("local", tmp_path / "routes.json")
    desired = traffic.RouteState({S: 100 - canary, C: canary}, cohorts=cohorts)
    assert base.apply(router, {"chat": desired}).state("chat") == desired  # written, read back with its cohorts
    return router.routes()["chat"]


def share(e: dict, attributes: dict[str, str]) -> float:
    return sum(file.pick(e, user=u, attributes=attributes, route="chat") == C for u in USERS) / len(USERS)


def test_each_cohort_gets_its_split(tmp_path: Path) -> None:
    e = entry(tmp_path, 5, INTERNAL, BETA)
    assert share(e, {"user_group": "internal"}) == 1.0
    assert share(e, {"user_group": "internal", "tenant_tier": "beta"}) == 1.0  # the first cohort listed wins
    assert 0.45 < share(e, {"tenant_tier": "trial"}) < 0.55
    assert 0.03 < share(e, {"tenant_tier": "gold"}) < 0.07
    assert 0.03 < share(e, {}) < 0.07


def test_a_user_keeps_the_variant_and_a_canary_user_stays_one(tmp_path: Path) -> None:
    at5 = entry(tmp_path, 5)
    at25 = entry(tmp_path, 25)
    first = [file.pick(at5, user=u, route="chat") for u in USERS]
    assert first == [file.pick(at5, user=u, route="chat") for u in USERS]  # sticky
    later = [file.pick(at25, user=u, route="chat") for u in USERS]
    assert all(b == C for a, b in zip(first, later, strict=True) if a == C)  # never taken back as it widens
    assert sum(v == C for v in later) > sum(v == C for v in first)
