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

    def write(self, states: Mapping[str, traffic.RouteState]) -> None:
        """Set these routes' states in one step; routes not named keep theirs. An empty mapping writes
        nothing.

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


def apply(router: Router, states: Mapping[str, traffic.RouteState]) -> Applied:
    """Write every route in one step, then read the batch back in one read. A mismatch (in traffic,
    or a variant still serving another revision where the router records it) is a RouterVerifyError
    for that route, never a silent success; a read-back that raises is every route's error. The write
    raising means nothing was written: it propagates."""
    if not states:
        return Applied(MappingProxyType({}), MappingProxyType({}))
    router.write(states)
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
