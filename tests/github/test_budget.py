"""The request budget of one GitHub identity, on its own: buckets, the share, pacing and pauses, on a
clock the tests move (sleeping moves it too)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from controller import errors, settings
from controller.forge import budget
from tests.helpers.fake_time import FakeTime as Time

READ, MUTATION = budget.Kind.READ, budget.Kind.MUTATION


SMALL = settings.GithubBudget(
    total_per_hour=10, app_total_per_hour=20, content_per_minute=3, content_per_hour=5, mutation_interval=1.0
)


def make(time: Time, *, k: int = 1, app: bool = False, limits: settings.GithubBudget = SMALL) -> budget.Budget:
    return budget.Budget(limits, app=app, share=lambda: k, clock=time.clock, sleep=time.sleep)


def once(b: budget.Budget, kind: budget.Kind) -> None:
    with b.spend(kind):
        pass


def admitted(b: budget.Budget, kind: budget.Kind, n: int, *, free: bool = False) -> int:
    """How many of `n` requests of `kind` are admitted, one after the other."""
    done = 0
    for _ in range(n):
        try:
            with b.spend(kind) as ticket:
                if free:
                    ticket.free()
        except errors.ForgeRateLimited:
            continue
        done += 1
    return done


@pytest.mark.parametrize(
    ("kind", "k", "app", "free", "expect"),
    [
        (READ, 1, False, False, 10),
        (READ, 2, False, False, 5),
        (READ, 3, False, False, 3),
        (READ, 1, True, False, 20),
        (READ, 1, False, True, 30),
        (MUTATION, 1, False, False, 3),
        (MUTATION, 2, False, False, 1),
    ],
    ids=["reads-all", "reads-half", "reads-third", "app-installation", "304s-are-free", "mutations-per-minute", "k2"],
)
def test_what_a_burst_gets(kind: budget.Kind, k: int, app: bool, free: bool, expect: int) -> None:
    b = make(Time(), k=k, app=app)
    assert admitted(b, kind, 30, free=free) == expect


def test_the_bucket_refills_with_time() -> None:
    t = Time()
    b = make(t)
    assert admitted(b, READ, 10) == 10
    with pytest.raises(errors.ForgeRateLimited, match=r"1/1\) of the read budget is spent; more in 360s") as caught:
        once(b, READ)
    assert caught.value.retryable and caught.value.retry_after == pytest.approx(360.0)
    t.now += 360.0
    assert admitted(b, READ, 3) == 1


def test_mutations_spend_the_hourly_content_limit_too() -> None:
    t = Time()
    b = make(t)
    assert admitted(b, MUTATION, 3) == 3
    t.now += 60
    assert admitted(b, MUTATION, 3) == 2  # 5 an hour
    assert admitted(b, READ, 10) == 5  # and every mutation is a request: 10 in all


def test_mutations_are_paced_from_the_last_answer() -> None:
    t = Time()
    b = make(t, limits=replace(SMALL, content_per_minute=80, content_per_hour=500, total_per_hour=5000))
    for _ in range(3):
        with b.spend(MUTATION):
            t.now += 0.25  # the request takes a quarter of a second
    assert t.slept == [1.0, 1.0]  # reads do not wait
    with b.spend(READ):
        pass
    assert t.slept == [1.0, 1.0]


def test_a_shared_identity_paces_k_times_apart() -> None:
    t = Time()
    b = make(t, k=2, limits=replace(SMALL, content_per_minute=80, content_per_hour=500, total_per_hour=5000))
    for _ in range(2):
        with b.spend(MUTATION):
            pass
    assert t.slept == [2.0]


def test_a_turn_too_far_away_is_refused_not_waited_for() -> None:
    t = Time()
    b = make(t, limits=replace(SMALL, mutation_interval=30.0, queue_wait=5.0))
    with b.spend(MUTATION):
        pass
    with pytest.raises(errors.ForgeRateLimited, match="next mutation is 30s away"):
        once(b, MUTATION)
    assert t.slept == [] and b.spent[MUTATION] == 1


@pytest.mark.parametrize(
    ("seconds", "expect"), [(120.0, 120.0), (None, 60.0), (-5.0, 0.0)], ids=["retry-after", "default", "negative"]
)
def test_a_pause_stops_every_request_until_then(seconds: float | None, expect: float) -> None:
    t = Time()
    b = make(t)
    b.pause(seconds, reason="a secondary rate limit")
    assert b.paused_for() == expect
    if expect:
        for kind in (READ, MUTATION):
            with pytest.raises(errors.ForgeRateLimited, match=r"paused for \d+s more \(a secondary rate limit\)"):
                once(b, kind)
        assert b.spent == {READ: 0, MUTATION: 0}
    t.now += expect
    assert admitted(b, READ, 1) == 1


def test_a_shorter_pause_does_not_cut_a_longer_one() -> None:
    t = Time()
    b = make(t)
    b.pause(100)
    b.pause(10)
    assert b.paused_for() == 100


def test_the_share_is_read_on_every_request() -> None:
    t = Time()
    members = [1]
    b = budget.Budget(SMALL, share=lambda: members[0], clock=t.clock, sleep=t.sleep)
    assert admitted(b, READ, 4) == 4
    members[0] = 2  # a second member joined: this one's share is 5, and 4 are gone
    assert admitted(b, READ, 4) == 1


@pytest.mark.parametrize("k", [0, -1], ids=["zero", "negative"])
def test_a_bad_share_is_a_clear_error(k: int) -> None:
    b = make(Time(), k=k)
    with pytest.raises(ValueError, match="share must be a whole number of members >= 1"):
        once(b, READ)


def test_the_registry_gives_one_budget_per_identity() -> None:
    registry = budget.Registry(SMALL)
    one = registry.get("token:abc")
    assert registry.get("token:abc") is one
    assert registry.get("token:def") is not one
    assert registry.get("app:1:2", app=True).total.limit == SMALL.app_total_per_hour


@pytest.mark.parametrize(
    ("method", "kind"),
    [("GET", READ), ("post", MUTATION), ("PATCH", MUTATION), ("PUT", MUTATION), ("DELETE", MUTATION)],
)
def test_kind_of(method: str, kind: budget.Kind) -> None:
    assert budget.kind_of(method) is kind
