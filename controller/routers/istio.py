"""The Istio router's translation: a route is a VirtualService (networking.istio.io/v1) whose one HTTP
route splits between the roles' Services by integer percentages summing to 100, and mirrors to the
canary's Service (`mirror` + `mirrorPercentage`) while the canary shadows. `manifest` renders a route's
state into the object `rollout render istio` writes into git; `state_of` reads one back.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from controller import errors, spec, traffic
from controller.routers import mesh

KIND = "VirtualService"
API_VERSION = "networking.istio.io/v1"
SCHEMA = "virtualservice.networking.istio.io_v1.json"
HTTP_NAME = "rollout"  # the name of the HTTP route the router owns in each VirtualService


def manifest(
    router: str, config: spec.IstioRouterConfig, *, route: str, rollout: str, state: traffic.RouteState
) -> dict[str, Any]:
    """The VirtualService of `route` serving `state`. Raises RouterError, naming the route, for a state
    Istio cannot express exactly (cohorts, unmanaged variants, weights not summing to 100): nothing is
    ever rounded."""
    mesh.refuse(router, "istio", route, rollout, state)
    if sum(state.weights.values()) != 100:
        raise errors.RouterError(
            f"router {router!r} (istio) route {route!r}: Istio's weights are whole percents summing to 100, "
            f"got {dict(state.weights)}; nothing was rendered"
        )
    destinations = [
        {"destination": _destination(config, rollout, role), "weight": state.weights[role]}
        for role in mesh.ORDER
        if role in state.weights
    ]
    http: dict[str, Any] = {"name": HTTP_NAME, "route": destinations}
    if state.shadow:
        http["mirror"] = _destination(config, rollout, traffic.CANARY)
        http["mirrorPercentage"] = {"value": state.shadow}
    body: dict[str, Any] = {"hosts": list(config.hosts.get(route) or [route])}
    if config.gateways:
        body["gateways"] = list(config.gateways)
    body["http"] = [http]
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": mesh.metadata(route, rollout, config.namespace),
        "spec": body,
    }


def _destination(config: spec.IstioRouterConfig, rollout: str, role: str) -> dict[str, Any]:
    return {"host": mesh.service(rollout, role), "port": {"number": config.port}}


def problems(obj: Mapping[str, Any]) -> list[str]:
    """The upstream CRD schema's complaints about a VirtualService, and istiod's own rule the schema does
    not carry: an HTTP route with more than one destination has some weight (a total of 0 sends its
    traffic nowhere). Since Istio 1.15 (istio/istio#39544) weights are relative proportions and need not
    sum to 100: istiod refuses only a total of 0."""
    found = mesh.schema_problems(SCHEMA, obj, api_version=API_VERSION, kind=KIND)
    https = (obj.get("spec") or {}).get("http") if isinstance(obj.get("spec"), dict) else None
    for i, http in enumerate(https if isinstance(https, list) else []):
        routes = http.get("route") if isinstance(http, dict) else None
        if not isinstance(routes, list) or len(routes) < 2:
            continue
        weights = [r.get("weight", 0) if isinstance(r, dict) else 0 for r in routes]
        if all(mesh.whole(w) for w in weights) and sum(weights) <= 0:
            found.append(f"spec.http[{i}].route: every weight is 0, and istiod requires a total above 0")
    return found


def state_of(obj: Mapping[str, Any], *, rollout: str) -> traffic.RouteState:
    """The split a VirtualService serves: its `rollout` HTTP route (else its first), each destination's
    share of the relative weights as a percent by the role its host names in the object's namespace (any
    other host is a variant no rollout manages), and the percentage mirrored to the canary's Service.
    Raises ValueError, saying what, when it cannot be read as whole percents (mesh.SplitProblem for our
    own weights), or when another entry sends the canary traffic."""
    ns = (obj.get("metadata") or {}).get("namespace")
    https = (obj.get("spec") or {}).get("http") or []
    if not isinstance(https, list) or not https:
        raise ValueError("spec.http is empty: the VirtualService routes nothing")
    http = next((h for h in https if isinstance(h, dict) and h.get("name") == HTTP_NAME), https[0])
    reach = _canary_elsewhere(obj, rollout, ns, skip=http)
    if reach:
        raise ValueError(
            f"{'; '.join(reach)}: the canary gets traffic outside the route's own entry (HTTP route "
            f"{HTTP_NAME!r}), which no read of that entry shows; a rollback takes it out"
        )
    routes = http.get("route") or []
    raw = [r.get("weight", 100 if len(routes) == 1 else 0) for r in routes]
    hosts = [((r.get("destination") or {}).get("host")) or "" for r in routes]
    for i, weight in enumerate(raw):
        if not mesh.whole(weight) or weight < 0:
            raise mesh.unsplit(any(mesh.role_of(rollout, ns, h) is None for h in hosts))(
                f"route[{i}].weight must be a whole number >= 0, got {weight!r}"
            )
    weights, others = mesh.shares([(h, mesh.role_of(rollout, ns, h), w) for h, w in zip(hosts, raw, strict=True)])
    shadow = 0
    mirrors = list(http.get("mirrors") or [])
    if http.get("mirror"):
        # the deprecated integer `mirrorPercent` counts where `mirrorPercentage` is unset, as in istiod
        legacy = http.get("mirrorPercent")
        percentage = http.get("mirrorPercentage") or ({"value": legacy} if legacy is not None else None)
        mirrors.append({"destination": http["mirror"], "percentage": percentage})
    for m in mirrors:
        if mesh.role_of(rollout, ns, ((m.get("destination") or {}).get("host")) or "") != traffic.CANARY:
            continue
        value = (m.get("percentage") or {}).get("value", 100)  # Istio mirrors everything when unset
        if not (isinstance(value, int | float) and float(value).is_integer()):
            raise ValueError(f"the canary's mirror percentage {value!r} is not a whole percent")
        shadow = int(value)
    return traffic.RouteState(weights or {traffic.STABLE: 0}, shadow, others=others)


def with_split(live: Mapping[str, Any], rollout: str, state: traffic.RouteState) -> dict[str, Any]:
    """The `spec` a live write applies: the live `spec.http` (an atomic list: whoever applies it owns all
    of it) with only the weights of the roles' destinations and the canary's mirror of the route's own
    HTTP route changed (mesh.reweigh: in the live units where unmanaged destinations share it), and,
    with the canary at 0 or shadow off, the canary taken out of every other HTTP route; every other
    field, entry and destination as it is live. Raises RouterError when a role with traffic has no
    destination there (only a merged manifest adds one), or a raise cannot be said exactly."""
    ns = (live.get("metadata") or {}).get("namespace")
    https = copy.deepcopy((live.get("spec") or {}).get("http") or [])
    if not https:
        raise errors.RouterError("spec.http is empty: nothing to split; nothing was written")
    at = next((i for i, h in enumerate(https) if h.get("name") == HTTP_NAME), 0)
    http = https[at]
    routes = http.get("route") or []
    entries = [
        (mesh.role_of(rollout, ns, ((r.get("destination") or {}).get("host")) or ""), r.get("weight", 0))
        for r in routes
    ]
    missing = [role for role, w in state.weights.items() if w and role not in {r for r, _ in entries}]
    if missing:
        raise errors.RouterError(
            f"spec.http[{at}] has no destination for {', '.join(missing)} ({', '.join(mesh.service(rollout, m) for m in missing)}); "
            "merge the rendered manifest first; nothing was written"
        )
    if any(not mesh.whole(w) or w < 0 for _, w in entries):
        raise errors.RouterError(f"spec.http[{at}]: a destination's weight is no whole number; nothing was written")
    new = mesh.reweigh(entries, state)
    if new is None:
        raise errors.RouterError(
            f"spec.http[{at}]: with the destinations no rollout manages there, {state.describe()} cannot be set "
            "exactly in relative weights, and it lowers nothing; nothing was written"
        )
    for r, (role, _), w in zip(routes, entries, new, strict=True):
        if role is not None:
            r["weight"] = w
    canary = next(
        (
            r["destination"]
            for r in http.get("route") or []
            if mesh.role_of(rollout, ns, (r.get("destination") or {}).get("host") or "") == traffic.CANARY
        ),
        None,
    )
    if state.shadow and canary is None:
        raise errors.RouterError(f"spec.http[{at}] has no canary destination to mirror to; nothing was written")
    _set_mirror(http, rollout, ns, copy.deepcopy(canary) if state.shadow else None, state.shadow)
    for i, other in enumerate(https):
        if i != at and isinstance(other, dict):
            _lower_elsewhere(other, rollout, ns, state)
    return {"http": https}


def _canary(rollout: str, ns: str | None, dest: Any) -> bool:
    return isinstance(dest, dict) and mesh.role_of(rollout, ns, dest.get("host") or "") == traffic.CANARY


def _mirrored(http: Mapping[str, Any], rollout: str, ns: str | None) -> bool:
    """`http` mirrors some of its requests to the canary."""
    percent = (
        http.get("mirrorPercentage", {}).get("value") if http.get("mirrorPercentage") else http.get("mirrorPercent")
    )
    if _canary(rollout, ns, http.get("mirror")) and (percent is None or percent > 0):
        return True
    return any(
        _canary(rollout, ns, m.get("destination")) and ((m.get("percentage") or {}).get("value", 100) or 0) > 0
        for m in http.get("mirrors") or []
        if isinstance(m, dict)
    )


def _canary_elsewhere(obj: Mapping[str, Any], rollout: str, ns: str | None, *, skip: Any) -> list[str]:
    """Each entry of the VirtualService but `skip` (the route's own) that sends the canary live or
    mirrored traffic: an HTTP, TLS or TCP route with a canary destination of weight > 0 (or alone), or an
    HTTP route mirroring to it."""
    found: list[str] = []
    spec = obj.get("spec") or {}
    for kind in ("http", "tls", "tcp"):
        for i, entry in enumerate(spec.get(kind) or []):
            if entry is skip or not isinstance(entry, dict):
                continue
            routes = [r for r in entry.get("route") or [] if isinstance(r, dict)]
            live = any(
                _canary(rollout, ns, r.get("destination")) and (len(routes) == 1 or (r.get("weight") or 0) > 0)
                for r in routes
            )
            if live or (kind == "http" and _mirrored(entry, rollout, ns)):
                name = f" ({entry['name']!r})" if entry.get("name") else ""
                found.append(
                    f"spec.{kind}[{i}]{name} {'routes' if live else 'mirrors'} to {mesh.service(rollout, traffic.CANARY)}"
                )
    return found


def _lower_elsewhere(http: dict[str, Any], rollout: str, ns: str | None, state: traffic.RouteState) -> None:
    """In another HTTP route than ours, in place: with the canary at 0 in `state`, its destinations'
    weight moves to the stable Service's (added, with the canary's port, where the route has none); with
    shadow off, its mirrors to the canary go. So a rollback leaves the canary no traffic anywhere."""
    if not state.weight(traffic.CANARY):
        routes = [r for r in http.get("route") or [] if isinstance(r, dict)]
        moved = 0
        template: dict[str, Any] | None = None
        for r in routes:
            if _canary(rollout, ns, r.get("destination")):
                moved += r.get("weight", 100) if len(routes) == 1 else (r.get("weight") or 0)
                template = template or r
                r["weight"] = 0
        stable = next(
            (
                r
                for r in routes
                if mesh.role_of(rollout, ns, (r.get("destination") or {}).get("host") or "") == traffic.STABLE
            ),
            None,
        )
        if template is not None and stable is not None:
            stable["weight"] = (stable.get("weight", 0) if len(routes) > 1 else 0) + moved
        elif template is not None:
            dest = {k: v for k, v in template["destination"].items() if k != "subset"}
            dest["host"] = (
                mesh.service(rollout, traffic.STABLE) + dest["host"][len(mesh.service(rollout, traffic.CANARY)) :]
            )
            http["route"] = [
                *routes,
                {**{k: v for k, v in template.items() if k != "weight"}, "destination": dest, "weight": moved or 100},
            ]
    if not state.shadow and _mirrored(http, rollout, ns):
        _set_mirror(http, rollout, ns, None, 0)


def _set_mirror(http: dict[str, Any], rollout: str, ns: str | None, canary: dict[str, Any] | None, shadow: int) -> None:
    """Set, in place, the canary's mirror of `http` to `shadow` percent of `canary` (the destination), or
    take it out (`canary` None); every other mirror stays. Alone, the canary is `mirror` with
    `mirrorPercentage` (the rendered shape); with another mirror it goes into `mirrors`, and a single
    `mirror` there is moved into that list with its percentage: istiod refuses both set."""

    def ours(dest: Any) -> bool:
        return _canary(rollout, ns, dest)

    mirrors = [m for m in http.get("mirrors") or [] if not ours(m.get("destination"))]
    if http.get("mirror") is not None and not ours(http["mirror"]):
        if canary is None:
            if mirrors:
                http["mirrors"] = mirrors
            else:
                http.pop("mirrors", None)
            return  # someone else's single mirror, and nothing of ours to add: as it is
        moved: dict[str, Any] = {"destination": http["mirror"]}
        if http.get("mirrorPercentage") is not None:
            moved["percentage"] = http["mirrorPercentage"]
        elif http.get("mirrorPercent") is not None:
            moved["percentage"] = {"value": http["mirrorPercent"]}
        mirrors.insert(0, moved)
    for key in ("mirror", "mirrorPercentage", "mirrorPercent"):
        http.pop(key, None)
    if canary is not None and mirrors:
        mirrors.append({"destination": canary, "percentage": {"value": shadow}})
    elif canary is not None:
        http["mirror"] = canary
        http["mirrorPercentage"] = {"value": shadow}
    if mirrors:
        http["mirrors"] = mirrors
    else:
        http.pop("mirrors", None)


KUBE = mesh.Kind(
    group="networking.istio.io",
    plural="virtualservices",
    kind=KIND,
    type="istio",
    state_of=lambda obj, rollout: state_of(obj, rollout=rollout),
    with_split=with_split,
    problems=problems,
)


def router(
    name: str, config: spec.IstioRouterConfig, api: Any, *, routes: Mapping[str, str], timeout: float
) -> mesh.KubeRouter:
    """The live Istio router `name`: its routes' VirtualServices in the router's namespace."""
    return mesh.KubeRouter(name, KUBE, api, namespace=config.namespace, routes=routes, timeout=timeout)
