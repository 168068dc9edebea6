"""The Envoy router: live weights and shadow traffic through Envoy's admin runtime, and the bootstrap.

The CLI builds an `EnvoyRouter` per configured Envoy (with the route -> rollout mapping from the
repo) and calls `bootstrap()` for `rollout render envoy`; the reconciler only reads and writes.
With a prompt bundle (`promptsPath`), each role's cluster tags the requests it sends upstream with
the rollout, role and revision, and the router writes what each revision serves (model, prompt
text, params) to the bundle, which `envoy_prompts` applies in front of the model server.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from controller import errors, redaction, settings, spec, templates, traffic
from controller.routers import atomic, base, envoy_prompts

VARIANT_HEADER = envoy_prompts.VARIANT_HEADER  # on answers (the route), and on requests upstream (the cluster's tags)
SHADOW_KEY = "shadow"
COHORT_KEY = "cohort"
#: The `filter_metadata` namespace of a cohort's route entries: which rollout, cohort and attribute each is.
METADATA = "llm-rollouts"

#: Envoy's latency histogram bounds in milliseconds, as `rollout render envoy` configures them.
LATENCY_BUCKETS_MS = templates.LATENCY_BUCKETS_MS


def weight_prefix(prefix: str, rollout: str) -> str:
    """The `runtime_key_prefix` of a rollout's weighted clusters; Envoy appends `.<cluster name>`."""
    return f"{prefix}.{rollout}"


def weight_key(prefix: str, rollout: str, variant: str) -> str:
    return f"{weight_prefix(prefix, rollout)}.{spec.cluster_name(rollout, variant)}"


def shadow_key(prefix: str, rollout: str) -> str:
    return f"{weight_prefix(prefix, rollout)}.{SHADOW_KEY}"


def cohort_prefix(prefix: str, rollout: str, cohort: str) -> str:
    """The `runtime_key_prefix` of a cohort's weighted clusters: `<prefix>.<rollout>.cohort.<cohort>`,
    to which Envoy appends `.<cluster name>` (cohort and rollout names are DNS labels: no dot, no clash
    with everyone's keys, whose last part is a cluster name or `shadow`)."""
    return f"{weight_prefix(prefix, rollout)}.{COHORT_KEY}.{cohort}"


CLUSTER_TYPE = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
UPSTREAM_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
HEADER_MUTATION = "envoy.filters.http.header_mutation"
#: What Envoy serves when no runtime override exists: the bootstrap's defaults (also after a restart).
DEFAULTS = traffic.RouteState({traffic.STABLE: 100, traffic.CANARY: 0}, 0)


@dataclass(frozen=True)
class CohortMatch:
    """One cohort as Envoy routes it: requests whose `header` is exactly one of `values` (case-sensitive;
    the header's name is not) are the cohort's, `attribute` being the spec's name for what the header carries."""

    name: str
    attribute: str
    header: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class RunningCohort:
    """A cohort's route entries as Envoy runs them, the runtime prefix their weights follow, and the
    runtime key of the mirror policy that copies their requests to the canary (None: not mirrored)."""

    match: CohortMatch
    runtime_prefix: str
    mirror: str | None = None


@dataclass(frozen=True)
class ClusterView:
    """One cluster as Envoy runs it: its hosts (host:port) and, with a prompt bundle, its request tags."""

    hosts: frozenset[str]
    tags: Mapping[str, str] | None = None  # None: not looked at (no prompt bundle)

    def serves(self, resource: Mapping[str, Any]) -> bool:
        """Whether Envoy runs `resource` as we would write it: same hosts and, if looked at, same tags."""
        return self.hosts == cluster_hosts(resource) and (
            self.tags is None or dict(self.tags) == cluster_tags(resource)
        )


class EnvoyRouter:
    """Reads and writes the runtime keys of the routes rendered by `bootstrap()`.

    `routes` maps a route (spec.route) to its rollout's name, which names the clusters and keys.
    With `cds_path` (the clusters file the bootstrap's `dynamic_resources` names), a write first
    points each role's cluster at the model it now serves by rewriting that file, and waits until
    Envoy runs it; without it, a write that needs another host is refused. With `prompts_path` too
    (the prompt bundle), each cluster also tags its requests with the rollout, role and revision it
    serves, and a write first puts each revision's model, prompt text and params in the bundle.
    A write sets all the keys of every route in its batch in one `POST /runtime_modify`, so a reader
    never sees a half-applied split or half a batch.

    Cohorts live in the route config Envoy runs (`rollout render envoy` puts each cohort's header-matched
    entries ahead of the rollout's weighted route): a read takes each cohort's match from there and its
    weights from the runtime. A write sets the keys of every cohort of the rollout, those the state does
    not list at everyone's weights: the cohorts `cohorts` names (rollout -> its cohort names, from the
    loaded specs) and the state's. Told them, a write needs no `GET /config_dump`, so a rollback is the
    one `POST /runtime_modify` even while Envoy's config listing fails; not told (None), it takes them
    from the route config Envoy runs. A cohort Envoy runs no route for has keys no route reads, and the
    read back shows it missing.
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
        prompts_path: Path | None = None,
        cohort_headers: Mapping[str, str] | None = None,
        cohorts: Mapping[str, Sequence[str]] | None = None,
        cds_timeout: float = settings.Timeouts.envoy_clusters,
        timeout: float = settings.Timeouts.envoy_admin,
        client: httpx.Client | None = None,
    ) -> None:
        if prompts_path is not None and cds_path is None:
            raise errors.RouterError(f"router {name!r}: a prompt bundle needs a CDS file (cdsPath)")
        self.name = name
        self.cds_path = cds_path
        self.prompts_path = prompts_path
        self.cds_timeout = cds_timeout
        self.upstreams = dict(upstreams or {})  # model id -> host:port, as the bootstrap was rendered
        self.admin = admin.rstrip("/")
        # what messages print: an admin URL behind an authenticating proxy may carry its credentials
        self.shown_admin = redaction.redact(self.admin)
        self.location = f"Envoy admin {self.shown_admin}" + (f", clusters in {cds_path}" if cds_path else "")
        self.routes = dict(routes)
        self.runtime_prefix = runtime_prefix
        self.cohort_headers = dict(cohort_headers or {})  # attribute -> header, where not the default rule
        # rollout -> its cohorts' names in spec order; None: not told, a write asks Envoy's route config
        self.cohorts = None if cohorts is None else {rollout: tuple(names) for rollout, names in cohorts.items()}
        self._client = client or httpx.Client(timeout=timeout)

    def close(self) -> None:
        self._client.close()

    def read(self, routes: Sequence[str]) -> dict[str, base.Live]:
        """Every route of the batch from one `GET /runtime`, one cluster listing and one route listing
        (none when no route is on this Envoy); each cohort's match is the one Envoy runs. A route on no
        rollout of this Envoy, or whose clusters the running bootstrap lacks, is None; a malformed
        runtime value, or a cohort entry of its rollout that is not one we render, is that route's
        RouterStateError (and no other route's).

        With a prompt bundle, the listing is `/config_dump`'s clusters, and each role that takes
        traffic says what it serves: the revision its cluster tags requests with, and that revision's
        entry in the bundle (a revision the bundle lacks, or a cluster without tags, reads as a
        revision no spec has, so the next write heals it)."""
        out: dict[str, base.Live] = dict.fromkeys(routes)
        known = {route: rollout for route in out if (rollout := self.routes.get(route)) is not None}
        if not known:
            return out
        operation = f"read {base.routes_text(known)}"
        entries = self._runtime(operation)
        view = self._clusters(operation)
        running, broken = self._running_cohorts(operation)
        bundle: dict[str, Any] | None = None
        if self.prompts_path is not None:
            # A bundle that is not one reads as empty: every role then serves a revision no spec has,
            # the route stays readable (a rollback must still be decided), and the write says why.
            with contextlib.suppress(errors.RouterStateError):
                bundle = self._bundle()
        for route, rollout in known.items():
            if spec.cluster_name(rollout, traffic.STABLE) not in view:
                continue  # Envoy runs a bootstrap without this rollout: runtime keys would change nothing
            if rollout in broken:
                out[route] = errors.RouterStateError(f"{self._where(route)}: {broken[rollout]}")
                continue
            try:
                state = parse_state(
                    entries,
                    prefix=self.runtime_prefix,
                    rollout=rollout,
                    where=self._where(route),
                    cohorts=running.get(rollout, ()),
                    headers=self.cohort_headers,
                )
            except errors.RouterStateError as exc:
                out[route] = exc
                continue
            if self.prompts_path is not None:
                state = traffic.RouteState(
                    state.weights, state.shadow, served_now(state, rollout, view, bundle), cohorts=state.cohorts
                )
            out[route] = state
        return out

    def write(self, states: Mapping[str, traffic.RouteState], fences: base.Fences | None = None) -> None:
        """Every route of the batch in one `POST /runtime_modify`, after checking them all: nothing is
        written when any route is unknown, splits more than stable and canary, or (without a CDS
        file) names an upstream the running bootstrap does not serve; with one, the clusters (and the
        prompt bundle) are brought up to date first (`_apply_clusters`). Every cohort of a route's
        rollout gets its keys (`_cohort_names`; one the state does not list, everyone's weights). The keys
        go in the form body: a query string of a thousand routes' keys would be longer than a URL may be."""
        if not states:
            return
        rollouts: dict[str, str] = {}
        for route, state in states.items():
            rollout = self.routes.get(route)
            if rollout is None:
                raise errors.RouterError(
                    f"router {self.name!r}: route {route!r} is on no rollout of this Envoy, so it has no clusters"
                )
            if state.weight(traffic.STABLE) + state.weight(traffic.CANARY) != 100:
                raise errors.RouterError(
                    f"router {self.name!r} route {route!r}: Envoy splits only stable and canary, got {state.describe()}"
                )
            rollouts[route] = rollout
        operation = f"write {base.routes_text(states)}"
        cohorts = self._cohort_names(states, rollouts, operation)
        if self.cds_path is not None:
            self._apply_clusters(states, rollouts, cohorts, operation)
        else:
            self._check_upstreams(states, rollouts, operation)
        values: dict[str, str] = {}
        for route, state in states.items():
            rollout = rollouts[route]
            values.update(runtime_values(state, prefix=self.runtime_prefix, rollout=rollout, cohorts=cohorts[rollout]))
        self._runtime_modify(values, operation)

    def _cohort_names(
        self, states: Mapping[str, traffic.RouteState], rollouts: Mapping[str, str], operation: str
    ) -> dict[str, tuple[str, ...]]:
        """rollout -> the cohorts whose keys a write of the batch sets: the state's and those the router
        was told, in that order of first mention. Not told, the cohorts Envoy runs for the rollout too
        (one `GET /config_dump`): a cohort entry of a rollout of the batch that is not one we render then
        refuses the write, naming its route, with nothing written; another rollout's never does."""
        running: Mapping[str, Sequence[RunningCohort]] = {}
        if self.cohorts is None:
            running, broken = self._running_cohorts(operation)
            for route, rollout in rollouts.items():
                if rollout in broken:
                    raise errors.RouterStateError(
                        f"{self._where(route)}: {operation}: {broken[rollout]}; nothing was written"
                    )
        told = self.cohorts or {}
        return {
            rollout: tuple(
                dict.fromkeys(
                    [c.name for c in states[route].cohorts]
                    + list(told.get(rollout, ()))
                    + [r.match.name for r in running.get(rollout, ())]
                )
            )
            for route, rollout in rollouts.items()
        }

    def _runtime_modify(self, values: Mapping[str, str], operation: str) -> None:
        response = self._call("POST", "/runtime_modify", operation, data=values)
        if response.status_code != 200:
            raise errors.RouterError(
                f"router {self.name!r}: {operation}: runtime_modify answered "
                f"{response.status_code}: {response.text.strip()[:200]}"
            )

    def _check_upstreams(
        self, states: Mapping[str, traffic.RouteState], rollouts: Mapping[str, str], operation: str
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
            if role in (traffic.STABLE, traffic.CANARY)
            and (state.weight(role) > 0 or (role == traffic.CANARY and bool(state.cohorts)))
            and served.model in self.upstreams
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

    def _wanted(
        self, states: Mapping[str, traffic.RouteState], rollouts: Mapping[str, str]
    ) -> dict[str, dict[str, Any]]:
        """cluster name -> the CDS resource each role's cluster must be: the upstream of the model it
        serves and, with a prompt bundle, the tags of its revision. Without a bundle a model with no
        upstream is left alone (the loader refuses such rollouts); with one it is refused, since a
        stale tag would serve another revision's prompt."""
        wanted: dict[str, dict[str, Any]] = {}
        for route, state in states.items():
            rollout = rollouts[route]
            for role, served in state.served.items():
                if role not in (traffic.STABLE, traffic.CANARY):
                    continue
                host = self.upstreams.get(served.model)
                if host is None:
                    if self.prompts_path is not None:
                        raise errors.RouterError(
                            f"{self._where(route)}: {role} serves {served.model}, which has no entry in the router's "
                            "upstreams; nothing was written"
                        )
                    continue
                name = spec.cluster_name(rollout, role)
                wanted[name] = cluster_resource(
                    name, host, tags(rollout, role, served.revision) if self.prompts_path is not None else None
                )
        return wanted

    def _apply_clusters(
        self,
        states: Mapping[str, traffic.RouteState],
        rollouts: Mapping[str, str],
        cohorts: Mapping[str, Sequence[str]],
        operation: str,
    ) -> None:
        """Make each role's cluster serve what it now serves (`_wanted`): with a prompt bundle, first
        put every revision in the bundle; then rewrite the CDS file (under its lock, atomically: Envoy
        reloads it when a file is moved onto its path) and wait until Envoy runs it. A wait that runs
        out is a RouterVerifyError and no weight is written, so a completion never sends `stable`
        traffic to the old model.

        When a route's canary is to serve something new (another host or revision) the canary first
        goes to 0 and shadow off on that route, in every cohort too, in one `POST /runtime_modify`:
        between the cluster switch and the weights, the new canary would otherwise take the old canary's
        traffic, exposure no commit granted. Lowering is always allowed; the weights that follow set the step's."""
        assert self.cds_path is not None
        # a canary that gets no traffic in its new state, in no cohort either (a rollback), need not serve
        # anything yet: a write that only lowers never waits on a cluster or bundle switch, nor fails for one
        idle = {rollouts[r] for r, state in states.items() if traffic.exposure_free(state)}
        wanted = {
            name: resource
            for name, resource in self._wanted(states, rollouts).items()
            if name not in {spec.cluster_name(rollout, traffic.CANARY) for rollout in idle}
        }
        if not wanted:
            return
        view = self._clusters(operation)
        stale = {name for name, resource in wanted.items() if name not in view or not view[name].serves(resource)}
        missing = self._bundle_missing(states, rollouts) if self.prompts_path is not None else {}
        for rollout in idle:
            missing.get(rollout, set()).discard(traffic.CANARY)
        missing = {rollout: roles for rollout, roles in missing.items() if roles}
        if not stale and not missing:
            return  # Envoy and the bundle already serve it: no file is touched (a rollback never waits on one)
        lower = {
            route: rollout
            for route, rollout in rollouts.items()
            if traffic.CANARY in states[route].served
            and (spec.cluster_name(rollout, traffic.CANARY) in stale or traffic.CANARY in missing.get(rollout, ()))
        }
        if lower:
            down = traffic.RouteState({traffic.STABLE: 100, traffic.CANARY: 0}, 0)
            values = {
                k: v
                for rollout in lower.values()
                for k, v in runtime_values(
                    down, prefix=self.runtime_prefix, rollout=rollout, cohorts=cohorts[rollout]
                ).items()
            }
            self._runtime_modify(values, f"{operation}: lower the canary before it changes")
        try:
            self._switch(wanted, stale, states, rollouts, view, operation)
        except errors.RouterError as exc:
            if not lower:
                raise
            raise type(exc)(
                f"{exc} (the canary of {base.routes_text(lower)} went to 0 first, and stays there)"
            ) from exc

    def _switch(
        self,
        wanted: Mapping[str, dict[str, Any]],
        stale: set[str],
        states: Mapping[str, traffic.RouteState],
        rollouts: Mapping[str, str],
        view: Mapping[str, ClusterView],
        operation: str,
    ) -> None:
        """The bundle, then the CDS file, then the wait until Envoy runs every stale cluster as wanted."""
        assert self.cds_path is not None
        if self.prompts_path is not None:
            self._write_bundle(states, rollouts, view, operation)
        if not stale:
            return
        self._write_cds(wanted, operation)
        path = self.cds_path
        deadline = time.monotonic() + self.cds_timeout
        while True:
            view = self._clusters(operation)
            late = {name for name in stale if name not in view or not view[name].serves(wanted[name])}
            if not late:
                return
            if time.monotonic() >= deadline:
                have = "; ".join(
                    f"{name} serves {_describe(view.get(name))}, want {_describe_resource(wanted[name])}"
                    for name in sorted(late)
                )
                raise errors.RouterVerifyError(
                    f"router {self.name!r}: {operation}: Envoy did not load {path} within "
                    f"{self.cds_timeout:g}s ({have}); no weight was written"
                )
            time.sleep(0.05)  # polling Envoy's admin until the file is loaded, bounded by the deadline

    def _write_cds(self, wanted: Mapping[str, dict[str, Any]], operation: str) -> None:
        """Put the wanted clusters in the CDS file, keeping every other resource; a file that already
        says so is not rewritten (Envoy would reload it for nothing)."""
        assert self.cds_path is not None
        path = self.cds_path
        try:
            with atomic.locked(path):
                document = atomic.read_json(path, router=self.name)
                resources = document.get("resources") if isinstance(document, dict) else None
                if not isinstance(resources, list):
                    raise errors.RouterStateError(
                        f"router {self.name!r}: {operation}: {path} is not a CDS file with 'resources' "
                        "(render it with `rollout render envoy`); nothing was written"
                    )
                index = {r.get("name"): i for i, r in enumerate(resources) if isinstance(r, dict)}
                changed = False
                for name, cluster in wanted.items():
                    at = index.get(name)
                    if at is None:
                        resources.append(cluster)
                    elif resources[at] != cluster:
                        resources[at] = cluster
                    else:
                        continue
                    changed = True
                if changed:
                    document["version_info"] = str(time.time_ns())
                    atomic.replace_json(path, document)
        except OSError as exc:
            raise errors.RouterUnavailable(
                f"router {self.name!r}: {operation}: cannot write {path}: {exc}; nothing was written"
            ) from exc

    # -- the prompt bundle -----------------------------------------------------------------------

    def _bundle(self) -> dict[str, Any] | None:
        """The prompt bundle as the file says (None: no file yet); RouterStateError if it is not one."""
        assert self.prompts_path is not None
        document = atomic.read_json(self.prompts_path, router=self.name)
        if document is None:
            return None
        try:
            return envoy_prompts.validate(document)
        except ValueError as exc:
            raise errors.RouterStateError(
                f"router {self.name!r}: {self.prompts_path}: {exc} (render it with `rollout render envoy`)"
            ) from exc

    def _bundle_missing(
        self, states: Mapping[str, traffic.RouteState], rollouts: Mapping[str, str]
    ) -> dict[str, set[str]]:
        """rollout -> the roles of the batch whose revision the bundle does not hold as it should (every
        role, when the bundle cannot be read); rollouts that lack none are left out."""
        try:
            document = self._bundle() or {"rollouts": {}}
        except errors.RouterStateError:
            document = {"rollouts": {}}
        out: dict[str, set[str]] = {}
        for route, state in states.items():
            entries = (document["rollouts"].get(rollouts[route]) or {}).get("revisions") or {}
            for role, served in state.served.items():
                if entries.get(served.revision) != bundle_entry(served):
                    out.setdefault(rollouts[route], set()).add(role)
        return out

    def _write_bundle(
        self,
        states: Mapping[str, traffic.RouteState],
        rollouts: Mapping[str, str],
        view: Mapping[str, ClusterView],
        operation: str,
    ) -> None:
        """Put what each variant of the batch serves in the bundle, keeping the revisions Envoy's
        clusters tag requests with until they are switched (so a request in between still finds its
        entry) and every other rollout's entry; an unchanged bundle is not rewritten."""
        assert self.prompts_path is not None
        path = self.prompts_path
        update = {rollouts[route]: (route, state.served) for route, state in states.items() if state.served}
        keep = {
            rollout: {
                tag
                for role in (traffic.STABLE, traffic.CANARY)
                if (seen := view.get(spec.cluster_name(rollout, role))) is not None
                and (tag := (seen.tags or {}).get(envoy_prompts.REVISION_HEADER))
            }
            for rollout in update
        }
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic.locked(path):
                current = self._bundle()
                document = bundle_update(current, update, keep=keep)
                if document != current:
                    atomic.replace_json(path, document)
        except errors.RouterStateError as exc:
            raise errors.RouterStateError(f"{exc}; {operation}: no weight was written") from exc
        except OSError as exc:
            raise errors.RouterUnavailable(
                f"router {self.name!r}: {operation}: cannot write {path}: {exc}; no weight was written"
            ) from exc

    # -- what Envoy runs ---------------------------------------------------------------------------

    def _clusters(self, operation: str) -> dict[str, ClusterView]:
        """Every cluster Envoy runs: with a prompt bundle from `/config_dump` (hosts and tags of the
        clusters from the CDS file), else from `/clusters` (hosts only)."""
        if self.prompts_path is None:
            return {name: ClusterView(frozenset(hosts)) for name, hosts in self._cluster_hosts(operation).items()}
        response = self._call("GET", "/config_dump", operation, params={"resource": "dynamic_active_clusters"})
        if response.status_code != 200:
            raise errors.RouterUnavailable(
                f"router {self.name!r}: {operation}: GET /config_dump answered {response.status_code}"
            )
        try:
            out: dict[str, ClusterView] = {}
            for config in response.json().get("configs", []):
                cluster = config["cluster"]
                out[str(cluster["name"])] = ClusterView(cluster_hosts(cluster), cluster_tags(cluster))
            return out
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise errors.RouterStateError(
                f"router {self.name!r}: {operation}: /config_dump did not answer the expected JSON"
            ) from exc

    def _running_cohorts(self, operation: str) -> tuple[dict[str, list[RunningCohort]], dict[str, str]]:
        """`running_cohorts` of the route config Envoy runs (the bootstrap's static route config, from
        `/config_dump`): rollout -> its cohorts in the order Envoy tries them, and rollout -> why its
        cohort entries are not ones we render. Raises only for the listing as a whole."""
        response = self._call("GET", "/config_dump", operation, params={"resource": "static_route_configs"})
        if response.status_code != 200:
            raise errors.RouterUnavailable(
                f"router {self.name!r}: {operation}: GET /config_dump answered {response.status_code}"
            )
        try:
            configs = response.json().get("configs", [])
            return running_cohorts([config["route_config"] for config in configs])
        except (ValueError, KeyError, TypeError, AttributeError) as exc:  # the listing itself, not an entry
            raise errors.RouterStateError(
                f"router {self.name!r}: {operation}: /config_dump's route configs are not the expected JSON"
            ) from exc

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
                f"router {self.name!r}: {operation}: Envoy admin at {self.shown_admin} did not answer "
                f"({type(exc).__name__})"
            ) from exc

    def _where(self, route: str) -> str:
        return f"router {self.name!r} route {route!r}"


def runtime_values(
    state: traffic.RouteState, *, prefix: str, rollout: str, cohorts: Sequence[str] = ()
) -> dict[str, str]:
    """The runtime keys that put a route in `state`; never all weights 0 (RouteState forbids it). Each
    cohort named in `cohorts` gets the state's cohort of that name, or everyone's weights."""
    values = {
        weight_key(prefix, rollout, traffic.STABLE): str(state.weight(traffic.STABLE)),
        weight_key(prefix, rollout, traffic.CANARY): str(state.weight(traffic.CANARY)),
        shadow_key(prefix, rollout): str(state.shadow),
    }
    for name in cohorts:
        split = state.cohort(name)
        canary = split.canary if split is not None else state.weight(traffic.CANARY)
        keys = cohort_prefix(prefix, rollout, name)
        values[f"{keys}.{spec.cluster_name(rollout, traffic.STABLE)}"] = str(100 - canary)
        values[f"{keys}.{spec.cluster_name(rollout, traffic.CANARY)}"] = str(canary)
    return values


def parse_state(
    entries: Mapping[str, Any],
    *,
    prefix: str,
    rollout: str,
    where: str,
    cohorts: Sequence[RunningCohort] = (),
    headers: Mapping[str, str] | None = None,
) -> traffic.RouteState:
    """The live split from `/runtime` entries; a key without an override takes the bootstrap default.

    A value Envoy would silently replace by its default (not a whole number), or a split that does
    not sum to 100, is a RouterStateError: we report what we cannot trust instead of guessing.

    Each of `cohorts` (as Envoy runs them) is read from the keys under its runtime prefix; with shadow on,
    one whose entries do not mirror to the canary by everyone's shadow key is an error (the shadow would
    be a share of everyone else's requests only, not what the state says). Its attribute
    is the one its entries say, unless Envoy matches it on another header than the attribute's
    (`headers`: the router's cohortHeaders): then it reads as `attribute (header h)`, an attribute no
    spec has, so a render older than the router's config shows as a mismatch, never as success.
    """
    weights = {
        role: (weight_key(prefix, rollout, role), DEFAULTS.weight(role)) for role in (traffic.STABLE, traffic.CANARY)
    }
    everyone = {role: _percent(entries, key, default, where) for role, (key, default) in weights.items()}
    shadow = _percent(entries, shadow_key(prefix, rollout), DEFAULTS.shadow, where)
    splits = []
    for running in cohorts:
        keys = {role: f"{running.runtime_prefix}.{spec.cluster_name(rollout, role)}" for role in weights}
        split = {role: _percent(entries, key, DEFAULTS.weight(role), where) for role, key in keys.items()}
        if sum(split.values()) != 100:
            raise errors.RouterStateError(
                f"{where}: cohort {running.match.name!r}: runtime keys {keys[traffic.STABLE]} and "
                f"{keys[traffic.CANARY]} are not a split of 100 ({split})"
            )
        if shadow and running.mirror != shadow_key(prefix, rollout):
            raise errors.RouterStateError(
                f"{where}: shadow {shadow}% mirrors none of cohort {running.match.name!r}'s requests: Envoy runs "
                "a render from before cohorts were mirrored; render again (`rollout render envoy`) and restart Envoy"
            )
        match = running.match
        key = match.attribute
        if match.header != spec.cohort_header(match.attribute, headers or {}):
            key = f"{match.attribute} (header {match.header})"
        splits.append(traffic.CohortSplit(match.name, key, match.values, split[traffic.CANARY]))
    try:
        return traffic.RouteState(everyone, shadow, cohorts=tuple(splits))
    except ValueError as exc:
        raise errors.RouterStateError(f"{where}: live runtime is not a valid split: {exc}") from exc


def _percent(entries: Mapping[str, Any], key: str, default: int, where: str) -> int:
    """One runtime key's whole percent: its override, else `default`; RouterStateError for anything else."""
    entry = entries.get(key)
    raw = entry.get("final_value") if isinstance(entry, dict) else None
    if raw is None or raw == "":
        return default
    try:
        number = int(str(raw))
    except ValueError:
        number = -1
    if not 0 <= number <= 100:
        raise errors.RouterStateError(f"{where}: runtime key {key} holds {raw!r}, not a whole percent")
    return number


def running_cohorts(
    route_configs: Sequence[Mapping[str, Any]],
) -> tuple[dict[str, list[RunningCohort]], dict[str, str]]:
    """The cohorts of these route configs (as `/config_dump` shows them), rollout by rollout: rollout ->
    its cohorts in route order (the entries `bootstrap()` marks with METADATA, one per value, grouped by
    cohort), and rollout -> why one of its marked entries is not one we render (then none of its
    cohorts is listed). Entries of one cohort that disagree on header, attribute, runtime prefix or
    mirror read as two cohorts of one name, which no state accepts (the read says so). KeyError,
    TypeError or ValueError only when the configs themselves, or a marked entry's rollout, cannot be
    read: one rollout's hand-edited entry never hides another rollout's cohorts."""
    found: dict[str, dict[tuple[str, str, str, str, str | None], list[str]]] = {}
    broken: dict[str, str] = {}
    for config in route_configs:
        for host in config.get("virtual_hosts", []):
            for route in host.get("routes", []):
                marked = ((route.get("metadata") or {}).get("filter_metadata") or {}).get(METADATA)
                if marked is None:
                    continue
                rollout = marked["rollout"]
                if not isinstance(rollout, str):
                    raise TypeError(f"route entry {route.get('name')!r} names no rollout")
                try:
                    key, value = _cohort_entry(route, marked)
                except (KeyError, TypeError, ValueError) as exc:
                    broken.setdefault(
                        rollout,
                        f"Envoy runs a cohort route entry {route.get('name')!r} that `rollout render envoy` does not "
                        f"write ({_reason(exc)}): render again and restart Envoy",
                    )
                    continue
                found.setdefault(rollout, {}).setdefault(key, []).append(value)
    out: dict[str, list[RunningCohort]] = {}
    for rollout, cohorts in found.items():
        if rollout in broken:
            continue
        out[rollout] = [
            RunningCohort(CohortMatch(name, attribute, header, tuple(values)), prefix, mirror)
            for (name, attribute, header, prefix, mirror), values in cohorts.items()
        ]
    return out, broken


def _cohort_entry(
    route: Mapping[str, Any], marked: Mapping[str, Any]
) -> tuple[tuple[str, str, str, str, str | None], str]:
    """((cohort, attribute, header, runtime prefix, mirror key), value) of one marked route entry, as
    `cohort_entries` renders it: exactly one header matched exactly. Raises when it is not."""
    headers = route["match"]["headers"]
    if len(headers) != 1:
        raise ValueError(f"it matches {len(headers)} headers, not one")
    (header,) = headers
    if set(header) != {"name", "string_match"} or set(header["string_match"]) != {"exact"}:
        raise ValueError(f"header {header.get('name')!r} is not matched by one exact value")
    action = route["route"]
    mirrors = [p["runtime_fraction"]["runtime_key"] for p in action.get("request_mirror_policies", [])]
    if len(mirrors) > 1:
        raise ValueError(f"it has {len(mirrors)} mirror policies, not one")
    name, attribute = marked["cohort"], marked["attribute"]
    if not isinstance(name, str) or not isinstance(attribute, str):
        raise TypeError("its metadata names no cohort or attribute")
    key = (name, attribute, str(header["name"]).lower(), str(action["weighted_clusters"]["runtime_key_prefix"]))
    return (*key, str(mirrors[0]) if mirrors else None), str(header["string_match"]["exact"])


def _reason(exc: Exception) -> str:
    return f"no {exc}" if isinstance(exc, KeyError) else str(exc)


# -- the bootstrap ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RouteSpec:
    """What `bootstrap()` needs of one rollout: its name, its route, each variant's upstream and, with a
    prompt bundle, each variant's revision (its cluster then tags its requests; see `tags()`)."""

    rollout: str
    route: str
    upstreams: Mapping[str, str]  # variant role -> host:port
    revisions: Mapping[str, str] = field(default_factory=dict)  # variant role -> revision; empty: no tags
    cohorts: Sequence[CohortMatch] = ()  # in precedence order


def _address(host_port: str, *, what: str) -> dict[str, Any]:
    host, sep, port = host_port.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise errors.RouterError(f"{what}: {host_port!r} is not host:port")
    return {"socket_address": {"address": host.strip("[]"), "port_value": int(port)}}


def tags(rollout: str, role: str, revision: str) -> dict[str, str]:
    """The headers a role's cluster sets on every request it sends upstream (mirrored ones too): what
    `envoy_prompts` looks the variant up by. They overwrite whatever a client sent."""
    return {
        envoy_prompts.NAME_HEADER: rollout,
        envoy_prompts.VARIANT_HEADER: role,
        envoy_prompts.REVISION_HEADER: revision,
    }


def cluster_resource(name: str, upstream: str, tags: Mapping[str, str] | None = None) -> dict[str, Any]:
    """One variant's cluster: a single static endpoint, as a typed CDS resource. With `tags`, an
    upstream HTTP filter (header_mutation, then the upstream codec) sets them on each request this
    cluster sends, so a mirrored request is tagged by the cluster it goes to, not the route's pick."""
    cluster: dict[str, Any] = {
        "@type": CLUSTER_TYPE,
        "name": name,
        "type": "STATIC",
        "connect_timeout": "2s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _address(upstream, what=name)}}]}],
        },
    }
    if tags:
        mutations = [
            {"append": {"header": {"key": key, "value": value}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}}
            for key, value in tags.items()
        ]
        cluster["typed_extension_protocol_options"] = {
            UPSTREAM_OPTIONS: {
                "@type": f"type.googleapis.com/{UPSTREAM_OPTIONS}",
                "explicit_http_config": {"http_protocol_options": {}},
                "http_filters": [
                    {
                        "name": HEADER_MUTATION,
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
                            "mutations": {"request_mutations": mutations},
                        },
                    },
                    {
                        "name": "envoy.filters.http.upstream_codec",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec"
                        },
                    },
                ],
            }
        }
    return cluster


def cluster_hosts(cluster: Mapping[str, Any]) -> frozenset[str]:
    """host:port of every endpoint of a cluster resource (as written, or as `/config_dump` shows it)."""
    out = set()
    for group in (cluster.get("load_assignment") or {}).get("endpoints", []):
        for endpoint in group.get("lb_endpoints", []):
            sock = endpoint["endpoint"]["address"].get("socket_address")
            if sock is not None:
                out.add(f"{sock['address']}:{sock['port_value']}")
    return frozenset(out)


def cluster_tags(cluster: Mapping[str, Any]) -> dict[str, str]:
    """The request headers a cluster resource's header_mutation upstream filter sets ({} for none)."""
    options = (cluster.get("typed_extension_protocol_options") or {}).get(UPSTREAM_OPTIONS) or {}
    out: dict[str, str] = {}
    for http_filter in options.get("http_filters", []):
        if http_filter.get("name") != HEADER_MUTATION:
            continue
        for mutation in http_filter["typed_config"].get("mutations", {}).get("request_mutations", []):
            header = (mutation.get("append") or {}).get("header")
            if header is not None:
                out[str(header["key"])] = str(header.get("value", ""))
    return out


def _describe(view: ClusterView | None) -> str:
    if view is None:
        return "nothing (no such cluster)"
    hosts = ", ".join(sorted(view.hosts)) or "no host"
    revision = (view.tags or {}).get(envoy_prompts.REVISION_HEADER)
    return hosts + (f" (revision {revision})" if revision else " (untagged)" if view.tags is not None else "")


def _describe_resource(cluster: Mapping[str, Any]) -> str:
    revision = cluster_tags(cluster).get(envoy_prompts.REVISION_HEADER)
    return ", ".join(sorted(cluster_hosts(cluster))) + (f" (revision {revision})" if revision else "")


def cds(routes: Sequence[RouteSpec]) -> dict[str, Any]:
    """The CDS file of `bootstrap(..., cds_path=...)`: a cluster per variant of every rollout, tagged
    with its revision where the RouteSpec has one."""
    return {
        "version_info": "0",
        "resources": [
            cluster_resource(
                spec.cluster_name(r.rollout, role),
                upstream,
                tags(r.rollout, role, r.revisions[role]) if role in r.revisions else None,
            )
            for r in routes
            for role, upstream in r.upstreams.items()
        ],
    }


# -- the prompt bundle -----------------------------------------------------------------------------


def bundle_entry(served: traffic.Served) -> dict[str, Any]:
    """What one revision serves, as the bundle holds it (`envoy_prompts.lookup` reads it back)."""
    return {
        "model": served.model,
        "prompt": served.prompt,
        "promptText": served.prompt_text,
        "params": dict(served.params),
    }


def bundle_update(
    current: Mapping[str, Any] | None,
    rollouts: Mapping[str, tuple[str, Mapping[str, traffic.Served]]],
    *,
    keep: Mapping[str, set[str]] | None = None,
) -> dict[str, Any]:
    """The bundle with each rollout of `rollouts` (name -> (route, role -> what it serves)) replaced:
    `route`, `roles` (role -> revision) and `revisions` (revision -> entry) for every role, plus the
    revisions in `keep[name]` that `current` holds. Every other rollout is kept as it is."""
    document: dict[str, Any] = {"version": envoy_prompts.FORMAT_VERSION, "rollouts": {}}
    if current is not None:
        document["rollouts"] = {name: entry for name, entry in current["rollouts"].items()}
    for name, (route, served) in rollouts.items():
        before = (document["rollouts"].get(name) or {}).get("revisions") or {}
        revisions = {rev: entry for rev, entry in before.items() if rev in (keep or {}).get(name, set())}
        revisions.update((s.revision, bundle_entry(s)) for s in served.values())
        document["rollouts"][name] = {
            "route": route,
            "roles": {role: s.revision for role, s in served.items()},
            "revisions": dict(sorted(revisions.items())),
        }
    return document


def served_now(
    state: traffic.RouteState, rollout: str, view: Mapping[str, ClusterView], bundle: Mapping[str, Any] | None
) -> dict[str, traffic.Served]:
    """What each role that takes traffic (weight; for the canary shadow or a cohort too) serves as Envoy runs it: the
    revision its cluster tags requests with, and the bundle's entry for it. A cluster without tags,
    or a revision the bundle lacks, reads as a revision no spec has (the request would not be served
    as its variant), so `plan` sees the drift and the next write heals it."""
    out: dict[str, traffic.Served] = {}
    entries = ((bundle or {}).get("rollouts", {}).get(rollout) or {}).get("revisions") or {}
    for role in (traffic.STABLE, traffic.CANARY):
        if not (state.weight(role) or (role == traffic.CANARY and not traffic.exposure_free(state))):
            continue
        seen = view.get(spec.cluster_name(rollout, role))
        revision = ((seen.tags if seen else None) or {}).get(envoy_prompts.REVISION_HEADER)
        entry = entries.get(revision) if revision else None
        if revision is None:
            out[role] = traffic.Served("", revision="(untagged: its cluster sets no x-rollout headers)")
        elif not isinstance(entry, dict) or not isinstance(entry.get("model"), str):
            out[role] = traffic.Served("", revision=f"{revision} (not in the prompt bundle)")
        else:
            out[role] = traffic.Served(
                entry["model"], entry.get("prompt"), revision, entry.get("params") or {}, entry.get("promptText")
            )
    return out


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
    copy of `shadow` percent of requests. Each cohort's entries come first (`cohort_entries`).
    `split_header` (tests only) lets a request pick its bucket 0-99 so that a split can be asserted
    exactly.
    """
    admin_url = urlsplit(admin)
    if not admin_url.hostname or admin_url.port is None:
        raise errors.RouterError(f"admin address {redaction.redact(admin)!r} needs a host and a port")
    virtual_routes: list[dict[str, Any]] = []
    for r in routes:
        virtual_routes += cohort_entries(
            r, runtime_prefix=runtime_prefix, split_header=split_header, timeout=route_timeout
        )
        everyone = _action(r, weight_prefix(runtime_prefix, r.rollout), split_header, route_timeout, runtime_prefix)
        virtual_routes.append({"name": r.rollout, "match": {"prefix": f"/{r.route}/"}, "route": everyone})
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


def cohort_entries(
    r: RouteSpec, *, runtime_prefix: str, split_header: str | None, timeout: str
) -> list[dict[str, Any]]:
    """A rollout's cohort route entries, ahead of its weighted route in precedence order: one per value
    (an exact, case-sensitive match of the cohort's header; Envoy matches header names in any case),
    each split between the same two clusters by the cohort's runtime keys (`cohort_prefix`) and marked
    with METADATA so that a read finds them. Each mirrors to the canary by everyone's shadow key, as
    everyone's route does: `shadow` is a share of every request of the route, a cohort's too (a request
    a cohort sends to the canary is then mirrored to it as well, as everyone's are)."""
    out = []
    for cohort in r.cohorts:
        key_prefix = cohort_prefix(runtime_prefix, r.rollout, cohort.name)
        out += [
            {
                "name": f"{r.rollout}/{COHORT_KEY}/{cohort.name}/{i}",
                "match": {
                    "prefix": f"/{r.route}/",
                    "headers": [{"name": cohort.header, "string_match": {"exact": value}}],
                },
                "route": _action(r, key_prefix, split_header, timeout, runtime_prefix),
                "metadata": {
                    "filter_metadata": {
                        METADATA: {"rollout": r.rollout, "cohort": cohort.name, "attribute": cohort.attribute}
                    }
                },
            }
            for i, value in enumerate(cohort.values)
        ]
    return out


def _action(
    r: RouteSpec, key_prefix: str, split_header: str | None, timeout: str, runtime_prefix: str
) -> dict[str, Any]:
    """A route entry's action: the weighted clusters under `key_prefix` and, when the rollout has a
    canary, the mirror of the rollout's shadow percent to it (every entry of a rollout shares one key)."""
    action: dict[str, Any] = {
        "weighted_clusters": _weighted(r, key_prefix, split_header),
        "prefix_rewrite": "/",
        "timeout": timeout,
    }
    if traffic.CANARY in r.upstreams:
        action["request_mirror_policies"] = [
            {
                "cluster": spec.cluster_name(r.rollout, traffic.CANARY),
                "runtime_fraction": {
                    "default_value": {"numerator": DEFAULTS.shadow, "denominator": "HUNDRED"},
                    "runtime_key": shadow_key(runtime_prefix, r.rollout),
                },
            }
        ]
    return action


def _weighted(r: RouteSpec, key_prefix: str, split_header: str | None) -> dict[str, Any]:
    """A rollout's weighted clusters whose weights follow the runtime keys `<key_prefix>.<cluster>`,
    defaulting to DEFAULTS; each answer says which role served it."""
    weighted: dict[str, Any] = {
        "runtime_key_prefix": key_prefix,
        "clusters": [
            {
                "name": spec.cluster_name(r.rollout, role),
                "weight": DEFAULTS.weight(role),
                "response_headers_to_add": [
                    {"header": {"key": VARIANT_HEADER, "value": role}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
                ],
            }
            for role in (traffic.STABLE, traffic.CANARY)
            if role in r.upstreams
        ],
    }
    if split_header:
        weighted["header_name"] = split_header
    return weighted


def route_specs(
    rollouts: Sequence[tuple[str, str, Mapping[str, str]]],
    *,
    upstreams: Mapping[str, str],
    revisions: Mapping[str, Mapping[str, str]] | None = None,
    cohorts: Mapping[str, Sequence[CohortMatch]] | None = None,
) -> list[RouteSpec]:
    """(rollout name, route, variant role -> model id) -> RouteSpecs, resolving models via `upstreams`;
    `revisions` (rollout -> role -> revision), with a prompt bundle, makes each cluster tag its requests;
    `cohorts` (rollout -> its cohorts in precedence order) puts their entries ahead of its route."""
    out = []
    for rollout, route, models in rollouts:
        resolved = {}
        for role, model in models.items():
            if model not in upstreams:
                raise errors.RouterError(
                    f"rollout {rollout!r}: model {model!r} ({role}) has no entry in the Envoy router's upstreams"
                )
            resolved[role] = upstreams[model]
        tagged = {role: rev for role, rev in (revisions or {}).get(rollout, {}).items() if role in resolved}
        mine = tuple((cohorts or {}).get(rollout, ()))
        out.append(RouteSpec(rollout=rollout, route=route, upstreams=resolved, revisions=tagged, cohorts=mine))
    return out
