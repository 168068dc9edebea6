"""The LiteLLM router: a route is a model group, a variant a deployment (`model_info.id`), its weight
`litellm_params.weight`. Reads `GET /model/info`; writes the weights file that our proxy callback
(`litellm_callback.py`) applies live. The CLI builds it and renders the `model_list`; the reconciler
only reads and writes.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from controller import errors, spec
from controller.routers import base, files

FORMAT_VERSION = 1  # of the weights file; litellm_callback.FORMAT_VERSION reads the same
CALLBACK = "controller.routers.litellm_callback.weights"
ROLES = (base.STABLE, base.CANARY)


def deployment_id(rollout: str, variant: str) -> str:
    return spec.cluster_name(rollout, variant)


def weights_for(state: base.RouteState, *, rollout: str, where: str) -> dict[str, int]:
    """deployment id -> weight for one route's state; refuses what LiteLLM cannot do.

    Shadow: LiteLLM has no request mirroring, so a shadow above 0 is an error, never silently
    dropped (`rollout validate` reports it earlier, as R007).
    """
    if state.shadow:
        raise errors.RouterError(f"{where}: LiteLLM cannot mirror traffic, so shadow {state.shadow}% cannot be applied")
    extra = sorted(set(state.weights) - set(ROLES))
    if extra:
        raise errors.RouterError(f"{where}: LiteLLM routes split only stable and canary, got {state.describe()}")
    weights = {deployment_id(rollout, role): state.weight(role) for role in ROLES if role in state.weights}
    check_weights(weights, where=where)
    return weights


def check_weights(weights: Mapping[str, object], *, where: str) -> None:
    """Our checks, since LiteLLM accepts any weight: whole percents summing to 100, never all 0
    (LiteLLM would split evenly over deployments whose weights are all 0)."""
    bad = {k: v for k, v in weights.items() if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 100}
    if bad:
        raise errors.RouterError(f"{where}: weights must be whole percents between 0 and 100, got {bad}")
    total = sum(v for v in weights.values() if isinstance(v, int))
    if total != 100:
        raise errors.RouterError(f"{where}: weights must sum to 100 (never all 0), got {dict(weights)}")


def parse_group(data: Any, *, route: str, rollout: str, where: str) -> base.RouteState | None:
    """A route's state from a `/model/info` answer; None when the proxy has neither deployment.

    A deployment taken out of rotation (weight 0) is absent from the proxy's model list, so an
    absent variant has weight 0. A managed deployment without a weight, a deployment in the group
    that is not ours (it would take traffic we do not control), or weights not summing to 100 is a
    RouterStateError: we report what we cannot trust instead of guessing.
    """
    rows = data.get("data") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise errors.RouterStateError(f"{where}: /model/info did not answer an object with a 'data' list")
    ours = {deployment_id(rollout, role): role for role in ROLES}
    weights: dict[str, int] = {}
    strangers = []
    for row in rows:
        if not isinstance(row, dict) or row.get("model_name") != route:
            continue
        dep_id = (row.get("model_info") or {}).get("id")
        role = ours.get(str(dep_id))
        if role is None:
            strangers.append(str(dep_id))
            continue
        weight = (row.get("litellm_params") or {}).get("weight")
        if not isinstance(weight, int) or isinstance(weight, bool):
            raise errors.RouterStateError(f"{where}: deployment {dep_id!r} has weight {weight!r}, not a whole percent")
        weights[role] = weight
    if strangers:
        raise errors.RouterStateError(
            f"{where}: model group {route!r} has deployments {sorted(strangers)} that no rollout manages"
        )
    if not weights:
        return None
    weights.setdefault(base.STABLE, 0)
    weights.setdefault(base.CANARY, 0)
    try:
        return base.RouteState(weights)
    except ValueError as exc:
        raise errors.RouterStateError(f"{where}: live weights are not a valid split: {exc}") from exc


class LitellmRouter:
    """Reads a LiteLLM proxy's deployments and writes the weights file its callback applies.

    `routes` maps a route (a model group) to its rollout's name, which names the deployments.
    A write checks the proxy first (nothing is written when it cannot be read or lacks a deployment),
    replaces the file atomically under an advisory lock with every route of the batch, then waits up
    to `apply_timeout` seconds for the proxy to show what the file says; `base.apply`'s read-back
    decides whether it did.
    """

    def __init__(
        self,
        name: str,
        url: str,
        *,
        routes: Mapping[str, str],
        weights_file: str | Path,
        master_key: str | None,
        apply_timeout: float = 10.0,
        timeout: float = 5.0,
        client: httpx.Client | None = None,
    ) -> None:
        self.name = name
        self.url = url.rstrip("/")
        self.routes = dict(routes)
        self.weights_file = Path(weights_file)
        self.location = f"LiteLLM proxy {self.url}, weights file {self.weights_file}"
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

    def write(self, states: Mapping[str, base.RouteState]) -> None:
        """Every route of the batch in one replace of the weights file, after checking them all against
        one `GET /model/info`; then one wait for the proxy to show the whole batch."""
        if not states:
            return
        planned: dict[str, tuple[str, dict[str, int]]] = {}  # route -> (rollout, deployment id -> weight)
        for route, state in states.items():
            rollout = self.routes.get(route)
            where = self._where(route)
            if rollout is None:
                raise errors.RouterError(f"{where}: the route is on no rollout of this proxy, so it has no deployments")
            planned[route] = (rollout, weights_for(state, rollout=rollout, where=where))
        operation = f"write {base.routes_text(states)}"
        info = self._model_info(operation)
        groups = self._load()["groups"]
        for route, (_, weights) in planned.items():
            known = _deployments(info, route)
            unknown = sorted(d for d, w in weights.items() if w > 0 and d not in known)
            if unknown and not _withdrawn(groups.get(route) or {}, unknown):
                raise errors.RouterError(
                    f"{self._where(route)}: the proxy has no deployment {unknown} in model group {route!r} "
                    "(render it with `rollout render litellm`)"
                )
        try:
            self.weights_file.parent.mkdir(parents=True, exist_ok=True)
            with files.locked(self.weights_file):
                document = self._load()
                document["groups"].update((route, weights) for route, (_, weights) in planned.items())
                files.replace_json(self.weights_file, document)
        except OSError as exc:
            raise errors.RouterUnavailable(
                f"router {self.name!r}: cannot write {base.routes_text(states)} to {self.weights_file}: {exc.strerror}"
            ) from exc
        self._await(planned)

    def _await(self, planned: Mapping[str, tuple[str, Mapping[str, int]]]) -> None:
        """Wait until the proxy shows every route of the batch as the file says (one `/model/info` a
        poll for all of them), or someone else rewrote a route. The file is written by now: a proxy
        that cannot be read ends the wait, and `base.apply`'s read-back judges each route."""
        wanted = {
            route: base.RouteState({role: weights.get(deployment_id(rollout, role), 0) for role in ROLES})
            for route, (rollout, weights) in planned.items()
        }
        pending = set(planned)
        deadline = time.monotonic() + self.apply_timeout
        while pending and time.monotonic() < deadline:
            try:
                info = self._model_info("confirm the write")
                groups = self._load()["groups"]
            except errors.RouterError:
                return
            for route in sorted(pending):
                rollout, weights = planned[route]
                if groups.get(route) != dict(weights):
                    pending.discard(route)  # a later write replaced ours; the read-back judges
                    continue
                try:
                    live = parse_group(info, route=route, rollout=rollout, where=self._where(route))
                except errors.RouterStateError:
                    pending.discard(route)  # the proxy applies a group at once: this stays; the read-back says so
                    continue
                if live is not None and live.same_traffic(wanted[route]):
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
        data = files.read_document(self.weights_file, router=self.name, key="groups", version=FORMAT_VERSION)
        return {"version": FORMAT_VERSION, "groups": {}} if data is None else data


def _withdrawn(group: Mapping[str, object], ids: Sequence[str]) -> bool:
    """True when the weights file took these deployments out (weight 0): the callback keeps them."""
    return all(group.get(d) == 0 for d in ids)


def _deployments(info: Any, route: str) -> set[str]:
    rows = info.get("data") if isinstance(info, dict) else None
    return {
        str((row.get("model_info") or {}).get("id"))
        for row in rows or []
        if isinstance(row, dict) and row.get("model_name") == route
    }


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
    """What `model_list()` needs of one rollout: its name, its route, each variant's model and weight."""

    rollout: str
    route: str
    models: Mapping[str, str]  # variant role -> model id
    weights: Mapping[str, int]  # variant role -> percent


def model_list(groups: Sequence[GroupSpec], *, deployments: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """LiteLLM `model_list` entries: one deployment per variant, id = `spec.cluster_name`, with the
    desired weight and the router's extra `litellm_params` for its model (api_base, api_key)."""
    out: list[dict[str, Any]] = []
    for g in groups:
        where = f"rollout {g.rollout!r}"
        check_weights({role: g.weights.get(role, 0) for role in g.models}, where=where)
        for role in ROLES:
            model = g.models.get(role)
            if model is None:
                continue
            params: dict[str, Any] = {"model": model, **dict(deployments.get(model, {}))}
            if "weight" in params:
                raise errors.RouterError(f"{where}: deployments[{model!r}] sets a weight; the rollout owns it")
            params["weight"] = g.weights.get(role, 0)
            out.append(
                {
                    "model_name": g.route,
                    "litellm_params": params,
                    "model_info": {"id": deployment_id(g.rollout, role)},
                }
            )
    return out


def weights_document(groups: Sequence[GroupSpec]) -> dict[str, Any]:
    """The weights file the callback reads, for the same groups as `model_list()`."""
    return {
        "version": FORMAT_VERSION,
        "groups": {
            g.route: {deployment_id(g.rollout, role): g.weights.get(role, 0) for role in ROLES if role in g.models}
            for g in groups
        },
    }
