"""Who acts on which rollouts when several controllers run (docs/sharding.md).

Rollouts fall into a fixed number of shards by a stable hash of (repository, rollout name); each shard
is owned by one controller at a time, through a coordinator. A `Store` is one backend's primitives
(etcd's leases and transactions, Kubernetes' Lease objects) and decides nothing; `Coordinator` is the
logic every backend shares: membership kept alive, shards claimed and released by `balance`, and the
two checks every write passes (docs/sharding.md, "Fencing every write"):

1. `fresh()`, a local deadline: no write when the last keepalive that succeeded is older than the
   TTL less a margin. A process paused past its lease (SIGSTOP, a long GC) finds it too late on resume,
   before its first write.
2. `confirm()`, one read just before a batch of writes: the shards whose token is still ours.

A write that only lowers exposure (`traffic.exposure_free`) skips both: the kill switch never waits for
a coordinator. The token itself (`Fence`) goes with each write to the routers that can record it.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from controller import errors
from controller.coordination import balance
from controller.traffic import Fence

__all__ = ["DEFAULT_SHARDS", "Coordinator", "Fence", "Holder", "Shards", "Store", "View", "shard_of"]

log = logging.getLogger("rollout.coordination")

DEFAULT_SHARDS = 64


def shard_of(repository: str, rollout: str, shards: int) -> int:
    """The shard of a rollout: stable across processes, hosts and Python versions (no `hash()`), so a
    rollout moves only when its whole shard does."""
    digest = hashlib.sha256(f"{repository}\0{rollout}".encode()).hexdigest()
    return int(digest[:8], 16) % shards


@dataclass(frozen=True)
class Holder:
    identity: str
    token: int


@dataclass(frozen=True)
class View:
    """One consistent read of the coordinator: the live members, and each claimed shard's holder."""

    members: tuple[str, ...]
    shards: Mapping[int, Holder]


class Store(Protocol):
    """One backend's primitives. Each raises `errors.CoordinationError` when the backend cannot be
    reached or refuses; none decides anything."""

    def join(self) -> None:
        """Become a member (etcd: grant a lease and put the member key on it)."""
        ...

    def keepalive(self, owned: Mapping[int, int]) -> None:
        """Renew the membership and the owned shards; raises when they are lost (the lease expired)."""
        ...

    def view(self) -> View:
        """The members and the shards' holders, in one read; an expired claim is not listed."""
        ...

    def claim(self, shard: int) -> int | None:
        """Take a free shard by compare-and-swap: its token, or None when another member was first."""
        ...

    def release(self, shard: int, token: int) -> bool:
        """Give a shard up if it is still held with `token`; True when it was."""
        ...

    def leave(self) -> None:
        """Give up the membership and every shard at once (etcd: revoke the lease)."""
        ...


@dataclass
class Coordinator:
    """One controller's membership of the fleet: `sync` (keepalive and balance) before a tick, `fresh`
    and `confirm` before each batch of writes, `close` on the way out."""

    store: Store
    identity: str
    shards: int = DEFAULT_SHARDS
    ttl: float = 10.0  # seconds a membership lives without a keepalive
    margin: float = 3.0  # stop writing this long before the lease could have expired
    clock: Callable[[], float] = time.monotonic
    owned: dict[int, int] = field(default_factory=dict)  # shard -> token
    members: int = 1  # live members at the last view: the budget's `k`
    proven: bool = False  # the last sync read the coordinator: `owned` is what it shows
    problem: str | None = None  # why the last sync could not, for the member's owner to say once
    _alive_at: float | None = None  # the clock when the last keepalive was sent, if it succeeded
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _joined: bool = False
    _stale: bool = False  # joined, but the claims of an earlier lease under this identity not yet given up
    _joined_at: float = 0.0  # the clock when the current lease was asked for

    def sync(self) -> dict[int, int]:
        """Keep alive, then claim and release towards the balance; the shards owned now, with their
        tokens. What the view shows held under this identity is ours (identities are unique per
        process), so a tick that failed to read the view loses nothing for good.

        When the coordinator cannot be reached, the shards owned at the last sync are kept, unproven
        (`proven` False): the controller still decides for them, so a rollback still goes through (it
        never waits for ownership), while `confirm` proves nothing and so nothing is raised and no PR
        is opened (docs/sharding.md, "etcd quorum lost")."""
        try:
            if self._joined:
                with contextlib.suppress(errors.CoordinationError):  # lost or unreachable: join again
                    self.heartbeat()
            if not self._joined:
                joined_at = self.clock()
                self.store.join()  # unreachable: raises, and the shards owned stay decided for, unproven
                with self._lock:  # nothing is proven until the old lease's claims are given up
                    self._alive_at, self._joined_at = None, joined_at
                self._joined, self._stale = True, True
            view = self.store.view()
            if self._stale:
                view = self._forget_old_claims(view)  # raises when it cannot: stale until it can
                self._stale, self._alive_at = False, self._joined_at
            with self._lock:
                self.owned = {s: h.token for s, h in view.shards.items() if h.identity == self.identity}
                self.members = len(set(view.members) | {self.identity})
            claim, release = balance.rebalance(
                shards=self.shards,
                members=view.members,
                me=self.identity,
                held={s: h.identity for s, h in view.shards.items()},
                mine=self.owned,
            )
            for shard in release:
                if self.store.release(shard, self.owned[shard]):
                    with self._lock:
                        del self.owned[shard]
            for shard in claim:
                token = self.store.claim(shard)
                if token is not None:
                    with self._lock:
                        self.owned[shard] = token
            self.proven = True
        except Exception as exc:  # a backend's bug or an unforeseen answer must not stop the member
            if not isinstance(exc, errors.CoordinationError):
                log.error("coordination: unexpected error", exc_info=exc)
            self.proven, self.problem = False, str(exc)
            return dict(self.owned)
        self.problem = None
        return dict(self.owned)

    def _forget_old_claims(self, view: View) -> View:
        """After a (re)join, the claims the view shows under this identity belong to a lease this
        process no longer keeps alive: they would expire under it while the new lease's deadline said
        all is well. They are released (by their tokens), never adopted; the balance claims afresh."""
        old = {s: h.token for s, h in view.shards.items() if h.identity == self.identity}
        for shard, token in old.items():
            self.store.release(shard, token)
        return View(view.members, {s: h for s, h in view.shards.items() if s not in old})

    def heartbeat(self) -> None:
        """Renew the membership and the owned shards (a background thread calls this every TTL/3 while
        a tick runs). On failure the deadline runs out by itself; the error propagates."""
        sent = self.clock()
        try:
            self.store.keepalive(dict(self.owned))
        except errors.CoordinationError:
            self._joined = False  # the lease is gone or unreachable: the next sync joins again
            raise
        except Exception as exc:
            self._joined = False
            raise errors.CoordinationError(f"keepalive: unexpected error: {exc}") from exc
        with self._lock:
            if not self._stale:  # a new lease's deadline starts once its predecessor's claims are gone
                self._alive_at = sent

    def fresh(self) -> bool:
        """The local deadline: a keepalive sent less than TTL - margin ago succeeded."""
        alive = self._alive_at
        return alive is not None and self.clock() - alive < self.ttl - self.margin

    def confirm(self, shards: Iterable[int]) -> set[int]:
        """Of `shards`, those still ours with the token we claimed them with, by one read; none when the
        deadline has passed or the coordinator cannot be reached."""
        wanted = {s for s in shards if s in self.owned}
        if not wanted or not self.fresh():
            return set()
        try:
            view = self.store.view()
        except Exception as exc:  # unreachable, or an answer it could not read: nothing is proven
            log.debug("coordination: confirm: %s", exc)
            return set()
        return {s for s in wanted if view.shards.get(s) == Holder(self.identity, self.owned[s])}

    def fence(self, shard: int) -> Fence | None:
        token = self.owned.get(shard)
        return None if token is None else Fence(shard, token)

    def close(self) -> None:
        """Leave the fleet: every shard is free at once for the others, without waiting for the TTL."""
        if not self._joined:
            return
        self._joined = False
        try:
            self.store.leave()
        except Exception as exc:  # unreachable or worse: the lease expires by itself
            log.warning("coordination: leaving: %s (the lease expires by itself)", exc)
        self.owned = {}
        self._alive_at = None

    def keep_alive_in_background(self, stop: threading.Event) -> threading.Thread:
        """A daemon thread that heartbeats every TTL/3 until `stop` is set: a tick longer than the TTL
        (a slow forge) keeps its shards."""

        def loop() -> None:
            while not stop.wait(self.ttl / 3):
                if self._joined:
                    try:
                        self.heartbeat()
                    except errors.CoordinationError as exc:
                        log.debug("coordination: keepalive: %s", exc)  # the next sync says it

        thread = threading.Thread(target=loop, name="rollout-keepalive", daemon=True)
        thread.start()
        return thread


@dataclass(frozen=True)
class Shards:
    """One repository's view of what this controller owns, for one tick: which rollouts it decides for,
    and the fence each write carries. `coordinator` None: one controller, every rollout its own."""

    repository: str
    coordinator: Coordinator | None = None

    def mine(self, rollout: str) -> bool:
        return self.coordinator is None or self.shard(rollout) in self.coordinator.owned

    def shard(self, rollout: str) -> int:
        count = self.coordinator.shards if self.coordinator else 1
        return shard_of(self.repository, rollout, count)

    def fence(self, rollout: str) -> Fence | None:
        return None if self.coordinator is None else self.coordinator.fence(self.shard(rollout))

    def fresh(self) -> bool:
        """The local deadline still holds (always, with one controller): checked again before each
        rollout's forge actions, since pacing can make that pass longer than the margin."""
        return self.coordinator is None or self.coordinator.fresh()

    def confirm(self, rollouts: Sequence[str]) -> set[str]:
        """Of `rollouts`, those this controller may still raise exposure or open PRs for: all of them
        with one controller; else those whose shard `Coordinator.confirm` proves still ours."""
        if self.coordinator is None:
            return set(rollouts)
        still = self.coordinator.confirm({self.shard(r) for r in rollouts})
        return {r for r in rollouts if self.shard(r) in still}
