"""An in-memory `coordination.Store` with etcd's semantics (leases that expire on an injected clock,
create-if-absent claims, revisions that only grow), for the pure tests of `coordination.Coordinator`.
The real backends are tested against a real etcd cluster and the Kubernetes stand-in."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from controller import coordination, errors


@dataclass
class Cluster:
    """What the members share: the keys, the leases, one revision counter."""

    clock: Callable[[], float]
    ttl: float = 10.0
    revision: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    leases: dict[str, float] = field(default_factory=dict)  # member -> expiry
    shards: dict[int, coordination.Holder] = field(default_factory=dict)
    down: bool = False

    def expire(self) -> None:
        now = self.clock()
        for who in [w for w, until in self.leases.items() if until <= now]:
            del self.leases[who]
            self.shards = {s: h for s, h in self.shards.items() if h.identity != who}

    def check(self) -> None:
        if self.down:
            raise errors.CoordinationError("etcd: no endpoint answers")
        self.expire()


@dataclass
class MemoryStore:
    cluster: Cluster
    identity: str
    claims: list[int] = field(default_factory=list)

    def join(self) -> None:
        self.cluster.check()
        self.cluster.leases[self.identity] = self.cluster.clock() + self.cluster.ttl

    def keepalive(self, owned: Mapping[int, int]) -> None:
        self.cluster.check()
        if self.identity not in self.cluster.leases:
            raise errors.CoordinationError(f"lease of {self.identity} not found (expired)")
        self.cluster.leases[self.identity] = self.cluster.clock() + self.cluster.ttl

    def view(self) -> coordination.View:
        self.cluster.check()
        return coordination.View(tuple(sorted(self.cluster.leases)), dict(self.cluster.shards))

    def claim(self, shard: int) -> int | None:
        self.cluster.check()
        if shard in self.cluster.shards or self.identity not in self.cluster.leases:
            return None
        token = next(self.cluster.revision)
        self.cluster.shards[shard] = coordination.Holder(self.identity, token)
        self.claims.append(shard)
        return token

    def release(self, shard: int, token: int) -> bool:
        self.cluster.check()
        if self.cluster.shards.get(shard) != coordination.Holder(self.identity, token):
            return False
        del self.cluster.shards[shard]
        return True

    def leave(self) -> None:
        self.cluster.check()
        self.cluster.leases.pop(self.identity, None)
        self.cluster.shards = {s: h for s, h in self.cluster.shards.items() if h.identity != self.identity}
