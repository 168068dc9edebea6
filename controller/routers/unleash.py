"""The Unleash router: each route is an Unleash feature flag whose strategy variants say what to serve.

The CLI builds it from an `unleash` router config; the reconciler reads and writes through it. An
application evaluates the flag (named after the route, `flag_name`) with an Unleash SDK and gets a
variant named stable, canary or previous whose JSON payload is {model, prompt, promptText, revision,
params}, as flagd's flag holds it.

Unleash gives a flag's variant from the first of its strategies that matches the request, so a route's
split is a list of `flexibleRollout` strategies in the flag's environment, every one with one variant,
all bucketing the request by the same stickiness and group id (the flag's name), so one user falls in
one bucket (1..100) on every strategy:

- per cohort, in precedence order: the canary at rollout = the cohort's canary percent, then stable at
  100%, both constrained to `<key> IN <values>` (the second catches the cohort's other users, so a
  request in two cohorts is split by the first, never falls through to a later one);
- for everyone: canary at its percent, previous (when the state has it) at canary + previous, then
  stable at 100% with Unleash's `default` stickiness, which always matches.

A user stays on its variant while the weights stay, and a canary user stays canary as the weight grows
(its bucket stays under a rising rollout). Reads go through the client API, what SDKs are served; writes
through the admin API. Strategies we write carry the parameter managedBy=rollout-controller.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from controller import errors, settings, traffic
from controller.routers import base

MANAGED_BY = "rollout-controller"
#: Unleash's own stickiness that always resolves (user id, else session id, else random): the catch-alls'.
ALWAYS = "default"
#: Our strategies sort first; one we add goes after every strategy until the batch puts it in its place.
_APPENDED = 10_000
#: One writer per flag at a time in this process (the controller's lease keeps other processes out).
_WRITING = threading.Lock()


def flag_name(route: str) -> str:
    """The flag of a route: the route, with '/' (which Unleash refuses in a flag name) spelt '~'
    (which no route name holds, so two routes never share a flag)."""
    return route.replace("/", "~")


@dataclass(frozen=True)
class Strategy:
    """One of our strategies as we want it: the key names its place in the split."""

    cohort: traffic.CohortSplit | None
    role: str
    rollout: int
    stickiness: str
    served: traffic.Served | None

    @property
    def key(self) -> tuple[str, str]:
        return (self.cohort.name if self.cohort else "", self.role)

    def body(self, flag: str) -> dict[str, Any]:
        """The admin API's strategy object."""
        parameters = {
            "rollout": str(self.rollout),
            "stickiness": self.stickiness,
            "groupId": flag,
            "managedBy": MANAGED_BY,
        }
        constraints = []
        if self.cohort is not None:
            parameters["cohort"] = self.cohort.name
            constraints = [{"contextName": self.cohort.key, "operator": "IN", "values": list(self.cohort.values)}]
        where = f"cohort {self.cohort.name}" if self.cohort else "everyone"
        payload = {} if self.served is None else self.served.to_json(prompt_text=True)
        return {
            "name": "flexibleRollout",
            "title": f"{MANAGED_BY}: {self.role} ({where})",
            "disabled": False,
            "constraints": constraints,
            "parameters": parameters,
            "variants": [
                {
                    "name": self.role,
                    "weight": 1000,
                    "weightType": "variable",
                    "stickiness": self.stickiness,
                    "payload": {"type": "json", "value": json.dumps(payload, sort_keys=True)},
                }
            ],
        }


def strategies(state: traffic.RouteState, *, stickiness: str) -> list[Strategy]:
    """The strategies that serve `state`, in order (see the module's docstring)."""
    out: list[Strategy] = []
    stable, canary = state.served.get(traffic.STABLE), state.served.get(traffic.CANARY)
    for cohort in state.cohorts:
        out.append(Strategy(cohort, traffic.CANARY, cohort.canary, stickiness, canary))
        out.append(Strategy(cohort, traffic.STABLE, 100, ALWAYS, stable))
    roles = [r for r in (traffic.CANARY, traffic.PREVIOUS, traffic.STABLE) if r in state.weights]
    rollout = 0
    for role in roles:
        rollout += state.weight(role)
        last = role == roles[-1]
        out.append(
            Strategy(None, role, 100 if last else rollout, ALWAYS if last else stickiness, state.served.get(role))
        )
    return out


def _refusal(state: traffic.RouteState) -> str:
    """Why this router cannot serve `state`, or ''."""
    if state.shadow:
        return (
            f"Unleash cannot mirror traffic (an SDK serves each request one variant), so shadow {state.shadow}% "
            "cannot be applied"
        )
    if state.others:
        return f"an Unleash flag of ours holds no variant no rollout manages, got {state.describe()}"
    if sum(state.weights.values()) != 100:
        return f"weights must sum to 100, got {dict(state.weights)}"
    return ""


# -- reading what the client API serves ---------------------------------------------------------------


def parse_flag(feature: Any, *, where: str) -> traffic.RouteState:
    """A route state from the client API's feature object of a flag this router wrote; anything else
    (a strategy we did not write, a rollout that is no whole percent, a split that does not end at
    100%) is a RouterStateError naming `where`."""
    try:
        if not isinstance(feature, dict):
            raise ValueError("the flag is not an object")
        if feature.get("enabled") is not True:
            raise ValueError("the flag is disabled in this environment: clients get no variant")
        raw = feature.get("strategies")
        if not isinstance(raw, list) or not raw:
            raise ValueError("the flag has no strategies")
        groups: dict[str, list[tuple[int, str, Any]]] = {}
        matches: dict[str, tuple[str, tuple[str, ...]]] = {}
        served: dict[str, traffic.Served] = {}
        for i, strategy in enumerate(raw):
            cohort, match, rollout, role, payload = _ours(strategy, where=f"strategy {i + 1}")
            if cohort and groups and "" in groups:
                raise ValueError(f"strategy {i + 1} (cohort {cohort!r}) comes after everyone's split")
            if cohort in matches and matches[cohort] != match:
                raise ValueError(f"strategy {i + 1}: cohort {cohort!r} matches two ways")
            if cohort:
                matches[cohort] = match
            groups.setdefault(cohort, []).append((rollout, role, payload))
        cohorts = [_cohort(name, matches[name], entries) for name, entries in groups.items() if name]
        weights = _weights(groups.get("", []), what="everyone's split")
        for entries in groups.values():
            for _, role, payload in entries:
                if isinstance(payload, dict) and isinstance(payload.get("model"), str) and role not in served:
                    served[role] = traffic.Served.from_json(payload, where=f"variant {role!r}")
        return traffic.RouteState(weights, 0, served, cohorts=tuple(cohorts))
    except (ValueError, TypeError, AttributeError) as exc:
        raise errors.RouterStateError(f"{where}: {exc}") from exc


def _ours(strategy: Any, *, where: str) -> tuple[str, tuple[str, tuple[str, ...]], int, str, Any]:
    """(cohort name or '', (key, values), rollout, role, payload) of one strategy we wrote."""
    if not isinstance(strategy, dict):
        raise ValueError(f"{where} is not an object")
    params = strategy.get("parameters") or {}
    if not isinstance(params, dict) or params.get("managedBy") != MANAGED_BY:
        raise ValueError(
            f"{where} ({strategy.get('name')!r}) was not written by the rollout controller; it would decide some "
            "users' variant, so the split cannot be read: remove or disable it in Unleash"
        )
    if strategy.get("name") != "flexibleRollout" or strategy.get("segments"):
        raise ValueError(f"{where} is not a flexibleRollout without segments")
    rollout = params.get("rollout")
    if not (isinstance(rollout, str) and rollout.isdigit() and 0 <= int(rollout) <= 100):
        raise ValueError(f"{where}: rollout must be a whole percent between 0 and 100, got {rollout!r}")
    variants = strategy.get("variants")
    if not (isinstance(variants, list) and len(variants) == 1 and isinstance(variants[0], dict)):
        raise ValueError(f"{where} must have exactly one variant")
    role = variants[0].get("name")
    if role not in traffic.ROLES:
        raise ValueError(f"{where}: variant {role!r} is none of {', '.join(traffic.ROLES)}")
    payload = variants[0].get("payload") or {}
    value = json.loads(payload.get("value", "{}")) if payload.get("type") == "json" else None
    cohort = params.get("cohort", "")
    constraints = strategy.get("constraints") or []
    if not cohort:
        if constraints:
            raise ValueError(f"{where}: everyone's strategy has constraints")
        return "", ("", ()), int(rollout), role, value
    if not (len(constraints) == 1 and constraints[0].get("operator") == "IN" and not constraints[0].get("inverted")):
        raise ValueError(f"{where}: cohort {cohort!r} must have one 'IN' constraint")
    values = constraints[0].get("values")
    if not (isinstance(values, list) and values and all(isinstance(v, str) for v in values)):
        raise ValueError(f"{where}: cohort {cohort!r} matches no values")
    return str(cohort), (str(constraints[0].get("contextName")), tuple(values)), int(rollout), role, value


def _weights(entries: Sequence[tuple[int, str, Any]], *, what: str) -> dict[str, int]:
    """Each role's percent from cumulative rollouts (a later strategy takes the buckets above the last)."""
    if not entries:
        raise ValueError(f"{what} has no strategy")
    weights: dict[str, int] = {}
    below = 0
    for rollout, role, _ in entries:
        if role in weights:
            raise ValueError(f"{what} serves {role!r} twice")
        if rollout < below:
            raise ValueError(f"{what}: {role!r} at rollout {rollout}% is under the {below}% before it")
        weights[role] = rollout - below
        below = rollout
    if below != 100:
        raise ValueError(f"{what} ends at rollout {below}%, not 100%: some users would get no variant")
    return weights


def _cohort(
    name: str, match: tuple[str, tuple[str, ...]], entries: Sequence[tuple[int, str, Any]]
) -> traffic.CohortSplit:
    weights = _weights(entries, what=f"cohort {name!r}")
    if set(weights) != {traffic.STABLE, traffic.CANARY}:
        raise ValueError(f"cohort {name!r} must split stable and canary, got {sorted(weights)}")
    return traffic.CohortSplit(name, match[0], match[1], weights[traffic.CANARY])


# -- the router ---------------------------------------------------------------------------------------


class UnleashRouter:
    def __init__(
        self,
        name: str,
        url: str,
        *,
        admin_token: str | None,
        client_token: str | None,
        project: str = "default",
        environment: str = "development",
        stickiness: str = ALWAYS,
        apply_timeout: float = 10.0,
        timeout: float = settings.Timeouts.unleash_api,
        client: httpx.Client | None = None,
    ) -> None:
        self.name = name
        self.url = url.rstrip("/")
        self.location = f"Unleash {self.url} project {project!r} environment {environment!r}"
        self.project = project
        self.environment = environment
        self.stickiness = stickiness
        self.apply_timeout = apply_timeout
        self._admin_token = admin_token
        self._client_token = client_token
        self._client = client or httpx.Client(timeout=timeout)

    def close(self) -> None:
        self._client.close()

    def _where(self, route: str) -> str:
        return f"router {self.name!r} route {route!r} (flag {flag_name(route)!r})"

    def read(self, routes: Sequence[str]) -> dict[str, base.Live]:
        """Every route from one `GET /api/client/features`: what SDKs are served in this environment."""
        if not routes:
            return {}
        features = self._client_features(f"read {base.routes_text(routes)}")
        out: dict[str, base.Live] = {}
        for route in routes:
            feature = features.get(flag_name(route))
            try:
                out[route] = None if feature is None else parse_flag(feature, where=self._where(route))
            except errors.RouterStateError as exc:
                out[route] = exc
        return out

    def write(self, states: Mapping[str, traffic.RouteState]) -> None:
        """Every route of the batch through the admin API, after checking them all (a route it refuses,
        or a flag holding a strategy we did not write, writes nothing); then one wait for the client API
        to serve the batch. Unleash has no transaction across calls: a write cut off half way leaves a
        flag that the read-back reports, and the next write heals."""
        if not states:
            return
        for route, state in states.items():
            problem = _refusal(state)
            if problem:
                raise errors.RouterError(f"{self._where(route)}: {problem}; nothing was written")
        with _WRITING:
            current = {route: self._admin_feature(route) for route in states}
            for route, feature in current.items():
                foreign = _foreign(feature, self.environment)
                if foreign:
                    raise errors.RouterError(
                        f"{self._where(route)}: strategy {foreign} in environment {self.environment!r} was not "
                        "written by the rollout controller, which never changes one it did not write; remove or "
                        "disable it in Unleash; nothing was written"
                    )
            for route, state in states.items():
                self._write_flag(route, state, current[route])
        self._await_served(states)

    # -- writing one flag ----------------------------------------------------------------------------

    def _write_flag(self, route: str, state: traffic.RouteState, feature: dict[str, Any] | None) -> None:
        flag = flag_name(route)
        operation = f"write {self._where(route)}"
        if feature is None:
            self._admin("POST", f"/projects/{self.project}/features", operation,
                        json={"name": flag, "type": "release", "description": f"Managed by the {MANAGED_BY}."})  # fmt: skip
            feature = {}
        env = _environment(feature, self.environment) or {}
        existing = [s for s in env.get("strategies") or [] if _managed(s)]
        wanted = strategies(state, stickiness=self.stickiness)
        path = f"/projects/{self.project}/features/{flag}/environments/{self.environment}/strategies"
        ids: dict[tuple[str, str], str] = {}
        for strategy in existing:  # the first of a key is the one kept, as `_plan` keeps it
            key = _key(strategy)
            if key is not None:
                ids.setdefault(key, str(strategy["id"]))
        for call in _plan(existing, wanted, flag):
            if call.method == "SORT":
                order = [{"id": ids[key], "sortOrder": i} for i, key in enumerate(call.body)]
                self._admin("POST", path + "/set-sort-order", operation, json=order)
                continue
            answer = self._admin(call.method, path + call.suffix, operation, json=call.body)
            if call.method == "POST" and isinstance(answer, dict):
                ids[call.key] = str(answer.get("id"))
        if env.get("enabled") is not True:
            self._admin(
                "POST", f"/projects/{self.project}/features/{flag}/environments/{self.environment}/on", operation
            )

    def _await_served(self, states: Mapping[str, traffic.RouteState]) -> None:
        """Wait (at most `apply_timeout`) for the client API, which Unleash refreshes about every
        second, to serve every route as written, or for the admin API to show that another write
        replaced ours; the read-back judges what is finally served."""
        end = time.monotonic() + self.apply_timeout
        pending = dict(states)
        while pending and time.monotonic() < end:
            features = self._client_features(f"confirm {base.routes_text(pending)}")
            for route, desired in list(pending.items()):
                if _shows(features.get(flag_name(route)), desired) or not _shows(self._admin_view(route), desired):
                    del pending[route]
            if pending:
                time.sleep(0.1)

    def _admin_view(self, route: str) -> dict[str, Any] | None:
        """The flag as the admin API has it now, shaped as the client API serves it (enabled strategies only)."""
        env = _environment(self._admin_feature(route) or {}, self.environment)
        if env is None:
            return None
        served = [s for s in env.get("strategies") or [] if isinstance(s, dict) and not s.get("disabled")]
        return {"enabled": env.get("enabled"), "strategies": served}

    # -- HTTP ----------------------------------------------------------------------------------------

    def _client_features(self, operation: str) -> dict[str, Any]:
        data = self._request("GET", "/api/client/features", operation, token=self._client_token, what="client")
        features = data.get("features") if isinstance(data, dict) else None
        if not isinstance(features, list):
            raise errors.RouterStateError(
                f"router {self.name!r}: {operation}: /api/client/features did not answer a 'features' list"
            )
        return {f["name"]: f for f in features if isinstance(f, dict) and isinstance(f.get("name"), str)}

    def _admin_feature(self, route: str) -> dict[str, Any] | None:
        operation = f"read {self._where(route)} for a write"
        path = f"/api/admin/projects/{self.project}/features/{flag_name(route)}"
        data = self._request("GET", path, operation, token=self._admin_token, what="admin", missing_ok=True)
        if data is not None and not isinstance(data, dict):
            raise errors.RouterStateError(f"router {self.name!r}: {operation}: the admin API did not answer an object")
        return data

    def _admin(self, method: str, path: str, operation: str, *, json: Any = None) -> Any:
        return self._request(method, "/api/admin" + path, operation, token=self._admin_token, what="admin", body=json)

    def _request(
        self, method: str, path: str, operation: str, *, token: str | None, what: str, body: Any = None,
        missing_ok: bool = False,
    ) -> Any:  # fmt: skip
        """One call; raises ours, never httpx's. The message names the call, never the token."""
        call = f"{method} {path}"
        if not token:
            raise errors.RouterError(f"router {self.name!r}: {operation}: no {what} API token is set")
        try:
            response = self._client.request(method, self.url + path, headers={"authorization": token}, json=body)
        except httpx.HTTPError as exc:
            raise errors.RouterUnavailable(
                f"router {self.name!r}: {operation}: Unleash at {self.url} did not answer {call} ({type(exc).__name__})"
            ) from exc
        if response.status_code == 404 and missing_ok:
            return None
        if response.status_code in (401, 403):
            raise errors.RouterError(
                f"router {self.name!r}: {operation}: Unleash refused the {what} API token (HTTP {response.status_code})"
            )
        if response.status_code >= 500:
            raise errors.RouterUnavailable(f"router {self.name!r}: {operation}: {call} answered {response.status_code}")
        if response.status_code >= 400:
            raise errors.RouterError(
                f"router {self.name!r}: {operation}: {call} answered {response.status_code}: {_message(response)}"
            )
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise errors.RouterStateError(f"router {self.name!r}: {operation}: {call} did not answer JSON") from exc


def _shows(feature: Any, desired: traffic.RouteState) -> bool:
    try:
        live = parse_flag(feature, where="")
    except errors.RouterStateError:
        return False
    return live.same_traffic(desired) and live.same_revisions(desired)


def _message(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text[:200]
    details = data.get("details") if isinstance(data, dict) else None
    if isinstance(details, list) and details and isinstance(details[0], dict):
        return str(details[0].get("message", ""))[:300]
    return str(data.get("message", "") if isinstance(data, dict) else data)[:300]


def _environment(feature: Mapping[str, Any], environment: str) -> dict[str, Any] | None:
    for env in feature.get("environments") or []:
        if isinstance(env, dict) and env.get("name") == environment:
            return env
    return None


def _managed(strategy: Any) -> bool:
    return isinstance(strategy, dict) and (strategy.get("parameters") or {}).get("managedBy") == MANAGED_BY


def _foreign(feature: Mapping[str, Any] | None, environment: str) -> str:
    """The first enabled strategy in the flag's environment that we did not write, named; '' when none.
    (A disabled one is served to no SDK: it is left as it is.)"""
    env = _environment(feature or {}, environment) or {}
    for strategy in env.get("strategies") or []:
        if isinstance(strategy, dict) and not strategy.get("disabled") and not _managed(strategy):
            title = strategy.get("title") or strategy.get("name")
            return f"{title!r} (id {strategy.get('id')})"
    return ""


@dataclass(frozen=True)
class _Call:
    """One admin call of a write: POST, PUT or DELETE of a strategy (`suffix` its id), or SORT (the
    wanted keys in order, resolved to ids once the POSTs have answered)."""

    method: str
    suffix: str = ""
    body: Any = None
    key: tuple[str, str] = ("", "")


def _plan(existing: Sequence[dict[str, Any]], wanted: Sequence[Strategy], flag: str) -> Iterator[_Call]:
    """The admin calls that turn our `existing` strategies into `wanted`, ordered so that no call in
    between gives the canary more than the state before or the state after: lowered strategies and
    removed canary ones first, then added ones (sorted last: behind everyone's catch-all nobody reaches
    them), then raised ones, then the order, then the rest of the removals."""
    by_key: dict[tuple[str, str], dict[str, Any]] = {}
    extra: list[dict[str, Any]] = []
    for strategy in existing:
        key = _key(strategy)
        if key is None or key in by_key:
            extra.append(strategy)
        else:
            by_key[key] = strategy
    wanted_keys = {s.key for s in wanted}
    extra += [s for k, s in by_key.items() if k not in wanted_keys]
    lowered: list[_Call] = []
    raised: list[_Call] = []
    added: list[_Call] = []
    for i, want in enumerate(wanted):
        body = want.body(flag)
        now = by_key.get(want.key)
        if now is None:
            added.append(_Call("POST", "", {**body, "sortOrder": _APPENDED + i}, want.key))
        elif not _same(now, body):
            (lowered if want.rollout <= _rollout(now) else raised).append(_Call("PUT", f"/{now['id']}", body))
    yield from lowered
    yield from (_Call("DELETE", f"/{s['id']}") for s in extra if _role(s) != traffic.STABLE)
    yield from added
    yield from raised
    if added or any(by_key[s.key].get("sortOrder") != i for i, s in enumerate(wanted) if s.key in by_key):
        yield _Call("SORT", body=[s.key for s in wanted])
    yield from (_Call("DELETE", f"/{s['id']}") for s in extra if _role(s) == traffic.STABLE)


def _key(strategy: Mapping[str, Any]) -> tuple[str, str] | None:
    role = _role(strategy)
    return None if role is None else (str((strategy.get("parameters") or {}).get("cohort", "")), role)


def _role(strategy: Mapping[str, Any]) -> str | None:
    variants = strategy.get("variants")
    if isinstance(variants, list) and len(variants) == 1 and isinstance(variants[0], dict):
        name = variants[0].get("name")
        return name if name in traffic.ROLES else None
    return None


def _rollout(strategy: Mapping[str, Any]) -> int:
    """A strategy's rollout as Unleash holds it; one that is no whole percent counts as above any."""
    value = (strategy.get("parameters") or {}).get("rollout")
    return int(value) if isinstance(value, str) and value.isdigit() and int(value) <= 100 else 101


def _same(now: Mapping[str, Any], body: Mapping[str, Any]) -> bool:
    """`now` (as the admin API shows it) already is `body`: what a write may skip."""

    def payload(s: Mapping[str, Any]) -> list[tuple[Any, Any]]:
        out = []
        for v in s.get("variants") or []:
            value = (v.get("payload") or {}).get("value")
            try:
                out.append((v.get("name"), json.loads(value) if isinstance(value, str) else value))
            except ValueError:
                out.append((v.get("name"), value))
        return out

    def constraints(s: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        return [
            (c.get("contextName"), c.get("operator"), list(c.get("values") or []), bool(c.get("inverted")))
            for c in s.get("constraints") or []
        ]

    return (
        now.get("name") == body["name"]
        and bool(now.get("disabled")) == body["disabled"]
        and now.get("title") == body["title"]
        and not now.get("segments")
        and (now.get("parameters") or {}) == body["parameters"]
        and constraints(now) == constraints(body)
        and payload(now) == payload(body)
    )
