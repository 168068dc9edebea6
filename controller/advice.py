"""Sample-size advice: how long each gate of a step needs to reach a decision at the route's traffic.

Pure. `plan.diff` attaches it for the current step (`rollout plan`), `lint` warns (R008) when a step's
`for` is too short for any gate to decide, and `rollout status` can call `step_advice` as well.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

from controller import gates, judge, load, spec, templates

HORIZON = timedelta(days=30)
ASSUMED_BAD_RATE = 0.01  # a relative gate with no absolute bound: the stable bad rate we assume


@dataclass(frozen=True)
class GateAdvice:
    """One threshold of one gate. `pass_after`: when a canary as good as stable (or comfortably within
    a bound) passes, with the gate's `power`; `fail_after`: when one regressing by the limit plus the
    gate's `tolerance` fails, with the same probability. None: not within 30 days, or not applicable.
    `exact` is false where only a lower bound is known (quantile gates: it depends on the spread)."""

    gate: str
    check: str
    pass_after: timedelta | None
    fail_after: timedelta | None
    assumes: str
    exact: bool = True
    applies: bool = True  # false where the check cannot be judged at all in this step (no stable traffic)

    def decides_within(self, duration: timedelta) -> bool:
        return any(t is not None and t <= duration for t in (self.pass_after, self.fail_after))

    def text(self) -> str:
        """`pass ~2h44m, fail ~3h49m` (a `>=` where only a lower bound is known)."""
        approx = "~" if self.exact else ">="
        if not self.applies:
            return "n/a"
        return ", ".join(
            f"{word} {approx}{spec.format_duration(t)}" if t is not None else f"{word} not within 30d"
            for word, t in (("pass", self.pass_after), ("fail", self.fail_after))
            if t is not None or self.exact
        )


@dataclass(frozen=True)
class StepAdvice:
    rollout: str
    step: int  # index into spec.steps
    step_text: str  # "5%" or "shadow 100%"
    step_for: timedelta | None
    rate: float | None  # requests per second on the route; None when unknown
    gates: tuple[GateAdvice, ...]
    note: str = ""  # why there is no advice, when there is none
    caveat: str = ""  # what the figures leave out (segments)

    def too_short(self) -> tuple[GateAdvice, ...]:
        """Gates that cannot reach any decision within the step's `for`."""
        if self.step_for is None:
            return ()
        return tuple(g for g in self.gates if g.applies and not g.decides_within(self.step_for))


def step_advice(
    loaded: load.LoadedRollout,
    rate: float | None = None,
    *,
    step: int,
    config: spec.ControllerConfig | None = None,
) -> StepAdvice:
    """Advice for step `step` (an index; `plan.current_step(loaded)` for the current one) at `rate`
    requests per second, by default the spec's `analysis.expectedRate`. `config` resolves custom gate
    templates; without it only built-in templates are advised."""
    s = loaded.rollout.spec
    the_step = s.steps[step]
    rate = s.analysis.expected_rate if rate is None else rate
    out = StepAdvice(loaded.name, step, the_step.describe(), the_step.for_, rate, ())
    if rate is None or rate <= 0:
        return _with(out, note="traffic unknown: set analysis.expectedRate (e.g. 10/s) for advice")
    if not s.analysis.gates:
        return _with(out, note="no gates")
    if the_step.cohort is not None:
        return _with(
            out,
            note=f"the canary serves cohort {the_step.cohort} at {the_step.weight}%, whose share of expectedRate "
            "no spec states: no timing advice",
        )
    if the_step.shadow is not None:
        weight, stable_weight = the_step.shadow / 100, 1.0
    else:
        weight, stable_weight = the_step.canary_weight / 100, 1 - the_step.canary_weight / 100
    if weight <= 0:
        return _with(out, note="the canary gets no traffic in this step")
    router = config.routers.get(s.router) if config is not None else None
    traffic = _Traffic(
        rate, weight, stable_weight, the_step.min_samples or 0, router.type if router else "", s.analysis.metrics or ""
    )
    rows = [row for gate in s.analysis.gates for row in _gate(gate, config, traffic)]
    caveat = ""
    if s.analysis.segments:
        caveat = (
            f"for the whole route; judged per {', '.join(s.analysis.segments)}, each segment sees only its "
            "share of the traffic (and of alpha), so expect longer"
        )
    return StepAdvice(loaded.name, step, the_step.describe(), the_step.for_, rate, tuple(rows), caveat=caveat)


def _with(advice: StepAdvice, *, note: str) -> StepAdvice:
    return StepAdvice(advice.rollout, advice.step, advice.step_text, advice.step_for, advice.rate, advice.gates, note)


def _template(name: str, config: spec.ControllerConfig | None) -> spec.GateTemplate | None:
    if config is not None and name in config.gate_templates:
        return config.gate_templates[name]
    builtin = templates.BUILTIN.get(name)
    return builtin.default if builtin is not None else None


@dataclass(frozen=True)
class _Traffic:
    rate: float  # requests per second on the route
    weight: float  # the canary's share (live or mirrored)
    stable_weight: float
    min_samples: int  # the step's minSamples
    router_type: str = ""  # which flavour of a built-in template is read (its histogram buckets)
    metrics: str = ""  # `analysis.metrics`: likewise


def _gate(gate: spec.Gate, config: spec.ControllerConfig | None, traffic: _Traffic) -> list[GateAdvice]:
    template = _template(gate.use, config)
    canary_rate = traffic.rate * traffic.weight
    match template:
        case None:
            return [GateAdvice(gate.use, "-", None, None, "unknown template: no advice", applies=False)]
        case spec.RatioTemplate():
            return _ratio(gate, counts_good=template.good is not None, traffic=traffic)
        case spec.QuantileTemplate():
            need = max(traffic.min_samples, judge.DEFAULT_QUANTILE_MIN_SAMPLES)
            at_least: timedelta | None = timedelta(seconds=math.ceil(need / canary_rate))
            assumes = f"at least {need} canary samples; longer the wider the latency spread"
            builtin = templates.BUILTIN.get(gate.use)
            flavour = builtin.flavour_for(traffic.router_type, traffic.metrics) if builtin else templates.Flavour.APP
            bounds = templates.rendered_buckets(builtin, flavour) if builtin else None
            if gate.max_increase is not None and bounds is not None and not gates.passable(bounds, gate.max_increase):
                at_least = None
                assumes = f"the {flavour} latency buckets are wider than the limit everywhere: it can never pass"
            return [GateAdvice(gate.use, _thresholds(gate), at_least, None, assumes, exact=at_least is None)]
        case spec.MeanTemplate() | spec.ValueTemplate():
            need = max(traffic.min_samples, 1)
            after = timedelta(seconds=math.ceil(need / canary_rate))
            assumes = f"a plain comparison once {need} samples are in"
            return [GateAdvice(gate.use, _thresholds(gate), after, after, assumes)]


def _thresholds(gate: spec.Gate) -> str:
    parts = []
    if gate.max is not None:
        parts.append(f"max {gate.max:g}")
    if gate.min is not None:
        parts.append(f"min {gate.min:g}")
    if gate.max_drop is not None:
        parts.append(f"maxDrop {gate.max_drop * 100:g} pts")
    if gate.max_increase is not None:
        parts.append(f"maxIncrease {gate.max_increase * 100:g}%")
    return ", ".join(parts)


def _ratio(gate: spec.Gate, *, counts_good: bool, traffic: _Traffic) -> list[GateAdvice]:
    levels = judge.levels(gate)
    need = max(traffic.min_samples, judge.DEFAULT_MIN_SAMPLES)
    out = []
    for name, limit, at_most in (("max", gate.max, True), ("min", gate.min, False)):
        if limit is None or not 0 <= limit <= 1:
            continue
        a = judge.advise_rate_bound(
            requests_per_second=traffic.rate,
            weight=traffic.weight,
            limit=limit,
            at_most=at_most,
            tolerance=levels.tolerance,
            alpha=levels.alpha,
            power=levels.power,
            min_samples=need,
            horizon=HORIZON,
        )
        where = "halfway between the bound and " + ("0" if at_most else "1")
        out.append(GateAdvice(gate.use, f"{name} {limit * 100:g}%", a.pass_after, a.fail_after, f"canary {where}"))
    if gate.max_drop is None and gate.max_increase is None:
        return out
    if traffic.stable_weight <= 0:
        out.append(
            GateAdvice(gate.use, "against stable", None, None, "stable gets no traffic in this step", applies=False)
        )
        return out

    def compare(base_bad: float, *, power: float, **limit: float | None) -> judge.Advice:
        return judge.advise_ratio(
            requests_per_second=traffic.rate,
            weight=traffic.weight,
            stable_weight=traffic.stable_weight,
            base_rate=(1 - base_bad) if counts_good else base_bad,
            higher_is_better=counts_good,
            max_drop=limit.get("max_drop"),
            max_increase=limit.get("max_increase"),
            tolerance=limit.get("tolerance"),
            alpha=levels.alpha,
            power=power,
            min_samples=need,
            horizon=HORIZON,
        )

    if gate.max_drop is not None:
        a = compare(0.5, power=levels.power, max_drop=gate.max_drop, tolerance=levels.tolerance)
        check = f"maxDrop {gate.max_drop * 100:g} pts"
        out.append(GateAdvice(gate.use, check, a.pass_after, a.fail_after, "a 50% rate (the slowest case)"))
    if gate.max_increase is not None:
        floor = (None if gate.min is None else 1 - gate.min) if counts_good else gate.max
        check = f"maxIncrease {gate.max_increase * 100:g}%"
        if floor is not None and floor > 0:
            # the paired rule (gates.bad_floor): a clean canary passes on the absolute margin
            bad = floor / 2
            margin = compare(bad, power=(1 + levels.power) / 2, max_drop=gate.max_increase * floor)
            rel = compare(bad, power=levels.power, max_increase=gate.max_increase, tolerance=levels.tolerance)
            passes = [t for t in (margin.pass_after, rel.pass_after) if t is not None]
            a = judge.Advice(min(passes, default=None), rel.fail_after, None, None)
            assumes = f"a {bad * 100:g}% bad rate (half the bound); passes on the absolute margin too"
        else:
            bad = ASSUMED_BAD_RATE
            a = compare(bad, power=levels.power, max_increase=gate.max_increase, tolerance=levels.tolerance)
            assumes = f"a {bad * 100:g}% bad rate; rarer bad events take longer (never, with none)"
        out.append(GateAdvice(gate.use, check, a.pass_after, a.fail_after, assumes))
    return out
