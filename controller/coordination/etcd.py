"""`coordination.Store` on etcd v3, through its HTTP gateway with `etcd3gw` (docs/sharding.md).

The keys live under `<prefix>/<fleet>/`:

- `members/<identity>`: this process's membership, attached to its one etcd lease;
- `shards/<n>`: the shard's holder, attached to the holder's lease, so a dead controller's shards vanish
  with its lease. A claim is one transaction, `create_revision == 0` then put; the key's `mod_revision`
  is the fencing token (etcd revisions only grow, so a later owner's token is always higher). A release
  deletes the key only if its `mod_revision` is still the token and its holder still this member.

The client tries each endpoint in turn and stays on the one that answered: one member of three down
changes nothing. Every request has a timeout of a third of the TTL at most, so a hung member costs a
keepalive, never the lease. This module decides nothing; `coordination.Coordinator` does.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import requests

from controller import errors
from controller.coordination import Holder, View

log = logging.getLogger("rollout.coordination.etcd")


class EtcdStore:
    """One member's primitives on one etcd cluster."""

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        prefix: str,
        fleet: str,
        identity: str,
        ttl: int,
        timeout: float | None = None,
    ) -> None:
        try:
            import etcd3gw
        except ImportError as exc:  # a dependency of the package: a broken install, said plainly
            raise errors.CoordinationError(f"etcd: the etcd3gw client is not installed ({exc})") from None
        if not endpoints:
            raise errors.CoordinationError("etcd: no endpoints")
        self.identity = identity
        self.ttl = max(int(ttl), 2)  # etcd's own minimum lease TTL, with the default election timeout
        self.root = f"{prefix.rstrip('/')}/{fleet}/"
        wait = timeout if timeout is not None else min(5.0, self.ttl / 3)
        self._clients = [
            etcd3gw.Etcd3Client(
                host=url.hostname or "localhost",
                port=url.port or 2379,
                protocol=url.scheme or "http",
                timeout=wait,
                api_path="/v3/",  # etcd >= 3.4; no discovery round trip
            )
            for url in (urlsplit(str(e)) for e in endpoints)
        ]
        self._names = [str(e).rstrip("/") for e in endpoints]
        self._current = 0
        self._lease: int | None = None

    def __repr__(self) -> str:
        return f"EtcdStore({self._names!r}, root={self.root!r}, identity={self.identity!r})"

    # -- the Store protocol ------------------------------------------------------------------------

    def join(self) -> None:
        granted = self._post("/lease/grant", {"TTL": self.ttl, "ID": 0})
        lease = int(granted["ID"])
        self._post("/kv/put", {"key": _b64(self._member_key()), "value": _b64(self.identity), "lease": lease})
        self._lease = lease

    def keepalive(self, owned: Mapping[int, int]) -> None:
        """One keepalive of the lease, which carries the membership and every claimed shard at once."""
        lease = self._need_lease()
        answer = self._post("/lease/keepalive", {"ID": lease})
        if int(answer.get("result", {}).get("TTL", -1)) <= 0:
            self._lease = None
            raise errors.CoordinationError(f"etcd: the lease of {self.identity} has expired")

    def view(self) -> View:
        root = self.root.encode()
        answer = self._post("/kv/range", {"key": _b64(root), "range_end": _b64(_prefix_end(root))})
        members: list[str] = []
        shards: dict[int, Holder] = {}
        for kv in answer.get("kvs", []):
            key = base64.b64decode(kv["key"]).decode()[len(self.root) :]
            value = base64.b64decode(kv.get("value", "")).decode()
            kind, _, name = key.partition("/")
            if kind == "members":
                members.append(value)
            elif kind == "shards" and name.isdigit():
                holder = _holder(value)
                if holder is not None:
                    shards[int(name)] = Holder(holder, int(kv["mod_revision"]))
        return View(tuple(sorted(members)), shards)

    def claim(self, shard: int) -> int | None:
        lease = self._need_lease()
        key = _b64(self._shard_key(shard))
        answer = self._post(
            "/kv/txn",
            {
                "compare": [{"key": key, "result": "EQUAL", "target": "CREATE", "create_revision": 0}],
                "success": [{"request_put": {"key": key, "value": self._claim_value(), "lease": lease}}],
                "failure": [],
            },
        )
        if not answer.get("succeeded"):
            return None
        return int(answer["header"]["revision"])  # the put's revision: the key's mod_revision

    def release(self, shard: int, token: int) -> bool:
        key = _b64(self._shard_key(shard))
        answer = self._post(
            "/kv/txn",
            {
                "compare": [
                    {"key": key, "result": "EQUAL", "target": "MOD", "mod_revision": token},
                    {"key": key, "result": "EQUAL", "target": "VALUE", "value": self._claim_value()},
                ],
                "success": [{"request_delete_range": {"key": key}}],
                "failure": [],
            },
        )
        return bool(answer.get("succeeded"))

    def leave(self) -> None:
        """Revoke the lease: the membership and every shard go at once."""
        lease, self._lease = self._lease, None
        if lease is not None:
            self._post("/kv/lease/revoke", {"ID": lease})

    # -- the wire ----------------------------------------------------------------------------------

    def _member_key(self) -> str:
        return f"{self.root}members/{self.identity}"

    def _shard_key(self, shard: int) -> str:
        return f"{self.root}shards/{shard}"

    def _claim_value(self) -> str:
        return _b64(json.dumps({"holder": self.identity}))

    def _need_lease(self) -> int:
        if self._lease is None:
            raise errors.CoordinationError(f"etcd: {self.identity} holds no lease (join first)")
        return self._lease

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST to the first endpoint that answers, starting with the one that answered last. A
        connection failure or timeout moves on; an answer from etcd (even an error) is final."""
        from etcd3gw import exceptions

        failures: list[str] = []
        for step in range(len(self._clients)):
            index = (self._current + step) % len(self._clients)
            client = self._clients[index]
            try:
                answer = client.post(client.get_url(path), json=body)
            except (exceptions.ConnectionFailedError, exceptions.ConnectionTimeoutError) as exc:
                failures.append(f"{self._names[index]}: {_unreachable(exc)}")
                continue
            except exceptions.Etcd3Exception as exc:
                raise errors.CoordinationError(
                    f"etcd {self._names[index]}{path}: {_first_line(exc.detail_text or exc)}"
                ) from None
            except (requests.RequestException, ValueError) as exc:  # cut mid-answer, or not JSON: not final
                failures.append(f"{self._names[index]}: {_first_line(exc)}")
                continue
            if index != self._current:
                log.info("etcd: now talking to %s", self._names[index])
                self._current = index
            return _checked(answer, self._names[index] + path)
        raise errors.CoordinationError(f"etcd: no endpoint answers ({'; '.join(failures)})")


def _checked(answer: Any, where: str) -> dict[str, Any]:
    if not isinstance(answer, dict):
        raise errors.CoordinationError(f"etcd {where}: unexpected answer {str(answer)[:100]!r}")
    if "error" in answer:  # the gateway's own error body, e.g. a lease that is not found
        raise errors.CoordinationError(f"etcd {where}: {str(answer.get('message') or answer['error'])[:200]}")
    return answer


def _holder(value: str) -> str | None:
    try:
        parsed = json.loads(value)
    except ValueError:
        return None
    holder = parsed.get("holder") if isinstance(parsed, dict) else None
    return holder if isinstance(holder, str) else None


def _b64(data: str | bytes) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def _prefix_end(prefix: bytes) -> bytes:
    """The range end that covers every key starting with `prefix` (etcd's own rule)."""
    return prefix[:-1] + bytes([prefix[-1] + 1])


def _unreachable(exc: Exception) -> str:
    """Why an endpoint did not answer, in a few words (etcd3gw keeps requests' long text aside)."""
    text = str(getattr(exc, "detail_text", None) or exc)
    if "timed out" in text.lower() or "Timeout" in type(exc).__name__:
        return "timed out"
    if "refused" in text.lower():
        return "connection refused"
    return _first_line(text)


def _first_line(exc: object) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]


__all__ = ["EtcdStore"]
