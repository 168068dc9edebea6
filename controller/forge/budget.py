"""GitHub's request budget for one identity (a token or an App installation): token buckets, the queue
that paces mutations, and pauses. Pure (the clock and the sleep are injected); the GitHub forge asks it
before every request, and every forge of the process that uses the identity shares one (`Registry`).

A controller that shares the identity with k-1 others (`share`, asked on every request) takes 1/k of
each limit and spaces its mutations k times as far apart, so k controllers together stay within GitHub's.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum

from controller import errors, settings

MUTATING = frozenset({"POST", "PATCH", "PUT", "DELETE"})


class Kind(StrEnum):
    READ = "read"
    MUTATION = "mutation"  # content-creating, as GitHub counts it: paced, and in the per-minute limit


def kind_of(method: str) -> Kind:
    return Kind.MUTATION if method.upper() in MUTATING else Kind.READ


@dataclass
class Bucket:
    """`limit` requests a `window` (seconds), of which a controller with share k may use `limit / k`:
    it counts what it used, and forgets it at that rate (a leaky bucket), so a change of k applies at once."""

    limit: int
    window: float
    used: float = 0.0
    at: float = 0.0

    def wait(self, now: float, share: int) -> float:
        """Seconds until one more request fits (0: now)."""
        capacity = self.limit / share
        self.used = max(0.0, self.used - max(0.0, now - self.at) * capacity / self.window)
        self.at = now
        over = self.used + 1.0 - capacity
        return 0.0 if over <= 1e-9 else over * self.window / capacity

    def take(self) -> None:
        self.used += 1.0

    def give(self) -> None:
        self.used = max(0.0, self.used - 1.0)


@dataclass
class Ticket:
    """One admitted request; `free()` when its answer cost nothing (a `304`)."""

    kind: Kind
    charged: bool = True

    def free(self) -> None:
        self.charged = False


class Budget:
    """The budget of one identity in this process. `spend(kind)` admits a request or raises
    `errors.ForgeRateLimited` (nothing may be sent); `pause(seconds)` stops every request until then."""

    def __init__(
        self,
        limits: settings.GithubBudget | None = None,
        *,
        app: bool = False,
        share: Callable[[], int] = lambda: 1,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.limits = limits or settings.GithubBudget()
        if self.limits.mutation_interval < 0 or self.limits.queue_wait < 0 or self.limits.default_pause < 0:
            raise ValueError(f"github budget: intervals and waits must not be negative: {self.limits}")
        self.share, self.clock, self.sleep = share, clock, sleep
        total = self.limits.app_total_per_hour if app else self.limits.total_per_hour
        self.total = Bucket(total, 3600.0)
        self.content_minute = Bucket(self.limits.content_per_minute, 60.0)
        self.content_hour = Bucket(self.limits.content_per_hour, 3600.0)
        self.paused_until = 0.0
        self.pause_reason = ""
        self.spent: dict[Kind, int] = {Kind.READ: 0, Kind.MUTATION: 0}  # requests charged, for logs and benches
        self._last_mutation = float("-inf")  # when the last mutation's answer came
        self._lock = threading.Lock()
        self._queue = threading.Lock()  # one mutation at a time per identity

    def k(self) -> int:
        k = self.share()
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"github budget: the share must be a whole number of members >= 1, not {k!r}")
        return k

    def pause(self, seconds: float | None = None, *, reason: str = "rate limited") -> None:
        """No request until `seconds` from now (GitHub's default for a secondary limit when None)."""
        wait = self.limits.default_pause if seconds is None else max(0.0, seconds)
        with self._lock:
            until = self.clock() + wait
            if until > self.paused_until:
                self.paused_until, self.pause_reason = until, reason

    def paused_for(self) -> float:
        return max(0.0, self.paused_until - self.clock())

    @contextlib.contextmanager
    def spend(self, kind: Kind) -> Iterator[Ticket]:
        """Admit one request of `kind` for the time of the `with`: a mutation waits for its turn (at
        least `mutation_interval * k` after the previous one's answer), at most `queue_wait`."""
        self._take(kind)
        ticket = Ticket(kind)
        if kind is Kind.READ:
            try:
                yield ticket
            finally:
                if not ticket.charged:
                    self._give(kind)
            return
        if not self._queue.acquire(timeout=self.limits.queue_wait):
            self._give(kind)
            raise errors.ForgeRateLimited(
                "github budget: the mutation queue is busy", retry_after=self.limits.mutation_interval
            )
        sent = False
        try:
            wait = self._last_mutation + self.limits.mutation_interval * self.k() - self.clock()
            if wait > self.limits.queue_wait:
                self._give(kind)
                raise errors.ForgeRateLimited(f"github budget: the next mutation is {wait:.0f}s away", retry_after=wait)
            if wait > 0:
                self.sleep(wait)
            if (paused := self.paused_for()) > 0:  # paused while this one waited for its turn
                self._give(kind)
                raise errors.ForgeRateLimited(self._paused_message(paused), retry_after=paused)
            sent = True
            try:
                yield ticket
            finally:
                if not ticket.charged:
                    self._give(kind)
        finally:
            if sent:
                self._last_mutation = self.clock()
            self._queue.release()

    def _buckets(self, kind: Kind) -> list[Bucket]:
        return [self.total, self.content_minute, self.content_hour] if kind is Kind.MUTATION else [self.total]

    def _take(self, kind: Kind) -> None:
        k = self.k()
        with self._lock:
            now = self.clock()
            if now < self.paused_until:
                raise errors.ForgeRateLimited(
                    self._paused_message(self.paused_until - now), retry_after=self.paused_until - now
                )
            buckets = self._buckets(kind)
            wait = max(b.wait(now, k) for b in buckets)
            if wait > 0:
                raise errors.ForgeRateLimited(
                    f"github budget: this controller's share (1/{k}) of the {kind.value} budget is spent; "
                    f"more in {wait:.0f}s",
                    retry_after=wait,
                )
            for b in buckets:
                b.take()
            self.spent[kind] += 1

    def _give(self, kind: Kind) -> None:
        with self._lock:
            for b in self._buckets(kind):
                b.give()
            self.spent[kind] -= 1

    def _paused_message(self, seconds: float) -> str:
        return f"github budget: paused for {seconds:.0f}s more ({self.pause_reason})"


@dataclass
class Registry:
    """One `Budget` per identity in this process, so every forge (repository) using it shares it.
    `identity` is an opaque key the caller derives (never the token itself); the first caller's
    `share` is the identity's."""

    limits: settings.GithubBudget = field(default_factory=settings.GithubBudget)
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    _budgets: dict[str, Budget] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, identity: str, *, app: bool = False, share: Callable[[], int] = lambda: 1) -> Budget:
        with self._lock:
            if identity not in self._budgets:
                self._budgets[identity] = Budget(self.limits, app=app, share=share, clock=self.clock, sleep=self.sleep)
            return self._budgets[identity]
