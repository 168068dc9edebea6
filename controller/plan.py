"""Pure decisions: what a rollout's route should look like, and what the next tick would do.

No I/O and no adapters here: callers pass the loaded spec, the live state and `now`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from controller import advice, gates, load, spec, traffic


def current_step(loaded: load.LoadedRollout) -> int:
    """The step the rollout is at: status.step for the canary's revision, else 0 (a new revision).
    Never clamped: a step past the last is refused by loading, and here it is an error, never 100%."""
    status = loaded.rollout.status
    canary = loaded.revisions.get(traffic.CANARY)
    if status is None or canary is None or status.revision != canary:
        return 0
    if not 0 <= status.step < len(loaded.rollout.spec.steps):
        raise ValueError(f"{loaded.path}: status.step {status.step} names no step of spec.steps")
    return status.step


def served(loaded: load.LoadedRollout) -> dict[str, traffic.Served]:
    s = loaded.rollout.spec
    out = {}
    for role, variant in ((traffic.STABLE, s.stable), (traffic.CANARY, s.canary), (traffic.PREVIOUS, s.previous)):
        if variant is not None:
            out[role] = traffic.Served(
                model=variant.model,
                prompt=loaded.prompts.get(role),
                revision=loaded.revisions[role],
                params=dict(variant.params),
                prompt_text=loaded.prompt_texts.get(role),
            )
    return out


def rolled_back(loaded: load.LoadedRollout) -> bool:
    status = loaded.rollout.status
    canary = loaded.revisions.get(traffic.CANARY)
    if status is None or canary is None:
        return False
    if canary in status.retried:
        return False
    return canary in status.rolled_back or (status.revision == canary and status.phase is spec.Phase.ROLLED_BACK)


def paused(loaded: load.LoadedRollout) -> bool:
    status = loaded.rollout.status
    return (
        status is not None
        and status.revision == loaded.revisions.get(traffic.CANARY)
        and status.phase is spec.Phase.PAUSED
    )


def phase(loaded: load.LoadedRollout, *, rolling_back: bool = False) -> spec.Phase | None:
    """The rollout's phase in the schema's words, as every command shows it: RolledBack once main or
    this tick (`rolling_back`: a rollback decided, or its revert PR open) says so, never Progressing
    then; a new canary revision is Progressing at its first step; None with no canary and nothing
    completed (a stable variant alone has no phase)."""
    status = loaded.rollout.status
    if rolled_back(loaded) or (rolling_back and loaded.rollout.spec.canary is not None):
        return spec.Phase.ROLLED_BACK
    if loaded.rollout.spec.canary is None:
        return spec.Phase.COMPLETED if status is not None and status.phase is spec.Phase.COMPLETED else None
    if status is None or status.revision != loaded.revisions.get(traffic.CANARY):
        return spec.Phase.PROGRESSING
    return status.phase


def desired_state(loaded: load.LoadedRollout) -> traffic.RouteState:
    """What main says the route should be, before any gate verdict of this tick."""
    s = loaded.rollout.spec
    if s.canary is None or rolled_back(loaded):
        return rolled_back_state(loaded)
    return step_state(s, current_step(loaded), served(loaded))


def step_state(s: spec.RolloutSpec, index: int, served: dict[str, traffic.Served] | None = None) -> traffic.RouteState:
    """The split step `index` asks for: everyone's weight and shadow as the step (or, for a cohort
    step, the last step for everyone before it) says, and every cohort of spec.cohorts, in its order, at
    its latest weight or everyone's if higher: a request belongs to the first cohort it matches, opened
    or not, on every router (one not opened yet routes at everyone's weight)."""
    step = s.steps[index]
    everyone = step if step.cohort is None else next((p for p in reversed(s.steps[:index]) if p.cohort is None), None)
    canary = everyone.canary_weight if everyone is not None else 0
    shadow = step.shadow or 0
    opened: dict[str, int] = {}
    for earlier in s.steps[: index + 1]:
        if earlier.cohort is not None and earlier.weight is not None:
            opened[earlier.cohort] = earlier.weight
    cohorts = tuple(traffic.CohortSplit(c.name, c.key, c.values, max(opened.get(c.name, 0), canary)) for c in s.cohorts)
    weights = {traffic.STABLE: 100 - canary, traffic.CANARY: canary}
    return traffic.RouteState(weights, shadow, served or {}, cohorts=cohorts)


def lowered(loaded: load.LoadedRollout, live: traffic.RouteState | None) -> traffic.RouteState:
    """What a rollback writes: the canary at 0 and shadow off. On a route that other variants share
    (`live.others`, no rollout's), the canary's weight goes to stable and the others are left as
    they are, so lowering exposure never depends on them; otherwise the rolled-back state."""
    if live is None or not live.others:
        return rolled_back_state(loaded)
    down = live.lowered()
    return traffic.RouteState(down.weights, 0, served(loaded), down.others)


def lowering_only(decision: Decision, live: traffic.RouteState | None, why: str) -> Decision:
    """`decision` when what it writes only lowers exposure without changing what any variant serves, for a
    rollout whose variants are not all known (their prompts could not be read: `why`). A rollback (or an
    abort) stands: on a live route it takes the canary out there, each variant serving what it serves. An
    APPLY that only lowers the live route is made that way. Anything else holds, saying why."""
    if decision.kind is Kind.ROLLBACK:
        if live is None:
            return decision  # lowering exposure is never refused: main's stable, as far as it is known
        down = live.lowered()
        return replace(decision, route=traffic.RouteState(down.weights, 0, live.served, down.others))
    route = decision.route
    if decision.kind is Kind.APPLY and route is not None and live is not None and not live.raises(route):
        down = live.lowered(route.weight(traffic.CANARY), route.shadow)
        if not down.same_traffic(live):
            return replace(decision, reason=f"{decision.reason} (lowered only: {why})", route=down)
    return Decision(Kind.HOLD, f"{why}; only a rollback or abort is done until it answers")


def rolled_back_state(loaded: load.LoadedRollout) -> traffic.RouteState:
    """Stable 100, every other variant 0 (still routable) and shadow off: never all weights 0."""
    s = loaded.rollout.spec
    weights = {traffic.STABLE: 100}
    if s.canary is not None:
        weights[traffic.CANARY] = 0
    if s.previous is not None:
        weights[traffic.PREVIOUS] = 0
    return traffic.RouteState(weights, 0, served(loaded))


@dataclass(frozen=True)
class RouteDiff:
    """Desired against live for one rollout, as `rollout plan` shows it."""

    name: str
    router: str
    route: str
    step: int  # the 0-based index, as `status.step`; people read step + 1
    steps: int
    phase: spec.Phase | None  # None: no canary and nothing completed (`phase`)
    revisions: dict[str, str]
    desired: traffic.RouteState
    live: traffic.RouteState | None
    action: str  # what the next tick would do to the router, in words
    timing: advice.StepAdvice | None = None  # how long the current step's gates need to decide

    @property
    def drift(self) -> bool:
        return self.live is None or not self.live.same_traffic(self.desired)


def diff(
    loaded: load.LoadedRollout, live: traffic.RouteState | None, *, config: spec.ControllerConfig | None = None
) -> RouteDiff:
    """Desired against live; `config` (for custom gate templates) sharpens the timing advice."""
    desired = desired_state(loaded)
    if live is not None and live.hold and _exposed(desired):
        action = f"hold, not setting {desired.describe()}: {live.hold}"
    elif live is None:
        action = f"create the route: {desired.describe()}"
    elif not live.same_traffic(desired):
        action = f"self-heal drift: set {desired.describe()}"
    elif loaded.rollout.spec.canary is None:
        action = "nothing to roll out: no canary"
    else:
        action = "nothing to apply; evaluate gates"
    return RouteDiff(
        name=loaded.name,
        router=loaded.rollout.spec.router,
        route=loaded.rollout.spec.route,
        step=current_step(loaded),
        steps=len(loaded.rollout.spec.steps),
        phase=phase(loaded),
        revisions=dict(loaded.revisions),
        desired=desired,
        live=live,
        action=action,
        timing=_timing(loaded, config),
    )


def _timing(loaded: load.LoadedRollout, config: spec.ControllerConfig | None) -> advice.StepAdvice | None:
    """Sample-size advice for the current step, while a canary is in flight."""
    if loaded.rollout.spec.canary is None or rolled_back(loaded):
        return None
    return advice.step_advice(loaded, step=current_step(loaded), config=config)


# -- decide: one tick's decision for one rollout ---------------------------------------------------


class Kind(StrEnum):
    HOLD = "Hold"
    APPLY = "Apply"  # write `route` to the router: start a revision, or heal drift to what main says
    ADVANCE = "Advance"  # propose a PR that sets status.step to `to_step`
    ROLLBACK = "Rollback"  # write the rolled-back `route` now, then propose the revert PR
    PAUSE = "Pause"  # a pause gate failed: hold, and tell a human on the PR
    COMPLETE = "Complete"  # the last step is done: propose the completion PR
    DECOMMISSION = "Decommission"  # the old stable was kept warm long enough: propose removing it


@dataclass(frozen=True)
class GateResult:
    gate: str
    verdict: gates.Verdict
    on_fail: spec.OnFail = spec.OnFail.ROLLBACK
    reason: str = ""
    undecidable: bool = False  # INCONCLUSIVE, and no traffic at this step can decide it: it holds nothing


@dataclass(frozen=True)
class Facts:
    """What one tick observed about one rollout, gathered by the reconciler."""

    now: datetime
    live: traffic.RouteState | None
    verdicts: tuple[GateResult, ...] = ()
    step_since: datetime | None = None  # when main first said the current step (from git history)
    samples: int | None = None  # canary requests counted in this step
    rollback_pr_open: bool = False  # a revert PR for this revision is open (or was closed unmerged): hold
    pause_pr_open: bool = False  # a pause PR for this revision is open (a pause gate's, or a hold by hand): hold
    abort: bool = False  # `rollout abort`: the kill switch
    traffic_split: GateResult | None = None  # the built-in split check: FAIL or ERROR holds (its on_fail is unread)


@dataclass(frozen=True)
class Decision:
    kind: Kind
    reason: str
    route: traffic.RouteState | None = None  # for APPLY and ROLLBACK: what the router must say now
    to_step: int | None = None  # for ADVANCE
    failed: tuple[GateResult, ...] = ()  # the gates behind a ROLLBACK or PAUSE


def freeze_window(windows: Sequence[spec.FreezeWindow], now: datetime) -> spec.FreezeWindow | None:
    """The freeze window open at `now`, if any."""
    from croniter import croniter

    for window in windows:
        local = now.astimezone(ZoneInfo(window.timezone))
        # the latest opening at or before now (croniter's get_prev is strict, so step a second ahead)
        opened = croniter(window.cron, local + timedelta(seconds=1)).get_prev(datetime)
        if opened <= local < opened + window.duration:
            return window
    return None


def decide(loaded: load.LoadedRollout, facts: Facts) -> Decision:
    """The decision for one rollout at `facts.now`. Pure: no I/O, no clock, no adapters."""
    s = loaded.rollout.spec
    live = facts.live

    def converge(target: traffic.RouteState, reason: str) -> Decision | None:
        if live is not None and live.hold and _exposed(target):
            return Decision(Kind.HOLD, f"{reason}: not setting {target.describe()}: {live.hold}")
        if live is not None and live.others:
            if live.raises(target):
                return _shared(live, target, reason)
            # lowering (or holding) on a shared route: only the canary moves, the others stay as they are
            down = live.lowered(target.weight(traffic.CANARY), target.shadow)
            target = traffic.RouteState(down.weights, down.shadow, target.served, down.others, cohorts=target.cohorts)
        if live is None or not live.same_traffic(target) or not live.same_revisions(target):
            return Decision(Kind.APPLY, f"{reason}: set {target.describe()}", route=target)
        return None

    if s.canary is None:
        heal = converge(desired_state(loaded), "no canary")
        if heal or s.previous is None:
            return heal or Decision(Kind.HOLD, "no canary: nothing to roll out")
        if facts.step_since is not None and facts.now - facts.step_since >= s.keep_previous_for:
            return Decision(
                Kind.DECOMMISSION, f"the old stable was kept warm for {spec.format_duration(s.keep_previous_for)}"
            )
        return Decision(Kind.HOLD, "completed: the old stable stays warm at weight 0")
    back = lowered(loaded, live)
    if rolled_back(loaded):
        return converge(back, "rolled back") or Decision(
            Kind.HOLD, "rolled back: waiting for a new canary revision or `rollout retry`"
        )
    if facts.rollback_pr_open:
        return converge(back, "rollback pending") or Decision(Kind.HOLD, "rolled back; the revert PR records it")
    if facts.abort:
        return Decision(Kind.ROLLBACK, "aborted by hand", route=back)
    failed = tuple(g for g in facts.verdicts if g.verdict is gates.Verdict.FAIL)
    rollback = tuple(g for g in failed if g.on_fail is spec.OnFail.ROLLBACK)
    if rollback:
        return Decision(Kind.ROLLBACK, _gate_reason(rollback), route=back, failed=rollback)

    heal = converge(desired_state(loaded), "apply main")
    if heal:
        return heal
    if paused(loaded):
        return Decision(Kind.HOLD, "paused: a human decides (`rollout retry` resumes)")
    if failed:
        return Decision(Kind.PAUSE, _gate_reason(failed), failed=failed)
    if facts.pause_pr_open:  # not merged yet: it holds as main's Paused would (until a retry is merged)
        return Decision(Kind.HOLD, "paused: the pause PR is open; a human decides (`rollout retry` resumes)")
    split = facts.traffic_split
    if split is not None and split.verdict in (gates.Verdict.FAIL, gates.Verdict.ERROR):
        # the router's fault, not the canary's: hold at this weight, never roll back or pause for it
        what = "" if split.verdict is gates.Verdict.FAIL else " could not be measured"
        return Decision(Kind.HOLD, f"{split.gate}{what}: {split.reason or split.verdict}")
    if any(g.verdict is gates.Verdict.ERROR for g in facts.verdicts):
        return Decision(Kind.HOLD, "a gate could not be measured: " + _unmeasured(facts.verdicts))
    index = current_step(loaded)
    step = s.steps[index]
    # At 100% the stable variant gets no traffic, so a comparison against it can never conclude. The
    # canary already takes everything: completing grows no exposure, it records the promotion. FAIL
    # (above) and ERROR still stop it; INCONCLUSIVE does not.
    everything = index + 1 == len(s.steps) and step.canary_weight == 100
    deciding = [g for g in facts.verdicts if not g.undecidable]
    if not everything and any(g.verdict is gates.Verdict.INCONCLUSIVE for g in deciding):
        return Decision(
            Kind.HOLD,
            f"gates undecided: {_names(deciding, gates.Verdict.INCONCLUSIVE)} "
            "(too few samples yet, or their bounds still span the limit)",
        )
    if not everything and facts.verdicts and not deciding and step.shadow:
        # no user sees a shadow's answers: gates on what users say of them cannot judge it (lint R013)
        return Decision(
            Kind.HOLD,
            f"no gate can judge this shadow step: {_names(facts.verdicts, gates.Verdict.INCONCLUSIVE)} judge what "
            "users say of the answers they see, and no user sees a shadow's; add a gate on the answers themselves",
        )
    if not everything and facts.verdicts and not deciding:
        # a cohort at 100% has no stable of its own: only absolute bounds judge it (lint R012)
        return Decision(
            Kind.HOLD,
            f"no gate can judge this step: {_names(facts.verdicts, gates.Verdict.INCONCLUSIVE)} have only relative "
            "limits, and a cohort at 100% has no stable to compare with; give a gate max or min",
        )
    if step.for_ is not None:
        if facts.step_since is None:
            return Decision(Kind.HOLD, "the step's start time is unknown")
        left = facts.step_since + step.for_ - facts.now
        if left > timedelta(0):
            return Decision(Kind.HOLD, f"step {index + 1} needs {spec.format_duration(_whole(left))} more")
    if step.min_samples:
        if facts.samples is None:
            return Decision(Kind.HOLD, "the canary's sample count is unknown")
        if facts.samples < step.min_samples:
            return Decision(Kind.HOLD, f"{facts.samples} of {step.min_samples} samples")
    window = freeze_window(s.freeze, facts.now)
    if window is not None:
        return Decision(Kind.HOLD, f"freeze window ({window.cron}, {spec.format_duration(window.duration)})")
    if index + 1 >= len(s.steps):
        undecided = _names(facts.verdicts, gates.Verdict.INCONCLUSIVE)
        if undecided:  # only at 100% (above): stable has no traffic left to compare with
            return Decision(
                Kind.COMPLETE,
                f"every step done and no gate failed ({undecided} undecided: stable has no traffic at 100%)",
            )
        return Decision(Kind.COMPLETE, "every step done and every gate passed")
    return Decision(Kind.ADVANCE, f"step {index + 1} done and every gate passed", to_step=index + 1)


def _exposed(state: traffic.RouteState) -> bool:
    """The canary gets live or mirrored traffic in `state`, in any cohort."""
    return not traffic.exposure_free(state)


def _shared(live: traffic.RouteState, target: traffic.RouteState, reason: str) -> Decision:
    """A hold instead of raising exposure on a route that variants no rollout manages share: what
    the canary's weight would mean there is not ours to say. Lowering is never refused (`lowered`)."""
    return Decision(
        Kind.HOLD,
        f"{reason}: not setting {target.describe()}, because the route is shared with variants no rollout "
        f"manages{live.describe_others().removeprefix('; unmanaged')}; remove them from the route to go on",
    )


def _whole(delta: timedelta) -> timedelta:
    return timedelta(seconds=max(1, int(delta.total_seconds())))


def _names(results: Sequence[GateResult], verdict: gates.Verdict) -> str:
    return ", ".join(g.gate for g in results if g.verdict is verdict)


def _unmeasured(results: Sequence[GateResult]) -> str:
    """The gates that could not be measured, each with why (e.g. Prometheus is down), the why said once."""
    broken = [g for g in results if g.verdict is gates.Verdict.ERROR]
    whys = list(dict.fromkeys(g.reason for g in broken if g.reason))
    names = ", ".join(g.gate for g in broken)
    return names + (f" ({'; '.join(whys)})" if whys else "")


def _gate_reason(failed: Sequence[GateResult]) -> str:
    return "; ".join(f"{g.gate} failed" + (f": {g.reason}" if g.reason else "") for g in failed)
