"""RouteState with cohorts: equality, raising, lowering and exposure, table-driven."""

from __future__ import annotations

import pytest

from controller import traffic

S, C = traffic.STABLE, traffic.CANARY
INTERNAL = traffic.CohortSplit("internal", "user_group", ("internal",), 100)
BETA = traffic.CohortSplit("beta", "tenant_tier", ("beta",), 25)


def state(canary: int, *cohorts: traffic.CohortSplit, shadow: int = 0) -> traffic.RouteState:
    return traffic.RouteState({S: 100 - canary, C: canary}, shadow, cohorts=cohorts)


def with_canary(c: traffic.CohortSplit, canary: int) -> traffic.CohortSplit:
    return traffic.CohortSplit(c.name, c.key, c.values, canary)


@pytest.mark.parametrize(
    ("now", "target", "raises"),
    [
        (state(0), state(0, INTERNAL), True),  # opening a cohort raises exposure
        (state(0, INTERNAL), state(0, INTERNAL), False),
        (state(0, INTERNAL, BETA), state(0, INTERNAL), False),  # closing one lowers it
        (state(0, BETA), state(0, with_canary(BETA, 50)), True),
        (state(0, with_canary(BETA, 50)), state(0, BETA), False),
        (state(30, INTERNAL), state(30, INTERNAL, BETA), False),  # beta at 25 is below everyone's 30: no cohort
        (state(5, INTERNAL), state(25, INTERNAL), True),
        (
            state(0, BETA),
            state(0, traffic.CohortSplit("beta", "tenant_tier", ("beta", "gold"), 25)),
            True,
        ),  # more users
        (state(0, BETA, INTERNAL), state(0, INTERNAL, BETA), True),  # reordered: users in both get internal's 100%
        (state(5, INTERNAL, BETA), state(5, INTERNAL, BETA), False),
    ],
)
def test_raises(now: traffic.RouteState, target: traffic.RouteState, raises: bool) -> None:
    assert now.raises(target) is raises


def test_lowering_takes_the_canary_out_of_every_cohort() -> None:
    down = state(5, INTERNAL, BETA, shadow=10).lowered()
    assert traffic.exposure_free(down)
    assert down.same_traffic(state(0))


def test_a_cohort_at_everyone_s_weight_compares_as_none() -> None:
    assert state(25, BETA).same_traffic(state(25))
    assert not state(5, BETA).same_traffic(state(5))
    assert not state(0, INTERNAL).same_traffic(state(0, traffic.CohortSplit("internal", "team", ("internal",), 100)))


def test_a_request_gets_its_first_cohort_s_weight() -> None:
    route = state(5, INTERNAL, BETA)
    assert route.canary_for({"user_group": "internal", "tenant_tier": "beta"}) == 100
    assert route.canary_for({"tenant_tier": "beta"}) == 25
    assert route.canary_for({"tenant_tier": "gold"}) == 5


def test_json_round_trip_and_describe() -> None:
    route = state(5, INTERNAL, BETA)
    assert traffic.RouteState.from_json(route.to_json()) == route
    assert "cohort beta (tenant_tier=beta) canary 25%" in route.describe()


@pytest.mark.parametrize(
    ("cohort", "says"),
    [
        ({"name": "b", "match": {}, "weights": {S: 100, C: 0}}, "one attribute"),
        ({"name": "b", "match": {"t": "beta"}, "weights": {S: 100, C: 0}}, "list of strings"),
        ({"name": "b", "match": {"t": ["beta"]}, "weights": {S: 60, C: 50}}, "summing to 100"),
        ({"name": "b", "match": {"t": ["beta"]}, "weights": {S: 50, C: 50, "x": 0}}, "'stable' and 'canary'"),
        ({"match": {"t": ["beta"]}, "weights": {S: 100, C: 0}}, "a 'name'"),
    ],
)
def test_malformed_cohorts_are_named(cohort: object, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        traffic.RouteState.from_json({"weights": {S: 100, C: 0}, "cohorts": [cohort]})
