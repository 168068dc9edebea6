"""The LiteLLM router: a route is a model group, a variant a deployment (`model_info.id`), its weight
`litellm_params.weight`, what it serves (model, params, system prompt, revision) its `litellm_params`
and `model_info.rollout`, and shadow traffic LiteLLM's traffic mirroring: stable's
`litellm_params.silent_model` names the canary's deployment. Reads `GET /model/info`; writes the
weights file that our proxy callback (`litellm_callback.py`) applies live. The CLI builds it and
renders the `model_list`; the reconciler only reads and writes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from controller import carries, errors, settings, spec, templates, traffic
from controller.routers import atomic, base

FORMAT_VERSION = 2  # of the weights file; litellm_callback.VERSIONS reads it (and version 1, weights only)
CALLBACK = "controller.routers.litellm_callback.weights"


#: LiteLLM 1.106.2 asks `/metrics/` for a key unless this `litellm_settings` key is false.
METRICS_AUTH = "require_auth_for_metrics_endpoint"


def metrics_settings() -> dict[str, Any]:
    """The proxy's `litellm_settings` the gates need: the weights callback and LiteLLM's Prometheus
    callback, with `prometheus_latency_buckets` set first (LiteLLM builds its histograms when the
    callback loads) to the rendered latency bounds, 4-10% apart: LiteLLM's default buckets are 2-3x
    apart from 1 s to 30 s, where no latency gate under +100% could pass. And `/metrics/` open to
    Prometheus, which would otherwise need the master key (a proxy with a master key asks for one)."""
    return {
        "prometheus_latency_buckets": list(templates.LATENCY_BUCKETS),
        "callbacks": ["prometheus", CALLBACK],
        METRICS_AUTH: False,
    }


ROLES = (traffic.STABLE, traffic.CANARY)
#: `model_info` key of what our deployments serve and how their group is routed (litellm_callback.INFO_KEY).
INFO_KEY = "rollout"
#: The one routing strategy under which LiteLLM 1.106.2 honours `litellm_params.weight`.
WEIGHTED = carries.WEIGHTED
#: What a deployment of ours serves when the proxy does not say (rendered before revisions were recorded).
UNKNOWN_REVISION = "unknown"
#: litellm_params that the rollout owns: a variant's params and the router's `deployments` must not set them.
RESERVED = frozenset({"model", "weight", "silent_model"})
#: The one shadow LiteLLM can carry besides 0: `silent_model` mirrors every request a deployment serves.
MIRROR_ALL = 100
#: The `model_info` key that, false, keeps a waiting canary's group out of `/v1/models` (litellm_callback.DISCOVERABLE).
DISCOVERABLE = "discoverable"
#: The `litellm_params` key that mirrors a deployment's requests to another (LiteLLM 1.106.2's router).
SILENT_MODEL = carries.SILENT_MODEL


def shadow_group(route: str) -> str:
    """The model group a shadowed canary (weight 0) waits in, outside its route's group: there LiteLLM
    never picks it for a user's request, even when stable is cooling down (a group whose weights are
    all 0 is split evenly), and stable's `silent_model` reaches it by its deployment id
    (litellm_callback.shadow_group)."""
    return f"{route}:shadow"


def deployment_id(rollout: str, variant: str) -> str:
    return spec.cluster_name(rollout, variant)


def weights_for(state: traffic.RouteState, *, rollout: str, where: str) -> dict[str, int]:
    """deployment id -> weight for one route's state; refuses what LiteLLM cannot do.

    Shadow: LiteLLM mirrors every request a deployment serves (`silent_model`) or none, so a shadow
    other than 0 or 100 is an error, never rounded (`rollout validate` reports it earlier, as R007);
    so is a shadow with stable at 0, which would leave no request to mirror.
    """
    if state.shadow not in (0, MIRROR_ALL):
        raise errors.RouterError(
            f"{where}: LiteLLM mirrors every request or none (silent_model), so shadow {state.shadow}% "
            f"cannot be applied; use shadow {MIRROR_ALL}"
        )
    if state.shadow and not state.weight(traffic.STABLE):
        raise errors.RouterError(f"{where}: shadow with stable at 0 mirrors nothing: {state.describe()}")
    # a role at 0 has nothing to route (the old stable kept warm after a completion: LiteLLM keeps no
    # deployment out of the list warm); only one that would take traffic is refused
    extra = sorted(role for role in set(state.weights) - set(ROLES) if state.weight(role))
    if extra:
        raise errors.RouterError(f"{where}: LiteLLM routes split only stable and canary, got {state.describe()}")
    # every deployment of ours is named, a role the state leaves out at 0: the callback takes it out
    weights = {deployment_id(rollout, role): state.weight(role) for role in ROLES}
    if state.others:  # our part of a shared group: whole percents, never all 0 with the others
        check_weights(weights, where=where, total=None)
    else:
        check_weights(weights, where=where)
    return weights


def serves(served: traffic.Served, *, deployments: Mapping[str, Mapping[str, Any]], where: str) -> dict[str, Any]:
    """What the callback gives a deployment so that it serves this variant: the model, the variant's
    params (over the request's own), its system prompt's text, its revision (read back from
    `model_info.rollout`), and the router's extra `litellm_params` for the model (api_base, api_key)."""
    connection = dict(deployments.get(served.model, {}))
    for what, params in (("params", served.params), (f"deployments[{served.model!r}]", connection)):
        bad = sorted(set(params) & RESERVED)
        if bad:
            raise errors.RouterError(f"{where}: {what} sets {bad}; the rollout owns them")
    rerouted = carries.connection_params(served.params)
    if rerouted:
        raise errors.RouterError(f"{where}: params set {rerouted}; only the router's deployments may")
    if served.prompt is not None and served.prompt_text is None:
        raise errors.RouterError(f"{where}: the text of prompt {served.prompt!r} is unknown, so it cannot be served")
    return {
        "model": served.model,
        "revision": served.revision,
        "params": dict(served.params),
        "system_prompt": served.prompt_text,
        "litellm_params": connection,
    }


def entries_for(
    state: traffic.RouteState, *, rollout: str, where: str, deployments: Mapping[str, Mapping[str, Any]]
) -> dict[str, dict[str, Any]]:
    """The weights file's entries for one route: both deployments, each with its weight (0 for a role
    with nothing to serve) and, where the state says what the variant serves, what the callback must
    give the deployment; with shadow, the canary is `mirrored` (the callback keeps it in the proxy and
    sets stable's `silent_model` to it)."""
    weights = weights_for(state, rollout=rollout, where=where)
    out: dict[str, dict[str, Any]] = {}
    for role in ROLES:
        dep_id = deployment_id(rollout, role)
        entry: dict[str, Any] = {"weight": weights[dep_id]}
        if role == traffic.CANARY and state.shadow:
            entry["mirrored"] = True
        if role in state.served:
            entry["serves"] = serves(state.served[role], deployments=deployments, where=where)
        out[dep_id] = entry
    return out


def check_weights(weights: Mapping[str, object], *, where: str, total: int | None = 100) -> None:
    """Our checks, since LiteLLM accepts any weight: whole percents summing to 100 (to `total`; any
    sum above 0 when None), never all 0 (LiteLLM would split evenly over deployments whose weights
    are all 0)."""
    bad = {k: v for k, v in weights.items() if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 100}
    if bad:
        raise errors.RouterError(f"{where}: weights must be whole percents between 0 and 100, got {bad}")
    got = sum(v for v in weights.values() if isinstance(v, int))
    if (total is not None and got != total) or got <= 0:
        raise errors.RouterError(
            f"{where}: weights must sum to {total or 'more than 0'} (never all 0), got {dict(weights)}"
        )


def parse_group(data: Any, *, route: str, rollout: str, where: str) -> traffic.RouteState | None:
    """A route's state from a `/model/info` answer; None when the proxy has neither deployment.

    A deployment taken out of rotation (weight 0) is absent from the proxy's model list, so an
    absent variant has weight 0. What each deployment serves comes from its `model_info.rollout`
    (stamped by our callback); a deployment of ours that does not say serves an unknown revision.
    Any other deployment in the group is no rollout's: it is reported in `others` with its weight
    (0 when it has none, rounded up when fractional) and never changed. A managed deployment without
    a whole weight, or our weights not summing to 100 with no others, is a RouterSplitError (`_unsplit`):
    we report what we cannot trust instead of guessing, and the reconciler writes main's state over it. A group whose routing strategy ignores weights,
    or does not say, is read with a `hold`.

    Shadow is 100 when a deployment of ours (in the group or in `shadow_group(route)`) mirrors to our
    canary (`silent_model` is its id) and the canary is in the group or waiting in the shadow group (then
    at weight 0 for the route); else 0. A deployment of ours mirroring to a canary in neither (LiteLLM
    still sends a copy of every request to that id) is a RouterSplitError, never read as shadow 0.
    """
    rows = data.get("data") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise errors.RouterStateError(f"{where}: /model/info did not answer an object with a 'data' list")
    ours = {deployment_id(rollout, role): role for role in ROLES}
    canary_id = deployment_id(rollout, traffic.CANARY)
    weights: dict[str, int] = {}
    served: dict[str, traffic.Served] = {}
    others: dict[str, int] = {}
    unwhole: list[str] = []
    silent: set[str] = set()
    for row in _group_rows(rows, shadow_group(route)):
        dep_id = str((row.get("model_info") or {}).get("id"))
        if dep_id == canary_id:
            weights[traffic.CANARY] = 0  # mirrored to, never picked for a user's request
            served[traffic.CANARY] = _served(row, _record(row))
        if dep_id in ours:
            silent.add(str((row.get("litellm_params") or {}).get(SILENT_MODEL)))
    for row in _group_rows(rows, route):
        dep_id = str((row.get("model_info") or {}).get("id"))
        weight = (row.get("litellm_params") or {}).get("weight")
        role = ours.get(dep_id)
        if role is None:
            others[dep_id] = _units(weight)
            continue
        if not isinstance(weight, int) or isinstance(weight, bool):
            unwhole.append(f"deployment {dep_id!r} has weight {weight!r}, not a whole percent")
            continue
        weights[role] = weight
        served[role] = _served(row, _record(row))
        silent.add(str((row.get("litellm_params") or {}).get(SILENT_MODEL)))
    if unwhole:
        raise _unsplit(others)(f"{where}: {'; '.join(unwhole)}")
    if not weights:
        return None
    if canary_id in silent and traffic.CANARY not in weights:
        # LiteLLM sends a copy of each request to that id wherever it is: neither shadow 0 nor 100 is true
        raise _unsplit(others)(
            f"{where}: a deployment of ours mirrors to {canary_id!r} (silent_model), which is neither in model "
            f"group {route!r} nor in {shadow_group(route)!r}"
        )
    shadow = MIRROR_ALL if canary_id in silent else 0
    weights.setdefault(traffic.STABLE, 0)
    weights.setdefault(traffic.CANARY, 0)
    try:
        return traffic.RouteState(weights, shadow, served, others, hold=_hold(route, rollout, rows))
    except ValueError as exc:
        raise _unsplit(others)(f"{where}: live weights are not a valid split: {exc}") from exc


def _unsplit(others: Mapping[str, int]) -> type[errors.RouterStateError]:
    """What weights of ours that are no valid split raise: a RouterSplitError, which the reconciler heals
    to main's state, unless deployments no rollout manages share the group (then what our weights mean
    is not ours to say, so it is only reported)."""
    return errors.RouterStateError if others else errors.RouterSplitError


def _group_rows(rows: Sequence[Any], route: str) -> list[dict[str, Any]]:
    return [row for row in rows if isinstance(row, dict) and row.get("model_name") == route]


def _record(row: Mapping[str, Any]) -> dict[str, Any]:
    record = (row.get("model_info") or {}).get(INFO_KEY)
    return record if isinstance(record, dict) else {}


def _served(row: Mapping[str, Any], record: Mapping[str, Any]) -> traffic.Served:
    params = record.get("params")
    prompt = record.get("system_prompt")
    return traffic.Served(
        model=str((row.get("litellm_params") or {}).get("model", "")),
        revision=str(record.get("revision") or UNKNOWN_REVISION),
        params=dict(params) if isinstance(params, dict) else {},
        prompt_text=prompt if isinstance(prompt, str) else None,
    )


def _units(weight: Any) -> int:
    """A deployment's weight as RouteState.others keeps it: whole, >= 0. LiteLLM takes numbers; an
    absent or unusable weight takes no share when the group has weights, so it reads as 0."""
    if isinstance(weight, bool) or not isinstance(weight, int | float) or weight <= 0:
        return 0
    return math.ceil(weight)


def _hold(route: str, rollout: str, rows: Sequence[Any]) -> str:
    """Why weights mean nothing on this group, or '' when the proxy routes it by simple-shuffle, as
    our deployments of it say (the callback stamps each with its group's strategy)."""
    ours = {deployment_id(rollout, role) for role in ROLES}
    strategies = {
        strategy
        for row in _group_rows(rows, route)
        if str((row.get("model_info") or {}).get("id")) in ours
        and isinstance(strategy := _record(row).get("routing_strategy"), str)
    }
    if strategies == {WEIGHTED}:
        return ""
    if not strategies:
        return (
            f"the proxy does not say which routing strategy serves model group {route!r}, so its weights "
            f"cannot be trusted (load the callback {CALLBACK} and render the deployments with `rollout render litellm`)"
        )
    named = ", ".join(repr(s) for s in sorted(strategies - {WEIGHTED}))
    return (
        f"the proxy routes model group {route!r} by routing_strategy {named}, which ignores weights; only "
        f"{WEIGHTED!r} (LiteLLM's default) honours them: set router_settings.routing_strategy: {WEIGHTED}"
    )


class LitellmRouter:
    """Reads a LiteLLM proxy's deployments and writes the weights file its callback applies.

    `routes` maps a route (a model group) to its rollout's name, which names the deployments;
    `deployments` gives the extra `litellm_params` per model id that a deployment serving that model
    gets (controller.yaml's `deployments`). A write checks the proxy first (nothing is written when it
    cannot be read, lacks a deployment, or would give the canary traffic in a group whose routing
    strategy ignores weights), replaces the file atomically under an advisory lock with every route
    of the batch, then waits up to `apply_timeout` seconds for the proxy to show what the file says;
    `base.apply`'s read-back decides whether it did. Deployments of a group that no rollout manages
    are never written.
    """

    def __init__(
        self,
        name: str,
        url: str,
        *,
        routes: Mapping[str, str],
        weights_file: str | Path,
        master_key: str | None,
        deployments: Mapping[str, Mapping[str, Any]] | None = None,
        apply_timeout: float = 10.0,
        timeout: float = settings.Timeouts.litellm_admin,
        client: httpx.Client | None = None,
    ) -> None:
        self.name = name
        self.url = url.rstrip("/")
        self.routes = dict(routes)
        self.weights_file = Path(weights_file)
        self.location = f"LiteLLM proxy {self.url}, weights file {self.weights_file}"
        self.deployments = {model: dict(params) for model, params in (deployments or {}).items()}
        self.apply_timeout = apply_timeout
        self._key = master_key
        self._client = client or httpx.Client(timeout=timeout)

    def close(self) -> None:
        self._client.close()

    def read(self, routes: Sequence[str]) -> dict[str, base.Live]:
        """Every route of the batch from one `GET /model/info` (none when no route is on this proxy). A
        route on no rollout of this proxy is None; a group we cannot trust is that route's
        RouterStateError; an answer without a 'data' list is every route's, so it raises."""
        out: dict[str, base.Live] = dict.fromkeys(routes)
        known = {route: rollout for route in out if (rollout := self.routes.get(route)) is not None}
        if not known:
            return out
        operation = f"read {base.routes_text(known)}"
        info = self._model_info(operation)
        if not isinstance(info, dict) or not isinstance(info.get("data"), list):
            raise errors.RouterStateError(
                f"router {self.name!r}: {operation}: /model/info did not answer an object with a 'data' list"
            )
        for route, rollout in known.items():
            try:
                out[route] = parse_group(info, route=route, rollout=rollout, where=self._where(route))
            except errors.RouterStateError as exc:
                out[route] = exc
        return out

    def write(self, states: Mapping[str, traffic.RouteState], fences: base.Fences | None = None) -> None:
        """Every route of the batch in one replace of the weights file, after checking them all against
        one `GET /model/info`; then one wait for the proxy to show the whole batch."""
        if not states:
            return
        base.refuse_cohorts(self.name, "litellm", states)
        planned: dict[str, tuple[str, dict[str, dict[str, Any]]]] = {}  # route -> (rollout, entries)
        for route, state in states.items():
            rollout = self.routes.get(route)
            where = self._where(route)
            if rollout is None:
                raise errors.RouterError(f"{where}: the route is on no rollout of this proxy, so it has no deployments")
            planned[route] = (rollout, entries_for(state, rollout=rollout, where=where, deployments=self.deployments))
        operation = f"write {base.routes_text(states)}"
        info = self._model_info(operation)
        groups = self._load()["groups"]
        data = info.get("data") if isinstance(info, dict) else None
        rows: list[Any] = data if isinstance(data, list) else []
        for route, (rollout, entries) in planned.items():
            group_rows = _group_rows(rows, route)
            known = {str((row.get("model_info") or {}).get("id")) for row in group_rows}
            known |= {str((row.get("model_info") or {}).get("id")) for row in _group_rows(rows, shadow_group(route))}
            # the callback builds a missing deployment from one of ours in the group, given what it serves
            buildable = any(isinstance((row.get("model_info") or {}).get(INFO_KEY), dict) for row in group_rows)
            unknown = sorted(
                d
                for d, e in entries.items()
                if (e["weight"] > 0 or e.get("mirrored")) and d not in known and not (buildable and "serves" in e)
            )
            if unknown and not _withdrawn(groups.get(route) or {}, unknown):
                raise errors.RouterError(
                    f"{self._where(route)}: the proxy has no deployment {unknown} in model group {route!r}, "
                    "nor one of ours to build it from (render the group with `rollout render litellm`)"
                )
            state = states[route]
            hold = _hold(route, rollout, rows) if state.weight(traffic.CANARY) else ""
            if hold:
                raise errors.RouterError(f"{self._where(route)}: refusing to set {state.describe()}: {hold}")
        try:
            self.weights_file.parent.mkdir(parents=True, exist_ok=True)
            with atomic.locked(self.weights_file):
                document = self._load()
                document["groups"].update((route, entries) for route, (_, entries) in planned.items())
                atomic.replace_json(self.weights_file, document)
        except OSError as exc:
            raise errors.RouterUnavailable(
                f"router {self.name!r}: cannot write {base.routes_text(states)} to {self.weights_file}: {exc.strerror}"
            ) from exc
        self._await({route: (rollout, entries, states[route]) for route, (rollout, entries) in planned.items()})

    def _await(self, planned: Mapping[str, tuple[str, Mapping[str, Any], traffic.RouteState]]) -> None:
        """Wait until the proxy shows every route of the batch as the file says (our deployments'
        weights and revisions; one `/model/info` a poll for all of them), or someone else rewrote a
        route. The file is written by now: a proxy that cannot be read ends the wait, and
        `base.apply`'s read-back judges each route."""
        pending = set(planned)
        deadline = time.monotonic() + self.apply_timeout
        while pending and time.monotonic() < deadline:
            try:
                info = self._model_info("confirm the write")
                groups = self._load()["groups"]
            except errors.RouterError:
                return
            for route in sorted(pending):
                rollout, entries, desired = planned[route]
                if groups.get(route) != entries:
                    pending.discard(route)  # a later write replaced ours; the read-back judges
                    continue
                try:
                    live = parse_group(info, route=route, rollout=rollout, where=self._where(route))
                except errors.RouterStateError:
                    continue  # still the state before ours (a malformed group being lowered): keep waiting
                if live is not None and _shows(live, desired):
                    pending.discard(route)
            if pending:
                time.sleep(0.05)  # the callback polls the file; this polls the proxy

    def _model_info(self, operation: str) -> Any:
        headers = {"authorization": f"Bearer {self._key}"} if self._key else {}
        try:
            response = self._client.get(self.url + "/model/info", headers=headers)
        except httpx.HTTPError as exc:
            raise errors.RouterUnavailable(
                f"router {self.name!r}: {operation}: LiteLLM at {self.url} did not answer ({type(exc).__name__})"
            ) from exc
        if response.status_code in (401, 403) or (response.status_code in (400, 500) and _auth_failure(response)):
            raise errors.RouterError(
                f"router {self.name!r}: {operation}: the proxy refused the master key (HTTP {response.status_code})"
            )
        if response.status_code >= 500:
            raise errors.RouterUnavailable(
                f"router {self.name!r}: {operation}: GET /model/info answered {response.status_code}"
            )
        if response.status_code != 200:
            raise errors.RouterError(
                f"router {self.name!r}: {operation}: GET /model/info answered {response.status_code}"
            )
        try:
            return response.json()
        except ValueError as exc:
            raise errors.RouterStateError(
                f"router {self.name!r}: {operation}: /model/info did not answer JSON"
            ) from exc

    def _where(self, route: str) -> str:
        return f"router {self.name!r} route {route!r}"

    # -- the weights file --------------------------------------------------------------------------

    def _load(self) -> dict[str, Any]:
        """The weights file's document, in this version (a version 1 file's bare weights become
        entries without content: the callback keeps what those deployments serve)."""
        data = atomic.read_document(self.weights_file, router=self.name, key="groups")
        if data is None:
            return {"version": FORMAT_VERSION, "groups": {}}
        if data.get("version") == 1:
            groups = {
                route: {d: {"weight": w} for d, w in entries.items()} if isinstance(entries, dict) else entries
                for route, entries in data["groups"].items()
            }
            return {"version": FORMAT_VERSION, "groups": groups}
        if data.get("version") != FORMAT_VERSION:
            raise errors.RouterStateError(
                f"router {self.name!r}: {self.weights_file} has version {data.get('version')!r}, expected {FORMAT_VERSION}"
            )
        return data


def _shows(live: traffic.RouteState, desired: traffic.RouteState) -> bool:
    """The proxy shows our deployments as `desired` has them: their weights, shadow and revisions
    (others are no write's business)."""
    return (
        all(live.weight(role) == desired.weight(role) for role in ROLES)
        and live.shadow == desired.shadow
        and live.same_revisions(desired)
    )


def _withdrawn(group: Mapping[str, object], ids: Sequence[str]) -> bool:
    """True when the weights file took these deployments out (weight 0): the callback keeps them."""
    return all(isinstance(e := group.get(d), dict) and e.get("weight") == 0 for d in ids)


def _auth_failure(response: httpx.Response) -> bool:
    """LiteLLM answers a bad key with 400 (it looks the key up in its database) or 500 (no key)."""
    try:
        error = response.json().get("error") or {}
    except (ValueError, AttributeError):
        return response.status_code == 500 and "auth" in response.text.lower()
    kind = str(error.get("type", "")) if isinstance(error, dict) else ""
    return kind in ("auth_error", "no_db_connection") or "auth" in kind


# -- rendering the model_list -----------------------------------------------------------------------


@dataclass(frozen=True)
class GroupSpec:
    """What `model_list()` needs of one rollout: its name, its route, each variant's model and weight,
    (when known) what each variant serves, and its shadow (0, or 100: stable mirrors to the canary)."""

    rollout: str
    route: str
    models: Mapping[str, str]  # variant role -> model id
    weights: Mapping[str, int]  # variant role -> percent
    served: Mapping[str, traffic.Served] = field(default_factory=dict)  # variant role -> what it serves
    shadow: int = 0

    def mirrored(self, *, where: str) -> bool:
        """True when stable mirrors every request to the canary; raises what `weights_for` refuses."""
        if not self.shadow:
            return False
        if traffic.CANARY not in self.models:
            raise errors.RouterError(f"{where}: shadow {self.shadow}% needs a canary to mirror to")
        weights = {role: self.weights.get(role, 0) for role in ROLES}
        weights_for(traffic.RouteState(weights, self.shadow), rollout=self.rollout, where=where)
        return True


def model_list(groups: Sequence[GroupSpec], *, deployments: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """LiteLLM `model_list` entries: one deployment per variant, id = `spec.cluster_name`, with the
    desired weight, the router's extra `litellm_params` for its model (api_base, api_key), the
    variant's params, and `model_info.rollout` (its revision, params and system prompt, which the
    callback puts into each request; the callback adds the group's routing strategy). With shadow,
    stable's `silent_model` is the canary's id. A canary at weight 0 waits in `shadow_group`, shadow or
    not: in the route's group LiteLLM would give it users' requests while stable cooled down (it splits
    evenly over weights that are all 0), from the proxy's start until the callback's first run takes a
    canary that is not mirrored out of the proxy."""
    out: list[dict[str, Any]] = []
    for g in groups:
        where = f"rollout {g.rollout!r}"
        check_weights({role: g.weights.get(role, 0) for role in g.models}, where=where)
        mirrored = g.mirrored(where=where)
        for role in ROLES:
            model = g.models.get(role)
            if model is None:
                continue
            params: dict[str, Any] = {"model": model, **dict(deployments.get(model, {}))}
            owned = sorted({"weight", SILENT_MODEL} & set(params))
            if owned:
                raise errors.RouterError(f"{where}: deployments[{model!r}] sets {owned}; the rollout owns them")
            record: dict[str, Any] = {}
            if role in g.served:
                content = serves(g.served[role], deployments=deployments, where=where)
                params.update(content["params"])
                record = {k: content[k] for k in ("revision", "params", "system_prompt")}
            params["weight"] = g.weights.get(role, 0)
            # a canary at 0 is never in the route's group, shadow or not (the callback withdraws one not mirrored)
            waiting = role == traffic.CANARY and not params["weight"]
            if mirrored and role != traffic.CANARY:
                params[SILENT_MODEL] = deployment_id(g.rollout, traffic.CANARY)
            out.append(
                {
                    "model_name": shadow_group(g.route) if waiting else g.route,
                    "litellm_params": params,
                    "model_info": {"id": deployment_id(g.rollout, role), INFO_KEY: record}
                    | ({DISCOVERABLE: False} if waiting else {}),
                }
            )
    return out


def proxy_settings() -> dict[str, Any]:
    """The `router_settings` a proxy needs for its weights to mean anything."""
    return {"routing_strategy": WEIGHTED}


def weights_document(groups: Sequence[GroupSpec], *, deployments: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The weights file the callback reads, for the same groups as `model_list()`."""
    out: dict[str, Any] = {}
    for g in groups:
        where = f"rollout {g.rollout!r}"
        mirrored = g.mirrored(where=where)
        entries: dict[str, Any] = {}
        for role in ROLES:
            if role not in g.models:
                continue
            entry: dict[str, Any] = {"weight": g.weights.get(role, 0)}
            if mirrored and role == traffic.CANARY:
                entry["mirrored"] = True
            if role in g.served:
                entry["serves"] = serves(g.served[role], deployments=deployments, where=where)
            entries[deployment_id(g.rollout, role)] = entry
        out[g.route] = entries
    return {"version": FORMAT_VERSION, "groups": out}
