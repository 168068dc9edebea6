"""Pure decisions: what a rollout's route should look like, and what the next tick would do.

No I/O and no adapters here: callers pass the loaded spec, the live state and `now`.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller import load, spec
from controller.routers import base


def current_step(loaded: load.LoadedRollout) -> int:
    """The step the rollout is at: status.step for the canary's revision, else 0 (a new revision)."""
    status = loaded.rollout.status
    canary = loaded.revisions.get(base.CANARY)
    if status is None or canary is None or status.revision != canary:
        return 0
    return min(status.step, len(loaded.rollout.spec.steps) - 1)


def served(loaded: load.LoadedRollout) -> dict[str, base.Served]:
    s = loaded.rollout.spec
    out = {}
    for role, variant in ((base.STABLE, s.stable), (base.CANARY, s.canary)):
        if variant is not None:
            out[role] = base.Served(
                model=variant.model,
                prompt=loaded.prompts.get(role),
                revision=loaded.revisions[role],
                params=dict(variant.params),
            )
    return out


def rolled_back(loaded: load.LoadedRollout) -> bool:
    status = loaded.rollout.status
    canary = loaded.revisions.get(base.CANARY)
    if status is None or canary is None:
        return False
    if canary in status.retried:
        return False
    return canary in status.rolled_back or (status.revision == canary and status.phase is spec.Phase.ROLLED_BACK)


def desired_state(loaded: load.LoadedRollout) -> base.RouteState:
    """What main says the route should be, before any gate verdict of this tick."""
    s = loaded.rollout.spec
    variants = served(loaded)
    if s.canary is None or rolled_back(loaded):
        return base.RouteState({base.STABLE: 100, base.CANARY: 0} if s.canary else {base.STABLE: 100}, 0, variants)
    step = s.steps[current_step(loaded)]
    return base.RouteState(
        {base.STABLE: 100 - step.canary_weight, base.CANARY: step.canary_weight}, step.shadow or 0, variants
    )


@dataclass(frozen=True)
class RouteDiff:
    """Desired against live for one rollout, as `rollout plan` shows it."""

    name: str
    router: str
    route: str
    step: int
    steps: int
    phase: str
    revisions: dict[str, str]
    desired: base.RouteState
    live: base.RouteState | None
    action: str  # what the next tick would do to the router, in words

    @property
    def drift(self) -> bool:
        return self.live is None or not self.live.same_traffic(self.desired)


def diff(loaded: load.LoadedRollout, live: base.RouteState | None) -> RouteDiff:
    desired = desired_state(loaded)
    status = loaded.rollout.status
    if live is None:
        action = f"create the route: {desired.describe()}"
    elif not live.same_traffic(desired):
        action = f"self-heal drift: set {desired.describe()}"
    elif loaded.rollout.spec.canary is None:
        action = "steady: nothing to roll out"
    else:
        action = "nothing to apply; evaluate gates"
    if rolled_back(loaded):
        phase = spec.Phase.ROLLED_BACK.value
    elif loaded.rollout.spec.canary is None:
        phase = "Stable"
    elif status is None or status.revision != loaded.revisions.get(base.CANARY):
        phase = "New"
    else:
        phase = status.phase.value
    return RouteDiff(
        name=loaded.name,
        router=loaded.rollout.spec.router,
        route=loaded.rollout.spec.route,
        step=current_step(loaded),
        steps=len(loaded.rollout.spec.steps),
        phase=phase,
        revisions=dict(loaded.revisions),
        desired=desired,
        live=live,
        action=action,
    )
