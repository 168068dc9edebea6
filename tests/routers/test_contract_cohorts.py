"""The router contract for cohorts, against every backend: a router that carries cohorts (`carries.COHORTS`)
writes and reads back each cohort's match and weight; one that cannot refuses the write and writes nothing,
so a state it cannot serve is never reported as done. How each router really routes a cohort's requests is
tested beside it (its own evaluator, or real requests)."""

from __future__ import annotations

import pytest

from controller import carries, errors, traffic
from controller.routers import base
from tests.helpers.live_routers import BACKENDS, ROUTES, Backend
from tests.helpers.routes import read_one

S, C = traffic.STABLE, traffic.CANARY
MODEL = "openai/triage-llm-8b-2025-06-02"
SERVED = {
    S: traffic.Served(MODEL, "rollouts/t/prompts/v7.md", "aaaaaaaaaaaa", {"temperature": 0}, "Triage by urgency."),
    C: traffic.Served(MODEL, "rollouts/t/prompts/v8.md", "bbbbbbbbbbbb", {"temperature": 0}, "Triage by topic."),
}
INTERNAL = traffic.CohortSplit("internal", "user_group", ("internal",), 100)
BETA = traffic.CohortSplit("beta", "tenant_tier", ("beta", "trial"), 25)


def state(canary: int, *cohorts: traffic.CohortSplit) -> traffic.RouteState:
    return traffic.RouteState({S: 100 - canary, C: canary}, 0, SERVED, cohorts=cohorts)


def test_the_table_says_what_the_backends_do(backend: Backend) -> None:
    kind = backend.kind
    assert backend.supports_cohorts == (kind in carries.COHORTS)


def test_every_backend_is_in_the_suite() -> None:
    assert set(carries.COHORTS) <= {*BACKENDS, "unleash"}


@pytest.mark.parametrize(
    "desired",
    [
        state(0, INTERNAL),
        state(0, INTERNAL, BETA),
        state(5, INTERNAL, BETA),
        state(10, traffic.CohortSplit("internal", "user_group", ("internal",), 10), BETA),
        state(50, INTERNAL),
    ],
    ids=["internal", "internal+beta", "everyone-5", "internal-at-everyone-s", "everyone-50"],
)
def test_set_and_read_back(backend: Backend, desired: traffic.RouteState) -> None:
    if not backend.supports_cohorts:
        before = backend.raw()
        with pytest.raises(errors.RouterError, match="cohort"):
            backend.router.write({ROUTES[0]: desired})
        assert backend.raw() == before
        return
    live = base.apply(backend.router, {ROUTES[0]: desired}).state(ROUTES[0])
    assert live.same_traffic(desired) and live.cohorts == desired.cohorts
    again = read_one(backend.make(), ROUTES[0])
    assert again is not None and again.same_traffic(desired)


def test_a_cohort_widens_and_closes(backend: Backend) -> None:
    if not backend.supports_cohorts:
        pytest.skip(f"{backend.kind} cannot route by cohort; test_set_and_read_back checks that it refuses")
    for desired in (state(0, INTERNAL), state(0, INTERNAL, BETA), state(5, INTERNAL, BETA), state(100)):
        live = base.apply(backend.router, {ROUTES[0]: desired}).state(ROUTES[0])
        assert live.same_traffic(desired)
    assert read_one(backend.router, ROUTES[0]) == read_one(backend.make(), ROUTES[0])


def test_a_rollback_takes_the_canary_out_of_every_cohort(backend: Backend) -> None:
    if not backend.supports_cohorts:
        pytest.skip(f"{backend.kind} cannot route by cohort; test_set_and_read_back checks that it refuses")
    before = base.apply(backend.router, {ROUTES[0]: state(5, INTERNAL, BETA)}).state(ROUTES[0])
    live = base.apply(backend.router, {ROUTES[0]: before.lowered()}).state(ROUTES[0])
    assert traffic.exposure_free(live) and live.cohorts == ()


def test_cohorts_on_one_route_leave_the_other_alone(backend: Backend) -> None:
    if not backend.supports_cohorts:
        pytest.skip(f"{backend.kind} cannot route by cohort")
    base.apply(backend.router, {ROUTES[1]: state(5)}).state(ROUTES[1])
    base.apply(backend.router, {ROUTES[0]: state(0, INTERNAL, BETA)}).state(ROUTES[0])
    other = read_one(backend.router, ROUTES[1])
    assert other is not None and other.same_traffic(state(5)) and other.cohorts == ()
