"""The router contract, run against every backend (file, a real Envoy, a flagd flag file, a real LiteLLM proxy).

Each test drives the router only through `read`, `write` and `base.apply` (write a batch, then read
the batch back in one read).
"""

from __future__ import annotations

import threading

import pytest

from controller import errors, traffic
from controller.routers import base
from tests.helpers.live_routers import ROUTES, Backend
from tests.helpers.routes import read_one

S, C = traffic.STABLE, traffic.CANARY
MODEL = "openai/triage-llm-8b-2025-06-02"  # a provider LiteLLM knows: its callback gives the deployments this model
SERVED = {
    S: traffic.Served(MODEL, "rollouts/t/prompts/v7.md", "aaaaaaaaaaaa", {"temperature": 0}, "Triage by urgency."),
    C: traffic.Served(MODEL, "rollouts/t/prompts/v8.md", "bbbbbbbbbbbb", {"temperature": 0}, "Triage by topic."),
}


def state(canary: int, shadow: int = 0) -> traffic.RouteState:
    return traffic.RouteState({S: 100 - canary, C: canary}, shadow, SERVED)


ROLLBACK = state(0, 0)


def shadow(backend: Backend, percent: int) -> int:
    """`percent` where the backend mirrors that share of traffic, 100 where it mirrors every request or
    none (LiteLLM), 0 where it cannot mirror (Unleash); the refusals are tested below."""
    if not backend.supports_shadow:
        return 0
    return 100 if percent and backend.mirrors_all_only else percent


def refuses_shadow(backend: Backend, percent: int) -> bool:
    return bool(percent) and (not backend.supports_shadow or (backend.mirrors_all_only and percent != 100))


@pytest.mark.parametrize(
    "desired",
    [state(0), state(1), state(5), state(25), state(50), state(99), state(100), state(0, 100), state(10, 37)],
    ids=["0%", "1%", "5%", "25%", "50%", "99%", "100%", "shadow-100", "10%-shadow-37"],
)
def test_set_and_read_back(backend: Backend, desired: traffic.RouteState) -> None:
    if refuses_shadow(backend, desired.shadow):
        before = backend.raw()
        with pytest.raises(errors.RouterError, match="mirror"):
            backend.router.write({ROUTES[0]: desired})
        assert backend.raw() == before
        return
    live = base.apply(backend.router, {ROUTES[0]: desired}).state(ROUTES[0])
    assert live.same_traffic(desired)
    again = read_one(backend.make(), ROUTES[0])
    assert again is not None and again.same_traffic(desired)


def test_rollback_from_any_state(backend: Backend) -> None:
    base.apply(backend.router, {ROUTES[0]: state(50, shadow(backend, 100))}).state(ROUTES[0])
    live = base.apply(backend.router, {ROUTES[0]: ROLLBACK}).state(ROUTES[0])
    assert (live.weight(S), live.weight(C), live.shadow) == (100, 0, 0)


def test_a_route_leaves_the_others_alone(backend: Backend) -> None:
    base.apply(backend.router, {ROUTES[0]: state(25, shadow(backend, 10))}).state(ROUTES[0])
    base.apply(backend.router, {ROUTES[1]: state(5)}).state(ROUTES[1])
    base.apply(backend.router, {ROUTES[0]: ROLLBACK}).state(ROUTES[0])
    other = read_one(backend.router, ROUTES[1])
    assert other is not None and other.same_traffic(state(5))


def test_a_batch_sets_every_route_in_it(backend: Backend) -> None:
    desired = {ROUTES[0]: state(25, shadow(backend, 10)), ROUTES[1]: state(5)}
    applied = base.apply(backend.router, desired)
    assert dict(applied.failed) == {}
    for route, want in desired.items():
        assert applied.state(route).same_traffic(want), route
        again = read_one(backend.make(), route)
        assert again is not None and again.same_traffic(want), route


def test_a_batch_with_a_refused_route_writes_nothing(backend: Backend) -> None:
    if backend.refused is None:
        pytest.skip(f"the {backend.kind} router takes any route and any split")
    base.apply(backend.router, {ROUTES[0]: state(5)}).state(ROUTES[0])
    before = backend.raw()
    route, refused = backend.refused
    with pytest.raises(errors.RouterError, match=f"route {route!r}"):  # the message names the route at fault
        backend.router.write({ROUTES[0]: state(50), route: refused})
    assert backend.raw() == before
    live = read_one(backend.router, ROUTES[0])
    assert live is not None and live.same_traffic(state(5))


def test_shadow_on_and_off(backend: Backend) -> None:
    if not backend.supports_shadow:
        pytest.skip(f"{backend.kind} cannot mirror traffic; test_set_and_read_back checks that it refuses")
    on = base.apply(backend.router, {ROUTES[0]: state(0, 100)}).state(ROUTES[0])
    assert on.shadow == 100 and on.weight(C) == 0
    off = base.apply(backend.router, {ROUTES[0]: state(0, 0)}).state(ROUTES[0])
    assert off.shadow == 0 and off.weight(S) == 100


def test_set_is_idempotent(backend: Backend) -> None:
    first = base.apply(backend.router, {ROUTES[0]: state(5, shadow(backend, 50))}).state(ROUTES[0])
    raw = backend.raw()
    second = base.apply(backend.router, {ROUTES[0]: state(5, shadow(backend, 50))}).state(ROUTES[0])
    assert second == first
    assert backend.raw() == raw


def test_all_weights_zero_is_unrepresentable() -> None:
    with pytest.raises(ValueError, match="sum to 100"):
        traffic.RouteState({S: 0, C: 0})


def test_two_writers_at_once(backend: Backend) -> None:
    """Two writers on two routes, interleaved: neither loses the other's last write."""
    writers = [backend.make(), backend.make()]
    failures: list[BaseException] = []
    last = {ROUTES[0]: state(0), ROUTES[1]: state(0)}

    def run(router: base.Router, route: str, offset: int) -> None:
        try:
            for i in range(15):
                desired = state((i * 7 + offset) % 101, shadow(backend, i % 3 * 50))
                router.write({route: desired})
                last[route] = desired
        except BaseException as exc:  # reported below, in the test's thread
            failures.append(exc)

    threads = [
        threading.Thread(target=run, args=(w, r, n)) for n, (w, r) in enumerate(zip(writers, ROUTES, strict=True))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    for route in ROUTES:
        live = read_one(backend.router, route)
        assert live is not None and live.same_traffic(last[route]), route


def test_two_writers_on_one_route_never_mix(backend: Backend) -> None:
    """Concurrent writes of whole states to one route: the result is one of them, never a blend."""
    a, b = state(10, 0), state(90, shadow(backend, 100))
    barrier = threading.Barrier(2)

    def run(router: base.Router, desired: traffic.RouteState) -> None:
        barrier.wait()
        for _ in range(10):
            router.write({ROUTES[0]: desired})

    threads = [threading.Thread(target=run, args=(backend.make(), s)) for s in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    live = read_one(backend.router, ROUTES[0])
    assert live is not None and (live.same_traffic(a) or live.same_traffic(b))


def test_unreachable_router_is_a_retryable_error(backend: Backend) -> None:
    before = backend.raw()
    router = backend.unreachable()
    with pytest.raises(errors.RouterUnavailable) as raised:
        router.write({ROUTES[0]: state(50)})
    assert raised.value.retryable
    assert repr(router.name) in str(raised.value)
    with pytest.raises(errors.RouterUnavailable):
        read_one(router, ROUTES[0])
    assert backend.raw() == before  # the reachable live state was not touched


def test_malformed_live_state_is_a_clear_error_of_that_route_only(backend: Backend) -> None:
    base.apply(backend.router, {ROUTES[0]: state(5), ROUTES[1]: state(10)}).state(ROUTES[1])
    backend.corrupt(ROUTES[0])
    broken = backend.raw()
    answer = backend.router.read(list(ROUTES))
    error = answer[ROUTES[0]]
    assert isinstance(error, errors.RouterStateError), error
    assert not error.retryable
    assert repr(backend.router.name) in str(error) and repr(ROUTES[0]) in str(error)
    other = answer[ROUTES[1]]  # the broken route hides no other route's state
    assert isinstance(other, traffic.RouteState) and other.same_traffic(state(10))
    with pytest.raises(errors.RouterStateError):
        read_one(backend.router, ROUTES[0])
    assert backend.raw() == broken  # reading changed nothing
    applied = base.apply(backend.router, {ROUTES[1]: state(20)})  # nor does it stop another route's write
    assert applied.state(ROUTES[1]).same_traffic(state(20))
    assert isinstance(backend.router.read([ROUTES[0]])[ROUTES[0]], errors.RouterStateError)


def test_a_route_with_malformed_state_is_still_lowered(backend: Backend) -> None:
    """Lowering exposure is never refused: the rollback's write replaces the broken route's state."""
    base.apply(backend.router, {ROUTES[0]: state(5), ROUTES[1]: state(10)}).state(ROUTES[1])
    backend.corrupt(ROUTES[0])
    live = base.apply(backend.router, {ROUTES[0]: ROLLBACK}).state(ROUTES[0])
    assert (live.weight(S), live.weight(C), live.shadow) == (100, 0, 0)
    other = read_one(backend.router, ROUTES[1])
    assert other is not None and other.same_traffic(state(10))


def test_a_batch_read_answers_every_route_asked(backend: Backend) -> None:
    base.apply(backend.router, {ROUTES[0]: state(25), ROUTES[1]: state(5)}).state(ROUTES[0])
    unknown = "no-such-route"
    answer = backend.make().read([ROUTES[1], unknown, ROUTES[0]])
    assert set(answer) == {ROUTES[0], ROUTES[1], unknown}
    assert answer[unknown] is None
    for route, want in ((ROUTES[0], state(25)), (ROUTES[1], state(5))):
        live = answer[route]
        assert isinstance(live, traffic.RouteState) and live.same_traffic(want), route
    assert backend.router.read([]) == {}


def test_no_third_party_exception_escapes(backend: Backend) -> None:
    """Every failure surfaces as one of ours (RouterError), never httpx, OSError or json."""
    router = backend.unreachable()
    for call in (lambda: read_one(router, ROUTES[0]), lambda: router.write({ROUTES[0]: ROLLBACK})):
        with pytest.raises(errors.RouterError):
            call()
