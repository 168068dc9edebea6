"""Judging a gate's measurements, canary against stable and against bounds, segment by segment.

No I/O: `controller.analysis` measures and calls `judge_segments`; the statistics live in
`controller.judge`. Ratio and quantile gates are judged sequentially there (FAIL and PASS only on
evidence, at the gate's `alpha`/`power`); free-PromQL value gates keep a plain comparison.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypedDict

from controller import judge as stats
from controller import spec, verdicts

Verdict = verdicts.Verdict
worst = verdicts.worst


# -- measurements and judging --------------------------------------------------------------------


Buckets = tuple[tuple[float, float], ...]  # cumulative (le, count), +Inf last, le in the template's seconds


@dataclass(frozen=True)
class Measurement:
    """One variant's value in one segment. `value is None` is "no data", which is not zero;
    `samples is None` means the template cannot count samples. `buckets` holds a quantile template's
    histogram counts over the window (what `judge.judge_quantile` needs); empty for other kinds.
    `blocks` holds a ratio template's counts per time block (`judge.Blocks`), when measured;
    `requests` a mean template's count of every request, when it names one."""

    value: float | None
    samples: float | None
    buckets: Buckets = ()
    blocks: stats.Blocks | None = None  # a ratio template's counts in time blocks, to see bursts
    requests: float | None = None  # a mean template's requests, answered or not (`samples` counts the answered)

    @property
    def has_data(self) -> bool:
        return self.value is not None


NO_DATA = Measurement(None, None)


@dataclass(frozen=True)
class Method:
    """How a template's measurements are judged. `ratio`: value = events / samples, judged on the
    counts (`counts_good`: the events are good ones, as for eval_pass_rate; else bad, as for
    error_rate). `quantile`: judged on `buckets`. `value`: free PromQL, a plain comparison. `mean`: a
    quantity per answered request, a plain comparison that never passes a canary answering a smaller
    share of its requests than stable (see `answered_share`)."""

    kind: str = "value"
    counts_good: bool = True
    quantile: float = 0.95


VALUE = Method()
MEAN = Method("mean")
ANSWERED_MARGIN = 0.01  # a per-answer gate passes only when the canary answers at most 1 point less than stable


@dataclass(frozen=True)
class Check:
    """One threshold of a gate in one segment, with the judge's estimate and confidence bounds.

    `unit` says how to read the numbers: `pts` a regression in rate points (maxDrop), `rel` a relative
    regression (maxIncrease; 0.15 = 15% worse), `rate` the canary's share, `s` seconds, `` the
    template's own unit. Bounds are None where the method has none (value templates)."""

    name: str  # max | min | maxDrop | maxIncrease
    verdict: Verdict
    estimate: float | None
    lower: float | None
    upper: float | None
    limit: float
    unit: str
    reason: str
    resolution: float | None = None  # quantile gates: how wide the histogram's bucket is there, in `unit`


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    reason: str
    checks: tuple[Check, ...] = ()


def enough(m: Measurement, min_samples: int) -> bool:
    """At least `min_samples` samples (and at least one): the only way a measurement counts."""
    return m.samples is not None and m.samples >= max(min_samples, 1)


def _fmt(v: float) -> str:
    return f"{v:.6g}"


def _count(samples: float) -> str:
    """A sample count as a person reads it: whole (Prometheus's increase() extrapolates to fractions)."""
    return f"{math.floor(samples):d}"


def _plain(name: str, ok: bool, estimate: float, limit: float, unit: str, reason: str) -> Check:
    return Check(name, Verdict.PASS if ok else Verdict.FAIL, estimate, None, None, limit, unit, reason)


def judge_bounds(gate: spec.Gate, canary: float) -> list[Judgement]:
    """Absolute bounds on the canary's value (max, min), by plain comparison (value templates)."""
    out = []
    if gate.max is not None:
        ok = canary <= gate.max
        reason = f"canary {_fmt(canary)} {'<=' if ok else '>'} max {_fmt(gate.max)}"
        out.append(
            Judgement(Verdict.PASS if ok else Verdict.FAIL, reason, (_plain("max", ok, canary, gate.max, "", reason),))
        )
    if gate.min is not None:
        ok = canary >= gate.min
        reason = f"canary {_fmt(canary)} {'>=' if ok else '<'} min {_fmt(gate.min)}"
        out.append(
            Judgement(Verdict.PASS if ok else Verdict.FAIL, reason, (_plain("min", ok, canary, gate.min, "", reason),))
        )
    return out


def judge_against_stable(gate: spec.Gate, *, stable: float, canary: float) -> list[Judgement]:
    """Canary against stable by plain comparison (value templates): maxDrop in points (0.03 = 3
    points), maxIncrease relative (0.1 = +10%)."""
    out = []
    if gate.max_drop is not None:
        drop = stable - canary
        ok = drop <= gate.max_drop + 1e-12
        reason = f"drop {_fmt(drop * 100)} points {'<=' if ok else '>'} maxDrop {_fmt(gate.max_drop * 100)}"
        check = _plain("maxDrop", ok, drop, gate.max_drop, "pts", reason)
        out.append(Judgement(check.verdict, reason, (check,)))
    if gate.max_increase is not None:
        limit = stable * (1 + gate.max_increase)
        ok = canary <= limit + 1e-12
        rel = "n/a" if stable == 0 else f"{_fmt((canary / stable - 1) * 100)}%"
        reason = f"increase {rel} ({'<=' if ok else '>'} limit {_fmt(limit)} at maxIncrease {_fmt(gate.max_increase * 100)}%)"
        estimate = math.inf if stable == 0 and canary > 0 else 0.0 if stable == 0 else canary / stable - 1
        check = _plain("maxIncrease", ok, estimate, gate.max_increase, "rel", reason)
        out.append(Judgement(check.verdict, reason, (check,)))
    return out


def compares(gate: spec.Gate) -> bool:
    return gate.max_drop is not None or gate.max_increase is not None


def judge(
    gate: spec.Gate,
    *,
    stable: Measurement,
    canary: Measurement,
    min_samples: int,
    method: Method = VALUE,
    alpha_share: float = 1.0,
) -> Judgement:
    """One segment's verdict. FAIL and PASS only on evidence: no data or too few samples on a side
    that a threshold needs is INCONCLUSIVE. A failed bound is a FAIL even while stable lacks data.

    `method` picks the judging (see `Method`); `alpha_share` scales the gate's alpha (the caller
    divides it among segments so that a gate's false-failure rate stays at its alpha)."""
    if not canary.has_data:
        return Judgement(Verdict.INCONCLUSIVE, "no canary data")
    if not enough(canary, min_samples):
        count = "unknown" if canary.samples is None else _count(canary.samples)
        return Judgement(Verdict.INCONCLUSIVE, f"canary samples {count} < minSamples {max(min_samples, 1)}")
    assert canary.value is not None
    plain = method.kind in ("value", "mean")
    if plain:
        parts = judge_bounds(gate, canary.value)
    else:
        parts = _judged_bounds(
            gate, canary, method=method, min_samples=min_samples, alpha_share=alpha_share, reference=stable
        )
    if compares(gate):
        if not stable.has_data:
            parts.append(Judgement(Verdict.INCONCLUSIVE, "no stable data to compare with"))
        elif not plain:
            parts += _judged_comparisons(
                gate, stable=stable, canary=canary, method=method, min_samples=min_samples, alpha_share=alpha_share
            )
        elif not enough(stable, min_samples):
            count = "unknown" if stable.samples is None else _count(stable.samples)
            parts.append(Judgement(Verdict.INCONCLUSIVE, f"stable samples {count} < minSamples {max(min_samples, 1)}"))
        else:
            assert stable.value is not None
            parts += judge_against_stable(gate, stable=stable.value, canary=canary.value)
    if method.kind == "mean" and canary.requests is not None:
        parts.append(answered_share(gate, stable=stable, canary=canary))
    verdict = worst(p.verdict for p in parts) if parts else Verdict.INCONCLUSIVE
    checks = tuple(c for p in parts for c in p.checks)
    return Judgement(verdict, "; ".join(p.reason for p in parts if p.verdict is verdict), checks)


def answered_share(gate: spec.Gate, *, stable: Measurement, canary: Measurement) -> Judgement:
    """A per-answer gate's guard: the canary must be shown (at the gate's power) to answer at most
    `ANSWERED_MARGIN` less of its requests than stable; until then the gate holds (INCONCLUSIVE), since a
    failed request carries no cost and no tokens and a failing canary would look cheap. It never fails
    the gate on its own: error_rate is the gate for failures."""
    name = "answered"
    if stable.requests is None or stable.samples is None:
        return Judgement(Verdict.INCONCLUSIVE, f"{name}: no stable requests to compare the answered share with")
    counts = [(min(m.samples or 0.0, m.requests or 0.0), m.requests or 0.0) for m in (stable, canary)]
    j = stats.judge_within(  # exact: failures are rare, and a clean run must neither fool nor stall it
        stable_bad=counts[0][1] - counts[0][0],
        stable_total=counts[0][1],
        canary_bad=counts[1][1] - counts[1][0],
        canary_total=counts[1][1],
        margin=ANSWERED_MARGIN,
        power=stats.levels(gate).power,
    )
    verdict = Verdict.PASS if j.verdict is Verdict.PASS else Verdict.INCONCLUSIVE
    why = (
        "" if verdict is Verdict.PASS else "a per-answer gate cannot pass until the canary answers as much as stable: "
    )
    reason = f"{name}: {why}{j.reason}"
    check = Check(name, verdict, j.estimate, j.lower, j.upper, ANSWERED_MARGIN, "pts", reason)
    return Judgement(verdict, reason, (check,))


# -- the sequential judge, wired -----------------------------------------------------------------------


def _one(name: str, j: stats.Comparison, unit: str) -> Judgement:
    check = Check(name, j.verdict, j.estimate, j.lower, j.upper, j.limit, unit, j.reason, j.resolution)
    return Judgement(j.verdict, f"{name}: {j.reason}", (check,))


def _events(m: Measurement) -> tuple[float, float]:
    """(events, total) of a ratio measurement: the value is events / total."""
    total = m.samples or 0.0
    value = m.value or 0.0
    return min(max(value * total, 0.0), total), total


def _judged_bounds(
    gate: spec.Gate,
    canary: Measurement,
    *,
    method: Method,
    min_samples: int,
    alpha_share: float,
    reference: Measurement = NO_DATA,
) -> list[Judgement]:
    """A gate's absolute bounds (max, min) on the canary; stable's `reference` blocks, when measured,
    tell the judge how bursty the events are."""
    levels = stats.levels(gate)
    alpha = levels.alpha * alpha_share
    out = []
    for name, limit, at_most in (("max", gate.max, True), ("min", gate.min, False)):
        if limit is None:
            continue
        if method.kind == "ratio":
            events, total = _events(canary)
            j = stats.judge_rate_bound(
                events=events,
                total=total,
                limit=limit,
                at_most=at_most,
                alpha=alpha,
                power=levels.power,
                min_samples=max(min_samples, stats.DEFAULT_MIN_SAMPLES),
                tolerance=levels.tolerance,
                blocks=canary.blocks,
                reference=reference.blocks,
            )
            out.append(_one(name, j, "rate"))
        elif not canary.buckets:
            out.append(Judgement(Verdict.INCONCLUSIVE, f"{name}: no histogram buckets for the canary"))
        else:
            j = stats.judge_quantile_bound(
                buckets=canary.buckets,
                q=method.quantile,
                limit=limit,
                at_most=at_most,
                alpha=alpha,
                power=levels.power,
                min_samples=max(min_samples, stats.DEFAULT_QUANTILE_MIN_SAMPLES),
            )
            out.append(_one(name, j, "s"))
    return out


def bad_floor(gate: spec.Gate, method: Method) -> float | None:
    """The absolute bound on the *bad* rate that a ratio gate's maxIncrease is paired with: `max` when
    the template counts bad events (error_rate), `1 - min` when it counts good ones; else None."""
    if method.kind != "ratio":
        return None
    if method.counts_good:
        return None if gate.min is None else 1 - gate.min
    return gate.max


def _judged_comparisons(
    gate: spec.Gate,
    *,
    stable: Measurement,
    canary: Measurement,
    method: Method,
    min_samples: int,
    alpha_share: float,
) -> list[Judgement]:
    levels = stats.levels(gate)
    alpha = levels.alpha * alpha_share
    if method.kind == "quantile":
        if gate.max_increase is None:
            return [Judgement(Verdict.ERROR, "maxDrop does not apply to a quantile gate; use maxIncrease")]
        if not (stable.buckets and canary.buckets):
            return [Judgement(Verdict.INCONCLUSIVE, "maxIncrease: no histogram buckets to compare")]
        j = stats.judge_quantile(
            stable_buckets=stable.buckets,
            canary_buckets=canary.buckets,
            q=method.quantile,
            max_increase=gate.max_increase,
            alpha=alpha,
            power=levels.power,
            min_samples=max(min_samples, stats.DEFAULT_QUANTILE_MIN_SAMPLES),
        )
        return [_one("maxIncrease", j, "rel")]
    counts = (*_events(stable), *_events(canary))
    good = method.counts_good
    common = _Levels(
        alpha=alpha,
        power=levels.power,
        min_samples=max(min_samples, stats.DEFAULT_MIN_SAMPLES),
        blocks=(stable.blocks, canary.blocks),
    )
    out = []
    if gate.max_drop is not None:
        j = _ratio(counts, good, max_drop=gate.max_drop, tolerance=levels.tolerance, **common)
        out.append(_one("maxDrop", j, "pts"))
    if gate.max_increase is not None:
        floor = bad_floor(gate, method)
        if floor is None:
            j = _ratio(counts, good, max_increase=gate.max_increase, tolerance=levels.tolerance, **common)
            out.append(_one("maxIncrease", j, "rel"))
        else:
            out.append(_paired_increase(counts, good, gate.max_increase, floor, tolerance=levels.tolerance, **common))
    return out


Counts = tuple[float, float, float, float]  # stable events, stable total, canary events, canary total


class _Levels(TypedDict):
    alpha: float
    power: float
    min_samples: int
    blocks: tuple[stats.Blocks | None, stats.Blocks | None]  # stable's, canary's


def _ratio(
    counts: Counts,
    counts_good: bool,
    *,
    alpha: float,
    power: float,
    min_samples: int,
    blocks: tuple[stats.Blocks | None, stats.Blocks | None] = (None, None),
    max_drop: float | None = None,
    max_increase: float | None = None,
    tolerance: float | None = None,
) -> stats.Comparison:
    stable_events, stable_total, canary_events, canary_total = counts
    return stats.judge_ratio(
        stable_good=stable_events,
        stable_total=stable_total,
        canary_good=canary_events,
        canary_total=canary_total,
        higher_is_better=counts_good,
        max_drop=max_drop,
        max_increase=max_increase,
        alpha=alpha,
        power=power,
        min_samples=min_samples,
        tolerance=tolerance,
        stable_blocks=blocks[0],
        canary_blocks=blocks[1],
    )


def _paired_increase(
    counts: Counts,
    counts_good: bool,
    max_increase: float,
    floor: float,
    *,
    alpha: float,
    power: float,
    min_samples: int,
    blocks: tuple[stats.Blocks | None, stats.Blocks | None] = (None, None),
    tolerance: float | None = None,
) -> Judgement:
    """maxIncrease paired with an absolute bound F on the bad rate (see `bad_floor`). FAIL stays what
    maxIncrease alone says: evidence that the canary's bad rate is more than `1 + maxIncrease` times
    stable's (at alpha). PASS comes from either route: evidence that it is within that ratio, or
    evidence that it is at most `maxIncrease x F / 2` rate points above stable's (an equivalence margin
    taken from the absolute bound: where stable's bad rate is half the bound, the usual place for it,
    the two margins are the same; below, the absolute one is looser, so that a clean canary beside a
    clean stable, no errors anywhere, passes, where the relative route stays INCONCLUSIVE). Each route
    runs at power `(1 + power) / 2`, so that a canary beyond both margins passes with chance at most
    `1 - power`."""
    half = (1 + power) / 2
    rel = _ratio(
        counts,
        counts_good,
        max_increase=max_increase,
        tolerance=tolerance,
        alpha=alpha,
        power=half,
        min_samples=min_samples,
        blocks=blocks,
    )
    slack = max_increase * floor / 2
    stable_events, stable_total, canary_events, canary_total = counts
    if counts_good:  # the judge compares bad rates
        stable_events, canary_events = stable_total - stable_events, canary_total - canary_events
    absolute = stats.judge_within(
        stable_bad=stable_events,
        stable_total=stable_total,
        canary_bad=canary_events,
        canary_total=canary_total,
        margin=slack,
        power=half,
        min_samples=min_samples,
        factors=stats.inflation(*blocks),
    )
    pair = (rel.verdict, absolute.verdict)
    if rel.verdict is Verdict.FAIL:
        verdict = Verdict.FAIL
    elif Verdict.PASS in pair:
        verdict = Verdict.PASS
    elif Verdict.ERROR in pair:
        verdict = Verdict.ERROR
    else:
        verdict = Verdict.INCONCLUSIVE
    reason = f"maxIncrease: {rel.reason}; absolute slack {slack * 100:.3g} pts: {absolute.reason}"
    rel_check = Check("maxIncrease", verdict, rel.estimate, rel.lower, rel.upper, rel.limit, "rel", reason)
    abs_check = Check(
        "maxIncrease (absolute)", verdict, absolute.estimate, absolute.lower, absolute.upper, slack, "pts", reason
    )
    return Judgement(verdict, reason, (rel_check, abs_check))


# -- what histogram buckets can resolve ---------------------------------------------------------------


def passable(bounds: Sequence[float], max_increase: float) -> list[tuple[float, float]]:
    """Where a quantile gate with this `maxIncrease` can pass on these histogram bounds: the latency
    ranges `(a, b]` whose buckets are at most `maxIncrease` wide (b / a - 1), merged. The judge reads
    its bounds at bucket edges, so with stable and canary at the same quantile inside a wider bucket
    even endless traffic cannot show the canary within the limit. Empty: the gate can never pass."""
    out: list[tuple[float, float]] = []
    edges = sorted(b for b in bounds if b > 0 and math.isfinite(b))
    for a, b in itertools.pairwise(edges):
        if b / a - 1 <= max_increase + 1e-9:
            if out and out[-1][1] == a:
                out[-1] = (out[-1][0], b)
            else:
                out.append((a, b))
    return out


# -- evidence ----------------------------------------------------------------------------------------


Segment = tuple[tuple[str, str], ...]  # (label, value) pairs; () is the whole route


def segment_text(segment: Segment) -> str:
    return ", ".join(f"{k}={v}" for k, v in segment) or "all"


def where(row: SegmentEvidence) -> str:
    """Where a row of evidence was measured, as people read it: `cohort beta, tenant_tier=trial`,
    `everyone else`, `tenant_tier=gold`, or `all`."""
    if not row.cohort:
        return segment_text(row.segment)
    cohort = "everyone else" if row.cohort == EVERYONE else f"cohort {row.cohort}"
    return cohort + (f", {segment_text(row.segment)}" if row.segment else "")


EVERYONE = "*"  # the cohort name of the requests in no cohort, where cohorts are judged one by one


@dataclass(frozen=True)
class SegmentEvidence:
    segment: Segment
    stable: Measurement
    canary: Measurement
    verdict: Verdict
    reason: str
    counted: bool  # enough canary samples: this segment's verdict takes part in the gate's
    checks: tuple[Check, ...] = ()  # each threshold with the judge's estimate and bounds
    cohort: str = ""  # the cohort judged ('' when the rollout's cohorts are not judged apart; EVERYONE)


TRAFFIC_SPLIT = "traffic_split"  # the built-in check's name where a gate's would be (`controller.split`)


@dataclass(frozen=True)
class GateEvidence:
    """Everything a reviewer needs to check one gate: the query, values, counts, thresholds, verdicts.

    `gate` is None for the built-in traffic-split check (`controller.split`), whose threshold is
    `expected_share` and whose failure holds promotion (`on_fail` "hold")."""

    rollout: str
    gate: spec.Gate | None
    kind: str
    source: str  # "app", "envoy", "litellm" or "vllm"
    query: str
    window: str
    min_samples: int
    segments: tuple[SegmentEvidence, ...]
    verdict: Verdict
    error: str | None = None
    expected_share: float | None = None  # the traffic-split check: the canary's configured share
    undecidable: bool = False  # INCONCLUSIVE because no traffic at this step can decide it (a cohort at 100%)

    @classmethod
    def unmeasured(
        cls,
        rollout: str,
        gate: spec.Gate,
        why: str,
        *,
        kind: str = "?",
        source: str = "?",
        query: str = "",
        window: str = "",
        min_samples: int = 0,
    ) -> GateEvidence:
        """The evidence of a gate that could not be measured (no Prometheus, a failed query, an
        unusable answer): ERROR, with `why`; the one way every pass builds it."""
        return cls(
            rollout=rollout,
            gate=gate,
            kind=kind,
            source=source,
            query=query,
            window=window,
            min_samples=min_samples,
            segments=(),
            verdict=Verdict.ERROR,
            error=why,
        )

    @property
    def name(self) -> str:
        return self.gate.use if self.gate is not None else TRAFFIC_SPLIT

    @property
    def on_fail(self) -> str:
        return str(self.gate.on_fail) if self.gate is not None else "hold"

    @property
    def thresholds(self) -> dict[str, float]:
        g = self.gate
        if g is None:
            return {} if self.expected_share is None else {"share": self.expected_share}
        pairs = (("max", g.max), ("min", g.min), ("maxDrop", g.max_drop), ("maxIncrease", g.max_increase))
        return {k: v for k, v in pairs if v is not None}


def deciding(rows: Sequence[GateEvidence]) -> list[Verdict]:
    """The verdicts that decide a promotion, as the controller decides: every gate's but one that no
    traffic at this step can decide (`undecidable`), and the traffic-split check's on FAIL or ERROR only
    (unjudged, it holds nothing: the gates' own samples do). None without a gate: the split check alone
    never backs a promotion."""
    if all(e.gate is None for e in rows):
        return []
    return [
        e.verdict for e in rows if (e.gate is not None and not e.undecidable) or e.verdict is not Verdict.INCONCLUSIVE
    ]


def judge_segments(
    gate: spec.Gate,
    measured: Mapping[Segment, Mapping[str, Measurement]],
    *,
    min_samples: int,
    method: Method = VALUE,
    cohort: str = "",
    alpha_share: float = 1.0,
) -> tuple[tuple[SegmentEvidence, ...], Verdict]:
    """Per-segment verdicts, and the gate's: the worst segment with enough canary samples.
    No segment with enough samples is INCONCLUSIVE. The gate's alpha is shared among its segments
    (Bonferroni), so one gate fails a canary within its limits with chance at most alpha however
    many segments it judges; `alpha_share` is this call's part of it, where a gate judges several
    cohorts (`cohort`) one call each."""
    rows = []
    segments = sorted(measured) or [()]
    for segment in segments:
        by_variant = measured.get(segment, {})
        stable, canary = by_variant.get("stable", NO_DATA), by_variant.get("canary", NO_DATA)
        share = alpha_share / len(segments)
        j = judge(gate, stable=stable, canary=canary, min_samples=min_samples, method=method, alpha_share=share)
        rows.append(
            SegmentEvidence(segment, stable, canary, j.verdict, j.reason, enough(canary, min_samples), j.checks, cohort)
        )
    counted = [r.verdict for r in rows if r.counted]
    return tuple(rows), worst(counted)
