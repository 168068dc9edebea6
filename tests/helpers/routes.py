"""Reading one route through the batch `Router.read`, for tests that look at one route at a time."""

from __future__ import annotations

from typing import Any

from controller import traffic
from controller.routers import base


def read_one(router: Any, route: str) -> traffic.RouteState | None:
    """`router.read([route])`'s answer for `route`; raises that route's own error, as a test wants it."""
    answer = router.read([route])
    assert set(answer) == {route}, f"read([{route!r}]) answered for {sorted(answer)}"
    seen: base.Live = answer[route]
    if isinstance(seen, Exception):
        raise seen
    return seen
