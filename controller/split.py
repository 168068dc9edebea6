"""The traffic-split check: does the router send the canary the share of requests its weight says?

Pure. The reconciler (and `rollout gates`) ask `target` which rollouts get the check and over which
requests (`look`); `controller.analysis` counts each variant's requests in one Prometheus query for all
of them and calls `evidence`, which judges with `controller.judge.judge_split`.

The requests are counted from a fixed origin per level of the step's age, never over a window that
slides: a sequential test is valid over the looks at one growing count. Level j covers the ages from
4 * 2^j intervals (level 0: from 2 intervals) to 8 * 2^j, and counts from the first multiple of
g = 2^j intervals (from the epoch) at least g after the step began. So the step's first interval never
counts (requests the router sent at the previous weight, before the controller wrote this step's, are
not held against it), and each level leaves out more of the step's early part, at most half of it: a
fault the router had early, or a late write, stops holding the step once it lies far enough back.
Level j spends alpha / 2^(j+1), so a step's false alarms stay within alpha (a union over the levels,
each valid under any number of looks by Ville's inequality). Rounding origins to the grid lets rollouts
at similar ages share a window, so one query answers all of them with a bounded number of windows
(about 5 per level), not one per rollout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from controller import gates, judge, load, plan, spec, traffic

KIND = "split"  # its evidence's kind; its name is `gates.TRAFFIC_SPLIT`
STICKY_ROUTERS = frozenset({"flagd", "unleash"})  # split by user, not by request: a request share is not binomial


@dataclass(frozen=True)
class Look:
    """The requests one judgement counts: from `origin` to `at`, at level `level` with its `alpha`."""

    origin: datetime
    at: datetime
    level: int
    alpha: float

    @property
    def window(self) -> timedelta:
        return self.at - self.origin

    @property
    def promql_window(self) -> str:
        """The window as a PromQL duration, to the millisecond (the origin stays where it is)."""
        return f"{max(1, int(self.window / timedelta(milliseconds=1)))}ms"


def look(
    *, since: datetime, at: datetime, interval: timedelta, alpha: float = judge.DEFAULT_SPLIT_ALPHA
) -> Look | None:
    """The origin and level of a judgement at `at` of a step that began at `since`, or None while the
    step is too young (its first interval is left out, and at least one interval of requests is needed).
    See the module's docstring."""
    age = at - since
    if age < 2 * interval:
        return None
    level = 0
    while age >= interval * 2 ** (level + 3):
        level += 1
    grid = interval * 2**level
    seconds = grid.total_seconds()
    origin = datetime.fromtimestamp(math.ceil((since + grid).timestamp() / seconds) * seconds, UTC)
    if at - origin < interval:
        return None
    return Look(origin, at, level, alpha / 2 ** (level + 1))


def look_back(window: timedelta, *, at: datetime, alpha: float = judge.DEFAULT_SPLIT_ALPHA) -> Look:
    """One judgement over a window the caller picked (`rollout gates --window`), at level 0's alpha."""
    return Look(at - window, at, 0, alpha / 2)


@dataclass(frozen=True)
class Target:
    """One rollout's split check: the share its canary should get, and the requests to count (`look`,
    None while the step is too young: `waiting` says why)."""

    rollout: str
    route: str
    router_type: str
    weight: int
    expected: float  # canary share of the live requests to stable and canary
    min_samples: int
    look: Look | None
    waiting: str = ""
    metrics: str = ""  # `analysis.metrics`: the model server whose request counts are read ('' none)


def applies(loaded: load.LoadedRollout, config: spec.ControllerConfig) -> bool:
    """Whether the rollout gets the check now: opted in (the default), a canary in flight, a router that
    splits request by request, and a live step with a weight strictly between 0 and 100 (a shadow step
    mirrors requests, which the request series do not tell from live ones; 0 and 100 leave nothing to
    split), with no cohort open: the route's share is then a mix of the cohorts' weights, in proportions
    of their traffic that no spec states."""
    s = loaded.rollout.spec
    if not s.analysis.traffic_split or s.canary is None or plan.rolled_back(loaded):
        return False
    router = config.routers.get(s.router)
    if router is None or router.type in STICKY_ROUTERS:
        return False
    step = s.steps[plan.current_step(loaded)]
    return (
        step.weight is not None
        and step.cohort is None
        and 0 < step.weight < 100
        and not plan.desired_state(loaded).cohorts
    )


def target(
    loaded: load.LoadedRollout,
    config: spec.ControllerConfig,
    *,
    since: datetime | None,
    at: datetime,
    window: timedelta | None = None,
) -> Target | None:
    """The rollout's split check at `at` for a step that began at `since`, or None when it does not
    apply (see `applies`). With `window`, count over that window instead (`rollout gates`)."""
    if not applies(loaded, config):
        return None
    s = loaded.rollout.spec
    step = s.steps[plan.current_step(loaded)]
    weights = plan.desired_state(loaded).weights
    canary, stable = weights.get(traffic.CANARY, 0), weights.get(traffic.STABLE, 0)
    interval = s.analysis.interval
    waiting = ""
    if window is not None:
        found: Look | None = look_back(window, at=at)
    elif since is None:
        found, waiting = None, "the step's start time is unknown"
    else:
        found = look(since=since, at=at, interval=interval)
        if found is None:
            waiting = (
                f"not judged in the step's first {spec.format_duration(2 * interval)}: requests routed before this "
                "step's weight was written do not count against it"
            )
    router = config.routers[s.router]
    return Target(
        rollout=loaded.name,
        route=s.route,
        router_type=router.type,
        weight=canary,
        expected=canary / (canary + stable),
        min_samples=max(step.min_samples or 0, judge.DEFAULT_MIN_SAMPLES),
        look=found,
        waiting=waiting,
        metrics=s.analysis.metrics or "",
    )


def evidence(
    t: Target,
    *,
    source: str,
    query: str = "",
    counts: dict[str, float] | None = None,
    error: str | None = None,
) -> gates.GateEvidence:
    """The check's row of evidence: requests per variant since the look's origin (None: no data),
    judged against the expected share; or why it is not judged yet, or the error that stopped it."""
    window = spec.format_duration(t.look.window) if t.look else ""

    def row(verdict: gates.Verdict, segments: tuple[gates.SegmentEvidence, ...] = ()) -> gates.GateEvidence:
        return gates.GateEvidence(
            rollout=t.rollout,
            gate=None,
            kind=KIND,
            source=source,
            query=query,
            window=window,
            min_samples=t.min_samples,
            segments=segments,
            verdict=verdict,
            error=error,
            expected_share=t.expected,
        )

    if error is not None:
        return row(gates.Verdict.ERROR)
    if t.look is None or counts is None:
        why = t.waiting or "no request counts for either variant"
        return row(gates.Verdict.INCONCLUSIVE, (_unjudged(why),))
    stable, canary = counts.get(traffic.STABLE, 0.0), counts.get(traffic.CANARY, 0.0)
    j = judge.judge_split(
        canary=canary, stable=stable, expected=t.expected, alpha=t.look.alpha, min_samples=t.min_samples
    )
    since = t.look.origin.isoformat(timespec="seconds").replace("+00:00", "Z")
    reason = f"{j.reason} (weight {t.weight}; requests since {since}, level {t.look.level}, alpha {t.look.alpha:.3g})"
    check = gates.Check("share", j.verdict, j.estimate, j.lower, j.upper, j.limit, "rate", reason)
    total = canary + stable
    seg = gates.SegmentEvidence(
        segment=(),
        stable=gates.Measurement(stable / total if total else None, stable),
        canary=gates.Measurement(canary / total if total else None, canary),
        verdict=j.verdict,
        reason=reason,
        counted=True,
        checks=(check,),
    )
    return row(j.verdict, (seg,))


def _unjudged(why: str) -> gates.SegmentEvidence:
    return gates.SegmentEvidence((), gates.NO_DATA, gates.NO_DATA, gates.Verdict.INCONCLUSIVE, why, counted=False)


def is_split(e: gates.GateEvidence) -> bool:
    """Whether a row of evidence is the split check's (a mismatch holds; it never rolls back or pauses)."""
    return e.gate is None and e.kind == KIND
