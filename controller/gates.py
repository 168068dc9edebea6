"""Gate verdicts and pure judging of measurements, canary against stable.

No I/O: `controller.prometheus` measures, this module judges. Verdicts combine by `worst()`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from controller import spec


class Verdict(StrEnum):
    PASS = "PASS"
    INCONCLUSIVE = "INCONCLUSIVE"  # not enough data yet: hold, never promote
    ERROR = "ERROR"  # could not measure: hold, never promote, never roll back on it alone
    FAIL = "FAIL"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Verdict.PASS: 0, Verdict.INCONCLUSIVE: 1, Verdict.ERROR: 2, Verdict.FAIL: 3}


def worst(verdicts: Iterable[Verdict]) -> Verdict:
    """The worst of several verdicts; no verdict at all is INCONCLUSIVE, never PASS."""
    return max(verdicts, key=lambda v: v.rank, default=Verdict.INCONCLUSIVE)


# -- measurements and judging --------------------------------------------------------------------


@dataclass(frozen=True)
class Measurement:
    """One variant's value in one segment. `value is None` is "no data", which is not zero;
    `samples is None` means the template cannot count samples."""

    value: float | None
    samples: float | None

    @property
    def has_data(self) -> bool:
        return self.value is not None


NO_DATA = Measurement(None, None)


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    reason: str


def enough(m: Measurement, min_samples: int) -> bool:
    """At least `min_samples` samples (and at least one): the only way a measurement counts."""
    return m.samples is not None and m.samples >= max(min_samples, 1)


def _fmt(v: float) -> str:
    return f"{v:.6g}"


def judge_bounds(gate: spec.Gate, canary: float) -> list[Judgement]:
    """Absolute bounds on the canary's value (max, min)."""
    out = []
    if gate.max is not None:
        ok = canary <= gate.max
        out.append(
            Judgement(
                Verdict.PASS if ok else Verdict.FAIL,
                f"canary {_fmt(canary)} {'<=' if ok else '>'} max {_fmt(gate.max)}",
            )
        )
    if gate.min is not None:
        ok = canary >= gate.min
        out.append(
            Judgement(
                Verdict.PASS if ok else Verdict.FAIL,
                f"canary {_fmt(canary)} {'>=' if ok else '<'} min {_fmt(gate.min)}",
            )
        )
    return out


def judge_against_stable(gate: spec.Gate, *, stable: float, canary: float) -> list[Judgement]:
    """Canary against stable: maxDrop in points (0.03 = 3 points), maxIncrease relative (0.1 = +10%)."""
    out = []
    if gate.max_drop is not None:
        drop = stable - canary
        ok = drop <= gate.max_drop + 1e-12
        out.append(
            Judgement(
                Verdict.PASS if ok else Verdict.FAIL,
                f"drop {_fmt(drop * 100)} points {'<=' if ok else '>'} maxDrop {_fmt(gate.max_drop * 100)}",
            )
        )
    if gate.max_increase is not None:
        limit = stable * (1 + gate.max_increase)
        ok = canary <= limit + 1e-12
        rel = "n/a" if stable == 0 else f"{_fmt((canary / stable - 1) * 100)}%"
        out.append(
            Judgement(
                Verdict.PASS if ok else Verdict.FAIL,
                f"increase {rel} ({'<=' if ok else '>'} limit {_fmt(limit)} at maxIncrease {_fmt(gate.max_increase * 100)}%)",
            )
        )
    return out


def compares(gate: spec.Gate) -> bool:
    return gate.max_drop is not None or gate.max_increase is not None


def judge(gate: spec.Gate, *, stable: Measurement, canary: Measurement, min_samples: int) -> Judgement:
    """One segment's verdict. FAIL and PASS only on evidence: no data or too few samples on a side
    that a threshold needs is INCONCLUSIVE. A failed bound is a FAIL even while stable lacks data."""
    if not canary.has_data:
        return Judgement(Verdict.INCONCLUSIVE, "no canary data")
    if not enough(canary, min_samples):
        count = "unknown" if canary.samples is None else _fmt(canary.samples)
        return Judgement(Verdict.INCONCLUSIVE, f"canary samples {count} < minSamples {max(min_samples, 1)}")
    assert canary.value is not None
    parts = judge_bounds(gate, canary.value)
    if compares(gate):
        if not stable.has_data:
            parts.append(Judgement(Verdict.INCONCLUSIVE, "no stable data to compare with"))
        elif not enough(stable, min_samples):
            count = "unknown" if stable.samples is None else _fmt(stable.samples)
            parts.append(Judgement(Verdict.INCONCLUSIVE, f"stable samples {count} < minSamples {max(min_samples, 1)}"))
        else:
            assert stable.value is not None
            parts += judge_against_stable(gate, stable=stable.value, canary=canary.value)
    verdict = worst(p.verdict for p in parts) if parts else Verdict.INCONCLUSIVE
    return Judgement(verdict, "; ".join(p.reason for p in parts if p.verdict is verdict))


# -- evidence ----------------------------------------------------------------------------------------


Segment = tuple[tuple[str, str], ...]  # (label, value) pairs; () is the whole route


def segment_text(segment: Segment) -> str:
    return ", ".join(f"{k}={v}" for k, v in segment) or "all"


@dataclass(frozen=True)
class SegmentEvidence:
    segment: Segment
    stable: Measurement
    canary: Measurement
    verdict: Verdict
    reason: str
    counted: bool  # enough canary samples: this segment's verdict takes part in the gate's


@dataclass(frozen=True)
class GateEvidence:
    """Everything a reviewer needs to check one gate: the query, values, counts, thresholds, verdicts."""

    rollout: str
    gate: spec.Gate
    kind: str
    source: str  # "app" or "envoy"
    query: str
    window: str
    min_samples: int
    segments: tuple[SegmentEvidence, ...]
    verdict: Verdict
    error: str | None = None

    @property
    def thresholds(self) -> dict[str, float]:
        g = self.gate
        pairs = (("max", g.max), ("min", g.min), ("maxDrop", g.max_drop), ("maxIncrease", g.max_increase))
        return {k: v for k, v in pairs if v is not None}


def judge_segments(
    gate: spec.Gate,
    measured: Mapping[Segment, Mapping[str, Measurement]],
    *,
    min_samples: int,
) -> tuple[tuple[SegmentEvidence, ...], Verdict]:
    """Per-segment verdicts, and the gate's: the worst segment with enough canary samples.
    No segment with enough samples is INCONCLUSIVE."""
    rows = []
    for segment in sorted(measured) or [()]:
        by_variant = measured.get(segment, {})
        stable, canary = by_variant.get("stable", NO_DATA), by_variant.get("canary", NO_DATA)
        j = judge(gate, stable=stable, canary=canary, min_samples=min_samples)
        rows.append(SegmentEvidence(segment, stable, canary, j.verdict, j.reason, enough(canary, min_samples)))
    counted = [r.verdict for r in rows if r.counted]
    return tuple(rows), worst(counted)
