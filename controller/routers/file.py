"""The embedded default router: every route's split in one JSON file.

A write sets a whole batch of routes in one atomic replace (a temp file renamed over the old one),
serialised by an advisory lock, so two writers never lose each other's routes and a reader never sees
half a file or half a batch. Applications (or
the demo's proxy) read the file; the controller treats it like any live router.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from controller import errors, traffic
from controller.routers import atomic, base

FORMAT_VERSION = 1


class FileRouter:
    def __init__(self, name: str, path: str | Path, *, write_log: str | Path | None = None) -> None:
        self.name = name
        self.path = Path(path)
        self.write_log = Path(write_log) if write_log is not None else None
        self.location = str(self.path)
        self._cache: tuple[tuple[int, int, int], dict[str, Any]] | None = None  # (stat key, routes)

    def read(self, routes: Sequence[str]) -> dict[str, base.Live]:
        """Every route from one parse of the file; a malformed entry is that route's RouterStateError."""
        loaded = self._load()
        return {route: self._state(route, loaded.get(route)) for route in routes}

    def _state(self, route: str, raw: Any) -> base.Live:
        if raw is None:
            return None
        try:
            return traffic.RouteState.from_json(raw)
        except ValueError as exc:
            return errors.RouterStateError(f"router {self.name!r} ({self.path}) route {route!r}: {exc}")

    def routes(self) -> dict[str, Any]:
        return self._load()

    def write(self, states: Mapping[str, traffic.RouteState], fences: base.Fences | None = None) -> None:
        """Every route of the batch in one locked, atomic replace of the file (one fsync). Each entry
        keeps the fence of its last fenced write (`fence: {shard, token}`); a stale owner's write is
        refused under the lock, so the check and the write are one step."""
        if not states:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with atomic.locked(self.path):
                routes = dict(self._load())  # a copy: the cached routes stay what the file says
                for route, state in states.items():
                    current = routes.get(route)
                    recorded = base.read_fence(current.get("fence") if isinstance(current, dict) else None)
                    try:
                        fence = base.fence_to_record(self.name, route, (fences or {}).get(route), recorded)
                    except errors.RouterFenced:
                        self._log([_record(route, state, (fences or {}).get(route), refused=True)])
                        raise
                    routes[route] = _entry(state, current) | ({"fence": fence.to_json()} if fence else {})
                atomic.replace_json(self.path, {"version": FORMAT_VERSION, "routes": routes})
                self._cache = None  # the next read parses what we wrote
                self._log([_record(route, state, (fences or {}).get(route)) for route, state in states.items()])
        except OSError as exc:
            raise errors.RouterUnavailable(
                f"router {self.name!r}: cannot write {base.routes_text(states)} to {self.path}: {exc.strerror}"
            ) from exc

    def _log(self, records: list[dict[str, Any]]) -> None:
        """Append to the write log, under the file's lock: its order is the order of the writes."""
        if self.write_log is None:
            return
        with self.write_log.open("a", encoding="utf-8") as log:
            log.write("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records))

    def _load(self) -> dict[str, Any]:
        """The file's routes; parsed again only when the file changed (it is replaced on every write,
        so a new inode, size or mtime). Callers must not mutate the answer."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise errors.RouterUnavailable(f"router {self.name!r}: cannot read {self.path}: {exc}") from exc
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        routes = self._parse()
        self._cache = (key, routes)
        return routes

    def _parse(self) -> dict[str, Any]:
        data = atomic.read_document(self.path, router=self.name, key="routes", version=FORMAT_VERSION)
        routes: dict[str, Any] = {} if data is None else data["routes"]
        return routes


def pick(entry: Mapping[str, Any], *, user: str, attributes: Mapping[str, str] | None = None, route: str = "") -> str:
    """The variant an application serves a request, from the route's entry in the routes file: the
    reference reader for applications (copy it, or import it).

    The request's split is that of the first cohort (`cohorts`, in order) whose one attribute has one
    of the listed values in `attributes`, else the route's `weights`. The user is placed by a hash of
    `route` and `user`, so the same user gets the same variant while the weights stay (sticky), and a
    user on the canary stays there as its weight grows: the canary takes the lowest buckets."""
    weights: Mapping[str, Any] = entry["weights"]
    for cohort in entry.get("cohorts") or ():
        ((key, values),) = cohort["match"].items()
        if (attributes or {}).get(key) in values:
            weights = cohort["weights"]
            break
    order = sorted(weights, key=lambda n: ({traffic.CANARY: 0, traffic.STABLE: 1}.get(n, 2), n))
    total = sum(weights[n] for n in order)
    if total <= 0:
        raise ValueError("the route has no weight: every weight is 0")
    digest = hashlib.sha256(f"{route}\0{user}".encode()).digest()
    bucket = int.from_bytes(digest[:8], "big") % 10_000 * total / 10_000
    for name in order:
        bucket -= weights[name]
        if bucket < 0:
            return name
    return order[-1]


def _record(
    route: str, state: traffic.RouteState, fence: traffic.Fence | None, *, refused: bool = False
) -> dict[str, Any]:
    """One line of the write log."""
    record: dict[str, Any] = {"at": time.time(), "pid": os.getpid(), "route": route, "weights": dict(state.weights)}
    record["fence"] = fence.to_json() if fence is not None else None
    return record | ({"refused": True} if refused else {})


def _entry(state: traffic.RouteState, current: Any) -> dict[str, Any]:
    """A route's new entry: `state`, with every variant no rollout manages kept as the file has it
    (a write never changes them, even one racing a hand edit)."""
    entry = state.to_json(prompt_text=True)  # the application has no checkout to read prompts from
    ours = dict(state.weights)
    weights = current.get("weights") if isinstance(current, dict) else None
    others = traffic.split_roles(weights)[1] if isinstance(weights, dict) else {}
    others = {k: v for k, v in others.items() if isinstance(v, int) and not isinstance(v, bool) and v >= 0}
    if traffic.STABLE in ours:  # the others as the file has them now, not as last read: stable takes up the change
        ours[traffic.STABLE] = max(0, ours[traffic.STABLE] + sum(state.others.values()) - sum(others.values()))
    entry["weights"] = {**ours, **others}
    return entry
