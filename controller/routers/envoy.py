"""The Envoy router: live weights and shadow traffic through Envoy's admin runtime, and the bootstrap.

The CLI builds an `EnvoyRouter` per configured Envoy (with the route -> rollout mapping from the
repo) and calls `bootstrap()` for `rollout render envoy`; the reconciler only reads and writes.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from controller import errors, spec
from controller.routers import base, files

VARIANT_HEADER = "x-rollout-variant"
SHADOW_KEY = "shadow"
#: Envoy's latency histograms in milliseconds: fine enough for a p95 from 5 ms to 5 minutes.
LATENCY_BUCKETS_MS = (
    *(5, 10, 25, 50, 75, 100, 150, 200, 300, 400, 500, 750),
    *(1000, 1500, 2000, 2500, 3000, 4000, 5000, 6000, 8000, 10000, 12500, 15000, 20000),
    *(25000, 30000, 45000, 60000, 90000, 120000, 180000, 300000),
)


def weight_prefix(prefix: str, rollout: str) -> str:
    """The `runtime_key_prefix` of a rollout's weighted clusters; Envoy appends `.<cluster name>`."""
    return f"{prefix}.{rollout}"


def weight_key(prefix: str, rollout: str, variant: str) -> str:
    return f"{weight_prefix(prefix, rollout)}.{spec.cluster_name(rollout, variant)}"


def shadow_key(prefix: str, rollout: str) -> str:
    return f"{weight_prefix(prefix, rollout)}.{SHADOW_KEY}"


CLUSTER_TYPE = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
#: How long a write waits for Envoy to load a rewritten CDS file before it holds, weights unwritten.
CDS_TIMEOUT = 10.0

#: What Envoy serves when no runtime override exists: the bootstrap's defaults (also after a restart).
DEFAULTS = base.RouteState({base.STABLE: 100, base.CANARY: 0}, 0)


class EnvoyRouter:
    """Reads and writes the runtime keys of the routes rendered by `bootstrap()`.

    `routes` maps a route (spec.route) to its rollout's name, which names the clusters and keys.
    With `cds_path` (the clusters file the bootstrap's `dynamic_resources` names), a write first
    points each role's cluster at the model it now serves by rewriting that file, and waits until
    Envoy's `/clusters` shows it; without it, a write that needs another host is refused.
    A write sets all the keys of every route in its batch in one `POST /runtime_modify`, so a reader
    never sees a half-applied split or half a batch.
    """

    def __init__(
        self,
        name: str,
        admin: str,
        *,
        routes: Mapping[str, str],
        runtime_prefix: str = "rollouts",
        upstreams: Mapping[str, str] | None = None,
        cds_path: Path | None = None,
        cds_timeout: float = CDS_TIMEOUT,
        timeout: float = 2.0,
        client: httpx.Client | None = None,
    ) -> None:
        self.name = name
        self.cds_path = cds_path
        self.cds_timeout = cds_timeout
        self.upstreams = dict(upstreams or {})  # model id -> host:port, as the bootstrap was rendered
        self.admin = admin.rstrip("/")
        self.location = f"Envoy admin {self.admin}" + (f", clusters in {cds_path}" if cds_path else "")
        self.routes = dict(routes)
        self.runtime_prefix = runtime_prefix
        self._client = client or httpx.Client(timeout=timeout)

    def close(self) -> None:
        self._client.close()

    def read(self, routes: Sequence[str]) -> dict[str, base.Live]:
        """Every route of the batch from one `GET /runtime` and one `GET /clusters` (none when no route
        is on this Envoy). A route on no rollout of this Envoy, or whose clusters the running bootstrap
        lacks, is None; a malformed runtime value is that route's RouterStateError."""
        out: dict[str, base.Live] = dict.fromkeys(routes)
        known = {route: rollout for route in out if (rollout := self.routes.get(route)) is not None}
        if not known:
            return out
        operation = f"read {base.routes_text(known)}"
        entries = self._runtime(operation)
        clusters = set(self._cluster_hosts(operation))
        for route, rollout in known.items():
            if spec.cluster_name(rollout, base.STABLE) not in clusters:
                continue  # Envoy runs a bootstrap without this rollout: runtime keys would change nothing
            try:
                out[route] = parse_state(entries, prefix=self.runtime_prefix, rollout=rollout, where=self._where(route))
            except errors.RouterStateError as exc:
                out[route] = exc
        return out

    def write(self, states: Mapping[str, base.RouteState]) -> None:
        """Every route of the batch in one `POST /runtime_modify`, after checking them all: nothing is
        written when any route is unknown, splits more than stable and canary, or (without a CDS
        file) names an upstream the running bootstrap does not serve; with one, the clusters are
        repointed and loaded first (`_apply_clusters`). The keys go in the form body: a query string of a
        thousand routes' keys would be longer than a URL may be."""
        if not states:
            return
        rollouts: dict[str, str] = {}
        for route, state in states.items():
            rollout = self.routes.get(route)
            if rollout is None:
                raise errors.RouterError(
                    f"router {self.name!r}: route {route!r} is on no rollout of this Envoy, so it has no clusters"
                )
            if state.weight(base.STABLE) + state.weight(base.CANARY) != 100:
                raise errors.RouterError(
                    f"router {self.name!r} route {route!r}: Envoy splits only stable and canary, got {state.describe()}"
                )
            rollouts[route] = rollout
        operation = f"write {base.routes_text(states)}"
        if self.cds_path is not None:
            self._apply_clusters(states, rollouts, operation)
        else:
            self._check_upstreams(states, rollouts, operation)
        values: dict[str, str] = {}
        for route, state in states.items():
            values.update(runtime_values(state, prefix=self.runtime_prefix, rollout=rollouts[route]))
        response = self._call("POST", "/runtime_modify", operation, data=values)
        if response.status_code != 200:
            raise errors.RouterError(
                f"router {self.name!r}: {operation}: runtime_modify answered "
                f"{response.status_code}: {response.text.strip()[:200]}"
            )

    def _check_upstreams(
        self, states: Mapping[str, base.RouteState], rollouts: Mapping[str, str], operation: str
    ) -> None:
        """Refuse a split whose variants Envoy's clusters do not serve. Clusters are named by role
        (`support-bot_stable`), so after a completion makes the canary's model the new stable, the
        running bootstrap still sends `stable` to the old model until it is rendered again: writing the
        weights then would silently undo the rollout. Nothing is written; the tick holds and says why.
        One `GET /clusters` answers for the whole batch."""
        wanted = {
            (route, role): self.upstreams[served.model]
            for route, state in states.items()
            for role, served in state.served.items()
            if role in (base.STABLE, base.CANARY) and state.weight(role) > 0 and served.model in self.upstreams
        }
        if not wanted:
            return
        hosts = self._cluster_hosts(operation)
        for (route, role), want in wanted.items():
            cluster = spec.cluster_name(rollouts[route], role)
            have = hosts.get(cluster)
            if have is not None and want not in have:
                raise errors.RouterStateError(
                    f"router {self.name!r} route {route!r}: Envoy's cluster {cluster} serves "
                    f"{', '.join(sorted(have))}, but {role} is now {states[route].served[role].model} at {want}: render "
                    "the bootstrap again (`rollout render envoy`) and restart Envoy, or set the router's cdsPath so that "
                    "a write repoints the cluster without a restart; nothing was written"
                )

    def _apply_clusters(
        self, states: Mapping[str, base.RouteState], rollouts: Mapping[str, str], operation: str
    ) -> None:
        """Point each role's cluster at the upstream of the model it now serves: rewrite the CDS file
        (under its lock, atomically: Envoy reloads it when a file is moved onto its path) when a
        cluster differs, then wait until `GET /clusters` shows every wanted host. A wait that runs
        out is a RouterVerifyError and no weight is written, so a completion never sends `stable`
        traffic to the old model."""
        assert self.cds_path is not None
        wanted = {
            spec.cluster_name(rollouts[route], role): self.upstreams[served.model]
            for route, state in states.items()
            for role, served in state.served.items()
            if role in (base.STABLE, base.CANARY) and served.model in self.upstreams
        }
        if not wanted:
            return
        path = self.cds_path
        try:
            with files.locked(path):
                document = files.read_json(path, router=self.name)
                resources = document.get("resources") if isinstance(document, dict) else None
                if not isinstance(resources, list):
                    raise errors.RouterStateError(
                        f"router {self.name!r}: {operation}: {path} is not a CDS file with 'resources' "
                        "(render it with `rollout render envoy`); nothing was written"
                    )
                index = {r.get("name"): i for i, r in enumerate(resources) if isinstance(r, dict)}
                changed = []
                for name, host in wanted.items():
                    cluster = cluster_resource(name, host)
                    at = index.get(name)
                    if at is None:
                        resources.append(cluster)
                    elif resources[at] != cluster:
                        resources[at] = cluster
                    else:
                        continue
                    changed.append(name)
                if changed:
                    document["version_info"] = str(time.time_ns())
                    files.replace_json(path, document)
        except OSError as exc:
            raise errors.RouterUnavailable(
                f"router {self.name!r}: {operation}: cannot write {path}: {exc}; nothing was written"
            ) from exc
        deadline = time.monotonic() + self.cds_timeout
        while True:
            hosts = self._cluster_hosts(operation)
            stale = {name: host for name, host in wanted.items() if hosts.get(name) != {host}}
            if not stale:
                return
            if time.monotonic() >= deadline:
                have = "; ".join(
                    f"{name} serves {', '.join(sorted(hosts.get(name) or ())) or 'nothing'}, want {host}"
                    for name, host in sorted(stale.items())
                )
                raise errors.RouterVerifyError(
                    f"router {self.name!r}: {operation}: Envoy did not load {path} within "
                    f"{self.cds_timeout:g}s ({have}); no weight was written"
                )
            time.sleep(0.05)  # polling Envoy's admin until the file is loaded, bounded by the deadline

    def _cluster_hosts(self, operation: str) -> dict[str, set[str]]:
        """Every cluster Envoy has, by name, with the host:port of each of its hosts."""
        response = self._call("GET", "/clusters", operation, params={"format": "json"})
        if response.status_code != 200:
            raise errors.RouterUnavailable(
                f"router {self.name!r}: {operation}: GET /clusters answered {response.status_code}"
            )
        try:
            out: dict[str, set[str]] = {}
            for cluster in response.json().get("cluster_statuses", []):
                hosts = out.setdefault(str(cluster["name"]), set())
                for host in cluster.get("host_statuses", []):
                    sock = host["address"].get("socket_address")
                    if sock is not None:  # a pipe (unix socket) host has none, and is never one we wrote
                        hosts.add(f"{sock['address']}:{sock['port_value']}")
            return out
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise errors.RouterStateError(
                f"router {self.name!r}: {operation}: /clusters did not answer the expected JSON"
            ) from exc

    def overrides(self) -> dict[str, str]:
        """Every runtime key under our prefix that the admin layer holds (empty after a restart)."""
        entries = self._runtime("list runtime overrides")
        prefix = self.runtime_prefix + "."
        return {k: str(v.get("final_value")) for k, v in entries.items() if k.startswith(prefix)}

    def _runtime(self, operation: str) -> dict[str, Any]:
        response = self._call("GET", "/runtime", operation, params={"format": "json"})
        if response.status_code != 200:
            raise errors.RouterUnavailable(
                f"router {self.name!r}: {operation}: GET /runtime answered {response.status_code}"
            )
        try:
            entries = response.json()["entries"]
        except (ValueError, KeyError, TypeError) as exc:
            raise errors.RouterStateError(
                f"router {self.name!r}: {operation}: /runtime did not answer a JSON object with 'entries'"
            ) from exc
        if not isinstance(entries, dict):
            raise errors.RouterStateError(f"router {self.name!r}: {operation}: /runtime 'entries' is not an object")
        return entries

    def _call(
        self,
        method: str,
        path: str,
        operation: str,
        *,
        params: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        try:
            return self._client.request(method, self.admin + path, params=params, data=data)
        except httpx.HTTPError as exc:
            raise errors.RouterUnavailable(
                f"router {self.name!r}: {operation}: Envoy admin at {self.admin} did not answer ({type(exc).__name__})"
            ) from exc

    def _where(self, route: str) -> str:
        return f"router {self.name!r} route {route!r}"


def runtime_values(state: base.RouteState, *, prefix: str, rollout: str) -> dict[str, str]:
    """The runtime keys that put a route in `state`; never all weights 0 (RouteState forbids it)."""
    return {
        weight_key(prefix, rollout, base.STABLE): str(state.weight(base.STABLE)),
        weight_key(prefix, rollout, base.CANARY): str(state.weight(base.CANARY)),
        shadow_key(prefix, rollout): str(state.shadow),
    }


def parse_state(entries: Mapping[str, Any], *, prefix: str, rollout: str, where: str) -> base.RouteState:
    """The live split from `/runtime` entries; a key without an override takes the bootstrap default.

    A value Envoy would silently replace by its default (not a whole number), or a split that does
    not sum to 100, is a RouterStateError: we report what we cannot trust instead of guessing.
    """
    values: dict[str, int] = {}
    defaults = {base.STABLE: DEFAULTS.weight(base.STABLE), base.CANARY: DEFAULTS.weight(base.CANARY)}
    keys = {role: weight_key(prefix, rollout, role) for role in defaults} | {SHADOW_KEY: shadow_key(prefix, rollout)}
    for what, key in keys.items():
        entry = entries.get(key)
        if entry is None:
            values[what] = defaults.get(what, DEFAULTS.shadow)
            continue
        raw = entry.get("final_value") if isinstance(entry, dict) else None
        if raw is None or raw == "":
            values[what] = defaults.get(what, DEFAULTS.shadow)
            continue
        try:
            number = int(str(raw))
        except ValueError:
            number = -1
        if not 0 <= number <= 100:
            raise errors.RouterStateError(f"{where}: runtime key {key} holds {raw!r}, not a whole percent")
        values[what] = number
    try:
        return base.RouteState({base.STABLE: values[base.STABLE], base.CANARY: values[base.CANARY]}, values[SHADOW_KEY])
    except ValueError as exc:
        raise errors.RouterStateError(f"{where}: live runtime is not a valid split: {exc}") from exc


# -- the bootstrap ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RouteSpec:
    """What `bootstrap()` needs of one rollout: its name, its route, and each variant's upstream."""

    rollout: str
    route: str
    upstreams: Mapping[str, str]  # variant role -> host:port


def _address(host_port: str, *, what: str) -> dict[str, Any]:
    host, sep, port = host_port.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise errors.RouterError(f"{what}: {host_port!r} is not host:port")
    return {"socket_address": {"address": host.strip("[]"), "port_value": int(port)}}


def cluster_resource(name: str, upstream: str) -> dict[str, Any]:
    """One variant's cluster: a single static endpoint, as a typed CDS resource."""
    return {
        "@type": CLUSTER_TYPE,
        "name": name,
        "type": "STATIC",
        "connect_timeout": "2s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _address(upstream, what=name)}}]}],
        },
    }


def cds(routes: Sequence[RouteSpec]) -> dict[str, Any]:
    """The CDS file of `bootstrap(..., cds_path=...)`: a cluster per variant of every rollout."""
    return {
        "version_info": "0",
        "resources": [
            cluster_resource(spec.cluster_name(r.rollout, role), upstream)
            for r in routes
            for role, upstream in r.upstreams.items()
        ],
    }


def bootstrap(
    routes: Sequence[RouteSpec],
    *,
    admin: str,
    listen: str,
    runtime_prefix: str,
    split_header: str | None = None,
    route_timeout: str = "300s",
    cds_path: str | None = None,
) -> dict[str, Any]:
    """A complete Envoy bootstrap: one listener, a weighted route per rollout, a cluster per variant.

    The clusters are static, or with `cds_path` (absolute: Envoy's working directory is not ours)
    come from that file, `cds(routes)`, which Envoy reloads whenever a new file is moved onto the
    path: the router then repoints a role's cluster without a restart.

    A rollout's route matches the path prefix `/<route>/` (rewritten to `/`), so an OpenAI client
    uses `http://LISTEN/<route>/v1` as its base URL. Its weights default to stable 100 / canary 0
    and follow the runtime keys under `<runtime_prefix>.<rollout>`; the canary gets a mirrored
    copy of `shadow` percent of requests. `split_header` (tests only) lets a request pick its
    bucket 0-99 so that a split can be asserted exactly.
    """
    admin_url = urlsplit(admin)
    if not admin_url.hostname or admin_url.port is None:
        raise errors.RouterError(f"admin address {admin!r} needs a host and a port")
    virtual_routes: list[dict[str, Any]] = []
    for r in routes:
        weighted: dict[str, Any] = {
            "runtime_key_prefix": weight_prefix(runtime_prefix, r.rollout),
            "clusters": [
                {
                    "name": spec.cluster_name(r.rollout, role),
                    "weight": DEFAULTS.weight(role),
                    "response_headers_to_add": [
                        {
                            "header": {"key": VARIANT_HEADER, "value": role},
                            "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                        }
                    ],
                }
                for role in (base.STABLE, base.CANARY)
                if role in r.upstreams
            ],
        }
        if split_header:
            weighted["header_name"] = split_header
        action: dict[str, Any] = {"weighted_clusters": weighted, "prefix_rewrite": "/", "timeout": route_timeout}
        if base.CANARY in r.upstreams:
            action["request_mirror_policies"] = [
                {
                    "cluster": spec.cluster_name(r.rollout, base.CANARY),
                    "runtime_fraction": {
                        "default_value": {"numerator": DEFAULTS.shadow, "denominator": "HUNDRED"},
                        "runtime_key": shadow_key(runtime_prefix, r.rollout),
                    },
                }
            ]
        virtual_routes.append({"name": r.rollout, "match": {"prefix": f"/{r.route}/"}, "route": action})
    clusters = [{k: v for k, v in c.items() if k != "@type"} for c in cds(routes)["resources"]]
    route_config: dict[str, Any] = {
        "name": "rollouts",
        "virtual_hosts": [{"name": "rollouts", "domains": ["*"], "routes": virtual_routes}],
    }
    manager = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "rollouts",
        "route_config": route_config,
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
            }
        ],
    }
    document: dict[str, Any] = {
        "admin": {"address": _address(f"{admin_url.hostname}:{admin_url.port}", what="admin")},
        "stats_flush_interval": "1s",
        "stats_config": {
            "histogram_bucket_settings": [
                {"match": {"safe_regex": {"regex": ".*"}}, "buckets": [float(b) for b in LATENCY_BUCKETS_MS]}
            ]
        },
        "layered_runtime": {
            "layers": [
                {"name": "static", "static_layer": {}},
                {"name": "admin", "admin_layer": {}},
            ]
        },
        "static_resources": {
            "listeners": [
                {
                    "name": "rollouts",
                    "address": _address(listen, what="listen"),
                    "filter_chains": [
                        {
                            "filters": [
                                {"name": "envoy.filters.network.http_connection_manager", "typed_config": manager}
                            ]
                        }
                    ],
                }
            ],
            "clusters": clusters,
        },
    }
    if cds_path is not None:
        if not Path(cds_path).is_absolute():
            raise errors.RouterError(f"the CDS path {cds_path!r} must be absolute: Envoy resolves it from its own cwd")
        # A subscription needs the node's id and cluster; the listener's routes name clusters that
        # arrive from the file only after the listener exists, so they are not validated at load.
        document["node"] = {"id": "rollouts", "cluster": "rollouts"}
        document["dynamic_resources"] = {
            "cds_config": {"resource_api_version": "V3", "path_config_source": {"path": cds_path}}
        }
        route_config["validate_clusters"] = False
        del document["static_resources"]["clusters"]
    return document


def route_specs(
    rollouts: Sequence[tuple[str, str, Mapping[str, str]]], *, upstreams: Mapping[str, str]
) -> list[RouteSpec]:
    """(rollout name, route, variant role -> model id) -> RouteSpecs, resolving models via `upstreams`."""
    out = []
    for rollout, route, models in rollouts:
        resolved = {}
        for role, model in models.items():
            if model not in upstreams:
                raise errors.RouterError(
                    f"rollout {rollout!r}: model {model!r} ({role}) has no entry in the Envoy router's upstreams"
                )
            resolved[role] = upstreams[model]
        out.append(RouteSpec(rollout=rollout, route=route, upstreams=resolved))
    return out
