"""Table-driven verdicts of `controller.judge`, and properties that must hold for any counts."""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller import judge, spec
from controller.gates import Verdict

INF = math.inf

RATIO_CASES: list[tuple[str, dict[str, Any], Verdict]] = [
    (
        "eval-equal-lots-of-data-passes",
        dict(
            stable_good=400_000,
            stable_total=500_000,
            canary_good=40_000,
            canary_total=50_000,
            higher_is_better=True,
            max_drop=0.01,
        ),
        Verdict.PASS,
    ),
    (
        "eval-3pts-down-fails",
        dict(
            stable_good=400_000,
            stable_total=500_000,
            canary_good=38_500,
            canary_total=50_000,
            higher_is_better=True,
            max_drop=0.01,
        ),
        Verdict.FAIL,
    ),
    (
        "eval-3pts-down-few-samples-inconclusive",
        dict(
            stable_good=8_000,
            stable_total=10_000,
            canary_good=77,
            canary_total=100,
            higher_is_better=True,
            max_drop=0.01,
        ),
        Verdict.INCONCLUSIVE,
    ),
    (
        "eval-drop-inside-limit-passes-on-enough-data",
        dict(
            stable_good=4_000_000,
            stable_total=5_000_000,
            canary_good=396_000,
            canary_total=500_000,
            higher_is_better=True,
            max_drop=0.01,
        ),
        Verdict.PASS,
    ),
    (
        "eval-drop-near-limit-holds",
        dict(
            stable_good=400_000,
            stable_total=500_000,
            canary_good=39_600,
            canary_total=50_000,
            higher_is_better=True,
            max_drop=0.01,
        ),
        Verdict.INCONCLUSIVE,
    ),
    (
        "eval-better-canary-passes",
        dict(
            stable_good=400_000,
            stable_total=500_000,
            canary_good=42_000,
            canary_total=50_000,
            higher_is_better=True,
            max_drop=0.01,
        ),
        Verdict.PASS,
    ),
    (
        "errors-doubled-fails",
        dict(
            stable_good=1_000,
            stable_total=100_000,
            canary_good=400,
            canary_total=20_000,
            higher_is_better=False,
            max_increase=0.5,
        ),
        Verdict.FAIL,
    ),
    (
        "errors-equal-passes",
        dict(
            stable_good=10_000,
            stable_total=1_000_000,
            canary_good=1_000,
            canary_total=100_000,
            higher_is_better=False,
            max_increase=0.5,
        ),
        Verdict.PASS,
    ),
    (
        "errors-none-anywhere-inconclusive",
        dict(
            stable_good=0,
            stable_total=100_000,
            canary_good=0,
            canary_total=10_000,
            higher_is_better=False,
            max_increase=0.5,
        ),
        Verdict.INCONCLUSIVE,
    ),
    (
        "sparse-errors-not-a-rollback",
        dict(
            stable_good=0, stable_total=5_000, canary_good=2, canary_total=50, higher_is_better=False, max_increase=0.5
        ),
        Verdict.INCONCLUSIVE,
    ),
    (
        "errors-absolute-limit-fails",
        dict(
            stable_good=1_000,
            stable_total=100_000,
            canary_good=1_000,
            canary_total=20_000,
            higher_is_better=False,
            max_drop=0.02,
        ),
        Verdict.FAIL,
    ),
    (
        "both-limits-the-worse-wins",
        dict(
            stable_good=1_000,
            stable_total=100_000,
            canary_good=400,
            canary_total=20_000,
            higher_is_better=False,
            max_drop=0.05,
            max_increase=0.5,
        ),
        Verdict.FAIL,
    ),
    (
        "json-validity-relative-on-failures",
        dict(
            stable_good=990_000,
            stable_total=1_000_000,
            canary_good=97_000,
            canary_total=100_000,
            higher_is_better=True,
            max_increase=0.5,
        ),
        Verdict.FAIL,
    ),
    (
        "no-canary-traffic-inconclusive",
        dict(
            stable_good=8_000, stable_total=10_000, canary_good=0, canary_total=0, higher_is_better=True, max_drop=0.01
        ),
        Verdict.INCONCLUSIVE,
    ),
    (
        "below-min-samples-never-passes",
        dict(
            stable_good=80_000,
            stable_total=100_000,
            canary_good=99,
            canary_total=99,
            higher_is_better=True,
            max_drop=0.5,
        ),
        Verdict.INCONCLUSIVE,
    ),
    (
        "more-good-than-total-is-an-error",
        dict(stable_good=11, stable_total=10, canary_good=1, canary_total=1, higher_is_better=True, max_drop=0.01),
        Verdict.ERROR,
    ),
    (
        "nan-is-an-error",
        dict(
            stable_good=math.nan, stable_total=10, canary_good=1, canary_total=1, higher_is_better=True, max_drop=0.01
        ),
        Verdict.ERROR,
    ),
]


@pytest.mark.parametrize(("kwargs", "expected"), [c[1:] for c in RATIO_CASES], ids=[c[0] for c in RATIO_CASES])
def test_judge_ratio(kwargs: dict[str, Any], expected: Verdict) -> None:
    result = judge.judge_ratio(**kwargs)
    assert result.verdict is expected, result.reason
    assert result.reason


def _hist(samples: np.ndarray, edges: np.ndarray) -> list[tuple[float, float]]:
    counts = np.searchsorted(np.sort(samples), edges, side="right")
    return [*zip(edges.tolist(), counts.astype(float).tolist(), strict=True), (INF, float(len(samples)))]


EDGES = 0.05 * 1.02 ** np.arange(300)  # 2% apart: fine enough to resolve a 10% limit
LITELLM_EDGES = np.array([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0])  # 1.106.2


def _latencies(seed: int, n: int, scale: float = 1.0) -> np.ndarray:
    return np.random.default_rng(seed).lognormal(mean=math.log(0.8 * scale), sigma=0.6, size=n)


QUANTILE_CASES: list[tuple[str, Any, Any, Verdict]] = [
    ("same-latency-passes", _hist(_latencies(1, 200_000), EDGES), _hist(_latencies(2, 20_000), EDGES), Verdict.PASS),
    (
        "p95-up-30pct-fails",
        _hist(_latencies(3, 200_000), EDGES),
        _hist(_latencies(4, 20_000, 1.3), EDGES),
        Verdict.FAIL,
    ),
    (
        "few-samples-inconclusive",
        _hist(_latencies(5, 200_000), EDGES),
        _hist(_latencies(6, 150, 1.3), EDGES),
        Verdict.INCONCLUSIVE,
    ),
    (
        "overflow-into-inf-never-passes",
        [(0.1, 0.0), (INF, 100_000.0)],
        [(0.1, 0.0), (INF, 10_000.0)],
        Verdict.INCONCLUSIVE,
    ),
    (
        "coarse-buckets-never-pass",  # p95 ~2.1 s sits in LiteLLM's (2, 5] bucket: +150% wide
        _hist(_latencies(1, 200_000), LITELLM_EDGES),
        _hist(_latencies(2, 20_000), LITELLM_EDGES),
        Verdict.INCONCLUSIVE,
    ),
    (
        "coarse-buckets-fail-a-canary-two-buckets-up",
        _hist(_latencies(3, 200_000), LITELLM_EDGES),
        _hist(_latencies(4, 20_000, 8.0), LITELLM_EDGES),  # p95 ~17 s: (10, 30]
        Verdict.FAIL,
    ),
    (
        "coarse-buckets-hold-a-canary-within-one-bucket",  # +40%, four times the limit, but in the same bucket
        _hist(_latencies(3, 200_000), LITELLM_EDGES),
        _hist(_latencies(4, 20_000, 1.4), LITELLM_EDGES),
        Verdict.INCONCLUSIVE,
    ),
    ("missing-inf-is-an-error", [(1.0, 5.0)], [(1.0, 5.0)], Verdict.ERROR),
    ("negative-count-is-an-error", [(1.0, -1.0), (INF, 5.0)], [(1.0, 5.0), (INF, 5.0)], Verdict.ERROR),
    ("empty-canary-inconclusive", [(1.0, 5.0), (INF, 5.0)], [(1.0, 0.0), (INF, 0.0)], Verdict.INCONCLUSIVE),
]


@pytest.mark.parametrize(
    ("stable", "canary", "expected"), [c[1:] for c in QUANTILE_CASES], ids=[c[0] for c in QUANTILE_CASES]
)
def test_judge_quantile(stable: Any, canary: Any, expected: Verdict) -> None:
    result = judge.judge_quantile(stable_buckets=stable, canary_buckets=canary, q=0.95, max_increase=0.1)
    assert result.verdict is expected, result.reason


def test_a_quantile_gate_says_when_its_buckets_are_wider_than_its_limit() -> None:
    stable, canary = _hist(_latencies(1, 200_000), LITELLM_EDGES), _hist(_latencies(2, 20_000), LITELLM_EDGES)
    result = judge.judge_quantile(stable_buckets=stable, canary_buckets=canary, q=0.95, max_increase=0.1)
    assert result.resolution == pytest.approx(1.5)  # (2 s, 5 s]
    assert re.search(
        r"at [\d.]+s the buckets are 3s apart \(2s \.\. 5s, \+150\.0%\), wider than the limit \+10\.0%", result.reason
    )
    assert "cannot pass on these buckets" in result.reason
    fine = judge.judge_quantile(
        stable_buckets=_hist(_latencies(1, 200_000), EDGES),
        canary_buckets=_hist(_latencies(2, 20_000), EDGES),
        q=0.95,
        max_increase=0.1,
    )
    assert fine.resolution == pytest.approx(0.02) and "cannot pass" not in fine.reason


@pytest.mark.parametrize("spot", [0.0, 0.5, 1.0])
def test_quantile_bounds_hold_wherever_the_quantile_sits_in_its_bucket(spot: float) -> None:
    """The same bucket counts from latencies at the bottom, the middle or the top of their buckets: the
    bounds (read at edges) contain each arm's true quantile in every case; interpolation would not."""
    rng = np.random.default_rng(11)
    edges = LITELLM_EDGES
    idx = rng.integers(6, 10, size=50_000)  # buckets (0.25, 0.5] .. (2, 5]
    lo, hi = edges[idx - 1], edges[idx]
    samples = lo + (hi - lo) * np.clip(spot + rng.normal(0, 1e-6, size=idx.size), 1e-9, 1)
    truth = float(np.quantile(samples, 0.95))
    low, high = judge._quantile_bounds(judge._cumulative(_hist(samples, edges)), q=0.95, alpha=0.01)
    assert low < truth <= high


def test_quantile_accepts_unsorted_and_non_monotone_buckets() -> None:
    """Prometheus' rate() can make a higher bucket a hair smaller; histogram_quantile makes it monotone."""
    buckets = [(INF, 100.0), (2.0, 90.0), (1.0, 50.0), (4.0, 98.9), (3.0, 99.0)]
    assert judge.histogram_quantile(0.95, buckets) == pytest.approx(2 + (95 - 90) / (99 - 90))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(alpha=0.0), "alpha"),
        (dict(alpha=0.6), "alpha"),
        (dict(power=0.3), "power"),
        (dict(power=1.0), "power"),
        (dict(max_drop=None), "max_drop or max_increase"),
    ],
    ids=["alpha-zero", "alpha-large", "power-low", "power-one", "no-limit"],
)
def test_judge_ratio_refuses_bad_settings(kwargs: dict[str, Any], message: str) -> None:
    base: dict[str, Any] = dict(
        stable_good=1, stable_total=2, canary_good=1, canary_total=2, higher_is_better=True, max_drop=0.01
    )
    with pytest.raises(ValueError, match=message):
        judge.judge_ratio(**(base | kwargs))


# -- properties ---------------------------------------------------------------------------------

counts = st.integers(min_value=0, max_value=2_000_000)
rates = st.floats(min_value=0.0, max_value=1.0)


@st.composite
def ratio_inputs(draw: st.DrawFn) -> dict[str, Any]:
    stable_total, canary_total = draw(counts), draw(counts)
    return dict(
        stable_good=round(stable_total * draw(rates)),
        stable_total=stable_total,
        canary_good=round(canary_total * draw(rates)),
        canary_total=canary_total,
        higher_is_better=draw(st.booleans()),
        max_drop=draw(st.one_of(st.none(), st.floats(min_value=0.0, max_value=0.2))),
        max_increase=draw(st.floats(min_value=0.0, max_value=2.0)),
        min_samples=draw(st.integers(min_value=1, max_value=10_000)),
    )


@given(ratio_inputs())
@settings(max_examples=300, deadline=None)
def test_never_passes_below_min_samples(kwargs: dict[str, Any]) -> None:
    result = judge.judge_ratio(**kwargs)
    if kwargs["canary_total"] < kwargs["min_samples"]:
        assert result.verdict is not Verdict.PASS
    assert result.verdict in set(Verdict)


@given(ratio_inputs())
@settings(max_examples=300, deadline=None)
def test_a_canary_no_worse_than_stable_never_fails(kwargs: dict[str, Any]) -> None:
    kwargs = kwargs | dict(canary_total=kwargs["stable_total"], canary_good=kwargs["stable_good"])
    assert judge.judge_ratio(**kwargs).verdict is not Verdict.FAIL


@given(ratio_inputs(), st.integers(min_value=2, max_value=50), st.floats(min_value=0.0, max_value=1.0))
@settings(max_examples=300, deadline=None)
def test_more_evidence_of_a_bigger_regression_never_turns_fail_into_pass(
    kwargs: dict[str, Any], scale: int, worse: float
) -> None:
    before = judge.judge_ratio(**kwargs)
    if before.verdict is not Verdict.FAIL:
        return
    # make the canary worse: move a share of its good events to bad (or add bad events when lower is better)
    canary_total, canary_good = kwargs["canary_total"], kwargs["canary_good"]
    if kwargs["higher_is_better"]:
        canary_good -= round(canary_good * worse)
    else:
        canary_good += round((canary_total - canary_good) * worse)
    bigger = kwargs | dict(canary_good=canary_good)
    assert judge.judge_ratio(**bigger).verdict is not Verdict.PASS
    more = bigger | {k: bigger[k] * scale for k in ("stable_good", "stable_total", "canary_good", "canary_total")}
    assert judge.judge_ratio(**more).verdict is not Verdict.PASS
    same_more = kwargs | {k: kwargs[k] * scale for k in ("stable_good", "stable_total", "canary_good", "canary_total")}
    assert judge.judge_ratio(**same_more).verdict is Verdict.FAIL


@given(st.lists(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=30), st.floats(0.5, 0.99))
@settings(max_examples=200, deadline=None)
def test_identical_histograms_never_fail(per_bucket: list[int], q: float) -> None:
    cumulative = np.cumsum(per_bucket).astype(float).tolist()
    buckets = [*zip((0.01 * 1.2**i for i in range(len(per_bucket))), cumulative, strict=True)]
    buckets = [*buckets[:-1], (INF, cumulative[-1])]
    result = judge.judge_quantile(stable_buckets=buckets, canary_buckets=buckets, q=q, max_increase=0.0)
    assert result.verdict is not Verdict.FAIL


# -- advice ----------------------------------------------------------------------------------------


ADVICE_BASE: dict[str, Any] = dict(
    requests_per_second=10, weight=0.05, base_rate=0.8, higher_is_better=True, max_drop=0.01
)


@pytest.mark.parametrize(
    ("change", "faster"),
    [
        (dict(requests_per_second=100), True),
        (dict(weight=0.25), True),
        (dict(weight=0.01), False),
        (dict(max_drop=0.02), True),
        (dict(alpha=0.001), False),
        (dict(power=0.99), False),
    ],
    ids=["more-traffic", "bigger-weight", "smaller-weight", "looser-limit", "stricter-alpha", "more-power"],
)
def test_advice_moves_the_right_way(change: dict[str, Any], faster: bool) -> None:
    base, changed = judge.advise_ratio(**ADVICE_BASE), judge.advise_ratio(**(ADVICE_BASE | change))
    assert base.pass_after is not None and changed.pass_after is not None
    assert (changed.pass_after < base.pass_after) is faster


def test_advice_is_none_beyond_the_horizon() -> None:
    advice = judge.advise_ratio(**(ADVICE_BASE | dict(requests_per_second=0.001)), horizon=timedelta(days=1))
    assert advice.pass_after is None and advice.pass_samples is None
    assert not advice.decides_within(timedelta(hours=24))


@pytest.mark.parametrize(
    "kwargs",
    [
        ADVICE_BASE,
        dict(requests_per_second=10, weight=0.05, base_rate=0.01, higher_is_better=False, max_increase=0.5),
    ],
    ids=["eval-max-drop", "errors-max-increase"],
)
def test_advice_is_what_the_judge_does(kwargs: dict[str, Any]) -> None:
    """At the advised time a canary equal to stable passes, and one regressing by limit + tolerance
    fails, in at least `power` of seeded binomial draws (minus simulation slack)."""
    advice = judge.advise_ratio(**kwargs)
    assert advice.pass_after is not None and advice.fail_after is not None
    assert advice.decides_within(advice.pass_after)
    rng = np.random.default_rng(3)
    rps, weight = kwargs["requests_per_second"], kwargs["weight"]
    good_is_bad = not kwargs["higher_is_better"]
    limit_key = "max_drop" if "max_drop" in kwargs else "max_increase"
    limit = kwargs[limit_key]
    for after, canary_rate, expected in (
        (advice.pass_after, kwargs["base_rate"], Verdict.PASS),
        (
            advice.fail_after,
            (kwargs["base_rate"] * (1 + 2 * limit) if good_is_bad else kwargs["base_rate"] - 2 * limit),
            Verdict.FAIL,
        ),
    ):
        seconds = after.total_seconds()
        ns, nc = round(rps * (1 - weight) * seconds), round(rps * weight * seconds)
        hits = 0
        for _ in range(300):
            result = judge.judge_ratio(
                stable_good=int(rng.binomial(ns, kwargs["base_rate"])),
                stable_total=ns,
                canary_good=int(rng.binomial(nc, canary_rate)),
                canary_total=nc,
                higher_is_better=kwargs["higher_is_better"],
                **{limit_key: limit},
            )
            hits += result.verdict is expected
        assert hits / 300 >= judge.DEFAULT_POWER - 0.05, (expected, hits)


@pytest.mark.parametrize(
    ("gate", "expected"),
    [
        ({"use": "eval_pass_rate", "maxDrop": "3%"}, judge.Levels(judge.DEFAULT_ALPHA, judge.DEFAULT_POWER, None)),
        (
            {"use": "eval_pass_rate", "maxDrop": "3%", "alpha": 0.001, "power": 0.95, "tolerance": "2%"},
            judge.Levels(0.001, 0.95, 0.02),
        ),
    ],
    ids=["defaults", "set"],
)
def test_levels_from_the_spec(gate: dict[str, Any], expected: judge.Levels) -> None:
    assert judge.levels(spec.Gate.model_validate(gate)) == expected


@pytest.mark.parametrize(
    "gate",
    [{"alpha": 0}, {"alpha": 0.5}, {"power": 0.4}, {"power": 1}, {"tolerance": "-1%"}],
    ids=["alpha-0", "alpha-half", "power-low", "power-1", "tolerance-negative"],
)
def test_spec_refuses_bad_levels(gate: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        spec.Gate.model_validate({"use": "eval_pass_rate", "maxDrop": "3%"} | gate)
