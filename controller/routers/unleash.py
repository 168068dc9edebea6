"""The Unleash router: each route is an Unleash feature flag whose strategy variants say what to serve.

The CLI builds it from an `unleash` router config; the reconciler reads and writes through it. An
application evaluates the flag (named after the route, `flag_name`) with an Unleash SDK and gets a
variant named stable, canary or previous whose JSON payload is {model, prompt, promptText, revision,
params}, as flagd's flag holds it.

Unleash gives a flag's variant from the first of its strategies that matches the request, so a route's
split is a list of `flexibleRollout` strategies in the flag's environment, every one with one variant,
all bucketing the request by the same stickiness and group id (the flag's name), so one user falls in
one bucket (1..100) on every strategy:

- per cohort, in precedence order (one not opened yet at everyone's weight): the canary at rollout =
  the cohort's canary percent, then stable at 100%, both constrained to `<key> IN <values>` (the second
  catches the cohort's other users, so a request in two cohorts is split by the first, never falls
  through to a later one);
- for everyone: canary at its percent, previous (when the state has it) at canary + previous, then
  stable at 100% with Unleash's `default` stickiness, which always matches: the catch-all.

A user stays on its variant while the weights stay, and a canary user stays canary as the weight grows
(its bucket stays under a rising rollout). Reads go through the client API, what SDKs are served; writes
through the admin API. Strategies we write carry the parameter managedBy=rollout-controller; a write
changes no other. A read accepts only this layout, with one payload per role, and passes over what
follows the catch-all (no request reaches it).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from controller import errors, redaction, settings, traffic
from controller.routers import base

MANAGED_BY = "rollout-controller"
#: Unleash's own stickiness that always resolves (user id, else session id, else random): the catch-alls'.
ALWAYS = "default"
#: Our strategies sort first; one we add goes after every strategy until the batch puts it in its place.
_APPENDED = 10_000
#: One writer per flag at a time in this process (the controller's lease keeps other processes out).
_WRITING = threading.Lock()
#: The order of everyone's strategies: each rollout is cumulative, so the catch-all (stable) comes last.
_ORDER = (traffic.CANARY, traffic.PREVIOUS, traffic.STABLE)


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
    roles = [r for r in _ORDER if r in state.weights]
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


@dataclass(frozen=True)
class _Read:
    """One strategy of ours as the client API serves it."""

    cohort: str  # '' for everyone's
    match: tuple[str, tuple[str, ...]]  # a cohort's constraint: (key, values)
    rollout: int
    role: str
    stickiness: str
    payload: Any


def parse_flag(feature: Any, *, where: str) -> traffic.RouteState:
    """A route state from the client API's feature object of a flag this router wrote, laid out as it
    writes one (each cohort's canary strategy, then its stable one, then everyone's). Anything else (a
    strategy we did not write that some request reaches, our strategies in another order, a rollout
    that is no whole percent, a split that does not end at 100%) is a RouterStateError naming `where`.
    A strategy we did not write behind everyone's catch-all is reached by no request: it is passed over."""
    try:
        if not isinstance(feature, dict):
            raise ValueError("the flag is not an object")
        if feature.get("enabled") is not True:
            raise ValueError("the flag is disabled in this environment: clients get no variant")
        raw = feature.get("strategies")
        if not isinstance(raw, list) or not raw:
            raise ValueError("the flag has no strategies")
        reads: list[_Read] = []
        cohorts: list[traffic.CohortSplit] = []
        opened: _Read | None = None  # a cohort's canary strategy, waiting for its stable one
        caught = False  # everyone's catch-all is above: no request gets this far
        for i, strategy in enumerate(raw):
            at = f"strategy {i + 1}"
            if not _managed(strategy):
                if caught:
                    continue
                raise ValueError(
                    f"{at} ({_title(strategy)}) was not written by the rollout controller; it decides some "
                    "users' variant, so the split cannot be read: remove or disable it in Unleash"
                )
            read = _ours(strategy, where=at)
            everyone = [r for r in reads if not r.cohort]
            reads.append(read)
            if opened is not None:
                cohorts.append(_closed(opened, read, where=at))
                opened = None
            elif read.cohort:
                _check_opens(read, opened=cohorts, everyone=everyone, where=at)
                opened = read
            else:
                caught = caught or (read.rollout == 100 and read.stickiness == ALWAYS)
        if opened is not None:
            raise ValueError(f"cohort {opened.cohort!r} has a canary strategy and no stable one after it")
        weights = _weights([r for r in reads if not r.cohort], what="everyone's split")
        served = {role: s for role in traffic.ROLES if (s := _served(role, reads)) is not None}
        return traffic.RouteState(weights, 0, served, cohorts=tuple(cohorts))
    except (ValueError, TypeError, AttributeError) as exc:
        raise errors.RouterStateError(f"{where}: {exc}") from exc


def _check_opens(read: _Read, *, opened: Sequence[traffic.CohortSplit], everyone: Sequence[_Read], where: str) -> None:
    """A cohort's first strategy must be its canary one, ahead of everyone's, and the cohort's only pair:
    the router writes no other layout, and another (a hand drag and drop) routes some users otherwise
    than any state says (one in two cohorts can get the canary from the second)."""
    if everyone:
        raise ValueError(f"{where} (cohort {read.cohort!r}) comes after everyone's split")
    if any(c.name == read.cohort for c in opened):
        raise ValueError(f"{where}: cohort {read.cohort!r} has strategies in two places")
    if read.role != traffic.CANARY:
        raise ValueError(f"{where}: cohort {read.cohort!r} must open with its canary strategy, got {read.role!r}")


def _closed(canary: _Read, read: _Read, *, where: str) -> traffic.CohortSplit:
    """The cohort whose canary strategy is `canary` and whose stable one must be `read`, right after it."""
    if (read.cohort, read.role) != (canary.cohort, traffic.STABLE):
        got = f"cohort {read.cohort!r}" if read.cohort else "everyone's"
        raise ValueError(
            f"{where}: cohort {canary.cohort!r}'s canary strategy must be followed by its stable one, got {got} "
            f"{read.role!r}"
        )
    if read.match != canary.match:
        raise ValueError(f"{where}: cohort {canary.cohort!r} matches two ways")
    if read.rollout != 100:
        raise ValueError(f"{where}: cohort {canary.cohort!r} ends at rollout {read.rollout}%, not 100%")
    return traffic.CohortSplit(canary.cohort, canary.match[0], canary.match[1], canary.rollout)


def _served(role: str, reads: Sequence[_Read]) -> traffic.Served | None:
    """What `role` serves: the payload its strategies carry. Every one carries its own copy; when they
    differ (a write cut off half way), the role reads as a revision no spec has, so the read-back never
    takes the half for the whole and the next write heals it."""
    payloads = [r.payload for r in reads if r.role == role]
    distinct = {json.dumps(p, sort_keys=True) for p in payloads}
    if len(distinct) > 1:
        revisions = sorted({str(p.get("revision")) if isinstance(p, dict) else "none" for p in payloads})
        return traffic.Served(
            "", revision=f"{' or '.join(revisions)} (the {role} strategies carry {len(distinct)} different payloads)"
        )
    payload = payloads[0] if payloads else None
    if isinstance(payload, dict) and isinstance(payload.get("model"), str):
        return traffic.Served.from_json(payload, where=f"variant {role!r}")
    return None


def _ours(strategy: Any, *, where: str) -> _Read:
    """One strategy we wrote, checked."""
    params = strategy.get("parameters")
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
    stickiness = str(params.get("stickiness", ""))
    cohort = params.get("cohort", "")
    constraints = strategy.get("constraints") or []
    if not cohort:
        if constraints:
            raise ValueError(f"{where}: everyone's strategy has constraints")
        return _Read("", ("", ()), int(rollout), role, stickiness, value)
    if not (len(constraints) == 1 and constraints[0].get("operator") == "IN" and not constraints[0].get("inverted")):
        raise ValueError(f"{where}: cohort {cohort!r} must have one 'IN' constraint")
    values = constraints[0].get("values")
    if not (isinstance(values, list) and values and all(isinstance(v, str) for v in values)):
        raise ValueError(f"{where}: cohort {cohort!r} matches no values")
    match = (str(constraints[0].get("contextName")), tuple(values))
    return _Read(str(cohort), match, int(rollout), role, stickiness, value)


def _weights(reads: Sequence[_Read], *, what: str) -> dict[str, int]:
    """Each role's percent from cumulative rollouts (a later strategy takes the buckets above the last),
    the roles in the order the router writes them."""
    if not reads:
        raise ValueError(f"{what} has no strategy")
    weights: dict[str, int] = {}
    below = 0
    for read in reads:
        if read.role in weights:
            raise ValueError(f"{what} serves {read.role!r} twice")
        if weights and _ORDER.index(read.role) < _ORDER.index(list(weights)[-1]):
            raise ValueError(f"{what} serves {read.role!r} after {list(weights)[-1]!r}, not in the router's order")
        if read.rollout < below:
            raise ValueError(f"{what}: {read.role!r} at rollout {read.rollout}% is under the {below}% before it")
        weights[read.role] = read.rollout - below
        below = read.rollout
    if below != 100:
        raise ValueError(f"{what} ends at rollout {below}%, not 100%: some users would get no variant")
    return weights


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
        self.location = f"Unleash {redaction.redact(self.url)} project {project!r} environment {environment!r}"
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

    def write(self, states: Mapping[str, traffic.RouteState], fences: base.Fences | None = None) -> None:
        """Every route of the batch through the admin API, after checking them all (a route it refuses
        writes nothing); then one wait for the client API to serve the batch. A write only ever changes
        strategies we wrote. One that could raise the canary's traffic is refused (nothing written) on a
        flag that also holds an enabled strategy we did not write; one that cannot (a rollback, a
        lowering) goes ahead and leaves that strategy as it is, so nothing made by hand ever blocks
        taking the canary out. Unleash has no transaction across calls: a write cut off half way leaves
        a flag that the read-back reports, and the next write heals."""
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
                if foreign and _may_raise(feature, states[route], self.environment):
                    raise errors.RouterError(
                        f"{self._where(route)}: strategy {foreign} in environment {self.environment!r} was not "
                        "written by the rollout controller, which never changes one it did not write and raises "
                        "no canary's traffic beside it (it lowers it); remove or disable it in Unleash; nothing "
                        "was written"
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
        present = [s for s in env.get("strategies") or [] if isinstance(s, dict)]
        existing = [s for s in present if _managed(s)]
        wanted = strategies(state, stickiness=self.stickiness)
        path = f"/projects/{self.project}/features/{flag}/environments/{self.environment}/strategies"
        ids: dict[tuple[str, str], str] = {}
        for strategy in existing:  # the first of a key is the one kept, as `_plan` keeps it
            key = _key(strategy)
            if key is not None:
                ids.setdefault(key, str(strategy["id"]))
        for call in _plan(existing, wanted, flag):
            if call.method == "SORT":
                order = _sort_orders([ids[key] for key in call.body], present)
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
        return _served_view(self._admin_feature(route), self.environment)

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
                f"router {self.name!r}: {operation}: Unleash at {redaction.redact(self.url)} did not answer {call} "
                f"({type(exc).__name__})"
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
    """Our strategies in `feature` (a client API feature object) serve `desired`: what a write waits
    for. Others are passed over: one ahead of ours fails the read-back, but the write is served."""
    try:
        live = parse_flag(_ours_only(feature), where="")
    except errors.RouterStateError:
        return False
    return live.same_traffic(desired) and live.same_revisions(desired)


def _may_raise(feature: Mapping[str, Any] | None, desired: traffic.RouteState, environment: str) -> bool:
    """Writing `desired` could give the canary more traffic than our strategies give it now (when they
    cannot be read, any canary traffic could)."""
    if traffic.exposure_free(desired):
        return False
    try:
        now = parse_flag(_ours_only(_served_view(feature, environment)), where="")
    except errors.RouterStateError:
        return True
    return now.raises(desired)


def _served_view(feature: Mapping[str, Any] | None, environment: str) -> dict[str, Any] | None:
    """An admin API feature shaped as the client API serves it in `environment`: enabled strategies only."""
    env = _environment(feature or {}, environment)
    if env is None:
        return None
    served = [s for s in env.get("strategies") or [] if isinstance(s, dict) and not s.get("disabled")]
    return {"enabled": env.get("enabled"), "strategies": served}


def _ours_only(feature: Any) -> Any:
    """A client API feature object with only the strategies we wrote."""
    if not isinstance(feature, dict) or not isinstance(feature.get("strategies"), list):
        return feature
    return {**feature, "strategies": [s for s in feature["strategies"] if _managed(s)]}


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
            return f"{_title(strategy)} (id {strategy.get('id')})"
    return ""


def _title(strategy: Any) -> str:
    return repr(strategy.get("title") or strategy.get("name")) if isinstance(strategy, dict) else "not an object"


def _sort_orders(ours: Sequence[str], present: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """`set-sort-order`'s body that puts our strategies (ids, in `ours`' order) in one block, and leaves
    every enabled strategy we did not write (`present` is the environment's list, in Unleash's order)
    on its side of the block: those ahead of our last strategy stay ahead, the rest behind, at their
    own sortOrder. Ours take numbers from 0 when the others leave room for that, else the room between
    them (negative numbers too); only when there is none are the others renumbered, in their order."""
    if not any(_managed(s) for s in present):
        ahead, behind = [s for s in present if not s.get("disabled")], []
    else:
        last = max(i for i, s in enumerate(present) if _managed(s))
        others = [(i, s) for i, s in enumerate(present) if not _managed(s) and not s.get("disabled")]
        ahead, behind = [s for i, s in others if i < last], [s for i, s in others if i > last]
    low = max((_sort_order(s) + 1 for s in ahead), default=None)
    start = 0 if low is None else max(0, low)
    high = min((_sort_order(s) for s in behind), default=None)
    if high is not None and start + len(ours) > high:
        start = high - len(ours)
    if low is None or start >= low:
        return [{"id": id_, "sortOrder": start + i} for i, id_ in enumerate(ours)]
    everything = [str(s.get("id")) for s in ahead] + list(ours) + [str(s.get("id")) for s in behind]
    return [{"id": id_, "sortOrder": i} for i, id_ in enumerate(everything)]


def _sort_order(strategy: Mapping[str, Any]) -> int:
    value = strategy.get("sortOrder")
    return value if isinstance(value, int) else 0


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
    kept = [s.key for s in wanted if s.key in by_key]
    if added or [k for k in by_key if k in wanted_keys] != kept:
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
