"""The write pass of a tick, and its policy: every route that changes, one batch per router, written
and read back; a batch the router refuses is halved until the refusal lands on the route that caused
it; a write that takes exposure away is retried with backoff within the tick.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from controller import errors, settings, traffic
from controller.routers import base

log = logging.getLogger("rollout.reconcile")


@dataclass(frozen=True)
class Write:
    """One route's write as a decision asks for it."""

    router_name: str  # as controller.yaml names it
    router: base.Router
    route: str
    state: traffic.RouteState | None  # what to write; None: nothing
    urgent: bool = False  # it takes the canary out: retried with backoff, never reported done unconfirmed
    refused: errors.RouterError | None = None  # why it is not even tried (it would create router state)
    fence: traffic.Fence | None = None  # the owner's token, for a router that records it (docs/sharding.md)

    @property
    def key(self) -> tuple[str, str]:
        """(router, route): one rollout each (loading refuses a second rollout of a route)."""
        return self.router_name, self.route


@dataclass(frozen=True)
class Written:
    """One route's write in its router's batch: attempts made, and the last error (None: confirmed)."""

    attempts: int
    error: Exception | None = None


def write_routes(
    writes: Sequence[Write], *, backoff: settings.Backoff, sleep: Callable[[float], None] = time.sleep
) -> dict[tuple[str, str], Written]:
    """Every route the decisions change, one batch per router, written and read back; the result
    per (router, route). Urgent routes (taking the canary out) whose write failed retryably (the
    router unreachable, the write not confirmed) are retried with `backoff`, together, in the tick
    (`sleep` waits between tries)."""
    batches: dict[str, list[Write]] = {}
    out: dict[tuple[str, str], Written] = {}
    for w in writes:
        if w.refused is not None:
            out[w.key] = Written(0, w.refused)
        elif w.state is not None:
            batches.setdefault(w.router_name, []).append(w)
    for name, group in batches.items():
        states = {w.route: w.state for w in group if w.state is not None}
        urgent = {w.route for w in group if w.urgent}
        fences = {w.route: w.fence for w in group if w.fence is not None}
        results = _write_batch(group[0].router, states, fences, urgent=urgent, backoff=backoff, sleep=sleep)
        out.update(((name, route), written) for route, written in results.items())
    return out


def _write_batch(
    router: base.Router,
    states: Mapping[str, traffic.RouteState],
    fences: base.Fences,
    *,
    urgent: set[str],
    backoff: settings.Backoff,
    sleep: Callable[[float], None],
) -> dict[str, Written]:
    """One router's batch: (attempts, the last error or None) per route."""
    delays = backoff.delays()
    results = _apply_isolated(router, states, fences)
    attempts = dict.fromkeys(states, 1)
    for attempt, delay in enumerate(delays, start=2):
        retry = {r: states[r] for r in sorted(urgent) if r in states and _retryable(results[r])}
        if not retry:
            break
        for route in retry:
            log.warning("router %s route %s: %s; retrying in %.2fs", router.name, route, results[route], delay)
        sleep(delay)
        results.update(_apply_isolated(router, retry, fences))
        attempts.update(dict.fromkeys(retry, attempt))
    return {
        route: Written(attempts[route], result if isinstance(result, Exception) else None)
        for route, result in results.items()
    }


def _apply_isolated(
    router: base.Router, states: Mapping[str, traffic.RouteState], fences: base.Fences
) -> dict[str, traffic.RouteState | Exception]:
    """`base.apply` on a batch, each route's live state or error. A router that refuses the batch
    (one broken route) must not stop the others: the batch is split in halves until the failure
    is a batch of one, so the error lands on the rollout that caused it and one broken route in a
    thousand costs about twenty writes, not a thousand. An unreachable router is no route's fault:
    every route of the batch gets its error at once, without a write per route."""
    try:
        applied = base.apply(router, states, fences)
    except errors.RouterUnavailable as exc:
        return dict.fromkeys(states, exc)
    except Exception as exc:  # a refusal, or a bug: either way, find the route it belongs to
        if len(states) == 1:
            return dict.fromkeys(states, exc)
        log.warning("router %s: a write of %d routes failed (%s); splitting the batch", router.name, len(states), exc)
        items = list(states.items())
        half = len(items) // 2
        return {
            **_apply_isolated(router, dict(items[:half]), fences),
            **_apply_isolated(router, dict(items[half:]), fences),
        }
    return {**applied.live, **applied.failed}


def _retryable(result: object) -> bool:
    return isinstance(result, errors.RouterError) and result.retryable
