"""The route-state vocabulary: the roles a rollout's variants play on a route, what a variant serves, and
`RouteState`, one route's live split. Pure values with no I/O: the planner, the judges and every router
speak it, so none of them needs another's package to name a split.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

STABLE = "stable"
CANARY = "canary"
PREVIOUS = "previous"  # the old stable after a completion: weight 0, still routable
ROLES = (STABLE, CANARY, PREVIOUS)  # the variants a rollout manages; any other name on a route is not ours


@dataclass(frozen=True)
class Served:
    """What a variant serves, for routers that hand it to the application (file, flags, LiteLLM, Envoy's
    prompt bundle)."""

    model: str
    prompt: str | None = None  # the prompt file's path in the repository
    revision: str = ""  # the variant's content hash
    params: Mapping[str, Any] = field(default_factory=dict)
    prompt_text: str | None = None  # the prompt file's text, for routers that put it in the request

    def to_json(self, *, prompt_text: bool = False) -> dict[str, Any]:
        """As JSON. The file and flag routers record `promptText` too (`prompt_text=True`): an
        application that reads only the router's file or flag has no checkout to read the prompt
        from. Reports leave it out: the revision already names the prompt's content."""
        out = {"model": self.model, "prompt": self.prompt, "revision": self.revision, "params": dict(self.params)}
        if prompt_text:
            out["promptText"] = self.prompt_text
        return out

    @classmethod
    def from_json(cls, data: Any, *, where: str) -> Served:
        """Parse `to_json()`'s object; raises ValueError naming `where` when malformed."""
        if not isinstance(data, dict) or not isinstance(data.get("model"), str):
            raise ValueError(f"{where} must be an object with a 'model'")
        text = data.get("promptText")
        if text is not None and not isinstance(text, str):
            raise ValueError(f"{where}.promptText must be a string")
        return cls(data["model"], data.get("prompt"), data.get("revision", ""), data.get("params") or {}, text)


@dataclass(frozen=True)
class CohortSplit:
    """One cohort's split on a route: the requests whose attribute `key` is one of `values` send
    `canary` percent to the canary and the rest to stable. Only the two live roles take part: a
    cohort is a step of a ramp, never a place for the old stable or for a variant no rollout manages."""

    name: str
    key: str
    values: tuple[str, ...]
    canary: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", tuple(self.values))

    @property
    def weights(self) -> dict[str, int]:
        return {STABLE: 100 - self.canary, CANARY: self.canary}

    def same_match(self, other: CohortSplit) -> bool:
        return (self.name, self.key, self.values) == (other.name, other.key, other.values)

    def matches(self, attributes: Mapping[str, str]) -> bool:
        return attributes.get(self.key) in self.values

    def describe(self) -> str:
        return f"{self.name} ({self.key}={'|'.join(self.values)}) canary {self.canary}%"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "match": {self.key: list(self.values)}, "weights": self.weights}

    @classmethod
    def from_json(cls, data: Any, *, where: str) -> CohortSplit:
        """Parse `to_json()`'s object; raises ValueError naming `where` when malformed."""
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            raise ValueError(f"{where} must be an object with a 'name'")
        match, weights = data.get("match"), data.get("weights")
        if not isinstance(match, dict) or len(match) != 1:
            raise ValueError(f"{where}.match must be an object with one attribute")
        key, values = next(iter(match.items()))
        if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
            raise ValueError(f"{where}.match.{key} must be a list of strings")
        if not isinstance(weights, dict) or set(weights) != {STABLE, CANARY}:
            raise ValueError(f"{where}.weights must be an object with 'stable' and 'canary'")
        canary, stable = weights[CANARY], weights[STABLE]
        if not (_whole(canary) and _whole(stable) and 0 <= canary <= 100 and canary + stable == 100):
            raise ValueError(f"{where}.weights must be whole percents summing to 100, got {weights}")
        return cls(data["name"], key, tuple(values), canary)


@dataclass(frozen=True)
class RouteState:
    """The traffic split of one route.

    `weights` maps a variant name ("stable", "canary", ...) to a percent of live traffic; they sum
    to 100 and are never all 0. `shadow` is the percent of requests mirrored to the canary.
    `served` says what each variant serves, where the router records it (file, flags); a router
    that only splits traffic (Envoy) leaves it empty.

    `others` is what else shares the route that no rollout manages (a LiteLLM deployment added by
    hand during an incident, a variant written into a flag), name -> its weight in the router's own
    units, as read. No write changes them: a router leaves them as they are. With others on the
    route, our weights are our variants' part of the route and need not sum to 100.

    `hold` is why the router, as read, would not honour a split that gives the canary traffic (a
    LiteLLM proxy whose routing strategy ignores weights), or '' when it would. Only a read sets
    it, and `same_traffic` ignores it: `plan.decide` holds instead of raising exposure on such a
    route, and never refuses to lower it.

    `cohorts` are the route's cohort splits in precedence order: a request in a cohort is split by
    the first cohort it matches, every other request by `weights` ("everyone"). Trailing cohorts whose
    canary weight is everyone's route as everyone does and are dropped (`__post_init__`), so two states
    that send the same traffic compare equal; one before another cohort is kept, whatever its weight,
    as it still decides for the requests in both.
    """

    weights: Mapping[str, int]
    shadow: int = 0
    served: Mapping[str, Served] = field(default_factory=dict)
    others: Mapping[str, int] = field(default_factory=dict)
    hold: str = ""
    cohorts: tuple[CohortSplit, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "weights", MappingProxyType(dict(self.weights)))
        object.__setattr__(self, "served", MappingProxyType(dict(self.served)))
        object.__setattr__(self, "others", MappingProxyType(dict(self.others)))
        everyone = self.weights.get(CANARY, 0)
        cohorts = list(self.cohorts)
        while cohorts and cohorts[-1].canary == everyone:
            cohorts.pop()
        object.__setattr__(self, "cohorts", tuple(cohorts))
        problem = self.problem()
        if problem:
            raise ValueError(problem)

    def problem(self) -> str:
        if not self.weights:
            return "a route needs at least one variant"
        if any(not _whole(w) or not 0 <= w <= 100 for w in self.weights.values()):
            return f"weights must be whole percents between 0 and 100, got {dict(self.weights)}"
        if any(not _whole(w) or w < 0 for w in self.others.values()):
            return f"the weights of unmanaged variants must be whole numbers >= 0, got {dict(self.others)}"
        if set(self.others) & set(self.weights):
            return f"a variant is both managed and unmanaged: {sorted(set(self.others) & set(self.weights))}"
        if not self.others and sum(self.weights.values()) != 100:
            return f"weights must sum to 100, got {dict(self.weights)}"
        if sum(self.weights.values()) + sum(self.others.values()) <= 0:
            return "a route needs some weight: every weight is 0"
        if not 0 <= self.shadow <= 100:
            return f"shadow must be between 0 and 100, got {self.shadow}"
        if any(not _whole(c.canary) or not 0 <= c.canary <= 100 for c in self.cohorts):
            return "a cohort's canary weight must be a whole percent between 0 and 100"
        if len({c.name for c in self.cohorts}) != len(self.cohorts):
            return "a cohort is named twice"
        return ""

    def cohort(self, name: str) -> CohortSplit | None:
        return next((c for c in self.cohorts if c.name == name), None)

    def canary_for(self, attributes: Mapping[str, str]) -> int:
        """The canary's percent for a request with these attributes: its first cohort's, else everyone's."""
        found = next((c for c in self.cohorts if c.matches(attributes)), None)
        return found.canary if found is not None else self.weight(CANARY)

    def weight(self, variant: str) -> int:
        return self.weights.get(variant, 0)

    def same_traffic(self, other: RouteState) -> bool:
        """Equal weights of our variants (absent = 0) and shadow: what read-back compares. The others
        are no write's business: one changed by hand meanwhile does not make our write unconfirmed."""
        names = set(self.weights) | set(other.weights)
        return (
            self.shadow == other.shadow
            and all(self.weight(n) == other.weight(n) for n in names)
            and self.cohorts == other.cohorts
        )

    def lowered(self, canary: int = 0, shadow: int = 0) -> RouteState:
        """This state with the canary's live traffic lowered to at most `canary` and its mirrored traffic
        to at most `shadow` (by default: taken out): what it loses goes to the stable variant, and every
        other variant (managed or not) is left as it is. What a rollback writes on a live route, so
        lowering exposure never has to touch, or be refused by, whatever else shares the route."""
        weights = dict(self.weights)
        now = weights.get(CANARY, 0)
        weights[CANARY] = min(now, canary)
        weights[STABLE] = weights.get(STABLE, 0) + now - weights[CANARY]
        cohorts = tuple(replace(c, canary=min(c.canary, canary)) for c in self.cohorts)
        return RouteState(weights, min(self.shadow, shadow), self.served, self.others, cohorts=cohorts)

    def raises(self, target: RouteState) -> bool:
        """`target` gives the canary more live or mirrored traffic than this state does: everyone's
        weight or shadow rises, or some cohort's weight does (a cohort this state lacks, or matches
        otherwise, has everyone's weight here), or two cohorts change places (counted as a raise: for
        a request in both, the one now first decides)."""
        if target.weight(CANARY) > self.weight(CANARY) or target.shadow > self.shadow:
            return True
        common = [c.name for c in self.cohorts if target.cohort(c.name)]
        if common != [c.name for c in target.cohorts if self.cohort(c.name)]:
            return True  # cohorts reordered: a request in two may now get the higher one's weight
        for c in target.cohorts:
            mine = self.cohort(c.name)
            now = mine.canary if mine is not None and mine.same_match(c) else self.weight(CANARY)
            if c.canary > now:
                return True
        return False

    def same_revisions(self, desired: RouteState) -> bool:
        """False when this (live) state says a variant serves another revision than `desired` wants, or
        serves a variant `desired` no longer has. Routers that do not record what they serve (Envoy)
        always agree."""
        if self.served and desired.served and set(self.served) - set(desired.served):
            return False
        return all(
            self.served[name].revision == want.revision
            for name, want in desired.served.items()
            if name in self.served and self.served[name].revision and want.revision
        )

    def describe(self) -> str:
        split = ", ".join(f"{name} {w}%" for name, w in sorted(self.weights.items(), key=_order))
        cohorts = "".join(f"; cohort {c.describe()}" for c in self.cohorts)
        return split + (f", shadow {self.shadow}%" if self.shadow else "") + cohorts + self.describe_others()

    def describe_others(self) -> str:
        """`; unmanaged: hotfix (weight 20)`, or '' when no other variant shares the route."""
        if not self.others:
            return ""
        return "; unmanaged: " + ", ".join(f"{name} (weight {w})" for name, w in sorted(self.others.items()))

    def to_json(self, *, prompt_text: bool = False) -> dict[str, Any]:
        """The file router's entry (with `prompt_text`), or a report's: every variant's weight in one
        `weights` object, ours and others, and what each variant serves."""
        out: dict[str, Any] = {"weights": {**self.weights, **self.others}, "shadow": self.shadow}
        if self.served:
            out["served"] = {name: s.to_json(prompt_text=prompt_text) for name, s in self.served.items()}
        if self.cohorts:
            out["cohorts"] = [c.to_json() for c in self.cohorts]
        return out

    @classmethod
    def from_json(cls, data: Any) -> RouteState:
        """Parse a route state; raises ValueError with a precise message when malformed."""
        if not isinstance(data, dict) or not isinstance(data.get("weights"), dict):
            raise ValueError("expected an object with a 'weights' object")
        shadow = data.get("shadow", 0)
        if not isinstance(shadow, int) or isinstance(shadow, bool):
            raise ValueError(f"shadow must be an integer, got {shadow!r}")
        served_raw = data.get("served", {})
        if not isinstance(served_raw, dict):
            raise ValueError("'served' must be an object")
        served = {name: Served.from_json(s, where=f"served.{name}") for name, s in served_raw.items()}
        cohorts_raw = data.get("cohorts", [])
        if not isinstance(cohorts_raw, list):
            raise ValueError("'cohorts' must be a list")
        cohorts = tuple(CohortSplit.from_json(c, where=f"cohorts[{i}]") for i, c in enumerate(cohorts_raw))
        weights, others = split_roles(data["weights"])
        return cls(weights=weights, shadow=shadow, served=served, others=others, cohorts=cohorts)


def split_roles(weights: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(our variants' weights, every other variant's): a name that is not a role is no rollout's."""
    ours = {name: w for name, w in weights.items() if name in ROLES}
    return ours, {name: w for name, w in weights.items() if name not in ROLES}


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _order(item: tuple[str, int]) -> tuple[int, str]:
    return ({STABLE: 0, CANARY: 1}.get(item[0], 2), item[0])


def exposure_free(state: RouteState) -> bool:
    """No live or mirrored traffic reaches the canary, in any cohort: the state a rollback (or a steady
    route) wants."""
    return state.weight(CANARY) == 0 and state.shadow == 0 and not state.cohorts


@dataclass(frozen=True)
class Fence:
    """The proof a write carries: the shard and the token its owner claimed it with. Tokens of one
    shard only grow (etcd revisions, a Lease's transitions), so a router that records the last token
    it saw can refuse a stale owner's write."""

    shard: int
    token: int

    def to_json(self) -> dict[str, int]:
        return {"shard": self.shard, "token": self.token}
