"""What the deployment probes read: `/healthz` of `rollout run --metrics-port`, exactly as the README's
Deploy section describes it. 503 until the first good tick; 200 while the last good tick is younger
than three intervals; a skipped tick (another controller holds the lease) or a tick with an adapter
error is not good, so /healthz turns 503 three intervals after the last good one."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from controller import reconcile, telemetry
from tests.helpers import net

INTERVAL = 0.2  # seconds: three intervals pass quickly


@pytest.fixture
def served() -> Iterator[tuple[telemetry.Telemetry, str]]:
    tel = telemetry.Telemetry()
    tel.interval = INTERVAL
    server = tel.serve(net.free_port())
    try:
        yield tel, f"http://127.0.0.1:{server.server_address[1]}/healthz"
    finally:
        server.shutdown()
        server.server_close()


def status(url: str) -> int:
    return httpx.get(url, timeout=5).status_code


def test_503_until_the_first_good_tick_then_200(served: tuple[telemetry.Telemetry, str]) -> None:
    tel, url = served
    answer = httpx.get(url, timeout=5)
    assert (answer.status_code, answer.text) == (503, "no good tick recently\n")
    tel.record(reconcile.Tick(at=datetime.now(UTC)))
    answer = httpx.get(url, timeout=5)
    assert (answer.status_code, answer.text) == (200, "ok\n")


@pytest.mark.parametrize(
    "bad",
    [
        reconcile.Tick(at=datetime.now(UTC), skipped="controller 'other-1' holds the lease"),
        reconcile.Tick(at=datetime.now(UTC), outcomes=(reconcile.Outcome("bot", error="refused", adapter="router"),)),
    ],
    ids=["lease-held", "adapter-error"],
)
def test_503_three_intervals_after_the_last_good_tick(
    served: tuple[telemetry.Telemetry, str], bad: reconcile.Tick
) -> None:
    tel, url = served
    tel.record(reconcile.Tick(at=datetime.now(UTC)))
    assert status(url) == 200

    def still_ticking() -> bool:  # the loop goes on, but no tick is good: the last good one ages
        tel.record(bad)
        return status(url) == 503

    net.wait_for("/healthz to turn 503", still_ticking, deadline=30)
    assert tel.healthy() is False
    tel.record(reconcile.Tick(at=datetime.now(UTC)))
    assert status(url) == 200
