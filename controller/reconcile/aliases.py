"""The alias pass of a tick: each MLflow alias a rollout names (`spec.aliases`) is pointed at main's stable
variant's version, compare-and-set: read it, move it only from a version of this rollout
(`controller.aliases.judge`), then read it back. An alias found anywhere else is drift: it is left as it
is and the rollout's outcome says so. Runs after the router write, never instead of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from controller import aliases, errors, load, spec


class Registry(Protocol):
    """Read and set an alias of a registered model or prompt (controller/registry/mlflow.py)."""

    def alias(self, config: spec.MlflowConfig, name: str, alias: str) -> int | None: ...

    def set_alias(self, config: spec.MlflowConfig, name: str, alias: str, version: int) -> None: ...


@dataclass(frozen=True)
class Moved:
    actions: tuple[str, ...] = ()  # what was moved, in words
    held: tuple[str, ...] = field(default=())  # each alias left where it was, and why


def move(loaded: load.LoadedRollout, config: spec.MlflowConfig, registry: Registry) -> Moved:
    """Point each alias at the stable variant's version where it may be moved; errors.RegistryError when
    the server cannot be read or refuses a write (the aliases already moved stay moved: each is one write)."""
    actions: list[str] = []
    held: list[str] = []
    for target in aliases.targets(loaded.rollout.spec):
        name, alias = target.name, target.alias.alias
        verdict, why = aliases.judge(target, registry.alias(config, name, alias))
        match verdict:
            case aliases.Verdict.IN_SYNC:
                continue
            case aliases.Verdict.DRIFT:
                held.append(why)
            case aliases.Verdict.MOVE:
                registry.set_alias(config, name, alias, target.version)
                after = registry.alias(config, name, alias)
                if after != target.version:
                    held.append(f"{target.describe()}: set to version {target.version}, read back {after}")
                else:
                    actions.append(f"MLflow {why}")
    return Moved(tuple(actions), tuple(held))


def unmoved(loaded: load.LoadedRollout, config: spec.MlflowConfig, registry: Registry) -> str:
    """Why an alias of the rollout is not yet where main says while this rollout may still move it (it
    points at a version of the canary or the old stable), or cannot be read; '' when none is. A decommission
    waits for it: removing `previous` would leave such an alias at the old stable's version, no longer this
    rollout's to move."""
    waiting: list[str] = []
    for target in aliases.targets(loaded.rollout.spec):
        try:
            current = registry.alias(config, target.name, target.alias.alias)
        except errors.RegistryError as exc:
            return f"MLflow aliases: {exc}"
        verdict, why = aliases.judge(target, current)
        if verdict is aliases.Verdict.MOVE:
            waiting.append(why)
    return "; ".join(waiting)


def safe_move(loaded: load.LoadedRollout, config: spec.MlflowConfig, registry: Registry) -> Moved:
    """`move`, with a registry that cannot be reached or refuses reported as one held line."""
    try:
        return move(loaded, config, registry)
    except errors.RegistryError as exc:
        return Moved(held=(f"MLflow aliases: {exc}",))
