"""Small process helpers shared by the suite: a free local port, and polling until something is ready.

The only definitions of `free_port` and `wait_for` in tests/ (tests/test_layout.py checks it).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now: for a server to bind, or as an
    address that refuses connections."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(
    what: str,
    check: Callable[[], T | None],
    *,
    deadline: float = 30.0,
    every: float = 0.05,
    tolerate: tuple[type[BaseException], ...] = (),
) -> T:
    """Call `check` until it returns something truthy and return that; raise TimeoutError naming `what`
    after `deadline` seconds. Exceptions of the `tolerate` types count as "not yet" (the last one is in
    the message); any other propagates. A readiness wait, not a timed assertion: the deadline only
    stops a hung test."""
    end = time.monotonic() + deadline
    last: BaseException | None = None
    while time.monotonic() < end:
        try:
            result = check()
            if result:
                return result
        except tolerate as exc:
            last = exc
        time.sleep(every)
    raise TimeoutError(f"gave up waiting for {what}" + (f" (last error: {last!r})" if last else ""))
