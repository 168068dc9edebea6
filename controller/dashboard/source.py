"""Where the dashboard's pages get their look: `Cached` takes a dry-run look on demand (`rollout
dashboard`), at most one per `ttl` however many pages load at once; `Published` shows what the run loop
published after its last tick (`rollout run --metrics-port`), and never ticks itself."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from controller import errors, prometheus, redaction
from controller.dashboard import look


@dataclass(frozen=True)
class Snapshot:
    """The latest look, or why there is none (`error`), and when it was taken."""

    at: datetime
    look: look.Look | None = None
    error: str = ""


class Source(Protocol):
    """What the server reads: the latest snapshot, and the metrics adapter the plots query (or None)."""

    metrics: prometheus.Prometheus | None

    def __call__(self) -> Snapshot: ...


class Cached:
    """A look taken on demand and kept `ttl` seconds: a burst of page loads is one tick. A look that
    fails (the remote unreachable, a broken spec, anything else) is a snapshot with its error, kept as long."""

    def __init__(
        self,
        take: Callable[[], look.Look],
        *,
        ttl: float,
        metrics: prometheus.Prometheus | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.metrics = metrics
        self._take, self._ttl, self._clock = take, ttl, clock
        self._lock = threading.Lock()
        self._kept: tuple[float, Snapshot] | None = None

    def __call__(self) -> Snapshot:
        with self._lock:  # one look at a time; the others wait for it and share it
            if self._kept is not None and self._clock() - self._kept[0] < self._ttl:
                return self._kept[1]
            try:
                snapshot = Snapshot(datetime.now(UTC), self._take())
            except errors.RolloutError as exc:
                snapshot = Snapshot(datetime.now(UTC), error=f"could not look: {redaction.redact(str(exc))}")
            except Exception as exc:  # kept as long: no new tick per page load; its type only (no secret)
                snapshot = Snapshot(datetime.now(UTC), error=f"could not look: {type(exc).__name__}")
            self._kept = (self._clock(), snapshot)
            return snapshot


class Published:
    """The run loop's latest look: `publish` after each tick, `fail` when a tick or its look failed."""

    def __init__(self, *, metrics: prometheus.Prometheus | None = None) -> None:
        self.metrics = metrics
        self._latest = Snapshot(datetime.now(UTC), error="no tick yet: the controller is starting")

    def publish(self, seen: look.Look) -> None:
        self._latest = Snapshot(datetime.now(UTC), seen)

    def fail(self, why: str) -> None:
        """Keep the last look, and say why it is not newer (any URL's user:password@ taken out)."""
        self._latest = Snapshot(datetime.now(UTC), self._latest.look, error=redaction.redact(why))

    def __call__(self) -> Snapshot:
        return self._latest
