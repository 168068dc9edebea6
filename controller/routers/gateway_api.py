"""The Gateway API router's translation: a route is an HTTPRoute (gateway.networking.k8s.io/v1) whose one
rule splits between the roles' Services by `backendRefs[].weight` (relative weights: ours are percents),
and mirrors to the canary's Service with a `RequestMirror` filter (`percent`) while the canary shadows.
`manifest` renders a route's state into the object `rollout render gateway-api` writes into git;
`state_of` reads one back.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from controller import errors, spec, traffic
from controller.routers import mesh

KIND = "HTTPRoute"
API_VERSION = "gateway.networking.k8s.io/v1"
SCHEMA = "httproute.gateway.networking.k8s.io_v1.json"
RULE_NAME = "rollout"  # the name of the rule the router owns in each HTTPRoute


def manifest(
    router: str, config: spec.GatewayApiRouterConfig, *, route: str, rollout: str, state: traffic.RouteState
) -> dict[str, Any]:
    """The HTTPRoute of `route` serving `state`. Raises RouterError, naming the route, for a state it
    cannot express (cohorts, unmanaged variants, every weight 0)."""
    mesh.refuse(router, "gateway-api", route, rollout, state)
    rule: dict[str, Any] = {
        "name": RULE_NAME,
        "backendRefs": [
            {**_ref(config, rollout, role), "weight": state.weights[role]}
            for role in mesh.ORDER
            if role in state.weights
        ],
    }
    if state.shadow:
        rule["filters"] = [
            {
                "type": "RequestMirror",
                "requestMirror": {"backendRef": _ref(config, rollout, traffic.CANARY), "percent": state.shadow},
            }
        ]
    body: dict[str, Any] = {"parentRefs": [_parent(p) for p in config.parent_refs]}
    if config.hostnames.get(route):
        body["hostnames"] = list(config.hostnames[route])
    body["rules"] = [rule]
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": mesh.metadata(route, rollout, config.namespace),
        "spec": body,
    }


def _ref(config: spec.GatewayApiRouterConfig, rollout: str, role: str) -> dict[str, Any]:
    return {"name": mesh.service(rollout, role), "port": config.port}


def _parent(ref: spec.ParentRef) -> dict[str, Any]:
    out: dict[str, Any] = {"name": ref.name}
    if ref.namespace:
        out["namespace"] = ref.namespace
    if ref.section_name:
        out["sectionName"] = ref.section_name
    return out


def problems(obj: Mapping[str, Any]) -> list[str]:
    """The upstream CRD schema's complaints about an HTTPRoute, and a rule whose weights are all 0 (its
    traffic would get 500s)."""
    found = mesh.schema_problems(SCHEMA, obj, api_version=API_VERSION, kind=KIND)
    rules = (obj.get("spec") or {}).get("rules") if isinstance(obj.get("spec"), dict) else None
    for i, rule in enumerate(rules if isinstance(rules, list) else []):
        refs = [r for r in (rule.get("backendRefs") if isinstance(rule, dict) else None) or [] if isinstance(r, dict)]
        if refs and all(r.get("weight", 1) == 0 for r in refs):
            found.append(f"spec.rules[{i}].backendRefs: every weight is 0, so every request would fail")
    return found


def state_of(obj: Mapping[str, Any], *, rollout: str) -> traffic.RouteState:
    """The split an HTTPRoute serves: its `rollout` rule (else its first), each backend's share of the
    relative weights as a percent by the role its name names (any other backend is a variant no rollout
    manages; a backendRef of another namespace is one), and the percentage mirrored to the canary's
    Service. Raises ValueError, saying what, when a share is not a whole percent: it is never rounded
    (mesh.SplitProblem for our own weights); or when another rule sends the canary traffic."""
    ns = (obj.get("metadata") or {}).get("namespace")
    rules = (obj.get("spec") or {}).get("rules") or []
    if not isinstance(rules, list) or not rules:
        raise ValueError("spec.rules is empty: the HTTPRoute routes nothing")
    rule = next((r for r in rules if isinstance(r, dict) and r.get("name") == RULE_NAME), rules[0])
    reach = _canary_elsewhere(rules, rollout, ns, skip=rule)
    if reach:
        raise ValueError(
            f"{'; '.join(reach)}: the canary gets traffic outside the route's own rule ({RULE_NAME!r}), which "
            "no read of that rule shows; a rollback takes it out"
        )
    refs = rule.get("backendRefs") or []
    raw = [r.get("weight", 1) for r in refs]  # the API's default weight is 1
    if any(not mesh.whole(w) or w < 0 for w in raw):
        raise mesh.unsplit(any(_role(rollout, ns, r) is None for r in refs))(
            f"backendRefs weights must be whole numbers >= 0, got {raw}"
        )
    weights, others = mesh.shares(
        [(r.get("name") or "", _role(rollout, ns, r), w) for r, w in zip(refs, raw, strict=True)]
    )
    shadow = 0
    for f in rule.get("filters") or []:
        mirror = f.get("requestMirror") if f.get("type") == "RequestMirror" else None
        if not mirror or _role(rollout, ns, mirror.get("backendRef")) != traffic.CANARY:
            continue
        if "fraction" in mirror:
            frac = mirror["fraction"]
            share = Fraction(frac.get("numerator", 0) * 100, frac.get("denominator", 100))
            if share.denominator != 1:
                raise ValueError(f"the canary's mirror fraction {frac} is not a whole percent (never rounded)")
            shadow = int(share)
        else:
            shadow = mirror.get("percent", 100)  # the API mirrors every request when neither is set
    return traffic.RouteState(weights or {traffic.STABLE: 0}, shadow, others=others)


def with_split(live: Mapping[str, Any], rollout: str, state: traffic.RouteState) -> dict[str, Any]:
    """The `spec` a live write applies: the live `spec.rules` (an atomic list: whoever applies it owns all
    of it) with only the weights of the roles' backendRefs and the canary's RequestMirror filter of the
    route's own rule changed (mesh.reweigh: in the live units where unmanaged backends share it), and,
    with the canary at 0 or shadow off, the canary taken out of every other rule; every other field,
    rule and backend as it is live. Raises RouterError when a role with traffic has no backendRef there
    (only a merged manifest adds one), or when backends no rollout manages share the rule and a raise
    cannot be said exactly (never rounded); a lowering is always written."""
    ns = (live.get("metadata") or {}).get("namespace")
    rules = copy.deepcopy((live.get("spec") or {}).get("rules") or [])
    if not rules:
        raise errors.RouterError("spec.rules is empty: nothing to split; nothing was written")
    at = next((i for i, r in enumerate(rules) if r.get("name") == RULE_NAME), 0)
    rule = rules[at]
    refs = rule.get("backendRefs") or []
    entries = [(_role(rollout, ns, ref), ref.get("weight", 1)) for ref in refs]
    canary: dict[str, Any] | None = None
    for ref, (role, _) in zip(refs, entries, strict=True):
        if role == traffic.CANARY:
            canary = {k: ref[k] for k in ("group", "kind", "name", "namespace", "port") if k in ref}
    missing = [role for role, w in state.weights.items() if w and role not in {r for r, _ in entries}]
    if missing:
        raise errors.RouterError(
            f"spec.rules[{at}] has no backendRef for {', '.join(missing)} "
            f"({', '.join(mesh.service(rollout, m) for m in missing)}); merge the rendered manifest first; "
            "nothing was written"
        )
    if any(not mesh.whole(w) or w < 0 for _, w in entries):
        raise errors.RouterError(f"spec.rules[{at}]: a backendRef's weight is no whole number; nothing was written")
    new = mesh.reweigh(entries, state)
    if new is None:
        raise errors.RouterError(
            f"spec.rules[{at}]: with the backends no rollout manages there, {state.describe()} cannot be set "
            "exactly in relative weights, and it lowers nothing; nothing was written"
        )
    for ref, (role, _), w in zip(refs, entries, new, strict=True):
        if role is not None:
            ref["weight"] = w
    filters = [
        f
        for f in rule.get("filters") or []
        if not (
            f.get("type") == "RequestMirror"
            and _role(rollout, ns, (f.get("requestMirror") or {}).get("backendRef")) == traffic.CANARY
        )
    ]
    if state.shadow:
        if canary is None:
            raise errors.RouterError(f"spec.rules[{at}] has no canary backendRef to mirror to; nothing was written")
        filters.append({"type": "RequestMirror", "requestMirror": {"backendRef": canary, "percent": state.shadow}})
    if filters:
        rule["filters"] = filters
    else:
        rule.pop("filters", None)
    for ref in rule.get("backendRefs") or []:
        if not state.shadow:
            _unmirror(ref, rollout, ns)
    for i, other in enumerate(rules):
        if i != at and isinstance(other, dict):
            _lower_elsewhere(other, rollout, ns, state)
    return {"rules": rules}


def _role(rollout: str, ns: str | None, ref: Any) -> str | None:
    """The role whose Service a backendRef names: by its name, in the route's own namespace only."""
    if not isinstance(ref, dict) or ref.get("namespace", ns) != ns or ref.get("kind", "Service") != "Service":
        return None
    return mesh.role_of(rollout, ns, ref.get("name") or "")


def _canary(rollout: str, ns: str | None, ref: Any) -> bool:
    return isinstance(ref, dict) and _role(rollout, ns, ref) == traffic.CANARY


def _mirrors_canary(f: Any, rollout: str, ns: str | None) -> bool:
    """`f` is a RequestMirror filter that mirrors some requests to the canary."""
    if not isinstance(f, dict) or f.get("type") != "RequestMirror":
        return False
    mirror = f.get("requestMirror") or {}
    if not _canary(rollout, ns, mirror.get("backendRef")):
        return False
    if "fraction" in mirror:
        return bool((mirror["fraction"] or {}).get("numerator", 0))
    return bool(mirror.get("percent", 100))


def _canary_elsewhere(rules: list[Any], rollout: str, ns: str | None, *, skip: Any) -> list[str]:
    """Each rule but `skip` (the route's own) that sends the canary live traffic (a canary backendRef of
    weight > 0) or mirrors to it, and a backendRef's own mirror to it in any rule."""
    found: list[str] = []
    for i, rule in enumerate(rules):
        if not isinstance(rule, dict):
            continue
        name = f" ({rule['name']!r})" if rule.get("name") else ""
        refs = [r for r in rule.get("backendRefs") or [] if isinstance(r, dict)]
        if rule is not skip and any(_canary(rollout, ns, r) and r.get("weight", 1) > 0 for r in refs):
            found.append(f"spec.rules[{i}]{name} routes to {mesh.service(rollout, traffic.CANARY)}")
        elif (rule is not skip and any(_mirrors_canary(f, rollout, ns) for f in rule.get("filters") or [])) or any(
            _mirrors_canary(f, rollout, ns) for r in refs for f in r.get("filters") or []
        ):
            found.append(f"spec.rules[{i}]{name} mirrors to {mesh.service(rollout, traffic.CANARY)}")
    return found


def _unmirror(holder: dict[str, Any], rollout: str, ns: str | None) -> None:
    """Take the canary's RequestMirror filters out of `holder` (a rule or a backendRef), in place."""
    kept = [f for f in holder.get("filters") or [] if not _mirrors_canary(f, rollout, ns)]
    if kept:
        holder["filters"] = kept
    else:
        holder.pop("filters", None)


def _lower_elsewhere(rule: dict[str, Any], rollout: str, ns: str | None, state: traffic.RouteState) -> None:
    """In another rule than ours, in place: with the canary at 0 in `state`, its backendRefs' weight
    moves to the stable Service's (added, as a copy of the canary's ref, where the rule has none); with
    shadow off, every mirror to the canary goes. So a rollback leaves the canary no traffic anywhere."""
    refs = [r for r in rule.get("backendRefs") or [] if isinstance(r, dict)]
    if not state.weight(traffic.CANARY):
        moved = 0
        template: dict[str, Any] | None = None
        for ref in refs:
            if _canary(rollout, ns, ref) and ref.get("weight", 1):
                moved += ref.get("weight", 1)
                template = template or ref
                ref["weight"] = 0
        stable = next((r for r in refs if _role(rollout, ns, r) == traffic.STABLE), None)
        if template is not None and stable is not None:
            stable["weight"] = stable.get("weight", 1) + moved
        elif template is not None:
            rule["backendRefs"] = [*refs, {**template, "name": mesh.service(rollout, traffic.STABLE), "weight": moved}]
    if not state.shadow:
        _unmirror(rule, rollout, ns)
        for ref in refs:
            _unmirror(ref, rollout, ns)


KUBE = mesh.Kind(
    group="gateway.networking.k8s.io",
    plural="httproutes",
    kind=KIND,
    type="gateway-api",
    state_of=lambda obj, rollout: state_of(obj, rollout=rollout),
    with_split=with_split,
    problems=problems,
)


def router(
    name: str, config: spec.GatewayApiRouterConfig, api: Any, *, routes: Mapping[str, str], timeout: float
) -> mesh.KubeRouter:
    """The live Gateway API router `name`: its routes' HTTPRoutes in the router's namespace."""
    return mesh.KubeRouter(name, KUBE, api, namespace=config.namespace, routes=routes, timeout=timeout)
