"""The Kubernetes coordination backend: a `Store` on `coordination.k8s.io/v1` Leases (docs/sharding.md,
"Kubernetes: one Lease per shard"), through the official `kubernetes` client, loaded only when used.
`coordination.factory` builds it with `LeaseStore.from_environment`.

- Each controller keeps a member Lease, `<prefix>-<fleet>-member-<identity>`, renewed by `keepalive`.
- Shard n is the Lease `<prefix>-<fleet>-shard-<n>`. A claim takes it when it is absent, has no holder,
  or its `renewTime + leaseDurationSeconds` is past, by a create (409 AlreadyExists: another was first)
  or a replace carrying the resourceVersion it read (409 Conflict: the same). The fencing token is the
  Lease's `leaseTransitions`, raised by one on each claim: it only grows for a shard, so a release
  clears the holder and keeps the Lease (deleting it would start the count again).
- Expiry is judged on this process's wall clock against the holder's `renewTime`, so the members' clocks
  must agree to well within the Coordinator's margin (NTP does that).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from controller import errors
from controller.coordination import Holder, View

__all__ = ["LeaseStore"]

log = logging.getLogger("rollout.coordination")

INSTALL = "pip install 'llm-rollouts[kubernetes]'"
SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
LABEL = "llm-rollouts"  # the label keys' prefix: llm-rollouts/fleet, llm-rollouts/role, llm-rollouts/shard
_UNSAFE = re.compile(r"[^a-z0-9-]+")


def _kubernetes() -> Any:
    """The `kubernetes` package, or a CoordinationError that says how to install it."""
    try:
        import kubernetes.client
        import kubernetes.config
    except ImportError as exc:
        raise errors.CoordinationError(
            f"coordination type kubernetes needs the Kubernetes client, which is not installed: {INSTALL}"
        ) from exc
    return kubernetes


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _slug(identity: str) -> str:
    """`identity` as the tail of a Lease name (a DNS subdomain): as it is when it already fits (a pod's
    name), else lowercased with a hash of the original, so two identities never share a Lease."""
    slug = _UNSAFE.sub("-", identity.lower()).strip("-")[:40].strip("-")
    if slug == identity and slug:
        return slug
    digest = hashlib.sha256(identity.encode()).hexdigest()[:10]
    return f"{slug}-{digest}" if slug else digest


def _micro(when: datetime) -> datetime:
    """`when` as the client can send it as a MicroTime. The client writes datetimes with `isoformat()`,
    which leaves the fraction out at .000000, and the API server parses MicroTime with Go's RFC3339Micro
    layout, which requires six digits: one microsecond later is the same instant for a lease."""
    when = when.astimezone(UTC)
    return when if when.microsecond else when.replace(microsecond=1)


@dataclass(frozen=True)
class _Lease:
    """What we read of one Lease."""

    name: str
    version: str
    labels: Mapping[str, str]
    holder: str
    transitions: int
    duration: int
    renewed: datetime | None

    def expired(self, now: datetime) -> bool:
        if not self.holder or self.renewed is None or self.duration <= 0:
            return True
        renewed = self.renewed if self.renewed.tzinfo else self.renewed.replace(tzinfo=UTC)
        return renewed + timedelta(seconds=self.duration) <= now

    @classmethod
    def of(cls, obj: Any) -> _Lease:
        meta, spec = obj.metadata, obj.spec
        return cls(
            name=str(meta.name),
            version=str(meta.resource_version),
            labels=dict(meta.labels or {}),
            holder=(spec.holder_identity or "") if spec else "",
            transitions=(spec.lease_transitions or 0) if spec else 0,
            duration=(spec.lease_duration_seconds or 0) if spec else 0,
            renewed=spec.renew_time if spec else None,
        )


class _Refused(Exception):
    """The API server refused a write we expect it may refuse (409, 404): someone else was first."""


class LeaseStore:
    """A `coordination.Store` on Leases in one namespace. `api` is a `kubernetes.client.CoordinationV1Api`;
    every request carries `timeout` (connect, read), so a hung API server fails a call, never a tick."""

    def __init__(
        self,
        api: Any,
        *,
        namespace: str,
        fleet: str,
        identity: str,
        ttl: int,
        prefix: str = "llm-rollouts",
        timeout: float | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        if ttl < 1:
            raise errors.CoordinationError(f"kubernetes: a Lease lasts whole seconds, at least 1 (ttl {ttl})")
        self.api = api
        self.namespace = namespace
        self.fleet = fleet
        self.identity = identity
        self.ttl = int(ttl)
        self.prefix = prefix
        self.timeout = timeout if timeout is not None else min(5.0, max(0.5, ttl / 3))
        self.clock = clock
        self.member = f"{prefix}-{fleet}-member-{_slug(identity)}"

    @classmethod
    def from_environment(
        cls,
        *,
        fleet: str,
        identity: str,
        ttl: int,
        namespace: str | None,
        env: Mapping[str, str],
        timeout: float | None = None,
        service_account: Path = SERVICE_ACCOUNT,
    ) -> LeaseStore:
        """In a pod (KUBERNETES_SERVICE_HOST set): the service account's token and CA, and the pod's
        namespace unless `namespace` names one. Elsewhere: the kubeconfig ($KUBECONFIG, else
        ~/.kube/config) and its current context's namespace; "default" when nothing names one."""
        k = _kubernetes()
        config = k.client.Configuration()
        if env.get("KUBERNETES_SERVICE_HOST"):
            where = f"the in-cluster service account ({service_account})"
            try:
                k.config.incluster_config.InClusterConfigLoader(
                    token_filename=str(service_account / "token"),
                    cert_filename=str(service_account / "ca.crt"),
                    environ=env,
                ).load_and_set(config)
                if namespace is None:
                    path = service_account / "namespace"
                    namespace = path.read_text("utf-8").strip() if path.exists() else None
            except (k.config.ConfigException, OSError, ValueError) as exc:
                raise errors.CoordinationError(f"kubernetes: cannot load {where}: {_short(exc)}") from exc
        else:
            files = env.get("KUBECONFIG") or str(Path(env.get("HOME") or Path.home()) / ".kube" / "config")
            where = f"the kubeconfig {files}"
            try:
                k.config.load_kube_config(config_file=files, client_configuration=config, persist_config=False)
                if namespace is None:
                    _, current = k.config.list_kube_config_contexts(config_file=files)
                    namespace = ((current or {}).get("context") or {}).get("namespace")
            except (k.config.ConfigException, OSError, ValueError, TypeError) as exc:
                raise errors.CoordinationError(f"kubernetes: cannot load {where}: {_short(exc)}") from exc
        config.retries = False  # one attempt per call: the Coordinator's next sync is the retry
        api = k.client.CoordinationV1Api(k.client.ApiClient(config))
        return cls(api, namespace=namespace or "default", fleet=fleet, identity=identity, ttl=ttl, timeout=timeout)

    # -- the Store protocol

    def join(self) -> None:
        now = self.clock()
        found = self._get(self.member)
        if found and found.holder and found.holder != self.identity and not found.expired(now):
            raise errors.CoordinationError(
                f"kubernetes: membership lease {self.member} is held by {found.holder!r}, not {self.identity!r}"
            )
        body = self._body(self.member, role="member", holder=self.identity, transitions=0, now=now)
        try:
            if found is None:
                self._create(body)
            else:
                self._replace(self.member, found.version, body)
        except _Refused as exc:
            raise errors.CoordinationError(
                f"kubernetes: membership lease {self.member} changed while joining; retrying next tick"
            ) from exc

    def keepalive(self, owned: Mapping[int, int]) -> None:
        now = self.clock()
        leases = self._list()
        member = leases.get(self.member)
        if member is None:
            raise errors.CoordinationError(f"kubernetes: membership lease {self.member} is gone")
        if member.holder != self.identity:
            raise errors.CoordinationError(
                f"kubernetes: membership lease {self.member} is held by {member.holder!r}, not {self.identity!r}"
            )
        if member.expired(now):
            raise errors.CoordinationError(f"kubernetes: membership lease {self.member} expired")
        try:
            self._replace(self.member, member.version, self._renewed(member, role="member", now=now))
        except _Refused as exc:
            raise errors.CoordinationError(f"kubernetes: membership lease {self.member} changed under us") from exc
        for shard, token in sorted(owned.items()):
            lease = leases.get(self._shard(shard))
            if lease is None or lease.holder != self.identity or lease.transitions != token:
                log.info("kubernetes: shard %d is no longer ours with token %d; not renewing it", shard, token)
                continue
            try:
                self._replace(lease.name, lease.version, self._renewed(lease, role="shard", now=now, shard=shard))
            except _Refused:
                log.info("kubernetes: shard %d changed while renewing it; not ours any more", shard)

    def view(self) -> View:
        now = self.clock()
        members: list[str] = []
        shards: dict[int, Holder] = {}
        for lease in self._list().values():
            if lease.expired(now):
                continue
            match lease.labels.get(f"{LABEL}/role"):
                case "member":
                    members.append(lease.holder)
                case "shard":
                    number = lease.labels.get(f"{LABEL}/shard", "")
                    if number.isdigit() and lease.name == self._shard(int(number)):
                        shards[int(number)] = Holder(lease.holder, lease.transitions)
        return View(tuple(sorted(set(members))), shards)

    def claim(self, shard: int) -> int | None:
        name = self._shard(shard)
        now = self.clock()
        found = self._get(name)
        if found is not None and not found.expired(now):
            return None
        token = 1 if found is None else found.transitions + 1
        body = self._body(name, role="shard", holder=self.identity, transitions=token, now=now, shard=shard)
        try:
            if found is None:
                self._create(body)
            else:
                self._replace(name, found.version, body)
        except _Refused:
            return None
        return token

    def release(self, shard: int, token: int) -> bool:
        name = self._shard(shard)
        found = self._get(name)
        if found is None or found.holder != self.identity or found.transitions != token:
            return False
        body = self._body(name, role="shard", holder=None, transitions=token, now=None, shard=shard)
        try:
            self._replace(name, found.version, body)
        except _Refused:
            return False
        return True

    def leave(self) -> None:
        leases = self._list()
        for lease in leases.values():
            number = lease.labels.get(f"{LABEL}/shard", "")
            if lease.holder == self.identity and number.isdigit() and lease.name == self._shard(int(number)):
                body = self._body(
                    lease.name, role="shard", holder=None, transitions=lease.transitions, now=None, shard=int(number)
                )
                try:
                    self._replace(lease.name, lease.version, body)
                except _Refused:
                    log.info("kubernetes: shard %s changed while leaving; not ours any more", number)
        member = leases.get(self.member)
        if member is not None and member.holder == self.identity:
            try:
                self._delete(self.member, member.version)
            except _Refused:
                log.info("kubernetes: membership lease %s changed while leaving", self.member)

    # -- the Leases

    def _shard(self, shard: int) -> str:
        return f"{self.prefix}-{self.fleet}-shard-{shard}"

    def _body(
        self,
        name: str,
        *,
        role: str,
        holder: str | None,
        transitions: int,
        now: datetime | None,
        shard: int | None = None,
    ) -> Any:
        k = _kubernetes()
        labels = {"app.kubernetes.io/managed-by": "llm-rollouts", f"{LABEL}/fleet": self.fleet, f"{LABEL}/role": role}
        if shard is not None:
            labels[f"{LABEL}/shard"] = str(shard)
        spec = k.client.V1LeaseSpec(lease_duration_seconds=self.ttl, lease_transitions=transitions)
        if holder is not None and now is not None:
            spec.holder_identity = holder
            spec.acquire_time = spec.renew_time = _micro(now)
        return k.client.V1Lease(
            api_version="coordination.k8s.io/v1",
            kind="Lease",
            metadata=k.client.V1ObjectMeta(name=name, labels=labels),
            spec=spec,
        )

    def _renewed(self, lease: _Lease, *, role: str, now: datetime, shard: int | None = None) -> Any:
        body = self._body(
            lease.name, role=role, holder=lease.holder, transitions=lease.transitions, now=now, shard=shard
        )
        body.spec.acquire_time = None  # unknown from what we read; the renewal is what matters
        return body

    # -- the calls, each bounded by the timeout, each failure a CoordinationError

    def _call(
        self, what: str, method: Callable[..., Any], *args: Any, refusals: tuple[int, ...] = (), **kwargs: Any
    ) -> Any:
        k = _kubernetes()
        import urllib3

        try:
            return method(*args, _request_timeout=(self.timeout, self.timeout), **kwargs)
        except k.client.ApiException as exc:
            if exc.status in refusals:
                raise _Refused(exc.status) from exc
            raise errors.CoordinationError(f"kubernetes: {what}: {_describe(exc)}") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise errors.CoordinationError(
                f"kubernetes: {what}: the API server did not answer within {self.timeout:g}s ({type(exc).__name__})"
            ) from exc
        except (k.client.exceptions.OpenApiException, ValueError) as exc:  # an answer the client cannot read
            raise errors.CoordinationError(f"kubernetes: {what}: unreadable answer ({type(exc).__name__})") from exc

    def _list(self) -> dict[str, _Lease]:
        answer = self._call(
            f"list Leases of fleet {self.fleet} in namespace {self.namespace}",
            self.api.list_namespaced_lease,
            self.namespace,
            label_selector=f"{LABEL}/fleet={self.fleet}",
        )
        leases = (_Lease.of(item) for item in answer.items or [])
        return {lease.name: lease for lease in leases if lease.name.startswith(f"{self.prefix}-{self.fleet}-")}

    def _get(self, name: str) -> _Lease | None:
        try:
            found = self._call(
                f"read Lease {self.namespace}/{name}",
                self.api.read_namespaced_lease,
                name,
                self.namespace,
                refusals=(404,),
            )
        except _Refused:
            return None
        return _Lease.of(found)

    def _create(self, body: Any) -> None:
        name = body.metadata.name
        self._call(
            f"create Lease {self.namespace}/{name}",
            self.api.create_namespaced_lease,
            self.namespace,
            body,
            refusals=(409,),
        )

    def _replace(self, name: str, version: str, body: Any) -> None:
        body.metadata.resource_version = version
        self._call(
            f"replace Lease {self.namespace}/{name}",
            self.api.replace_namespaced_lease,
            name,
            self.namespace,
            body,
            refusals=(404, 409),
        )

    def _delete(self, name: str, version: str) -> None:
        k = _kubernetes()
        options = k.client.V1DeleteOptions(preconditions=k.client.V1Preconditions(resource_version=version))
        self._call(
            f"delete Lease {self.namespace}/{name}",
            self.api.delete_namespaced_lease,
            name,
            self.namespace,
            body=options,
            refusals=(404, 409),
        )


def _describe(exc: Any) -> str:
    """An ApiException as HTTP status, reason and the Status message the server gave (no headers: the
    client's own rendering includes the response headers)."""
    message = ""
    with contextlib.suppress(ValueError, AttributeError):
        message = str(json.loads(exc.body or "{}").get("message") or "")
    hint = {
        401: " (the credentials were refused)",
        403: " (RBAC: the service account needs get, list, create, update and delete on leases)",
    }
    text = f"HTTP {exc.status} {exc.reason or ''}".rstrip() + hint.get(exc.status or 0, "")
    return f"{text}: {_short(message)}" if message else text


def _short(value: object, limit: int = 300) -> str:
    text = errors.printable(str(value))
    return text if len(text) <= limit else text[: limit - 1] + "…"
