"""Pure: where each MLflow alias a rollout names (`spec.aliases`) should point, and what to do about where
it points now. An alias follows main's stable variant; the versions of the rollout's other variants (the
canary, the old stable kept as `previous`) are the ones the controller itself moves it from.

Called by the reconciler (`reconcile/aliases.py`, which reads and writes them) and by `proposals` (the
completion PR records the moves its merge makes).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from controller import spec


class Verdict(StrEnum):
    IN_SYNC = "in sync"
    MOVE = "move"
    DRIFT = "drift"


@dataclass(frozen=True)
class Target:
    """One alias, the version main says it points at (the stable variant's), and the versions it may be
    moved from (the rollout's other variants', where they differ)."""

    alias: spec.RegistryAlias
    version: int
    own: frozenset[int]

    @property
    def name(self) -> str:
        name = self.alias.model if self.alias.model is not None else self.alias.prompt
        assert name is not None
        return name

    def describe(self) -> str:
        return f"{self.alias.describe()} alias {self.alias.alias!r}"


def targets(s: spec.RolloutSpec) -> list[Target]:
    """Every alias of the spec with its target; the spec's validator made sure each variant has a version."""
    out = []
    for a in s.aliases:
        version = a.version(s.stable)
        assert version is not None
        others = (a.version(v) for v in (s.canary, s.previous) if v is not None)
        out.append(Target(a, version, frozenset(v for v in others if v is not None and v != version)))
    return out


def judge(target: Target, current: int | None) -> tuple[Verdict, str]:
    """What to do about an alias that points at `current` (None: it does not exist): compare-and-set, so it
    moves only from a version of this rollout; anywhere else it was moved by hand, and stays."""
    if current == target.version:
        return Verdict.IN_SYNC, f"{target.describe()} is at version {current}"
    if current is not None and current in target.own:
        return Verdict.MOVE, f"{target.describe()}: version {current} -> {target.version}"
    where = "does not exist" if current is None else f"points at version {current}"
    expected = " or ".join(str(v) for v in sorted(target.own | {target.version}))
    return Verdict.DRIFT, (
        f"{target.describe()} {where}, not at this rollout's version {expected}: moved by hand? "
        f"it is left as it is; point it at {target.version} (or at a version main names) to let the controller move it"
    )


def completion_moves(s: spec.RolloutSpec) -> list[str]:
    """What merging the completion PR moves, in words, for its body: each alias, stable's version -> canary's."""
    if s.canary is None:
        return []
    out = []
    for a in s.aliases:
        before, after = a.version(s.stable), a.version(s.canary)
        if before != after:
            out.append(f"{a.describe()} alias `{a.alias}`: version {before} -> {after}")
    return out
