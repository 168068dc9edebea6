"""Pure judging: canary against stable and against bounds, minSamples, no data, segments."""

from __future__ import annotations

import math

import pytest

from controller import gates, spec
from controller.gates import Measurement as M
from controller.gates import Verdict as V

NO = gates.NO_DATA


def gate(**kw: object) -> spec.Gate:
    return spec.Gate.model_validate({"use": "eval_pass_rate", **kw})


JUDGE_CASES = [
    # (gate, stable, canary, minSamples, verdict)
    ("drop-within", gate(maxDrop="3%"), M(0.90, 1000), M(0.88, 1000), 100, V.PASS),
    ("drop-exactly-at-limit", gate(maxDrop="3%"), M(0.90, 1000), M(0.87, 1000), 100, V.PASS),
    ("drop-5-points", gate(maxDrop="3%"), M(0.90, 1000), M(0.85, 1000), 100, V.FAIL),
    ("canary-better", gate(maxDrop="3%"), M(0.90, 1000), M(0.93, 1000), 100, V.PASS),
    ("increase-within", gate(maxIncrease="10%"), M(1.0, 500), M(1.09, 500), 100, V.PASS),
    ("increase-over", gate(maxIncrease="10%"), M(1.0, 500), M(1.2, 500), 100, V.FAIL),
    ("increase-from-zero", gate(maxIncrease="10%"), M(0.0, 500), M(0.01, 500), 100, V.FAIL),
    ("max-ok", gate(max="1%"), M(None, None), M(0.005, 500), 100, V.PASS),
    ("max-exceeded", gate(max="1%"), M(0.0, 500), M(0.02, 500), 100, V.FAIL),
    ("min-ok", gate(min="99%"), M(0.99, 500), M(0.995, 500), 100, V.PASS),
    ("min-missed", gate(min="99%"), M(0.99, 500), M(0.98, 500), 100, V.FAIL),
    ("measured-zero-is-data", gate(max="1%"), M(0.02, 500), M(0.0, 500), 100, V.PASS),
    ("no-canary-data", gate(max="1%"), M(0.0, 500), M(None, None), 100, V.INCONCLUSIVE),
    ("canary-zero-samples", gate(max="1%"), M(0.0, 500), M(None, 0), 100, V.INCONCLUSIVE),
    ("too-few-canary", gate(maxDrop="3%"), M(0.9, 1000), M(0.5, 18), 100, V.INCONCLUSIVE),
    ("too-few-stable", gate(maxDrop="3%"), M(0.9, 18), M(0.5, 1000), 100, V.INCONCLUSIVE),
    ("no-stable-data", gate(maxDrop="3%"), M(None, None), M(0.5, 1000), 100, V.INCONCLUSIVE),
    ("bound-fails-without-stable", gate(max="1%", maxIncrease="10%"), M(None, None), M(0.2, 1000), 100, V.FAIL),
    ("unknown-samples", gate(max="1%"), M(0.0, None), M(0.0, None), 0, V.INCONCLUSIVE),
    ("min-samples-zero-still-needs-one", gate(max="1%"), M(0.0, 0), M(0.0, 0), 0, V.INCONCLUSIVE),
    ("one-check-fails-other-passes", gate(max="50%", maxDrop="3%"), M(0.9, 500), M(0.4, 500), 100, V.FAIL),
]


@pytest.mark.parametrize(
    ("gate_", "stable", "canary", "min_samples", "want"), [c[1:] for c in JUDGE_CASES], ids=[c[0] for c in JUDGE_CASES]
)
def test_judge(gate_: spec.Gate, stable: M, canary: M, min_samples: int, want: V) -> None:
    got = gates.judge(gate_, stable=stable, canary=canary, min_samples=min_samples)
    assert got.verdict is want, got.reason
    assert got.reason


SEGMENT_CASES = [
    (
        "one-bad-segment-fails",
        {
            (("tier", "free"),): {"stable": M(0.9, 1000), "canary": M(0.91, 1000)},
            (("tier", "ent"),): {"stable": M(0.9, 1000), "canary": M(0.80, 1000)},
        },
        V.FAIL,
    ),
    (
        "tiny-bad-segment-not-counted",
        {
            (("tier", "free"),): {"stable": M(0.9, 1000), "canary": M(0.91, 1000)},
            (("tier", "trial"),): {"stable": M(0.9, 1000), "canary": M(0.1, 6)},
        },
        V.PASS,
    ),
    ("no-segments-at-all", {}, V.INCONCLUSIVE),
    ("only-stable", {(): {"stable": M(0.9, 1000)}}, V.INCONCLUSIVE),
    (
        "counted-but-stable-missing",
        {
            (("tier", "free"),): {"stable": M(0.9, 1000), "canary": M(0.91, 1000)},
            (("tier", "new"),): {"canary": M(0.91, 1000)},
        },
        V.INCONCLUSIVE,
    ),
]


@pytest.mark.parametrize(("measured", "want"), [c[1:] for c in SEGMENT_CASES], ids=[c[0] for c in SEGMENT_CASES])
def test_judge_segments(measured: dict[gates.Segment, dict[str, M]], want: V) -> None:
    rows, verdict = gates.judge_segments(gate(maxDrop="3%"), measured, min_samples=100)
    assert verdict is want
    assert len(rows) == max(len(measured), 1)


WORST_CASES = [
    ("empty-is-inconclusive", [], V.INCONCLUSIVE),
    ("pass", [V.PASS, V.PASS], V.PASS),
    ("error-over-inconclusive", [V.PASS, V.INCONCLUSIVE, V.ERROR], V.ERROR),
    ("fail-over-all", [V.ERROR, V.FAIL, V.PASS], V.FAIL),
]


@pytest.mark.parametrize(("verdicts", "want"), [c[1:] for c in WORST_CASES], ids=[c[0] for c in WORST_CASES])
def test_worst(verdicts: list[V], want: V) -> None:
    assert gates.worst(verdicts) is want


# -- the sequential judge, as the gates use it ---------------------------------------------------------

RATIO_GOOD = gates.Method("ratio", counts_good=True)  # eval_pass_rate: value = passes / evals
RATIO_BAD = gates.Method("ratio", counts_good=False)  # error_rate: value = errors / requests
P95 = gates.Method("quantile", quantile=0.95)


def err_gate(**kw: object) -> spec.Gate:
    return spec.Gate.model_validate({"use": "error_rate", **kw})


def hist(*pairs: tuple[float, float]) -> tuple[tuple[float, float], ...]:
    return tuple(pairs)


# cumulative buckets: 10k samples, p95 in (0.5, 1]; the slow one moves mass up a bucket
FAST = hist((0.25, 6000), (0.5, 9000), (1.0, 9900), (2.0, 10000), (math.inf, 10000))
SLOW = hist((0.25, 3000), (0.5, 6000), (1.0, 8000), (2.0, 9000), (math.inf, 10000))  # p95 above 2 s
OVERFLOW = hist((0.25, 0), (math.inf, 10000))

SEQUENTIAL_CASES = [
    # (gate, method, stable, canary, minSamples, verdict, a phrase of the reason)
    ("eval-equal-plenty-passes", gate(maxDrop="3%"), RATIO_GOOD, M(0.9, 20000), M(0.9, 5000), 100, V.PASS, "within"),
    (
        "eval-equal-1000-inconclusive",
        gate(maxDrop="3%"),
        RATIO_GOOD,
        M(0.9, 1000),
        M(0.9, 1000),
        100,
        V.INCONCLUSIVE,
        "not enough evidence",
    ),
    (
        "eval-2pt-drop-at-1000-inconclusive",
        gate(maxDrop="3%"),
        RATIO_GOOD,
        M(0.90, 1000),
        M(0.88, 1000),
        100,
        V.INCONCLUSIVE,
        "not enough evidence",
    ),
    (
        "eval-10pt-drop-fails",
        gate(maxDrop="3%"),
        RATIO_GOOD,
        M(0.90, 1200),
        M(0.80, 1200),
        100,
        V.FAIL,
        "beyond the limit",
    ),
    (
        "eval-5pt-drop-1200-not-yet",
        gate(maxDrop="3%"),
        RATIO_GOOD,
        M(0.90, 1200),
        M(0.85, 1200),
        100,
        V.INCONCLUSIVE,
        "not enough evidence",
    ),
    (
        "eval-below-judge-floor-never-passes",
        gate(maxDrop="50%"),
        RATIO_GOOD,
        M(0.9, 20000),
        M(0.9, 60),
        10,
        V.INCONCLUSIVE,
        "not enough canary samples",
    ),
    ("errors-max-clean-passes", err_gate(max="1%"), RATIO_BAD, NO, M(0.0, 1200), 100, V.PASS, "within the bound"),
    ("errors-max-3pct-fails", err_gate(max="1%"), RATIO_BAD, NO, M(0.03, 2000), 100, V.FAIL, "beyond the bound"),
    (
        "errors-max-1.2pct-holds",
        err_gate(max="1%"),
        RATIO_BAD,
        NO,
        M(0.012, 2000),
        100,
        V.INCONCLUSIVE,
        "not enough evidence",
    ),
    ("schema-min-fails", gate(min="99%"), RATIO_GOOD, NO, M(0.95, 2000), 100, V.FAIL, "beyond the bound"),
    ("schema-min-passes", gate(min="99%"), RATIO_GOOD, NO, M(0.999, 20000), 100, V.PASS, "within the bound"),
    (
        "errors-relative-alone-clean-holds-forever",
        err_gate(maxIncrease="50%"),
        RATIO_BAD,
        M(0.0, 10**6),
        M(0.0, 10**5),
        100,
        V.INCONCLUSIVE,
        "not enough evidence",
    ),
    (
        "errors-relative-paired-clean-passes",
        err_gate(maxIncrease="50%", max="1%"),
        RATIO_BAD,
        M(0.0, 20000),
        M(0.0, 2000),
        100,
        V.PASS,
        "absolute slack",
    ),
    (
        "errors-relative-paired-doubled-fails",
        err_gate(maxIncrease="50%", max="5%"),
        RATIO_BAD,
        M(0.01, 10**6),
        M(0.02, 10**5),
        100,
        V.FAIL,
        "maxIncrease",
    ),
    (
        "errors-relative-doubled-fails",
        err_gate(maxIncrease="50%"),
        RATIO_BAD,
        M(0.01, 10**6),
        M(0.02, 10**5),
        100,
        V.FAIL,
        "beyond the limit",
    ),
    # FAST's p95 lies in (0.5 s, 1 s]: the judge cannot tell apart latencies within 100% of each other there
    ("p95-same-passes", gate(maxIncrease="150%"), P95, M(0.7, 10000, FAST), M(0.7, 10000, FAST), 100, V.PASS, "within"),
    (
        "p95-same-on-coarse-buckets-holds",
        gate(maxIncrease="10%"),
        P95,
        M(0.7, 10000, FAST),
        M(0.7, 10000, FAST),
        100,
        V.INCONCLUSIVE,
        "cannot pass on these buckets",
    ),
    ("p95-slower-fails", gate(maxIncrease="10%"), P95, M(0.7, 10000, FAST), M(0.9, 10000, SLOW), 100, V.FAIL, "beyond"),
    (
        "p95-no-buckets-holds",
        gate(maxIncrease="10%"),
        P95,
        M(0.7, 10000),
        M(0.7, 10000),
        100,
        V.INCONCLUSIVE,
        "no histogram buckets",
    ),
    ("p95-max-fails", gate(max="500ms"), P95, NO, M(0.9, 10000, SLOW), 100, V.FAIL, "beyond the bound"),
    ("p95-max-passes", gate(max="2s"), P95, NO, M(0.7, 10000, FAST), 100, V.PASS, "within the bound"),
    (
        "p95-overflow-max-never-passes",
        gate(max="30s"),
        P95,
        NO,
        M(0.25, 10000, OVERFLOW),
        100,
        V.INCONCLUSIVE,
        "not enough evidence",
    ),
    ("p95-overflow-max-fails", gate(max="100ms"), P95, NO, M(0.25, 10000, OVERFLOW), 100, V.FAIL, "beyond the bound"),
    (
        "p95-maxdrop-is-an-error",
        gate(maxDrop="3%"),
        P95,
        M(0.7, 10000, FAST),
        M(0.7, 10000, FAST),
        100,
        V.ERROR,
        "maxIncrease",
    ),
]


@pytest.mark.parametrize(
    ("gate_", "method", "stable", "canary", "min_samples", "want", "phrase"),
    [c[1:] for c in SEQUENTIAL_CASES],
    ids=[c[0] for c in SEQUENTIAL_CASES],
)
def test_sequential_judge(
    gate_: spec.Gate, method: gates.Method, stable: M, canary: M, min_samples: int, want: V, phrase: str
) -> None:
    got = gates.judge(gate_, stable=stable, canary=canary, min_samples=min_samples, method=method)
    assert got.verdict is want, got.reason
    assert phrase in got.reason
    assert got.checks or want in (V.INCONCLUSIVE, V.ERROR)


def test_checks_carry_the_judges_estimate_and_bounds() -> None:
    got = gates.judge(
        gate(maxDrop="3%"), stable=M(0.90, 1200), canary=M(0.80, 1200), min_samples=100, method=RATIO_GOOD
    )
    [check] = got.checks
    assert check.name == "maxDrop" and check.unit == "pts" and check.limit == pytest.approx(0.03)
    assert check.estimate == pytest.approx(0.10)
    assert check.lower is not None and check.upper is not None
    assert 0.03 < check.lower < 0.10 < check.upper


def test_paired_increase_shows_both_routes() -> None:
    got = gates.judge(
        err_gate(maxIncrease="50%", max="1%"),
        stable=M(0.0, 20000),
        canary=M(0.0, 2000),
        min_samples=100,
        method=RATIO_BAD,
    )
    names = [c.name for c in got.checks]
    assert names == ["max", "maxIncrease", "maxIncrease (absolute)"]
    absolute = got.checks[-1]
    assert absolute.limit == pytest.approx(0.0025) and absolute.verdict is V.PASS  # maxIncrease x max / 2


def test_alpha_is_shared_among_segments() -> None:
    """A drop that one segment alone would fail on holds when the gate judges 20 segments (Bonferroni)."""
    stable, canary = M(0.90, 3000), M(0.855, 3000)
    alone = gates.judge(gate(maxDrop="1%"), stable=stable, canary=canary, min_samples=100, method=RATIO_GOOD)
    assert alone.verdict is V.FAIL, alone.reason
    shared = gates.judge(
        gate(maxDrop="1%"), stable=stable, canary=canary, min_samples=100, method=RATIO_GOOD, alpha_share=1 / 20
    )
    assert shared.verdict is V.INCONCLUSIVE, shared.reason
    many = {(("tier", str(i)),): {"stable": stable, "canary": canary} for i in range(20)}
    rows, verdict = gates.judge_segments(gate(maxDrop="1%"), many, min_samples=100, method=RATIO_GOOD)
    assert verdict is V.INCONCLUSIVE and all(r.checks for r in rows)


def test_gate_alpha_and_power_reach_the_judge() -> None:
    stable, canary = M(0.90, 3000), M(0.855, 3000)
    default = gates.judge(gate(maxDrop="1%"), stable=stable, canary=canary, min_samples=100, method=RATIO_GOOD)
    strict = gates.judge(
        gate(maxDrop="1%", alpha=1e-6), stable=stable, canary=canary, min_samples=100, method=RATIO_GOOD
    )
    assert default.verdict is V.FAIL and strict.verdict is V.INCONCLUSIVE


MEAN_CASES = [
    # (name, stable, canary, want, phrase): cost per answered request, maxIncrease 20%, from 2,000 requests a side
    ("answers-alike-passes", M(0.02, 19900, requests=20000), M(0.02, 19900, requests=20000), V.PASS, "within"),
    (
        "answers-30pct-fewer-holds",
        M(0.02, 1990, requests=2000),
        M(0.02, 1400, requests=2000),
        V.INCONCLUSIVE,
        "cannot pass until",
    ),
    (
        "few-requests-holds",
        M(0.02, 1990, requests=2000),
        M(0.02, 110, requests=111),
        V.INCONCLUSIVE,
        "cannot pass until",
    ),
    ("dearer-still-fails", M(0.02, 1990, requests=2000), M(0.04, 1400, requests=2000), V.FAIL, "increase"),
    ("no-requests-counter-is-as-before", M(0.02, 1990), M(0.02, 1400), V.PASS, "increase"),
    ("no-stable-requests-holds", M(0.02, 1990), M(0.02, 1990, requests=2000), V.INCONCLUSIVE, "no stable requests"),
]


@pytest.mark.parametrize(
    ("stable", "canary", "want", "phrase"), [c[1:] for c in MEAN_CASES], ids=[c[0] for c in MEAN_CASES]
)
def test_a_per_answer_gate_never_passes_a_canary_answering_less(stable: M, canary: M, want: V, phrase: str) -> None:
    got = gates.judge(gate(maxIncrease="20%"), stable=stable, canary=canary, min_samples=100, method=gates.MEAN)
    assert got.verdict is want, got.reason
    assert phrase in got.reason


def test_a_sample_count_short_of_min_samples_reads_whole() -> None:
    """Prometheus's increase() extrapolates counts to fractions; a person reads `190 < 200`."""
    judged = gates.judge(gate(max="1%"), stable=M(0.001, 5000), canary=M(0.001, 190.578), min_samples=200)
    assert judged.verdict is V.INCONCLUSIVE and judged.reason == "canary samples 190 < minSamples 200"
