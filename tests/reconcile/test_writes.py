"""`reconcile.writes`, the write policy, on an in-memory router: one batch per router, a refused batch
halved until the refusal lands on its route, an unreachable router no route's fault, and backoff only
for writes that take the canary out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from controller import errors, settings, traffic
from controller.reconcile import writes
from controller.routers import base

ON = traffic.RouteState({traffic.STABLE: 90, traffic.CANARY: 10})
OFF = traffic.RouteState({traffic.STABLE: 100, traffic.CANARY: 0})


class Memory:
    """A router whose state is a dict: it refuses any batch holding a route in `refuses`, and is
    unreachable for its first `down` writes."""

    location = "memory"

    def __init__(self, name: str = "edge", *, refuses: frozenset[str] = frozenset(), down: int = 0) -> None:
        self.name = name
        self.refuses, self.down = refuses, down
        self.routes: dict[str, traffic.RouteState] = {}
        self.batches: list[int] = []  # the size of every write tried

    def read(self, routes: Sequence[str]) -> dict[str, base.Live]:
        return {r: self.routes.get(r) for r in routes}

    def write(self, states: Mapping[str, traffic.RouteState], fences: object = None) -> None:
        self.batches.append(len(states))
        if self.down:
            self.down -= 1
            raise errors.RouterUnavailable(f"router {self.name!r}: connection refused")
        bad = sorted(self.refuses & set(states))
        if bad:
            raise errors.RouterError(f"router {self.name!r}: route {bad[0]!r} cannot be served")
        self.routes.update(states)


def write(router: Memory, route: str, state: traffic.RouteState, *, urgent: bool = False) -> writes.Write:
    return writes.Write(router.name, router, route, state, urgent=urgent)


def written(batch: list[writes.Write], slept: list[float] | None = None) -> dict[tuple[str, str], writes.Written]:
    """`write_routes` with the default backoff, its waits recorded instead of slept."""
    return writes.write_routes(batch, backoff=settings.Backoff(), sleep=(slept if slept is not None else []).append)


def test_one_refused_route_in_a_thousand_costs_about_twenty_writes() -> None:
    router = Memory(refuses=frozenset({"r0617"}))
    routes = [f"r{i:04}" for i in range(1000)]
    done = written([write(router, r, ON) for r in routes])
    assert {k for k, w in done.items() if w.error is not None} == {("edge", "r0617")}
    assert isinstance(done[("edge", "r0617")].error, errors.RouterError)
    assert len(router.routes) == 999
    assert len(router.batches) <= 2 * 10 + 1  # the first write, then two halves per level of ten


def test_an_unreachable_router_fails_every_route_in_one_write() -> None:
    router = Memory(down=100)
    done = written([write(router, r, ON) for r in ("a", "b", "c", "d")])
    assert router.batches == [4]
    assert all(isinstance(w.error, errors.RouterUnavailable) and w.attempts == 1 for w in done.values())


@pytest.mark.parametrize(
    ("urgent", "attempts", "slept", "confirmed"),
    [(True, 3, [0.25, 0.5], True), (False, 1, [], False)],
    ids=["taking-the-canary-out-is-retried", "raising-it-is-not"],
)
def test_only_writes_that_take_the_canary_out_are_retried(
    urgent: bool, attempts: int, slept: list[float], confirmed: bool
) -> None:
    router = Memory(down=2)
    waited: list[float] = []
    done = written([write(router, "a", OFF if urgent else ON, urgent=urgent)], waited)
    assert done[("edge", "a")].attempts == attempts
    assert (done[("edge", "a")].error is None) is confirmed
    assert waited == slept


def test_a_refused_write_is_not_tried_and_a_route_with_nothing_to_write_is_absent() -> None:
    router = Memory()
    why = errors.RouterStateError("no live state: it would create router state")
    refused = writes.Write("edge", router, "a", OFF, urgent=True, refused=why)
    idle = writes.Write("edge", router, "b", None)
    done = written([refused, idle])
    assert done == {("edge", "a"): writes.Written(0, why)}
    assert router.batches == []


def test_each_router_gets_its_own_batch() -> None:
    one, two = Memory("one"), Memory("two", refuses=frozenset({"x"}))
    done = written([write(one, "x", ON), write(two, "x", ON), write(one, "y", ON)])
    assert one.batches == [2] and two.batches == [1]
    assert done[("one", "x")].error is None and done[("two", "x")].error is not None
