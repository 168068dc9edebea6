"""The flags router: each route is an OpenFeature flagd flag whose variants say what to serve.

The CLI builds it from a `flagd` router config; the reconciler reads and writes through it. An
application evaluates the flag (key = the route) with its user id as targeting key and gets an
object {model, prompt, promptText, revision, params} (the prompt's text is in the flag: the
application has no checkout of the repository); `fractional` keeps each user on one variant. A route
with cohorts becomes an `if` over evaluation-context attributes, one `fractional` per cohort and
everyone's last.
A write sets a whole batch of flags in one atomic replace (temp file renamed over the old one)
under an advisory lock; other flags in the file are kept as they are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from controller import errors, traffic
from controller.routers import atomic, base

SCHEMA = "https://flagd.dev/schema/v0/flags.json"
MANAGED_BY = "rollout-controller"
#: The bucketing key: flag key + targeting key, as flagd does by default, spelt out so it is visible.
BUCKET_BY = {"cat": [{"var": "$flagd.flagKey"}, {"var": "targetingKey"}]}


def flag(state: traffic.RouteState, current: Any = None) -> dict[str, Any]:
    """The flagd flag for one route's state. Shadow has no meaning to a flag evaluator, so it is
    kept in the flag's metadata (`shadow`), where an application that mirrors can read it. Variants
    no rollout manages keep their definition and weight from the `current` flag: a write never
    changes them, and they live in everyone's split only. Each cohort is one condition and its own
    split, in precedence order; the cohorts' names are in the metadata (`cohorts`, comma-separated:
    a cohort's name is a DNS label), since the targeting itself has nowhere to keep them."""
    variants = {name: _variant_object(state.served.get(name)) for name in sorted(state.weights, key=_order)}
    split = [[name, state.weight(name)] for name in sorted(variants, key=_bucket_order)]
    kept = _others(current)
    for name, (definition, weight) in kept.items():
        variants[name] = definition
        split.append([name, weight])
    everyone = {"fractional": [BUCKET_BY, *split]}
    metadata: dict[str, Any] = {"managedBy": MANAGED_BY, "shadow": state.shadow}
    targeting: dict[str, Any] = everyone
    if state.cohorts:
        branches = [part for cohort in state.cohorts for part in _cohort_rule(cohort)]
        targeting = {"if": [*branches, everyone]}
        metadata["cohorts"] = ",".join(c.name for c in state.cohorts)
    return {
        "state": "ENABLED",
        "defaultVariant": traffic.STABLE if traffic.STABLE in state.weights else next(iter(variants)),
        "variants": variants,
        "targeting": targeting,
        "metadata": metadata,
    }


def _cohort_rule(cohort: traffic.CohortSplit) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the condition, the split) of one cohort: the context attribute is one of the values, and
    then the canary gets the cohort's share of the same buckets everyone's split uses."""
    condition = {"in": [{"var": cohort.key}, list(cohort.values)]}
    split = [[name, cohort.weights[name]] for name in sorted(cohort.weights, key=_bucket_order)]
    return condition, {"fractional": [BUCKET_BY, *split]}


def _others(current: Any) -> dict[str, tuple[Any, Any]]:
    """name -> (definition, weight) of each variant of a flag that no rollout manages."""
    if not isinstance(current, dict) or not isinstance(current.get("variants"), dict):
        return {}
    fractional = _everyone(current.get("targeting"))
    if not isinstance(fractional, list):  # a malformed flag keeps nothing of its own: ours replaces it
        return {}
    return {
        entry[0]: (current["variants"][entry[0]], entry[1])
        for entry in _entries(fractional)
        if isinstance(entry, list)
        and len(entry) == 2
        and isinstance(entry[0], str)
        and entry[0] not in traffic.ROLES
        and entry[0] in current["variants"]
    }


def _everyone(targeting: Any) -> Any:
    """Everyone's `fractional` arguments: the targeting's own, or the last branch of its `if`."""
    if isinstance(targeting, dict) and isinstance(targeting.get("if"), list) and targeting["if"]:
        targeting = targeting["if"][-1]
    return targeting.get("fractional") if isinstance(targeting, dict) else None


def _order(name: str) -> tuple[int, str]:
    return ({traffic.STABLE: 0, traffic.CANARY: 1}.get(name, 2), name)


def _bucket_order(name: str) -> tuple[int, str]:
    """The order of a split's entries: `fractional` gives each entry the next run of buckets, so the
    canary comes first and takes the lowest ones. Its range then only grows as its weight does, in
    everyone's split and a cohort's alike (a canary user stays on the canary when a cohort widens or
    gives way to everyone), and it never moves with the weights of the variants after it."""
    return ({traffic.CANARY: 0, traffic.STABLE: 1}.get(name, 2), name)


def _variant_object(served: traffic.Served | None) -> dict[str, Any]:
    return {} if served is None else served.to_json(prompt_text=True)


def parse_flag(data: Any, *, where: str) -> traffic.RouteState:
    """A route state from a flag this router wrote; anything else is a RouterStateError."""
    try:
        if not isinstance(data, dict):
            raise ValueError("the flag is not an object")
        variants = data.get("variants")
        if not isinstance(variants, dict) or not variants:
            raise ValueError("the flag has no 'variants' object")
        metadata = data.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise ValueError("the flag's metadata is not an object")
        rules, fractional = _rules(data.get("targeting"), metadata.get("cohorts"))
        weights = _split(fractional, variants, what="the flag's targeting")
        cohorts = tuple(_cohort(name, rule, variants) for name, rule in rules)
        shadow = metadata.get("shadow", 0)
        if not isinstance(shadow, int) or isinstance(shadow, bool):
            raise ValueError(f"metadata.shadow must be a whole percent, got {shadow!r}")
        if data.get("state") != "ENABLED":
            raise ValueError(f"the flag's state is {data.get('state')!r}, not ENABLED")
        served = {
            name: traffic.Served.from_json(v, where=f"variant {name!r}")
            for name, v in variants.items()
            if name in traffic.ROLES and isinstance(v, dict) and isinstance(v.get("model"), str)
        }
        ours, others = traffic.split_roles(weights)
        return traffic.RouteState(ours, shadow, served, others, cohorts=cohorts)
    except (ValueError, TypeError, AttributeError) as exc:
        raise errors.RouterStateError(f"{where}: {exc}") from exc


def _rules(targeting: Any, names: Any) -> tuple[list[tuple[str, tuple[Any, Any]]], Any]:
    """([(cohort name, (condition, fractional))], everyone's fractional) from a flag's targeting and
    its `metadata.cohorts`: either a bare `fractional` and no names, or an `if` with one condition and
    `fractional` per named cohort and everyone's `fractional` last."""
    if not isinstance(targeting, dict) or "if" not in targeting:
        if names is not None:
            raise ValueError(f"metadata.cohorts names {names!r} but the targeting has no cohort 'if'")
        if not isinstance(targeting, dict) or set(targeting) != {"fractional"}:
            raise ValueError("the flag's targeting is not a 'fractional' split")
        return [], targeting["fractional"]
    branches = targeting["if"]
    if set(targeting) != {"if"} or not isinstance(branches, list) or len(branches) < 3 or len(branches) % 2 != 1:
        raise ValueError("the flag's targeting 'if' is not cohort conditions and splits with everyone's last")
    if not isinstance(names, str) or not names:
        raise ValueError("the flag's targeting has cohorts but metadata.cohorts does not name them")
    listed = names.split(",")
    pairs = list(zip(branches[:-1:2], branches[1:-1:2], strict=True))
    if len(listed) != len(pairs):
        raise ValueError(f"metadata.cohorts names {len(listed)} cohorts but the targeting has {len(pairs)}")
    everyone = branches[-1]
    if not isinstance(everyone, dict) or set(everyone) != {"fractional"}:
        raise ValueError("the last branch of the flag's targeting is not everyone's 'fractional' split")
    return list(zip(listed, pairs, strict=True)), everyone["fractional"]


def _entries(fractional: list[Any]) -> list[Any]:
    """A `fractional`'s [variant, weight] entries: all its arguments, or all but the first when that is
    the bucketing expression (flagd takes `flagKey` + `targetingKey` when there is none)."""
    return fractional if fractional and isinstance(fractional[0], list) else fractional[1:]


def _split(fractional: Any, variants: Mapping[str, Any], *, what: str) -> dict[str, Any]:
    """variant -> weight of one `fractional`'s arguments (the bucketing expression, if any, then entries)."""
    if not isinstance(fractional, list) or not _entries(fractional):
        raise ValueError(f"{what} is not a 'fractional' split")
    weights: dict[str, Any] = {}
    for entry in _entries(fractional):
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)):
            raise ValueError(f"{what}: fractional entry {entry!r} is not [variant, weight]")
        if entry[0] not in variants:
            raise ValueError(f"{what}: fractional names variant {entry[0]!r}, which the flag does not define")
        if entry[0] in weights:
            raise ValueError(f"{what}: fractional names variant {entry[0]!r} twice")
        weights[entry[0]] = entry[1]
    return weights


def _cohort(name: str, rule: tuple[Any, Any], variants: Mapping[str, Any]) -> traffic.CohortSplit:
    """One cohort from its condition (`{"in": [{"var": key}, [values]]}`) and its split (stable and
    canary only, whole percents summing to 100)."""
    condition, split = rule
    match = condition.get("in") if isinstance(condition, dict) and len(condition) == 1 else None
    if not (isinstance(match, list) and len(match) == 2 and isinstance(match[0], dict) and set(match[0]) == {"var"}):
        raise ValueError(
            f"the condition of cohort {name!r}, {condition!r}, is not {{'in': [{{'var': key}}, [values]]}}"
        )
    key, values = match[0]["var"], match[1]
    if not isinstance(key, str) or not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ValueError(
            f"the condition of cohort {name!r}, {condition!r}, does not match one attribute against strings"
        )
    what = f"the split of cohort {name!r}"
    if not isinstance(split, dict) or set(split) != {"fractional"}:
        raise ValueError(f"{what} is not a 'fractional' split")
    weights = _split(split["fractional"], variants, what=what)
    return traffic.CohortSplit.from_json(
        {"name": name, "match": {key: values}, "weights": weights}, where=f"cohort {name!r}"
    )


class FlagdRouter:
    def __init__(self, name: str, path: str | Path) -> None:
        self.name = name
        self.path = Path(path)
        self.location = str(self.path)

    def read(self, routes: Sequence[str]) -> dict[str, base.Live]:
        """Every flag from one parse of the flag file; a malformed flag is that route's RouterStateError."""
        flags = self._load().get("flags", {})
        out: dict[str, base.Live] = {}
        for route in routes:
            raw = flags.get(route)
            try:
                out[route] = None if raw is None else parse_flag(raw, where=self._where(route))
            except errors.RouterStateError as exc:
                out[route] = exc
        return out

    def _where(self, route: str) -> str:
        return f"router {self.name!r} ({self.path}) flag {route!r}"

    def write(self, states: Mapping[str, traffic.RouteState], fences: base.Fences | None = None) -> None:
        """Every flag of the batch in one locked, atomic replace of the flag file. Each flag keeps the
        fence of its last fenced write in its metadata (`fenceShard`, `fenceToken`: flagd's metadata
        holds scalars only); a stale owner's write is refused under the lock."""
        if not states:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with atomic.locked(self.path):
                document = self._load() or {"$schema": SCHEMA, "flags": {}}
                flags = document["flags"]
                for route, state in states.items():
                    current = flags.get(route)
                    fence = base.fence_to_record(self.name, route, (fences or {}).get(route), _fence(current))
                    flags[route] = flag(state, current)
                    if fence is not None:
                        flags[route]["metadata"] |= {"fenceShard": fence.shard, "fenceToken": fence.token}
                atomic.replace_json(self.path, document)
        except OSError as exc:
            raise errors.RouterUnavailable(
                f"router {self.name!r}: cannot write {base.routes_text(states)} to {self.path}: {exc.strerror}"
            ) from exc

    def flags(self) -> Mapping[str, Any]:
        flags: Mapping[str, Any] = self._load().get("flags", {})
        return flags

    def _load(self) -> dict[str, Any]:
        return atomic.read_document(self.path, router=self.name, key="flags") or {}


def _fence(current: Any) -> traffic.Fence | None:
    """The fence a flag's metadata records, if any."""
    metadata = current.get("metadata") if isinstance(current, dict) else None
    if not isinstance(metadata, dict):
        return None
    return base.read_fence({"shard": metadata.get("fenceShard"), "token": metadata.get("fenceToken")})
