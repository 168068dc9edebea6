"""What the Kubernetes mesh routers (`istio`, `gateway-api`) share: the roles' Service names, the manifest
files in the repository, and the check of a manifest against the upstream CRD schema vendored in crds/
(see its README). Called by routers.istio and routers.gateway_api only.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema

from controller import carries, errors, traffic

CRDS = Path(__file__).resolve().parent / "crds"
MANAGED_BY = "llm-rollouts"  # app.kubernetes.io/managed-by on every rendered object
ROLLOUT_LABEL = "rollouts.llm/rollout"  # the rollout an object is rendered from
DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")  # a Service's name (RFC 1035)
_TYPE_META = frozenset({"apiVersion", "kind", "metadata"})
ORDER = (traffic.STABLE, traffic.CANARY, traffic.PREVIOUS)  # the roles' order in a rendered split


def service(rollout: str, role: str) -> str:
    """The Kubernetes Service a role of a rollout is served by: `support-bot-canary`."""
    return f"{rollout}-{role}"


def role_of(rollout: str, host: str) -> str | None:
    """The role whose Service `host` names (short, `name.namespace` or `.svc.cluster.local`), or None."""
    short = host.split(".", 1)[0]
    return next((role for role in ORDER if short == service(rollout, role)), None)


def refuse(router: str, kind: str, route: str, rollout: str, state: traffic.RouteState) -> None:
    """Raise RouterError, naming the route, when `state` is no split a mesh route can express: cohorts,
    variants no rollout manages, a role whose Service name is too long, or no weight at all."""
    where = f"router {router!r} ({kind}) route {route!r}"
    why = carries.mesh_route_problem(route)
    if why:
        raise errors.RouterError(f"{where}: {why}")
    if state.cohorts:
        raise errors.RouterError(
            f"{where}: cannot route by cohort ({', '.join(c.name for c in state.cohorts)}); nothing was rendered"
        )
    if state.others:
        raise errors.RouterError(
            f"{where}: variants no rollout manages ({', '.join(sorted(state.others))}) cannot be rendered"
        )
    for role in state.weights:
        name = service(rollout, role)
        if len(name) > 63 or not DNS_LABEL.match(name):
            raise errors.RouterError(
                f"{where}: the {role} Service name {name!r} is not a DNS label of 63 characters at most"
            )
    if sum(state.weights.values()) <= 0:
        raise errors.RouterError(f"{where}: every weight is 0, which sends the route's traffic nowhere")


def metadata(route: str, rollout: str, namespace: str) -> dict[str, Any]:
    return {
        "name": route,
        "namespace": namespace,
        "labels": {"app.kubernetes.io/managed-by": MANAGED_BY, ROLLOUT_LABEL: rollout},
    }


@functools.cache
def _validator(schema_file: str) -> jsonschema.protocols.Validator:
    schema = json.loads((CRDS / schema_file).read_text("utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)


def schema_problems(schema_file: str, obj: Mapping[str, Any], *, api_version: str, kind: str) -> list[str]:
    """What the upstream CRD schema (`schema_file` in crds/) says is wrong with `obj`, with each path, plus
    every field the schema does not know (the API server would prune it, and the GitOps tool would then
    see a difference for ever) and a wrong apiVersion or kind."""
    out = [
        f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
        for e in sorted(_validator(schema_file).iter_errors(dict(obj)), key=lambda e: list(e.absolute_path))
    ]
    schema = json.loads((CRDS / schema_file).read_text("utf-8")) if not out else None
    if schema is not None:
        out += _unknown(schema, obj, "")
    if obj.get("apiVersion") != api_version or obj.get("kind") != kind:
        out.append(f"<root>: must be apiVersion {api_version}, kind {kind}")
    return out


def _unknown(schema: Mapping[str, Any], value: Any, path: str) -> list[str]:
    """Fields of `value` no `properties` of `schema` names (structural schemas prune them)."""
    out: list[str] = []
    if isinstance(value, dict) and "properties" in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
        props = schema["properties"]
        for key, item in value.items():
            here = f"{path}.{key}" if path else str(key)
            if key not in props:
                if path or key not in _TYPE_META:  # the API server's own fields, not the CRD's
                    out.append(f"{here}: unknown field (the API server would drop it)")
                continue
            out += _unknown(props[key], item, here)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            out += _unknown(schema["items"], item, f"{path}[{i}]")
    return out


def whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
