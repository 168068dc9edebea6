"""The flags router: each route is an OpenFeature flagd flag whose variants say what to serve.

The CLI builds it from a `flagd` router config; the reconciler reads and writes through it. An
application evaluates the flag (key = the route) with its user id as targeting key and gets an
object {model, prompt, promptText, revision, params} (the prompt's text is in the flag: the
application has no checkout of the repository); `fractional` keeps each user on one variant.
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
    changes them."""
    variants = {name: _variant_object(state.served.get(name)) for name in sorted(state.weights, key=_order)}
    split = [[name, state.weight(name)] for name in variants]
    kept = _others(current)
    for name, (definition, weight) in kept.items():
        variants[name] = definition
        split.append([name, weight])
    return {
        "state": "ENABLED",
        "defaultVariant": traffic.STABLE if traffic.STABLE in state.weights else next(iter(variants)),
        "variants": variants,
        "targeting": {"fractional": [BUCKET_BY, *split]},
        "metadata": {"managedBy": MANAGED_BY, "shadow": state.shadow},
    }


def _others(current: Any) -> dict[str, tuple[Any, Any]]:
    """name -> (definition, weight) of each variant of a flag that no rollout manages."""
    if not isinstance(current, dict) or not isinstance(current.get("variants"), dict):
        return {}
    targeting = current.get("targeting")
    fractional = targeting.get("fractional") if isinstance(targeting, dict) else None
    if not isinstance(fractional, list):  # a malformed flag keeps nothing of its own: ours replaces it
        return {}
    return {
        entry[0]: (current["variants"][entry[0]], entry[1])
        for entry in fractional[1:]
        if isinstance(entry, list)
        and len(entry) == 2
        and isinstance(entry[0], str)
        and entry[0] not in traffic.ROLES
        and entry[0] in current["variants"]
    }


def _order(name: str) -> tuple[int, str]:
    return ({traffic.STABLE: 0, traffic.CANARY: 1}.get(name, 2), name)


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
        fractional = (data.get("targeting") or {}).get("fractional")
        if not isinstance(fractional, list) or len(fractional) < 2:
            raise ValueError("the flag's targeting is not a 'fractional' split")
        weights: dict[str, int] = {}
        for entry in fractional[1:]:
            if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)):
                raise ValueError(f"fractional entry {entry!r} is not [variant, weight]")
            if entry[0] not in variants:
                raise ValueError(f"fractional names variant {entry[0]!r}, which the flag does not define")
            weights[entry[0]] = entry[1]
        metadata = data.get("metadata") or {}
        shadow = metadata.get("shadow", 0) if isinstance(metadata, dict) else 0
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
        return traffic.RouteState(ours, shadow, served, others)
    except (ValueError, TypeError, AttributeError) as exc:
        raise errors.RouterStateError(f"{where}: {exc}") from exc


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

    def write(self, states: Mapping[str, traffic.RouteState]) -> None:
        """Every flag of the batch in one locked, atomic replace of the flag file."""
        if not states:
            return
        base.refuse_cohorts(self.name, "flagd", states)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with atomic.locked(self.path):
                document = self._load() or {"$schema": SCHEMA, "flags": {}}
                flags = document["flags"]
                flags.update((route, flag(state, flags.get(route))) for route, state in states.items())
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
