"""What the Kubernetes mesh routers (`istio`, `gateway-api`) share: the roles' Service names, the manifest
files in the repository, and the check of a manifest against the upstream CRD schema vendored in crds/
(see its README). Called by routers.istio and routers.gateway_api only.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
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


def role_of(rollout: str, namespace: str | None, host: str) -> str | None:
    """The role whose Service `host` names, or None: the short name, or `name.<namespace>`,
    `name.<namespace>.svc` or `name.<namespace>.svc.cluster.local` in the route's own `namespace` (the
    same name in another namespace is another Service)."""
    short, _, rest = host.partition(".")
    if rest and (namespace is None or rest not in {namespace, f"{namespace}.svc", f"{namespace}.svc.cluster.local"}):
        return None
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


class SplitProblem(ValueError):
    """The route's own entry shows the roles' weights, but they are no valid split (not whole, a share no
    whole percent, all 0): read as a RouterSplitError, which the reconciler heals by writing main's
    state. Raised only when no destination no rollout manages shares the entry: with one there, what
    the weights mean is not ours to say, and the problem is a plain ValueError (a RouterStateError)."""


def unsplit(unmanaged: bool) -> type[ValueError]:
    """What a weight problem of the route's own entry raises (see SplitProblem)."""
    return ValueError if unmanaged else SplitProblem


def shares(entries: Sequence[tuple[str, str | None, int]]) -> tuple[dict[str, int], dict[str, int]]:
    """The roles' and the unmanaged destinations' shares of an entry's relative weights, as whole percents:
    `entries` are (name, its role or None, its weight). Raises SplitProblem (ValueError with unmanaged
    destinations), saying what, when a share is not a whole percent (never rounded) or every weight is 0."""
    total = sum(w for _, _, w in entries)
    problem = unsplit(any(role is None for _, role, _ in entries))
    if total <= 0:
        raise problem("every weight is 0: the route sends its traffic nowhere")
    weights: dict[str, int] = {}
    others: dict[str, int] = {}
    for name, role, w in entries:
        share = Fraction(w * 100, total)
        if share.denominator != 1:
            raise problem(
                f"the weights {[w for _, _, w in entries]} give {name!r} {float(share):.4g}% of the traffic, "
                "which is not a whole percent (never rounded)"
            )
        target, key = (others, name) if role is None else (weights, role)
        target[key] = target.get(key, 0) + int(share)
    return weights, others


def reweigh(entries: Sequence[tuple[str | None, int]], state: traffic.RouteState) -> list[int] | None:
    """The new relative weights of an entry's destinations, (role or None, weight as live), that give
    each role its percent of `state`, or None when that cannot be said exactly. Without unmanaged
    destinations each role's weight is its percent. With them, their weights stay as they are and the
    roles share what the roles had: exact when each percent of the total is a whole weight; else a
    lowering is still written in the live units (the canary keeps the largest weight that is no more
    than its percent, and stable takes the rest of what it had), so taking the canary out never depends
    on the others (and canary 0 is always exact)."""
    if all(role is not None for role, _ in entries):
        return [state.weight(role) if role is not None else w for role, w in entries]
    total = sum(w for _, w in entries)
    ours = sum(w for role, w in entries if role is not None)
    exact = [Fraction(state.weight(role) * total, 100) if role is not None else Fraction(w) for role, w in entries]
    if (
        all(x.denominator == 1 for x in exact)
        and sum(x for (role, _), x in zip(entries, exact, strict=True) if role) == ours
    ):
        return [int(x) for x in exact]
    canary = sum(w for role, w in entries if role == traffic.CANARY)
    if total <= 0 or Fraction(state.weight(traffic.CANARY) * total, 100) > canary:
        return None  # a raise: not ours to say with the others there
    keep = state.weight(traffic.CANARY) * total // 100
    moved = canary - keep
    stable = next((i for i, (role, _) in enumerate(entries) if role == traffic.STABLE), None)
    if stable is None and moved:
        return None
    out = [w for _, w in entries]
    for i, (role, _) in enumerate(entries):
        if role == traffic.CANARY:
            out[i], keep = keep, 0
    if stable is not None:
        out[stable] += moved
    return out


# -- the live routes, through the Kubernetes API ---------------------------------------------------

FIELD_MANAGER = "llm-rollouts"  # the field manager of every live write
APPLY = "application/apply-patch+yaml"
INSTALL = "pip install 'llm-rollouts[kubernetes]'"
SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")


@dataclass(frozen=True)
class Kind:
    """What the live router needs to know of one kind of route object: where it is in the API, how to
    read a split from it, and how to set one on it."""

    group: str
    plural: str
    kind: str
    type: str  # the router type, for messages: istio, gateway-api
    state_of: Callable[[Mapping[str, Any], str], traffic.RouteState]  # (object, rollout) -> its split
    # (live object, rollout, desired split) -> the `spec` to apply: the live object's atomic list with only
    # the weights and the canary's mirror of the route's own entry changed, and on a lowering the canary
    # taken out of every other entry; raises RouterError when it cannot
    with_split: Callable[[Mapping[str, Any], str, traffic.RouteState], dict[str, Any]]
    problems: Callable[[Mapping[str, Any]], list[str]]  # the upstream schema's and the admission rules' complaints

    @property
    def api_version(self) -> str:
        return f"{self.group}/v1"


def _kubernetes() -> Any:
    try:
        import kubernetes.client
        import kubernetes.config
    except ImportError as exc:
        raise errors.RouterError(
            f"the mesh routers need the Kubernetes client, which is not installed: {INSTALL}"
        ) from exc
    return kubernetes


def custom_objects(env: Mapping[str, str], *, service_account: Path = SERVICE_ACCOUNT) -> Any:
    """A `kubernetes.client.CustomObjectsApi`: in a pod (KUBERNETES_SERVICE_HOST set) with its service
    account, elsewhere with the kubeconfig ($KUBECONFIG, else ~/.kube/config), as the coordination does."""
    k = _kubernetes()
    config = k.client.Configuration()
    try:
        if env.get("KUBERNETES_SERVICE_HOST"):
            k.config.incluster_config.InClusterConfigLoader(
                token_filename=str(service_account / "token"),
                cert_filename=str(service_account / "ca.crt"),
                environ=env,
            ).load_and_set(config)
        else:
            files = env.get("KUBECONFIG") or str(Path(env.get("HOME") or Path.home()) / ".kube" / "config")
            k.config.load_kube_config(config_file=files, client_configuration=config, persist_config=False)
    except (k.config.ConfigException, OSError, ValueError, TypeError) as exc:
        raise errors.RouterError(f"kubernetes: cannot load the client's configuration: {type(exc).__name__}") from exc
    config.retries = False  # one attempt per call: the next tick is the retry
    return k.client.CustomObjectsApi(k.client.ApiClient(config))


class KubeRouter:
    """A mesh router on a cluster: a route is the object of `kind` named after it in `namespace`. A read
    is a GET per route; a write is a server-side apply per route under the field manager `llm-rollouts`
    (forced: the GitOps tool's manager owns the route list, which the CRDs make atomic), carrying the
    resourceVersion it read, of that list as it is live with only our weights and the canary's mirror
    changed. It never creates an object: a route not on the cluster is refused."""

    def __init__(
        self,
        name: str,
        kind: Kind,
        api: Any,
        *,
        namespace: str,
        routes: Mapping[str, str],
        timeout: float = 10.0,
    ) -> None:
        self.name = name
        self.kind = kind
        self.api = api
        self.namespace = namespace
        self.routes = dict(routes)  # route -> its rollout's name (the roles' Services are named after it)
        self.timeout = timeout
        self.location = f"{kind.plural}.{kind.group} in namespace {namespace}"

    def _where(self, route: str) -> str:
        return f"router {self.name!r} ({self.kind.type}) route {route!r}"

    def _rollout(self, route: str) -> str:
        rollout = self.routes.get(route)
        if rollout is None:
            raise errors.RouterError(f"{self._where(route)}: no rollout on this router has this route")
        return rollout

    def _get(self, route: str, what: str) -> dict[str, Any] | None:
        k = _kubernetes()
        try:
            found = self.api.get_namespaced_custom_object(
                self.kind.group, "v1", self.namespace, self.kind.plural, route, _request_timeout=self.timeout
            )
        except k.client.exceptions.ApiException as exc:
            if exc.status == 404:
                return None
            raise _mapped(exc, f"{self._where(route)}: cannot {what} its {self.kind.kind}") from exc
        except Exception as exc:  # urllib3's connection and timeout errors: the API server did not answer
            raise errors.RouterUnavailable(
                f"{self._where(route)}: cannot {what} its {self.kind.kind}: {type(exc).__name__}"
            ) from exc
        if not isinstance(found, dict):
            raise errors.RouterStateError(f"{self._where(route)}: the API server answered no object")
        return found

    def read(self, routes: Sequence[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for route in routes:
            obj = self._get(route, "read")
            if obj is None:
                out[route] = None
                continue
            try:
                out[route] = self.kind.state_of(obj, self._rollout(route))
            except SplitProblem as exc:  # weights of ours that are no split: main's state heals them
                out[route] = errors.RouterSplitError(f"{self._where(route)}: {exc}")
            except (ValueError, errors.RouterError) as exc:
                out[route] = errors.RouterStateError(f"{self._where(route)}: {exc}")
        return out

    def write(
        self, states: Mapping[str, traffic.RouteState], fences: Mapping[str, traffic.Fence] | None = None
    ) -> None:
        """Every route's apply body is built and checked before the first write, so a refused split
        writes nothing. Each route is one apply: a failure after the first leaves the routes before it
        written, which the read-back reports. An apply that finds the object changed since it was read
        (409) is built again from the object as it is now and applied again, up to `ATTEMPTS` times: it
        only sets our weights and mirror, so another writer's change to anything else is kept."""
        for route, state in states.items():
            self._rollout(route)
            if state.cohorts:
                raise errors.RouterError(
                    f"{self._where(route)}: cannot route by cohort ({', '.join(c.name for c in state.cohorts)}); "
                    "nothing was written"
                )
        bodies = {route: self._body(route, state) for route, state in states.items()}
        for route, state in states.items():
            for attempt in range(ATTEMPTS):
                try:
                    self._apply(route, bodies[route] if attempt == 0 else self._body(route, state))
                    break
                except _Stale as stale:
                    if attempt == ATTEMPTS - 1:
                        raise errors.RouterUnavailable(
                            f"{stale} (changed meanwhile, {ATTEMPTS} times: the next tick writes it again)"
                        ) from stale

    def _body(self, route: str, state: traffic.RouteState) -> dict[str, Any]:
        """The apply body that sets `state` on the route's object as it is live now; raises RouterError
        (nothing written) when the object is missing or the split cannot be set on it."""
        rollout = self._rollout(route)
        live = self._get(route, "write")
        if live is None:
            raise errors.RouterError(
                f"{self._where(route)}: there is no {self.kind.kind} {route!r} in namespace {self.namespace}: "
                f"the controller never creates one; let your GitOps tool apply `rollout render {self.kind.type}`'s "
                "manifest; nothing was written"
            )
        try:
            split = self.kind.with_split(live, rollout, state)
        except errors.RouterError as exc:
            raise errors.RouterError(f"{self._where(route)}: {exc}") from exc
        merged = {**live, "spec": {**(live.get("spec") or {}), **split}}
        merged.pop("status", None)
        # only what this write would break: a complaint the live object has already (a field newer than
        # the vendored schema, another entry's weights) is about what we did not touch, and must never
        # block a write, least of all a rollback
        before = {**live}
        before.pop("status", None)
        known = set(self.kind.problems(before))
        found = [p for p in self.kind.problems(merged) if "unknown field" not in p and p not in known]
        if found:
            raise errors.RouterError(
                f"{self._where(route)}: the {self.kind.kind} would fail its schema: {'; '.join(found[:5])}; "
                "nothing was written"
            )
        return {
            "apiVersion": self.kind.api_version,
            "kind": self.kind.kind,
            "metadata": {
                "name": route,
                "namespace": self.namespace,
                "resourceVersion": (live.get("metadata") or {}).get("resourceVersion"),
            },
            "spec": split,
        }

    def _apply(self, route: str, body: dict[str, Any]) -> None:
        k = _kubernetes()
        try:
            self.api.patch_namespaced_custom_object(
                self.kind.group,
                "v1",
                self.namespace,
                self.kind.plural,
                route,
                body,
                field_manager=FIELD_MANAGER,
                force=True,
                # a field the cluster's CRD does not know (an older release) is refused, never dropped:
                # dropped, a RequestMirror's `percent` would leave a mirror of every request
                field_validation="Strict",
                _content_type=APPLY,
                _request_timeout=self.timeout,
            )
        except k.client.exceptions.ApiException as exc:
            if exc.status == 409:
                raise _Stale(f"{self._where(route)}: cannot apply its {self.kind.kind}: HTTP 409") from exc
            raise _mapped(exc, f"{self._where(route)}: cannot apply its {self.kind.kind}") from exc
        except Exception as exc:
            raise errors.RouterUnavailable(
                f"{self._where(route)}: cannot apply its {self.kind.kind}: {type(exc).__name__}"
            ) from exc


ATTEMPTS = 5  # applies of one route's split that found the object changed since it was read


class _Stale(Exception):
    """An apply's resourceVersion was no longer the object's (409): build it again from the object now."""


def _mapped(exc: Any, what: str) -> errors.RouterError:
    """An ApiException as our error: the API server's reason and message, never its headers (a token)."""
    status = int(getattr(exc, "status", 0) or 0)
    reason = ""
    try:
        answer = json.loads(getattr(exc, "body", "") or "{}")
        reason = f"{answer.get('reason', '')}: {str(answer.get('message', ''))[:300]}"
    except (ValueError, AttributeError):
        reason = str(getattr(exc, "reason", ""))
    message = f"{what}: HTTP {status} {reason}".rstrip(": ")
    if status == 0 or status >= 500 or status == 429:
        return errors.RouterUnavailable(message)
    return errors.RouterError(message)
