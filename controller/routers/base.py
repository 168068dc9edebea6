"""The router Protocol: read and write many routes' live splits in one step each (the split itself,
`traffic.RouteState`, is the core's vocabulary).

Every backend (file, Envoy, flagd, LiteLLM) implements `Router` and translates `traffic.RouteState` to
and from its own wire format, nothing else. `apply` is the one way to write: write every route of a
batch at once, then read the batch back in one read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol, TypeAlias

from controller import cutpoints, errors, traffic

#: What a read answers for one route: its live state; None when the router has none for it (never
#: configured, or lost); or the RouterStateError that says why this route's live state, and only
#: this route's, cannot be understood.
Live: TypeAlias = traffic.RouteState | errors.RouterStateError | None

#: route -> the fence its write carries; a route not named is written unfenced (one controller, or
#: a write that only takes the canary out: lowering never waits for ownership).
Fences: TypeAlias = Mapping[str, traffic.Fence]


class Router(Protocol):
    """A live traffic splitter. Implementations translate; they decide nothing."""

    name: str
    location: str  # where its live state is, for messages: a file's path, an admin or proxy URL

    def read(self, routes: Sequence[str]) -> dict[str, Live]:
        """The live state of each route, read in one step (one parse of a file, one call per admin
        listing): the answer has a key for every route asked, and nothing else.

        A route's value is its traffic.RouteState; None when the router has none for it (never configured,
        or lost); or a RouterStateError when that route's own state cannot be understood (one flag,
        entry or runtime value malformed), so one broken route never hides the others' states.

        Raises for the whole batch, and only when no route can be answered: RouterUnavailable when the
        router cannot be reached, RouterStateError when its state as a whole cannot be understood (a
        file that is not JSON, an admin listing that is not the expected JSON), another RouterError
        when it refuses to answer (a rejected key).
        """
        ...

    def write(self, states: Mapping[str, traffic.RouteState], fences: Fences | None = None) -> None:
        """Set these routes' states in one step; routes not named keep theirs. An empty mapping writes
        nothing.

        `fences` gives the token each fenced route's write carries (docs/sharding.md, layer 3). A router
        that can keep a token beside the route (file, flagd) records it, and refuses with RouterFenced a
        write whose token is lower than the one recorded for the same shard; the others ignore it.

        Raises with nothing written on failure: RouterUnavailable when the router cannot be reached,
        another RouterError when it refuses any route of the batch (an unknown route, a split it
        cannot serve); the message names the route at fault.
        """
        ...


@dataclass(frozen=True)
class Applied:
    """What `apply` read back, per route: the live state that confirms the write, or why it is not
    confirmed (a RouterVerifyError for a mismatch, or the error the read-back raised)."""

    live: Mapping[str, traffic.RouteState]
    failed: Mapping[str, errors.RouterError]

    def state(self, route: str) -> traffic.RouteState:
        """The confirmed live state of `route`; raises the route's error when it was not confirmed."""
        if route in self.failed:
            raise self.failed[route]
        return self.live[route]


def apply(router: Router, states: Mapping[str, traffic.RouteState], fences: Fences | None = None) -> Applied:
    """Write every route in one step, then read the batch back in one read. A mismatch (in traffic,
    or a variant still serving another revision where the router records it) is a RouterVerifyError
    for that route, never a silent success; a read-back that raises is every route's error. The write
    raising means nothing was written: it propagates."""
    if not states:
        return Applied(MappingProxyType({}), MappingProxyType({}))
    router.write(states, {r: f for r, f in (fences or {}).items() if r in states})
    cutpoints.reached(cutpoints.ROUTER_WRITTEN)
    live: dict[str, traffic.RouteState] = {}
    failed: dict[str, errors.RouterError] = {}
    try:
        seen = router.read(list(states))
    except errors.RouterError as exc:
        return Applied(MappingProxyType({}), MappingProxyType(dict.fromkeys(states, exc)))
    cutpoints.reached(cutpoints.READ_BACK)
    for route, desired in states.items():
        now = seen.get(route)
        if isinstance(now, errors.RouterError):
            failed[route] = now
        elif now is None or not now.same_traffic(desired) or not now.same_revisions(desired):
            failed[route] = errors.RouterVerifyError(
                f"router {router.name!r} route {route!r}: wrote {desired.describe()} but read back "
                f"{now.describe() if now else 'nothing'}"
            )
        else:
            live[route] = now
    return Applied(MappingProxyType(live), MappingProxyType(failed))


def routes_text(routes: Iterable[str], *, limit: int = 3) -> str:
    """`route 'a'` or `routes 'a', 'b' and 7 more`: how a router's message names a batch."""
    names = list(routes)
    if len(names) == 1:
        return f"route {names[0]!r}"
    shown = ", ".join(repr(n) for n in names[:limit])
    return f"routes {shown}" + (f" and {len(names) - limit} more" if len(names) > limit else "")


def refuse_cohorts(router: str, kind: str, states: Mapping[str, traffic.RouteState]) -> None:
    """Raise, naming the route, when a batch asks a router that cannot route by cohort for cohorts:
    written without them, the canary would reach everyone or no one the state says."""
    for route, state in states.items():
        if state.cohorts:
            raise errors.RouterError(
                f"router {router!r} ({kind}) route {route!r}: cannot route by cohort "
                f"({', '.join(c.name for c in state.cohorts)}); nothing was written"
            )


def fence_to_record(
    router: str, route: str, fence: traffic.Fence | None, recorded: traffic.Fence | None
) -> traffic.Fence | None:
    """What a route's entry records after a write carrying `fence`, where it recorded `recorded`:
    the write's fence, or the one kept when the write carries none (an unfenced write never erases
    a newer owner's mark). Raises RouterFenced when the same shard's recorded token is higher: a
    newer owner wrote the route, and this writer's ownership is over."""
    if fence is None:
        return recorded
    if recorded is not None and recorded.shard == fence.shard and recorded.token > fence.token:
        raise errors.RouterFenced(
            f"router {router!r} route {route!r}: shard {fence.shard} was written under token {recorded.token}, "
            f"newer than this controller's {fence.token}: it no longer owns the shard; nothing was written"
        )
    return fence


def read_fence(raw: object) -> traffic.Fence | None:
    """A recorded fence back from JSON, or None when there is none or it is not ours to read."""
    if not isinstance(raw, dict):
        return None
    shard, token = raw.get("shard"), raw.get("token")
    if (
        isinstance(shard, int)
        and isinstance(token, int)
        and not isinstance(shard, bool)
        and not isinstance(token, bool)
    ):
        return traffic.Fence(shard, token)
    return None
