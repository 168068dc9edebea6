"""judge.judge_split and judge.split_evidence: the traffic-split check's statistics (pure): a table of
request counts and the verdict each must get, the confidence sequence's bounds, and the test's level
computed exactly (no simulation) under a look after every single request."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from controller import judge
from controller.verdicts import Verdict as V

CASES = [
    # (id, canary, stable, expected share, verdict)
    ("right-10pct", 1_000, 9_000, 0.10, V.PASS),
    ("right-1pct-large", 2_000, 198_000, 0.01, V.PASS),
    ("right-50pct", 5_100, 4_900, 0.50, V.PASS),
    ("half-while-weight-10", 978, 1_022, 0.10, V.FAIL),
    ("half-while-weight-10-small", 50, 50, 0.10, V.FAIL),
    ("2pct-while-weight-5", 20, 980, 0.05, V.FAIL),
    ("canary-starved-1pct", 0, 2_000, 0.01, V.FAIL),
    ("everything-to-canary", 1_000, 0, 0.25, V.FAIL),
    ("too-many-canary-by-a-little", 1_150, 8_850, 0.10, V.FAIL),
    ("right-but-few-canary-requests", 10, 90, 0.10, V.INCONCLUSIVE),
    ("none-of-2-expected-is-no-evidence", 0, 200, 0.01, V.INCONCLUSIVE),
    ("no-requests", 0, 0, 0.10, V.INCONCLUSIVE),
    ("negative-count", -1, 100, 0.10, V.ERROR),
    ("nan-count", math.nan, 100, 0.10, V.ERROR),
]


@pytest.mark.parametrize(("canary", "stable", "expected", "want"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_verdict(canary: float, stable: float, expected: float, want: V) -> None:
    j = judge.judge_split(canary=canary, stable=stable, expected=expected)
    assert j.verdict is want, j.reason
    if want is V.FAIL:
        assert j.reason.startswith("the router is not splitting as configured: ")
        assert f"expected {expected * 100:.2f}%" in j.reason and f"{canary + stable:,.0f} requests" in j.reason
    if want in (V.PASS, V.FAIL):
        assert j.lower is not None and j.upper is not None and j.estimate is not None
        assert j.lower <= j.estimate <= j.upper
        assert (j.lower <= expected <= j.upper) is (want is V.PASS)  # the test and its sequence agree
        assert j.limit == expected and (j.canary_samples, j.stable_samples) == (int(canary), int(stable))


def test_min_samples_only_holds_a_pass_back() -> None:
    right = judge.judge_split(canary=150, stable=1_350, expected=0.1, min_samples=200)
    assert right.verdict is V.INCONCLUSIVE and "150 < 200" in right.reason
    wrong = judge.judge_split(canary=50, stable=50, expected=0.1, min_samples=10_000)
    assert wrong.verdict is V.FAIL  # a mismatch fails on evidence, however few the requests


def test_a_smaller_alpha_needs_more_evidence() -> None:
    counts = {"canary": 140, "stable": 860, "expected": 0.1}  # 14% against 10% in 1000 requests
    assert judge.judge_split(**counts, alpha=0.05).verdict is V.FAIL
    assert judge.judge_split(**counts, alpha=0.001).verdict is V.PASS


@pytest.mark.parametrize("expected", [0.01, 0.1, 0.5, 0.9])
def test_the_evidence_is_never_positive_at_the_observed_share(expected: float) -> None:
    """The mixture's marginal likelihood is at most the best one: no evidence against what was seen."""
    for n in (1, 10, 1000, 10**6):
        for k in {0, 1, n // 3, n - 1, n}:
            if 0 < k < n:
                assert judge.split_evidence(k, n, expected=k / n) <= 1e-9


@pytest.mark.parametrize("expected", [0.01, 0.05, 0.25, 0.5])
def test_always_valid_under_a_look_after_every_request(expected: float) -> None:
    """The exact chance (dynamic programming over the canary count, no sampling) that a router which
    splits as configured is ever called wrong within 3000 requests, looked at after each one, stays
    within alpha; a fixed-sample z-test at the same level, looked at as often, does not."""
    alpha, horizon = 0.01, 3000
    threshold = math.log(1 / alpha)
    z = stats.norm.ppf(1 - alpha / 2)
    alive = np.array([1.0])  # probability of each canary count among paths not yet rejected
    alive_z = np.array([1.0])
    rejected = rejected_z = 0.0
    for n in range(1, horizon + 1):
        alive = np.append(alive * (1 - expected), 0.0) + np.append(0.0, alive * expected)
        alive_z = np.append(alive_z * (1 - expected), 0.0) + np.append(0.0, alive_z * expected)
        k = np.arange(n + 1)
        a, b = judge.SPLIT_CONCENTRATION * expected, judge.SPLIT_CONCENTRATION * (1 - expected)
        log_m = [judge.split_evidence(float(i), float(n), expected=expected) for i in k] if n <= 30 else None
        evidence = np.array(log_m) if log_m is not None else _vector_evidence(k, n, a, b, expected)
        hit = evidence >= threshold
        rejected += alive[hit].sum()
        alive[hit] = 0.0
        far = np.abs(k - n * expected) > z * math.sqrt(n * expected * (1 - expected))
        rejected_z += alive_z[far].sum()
        alive_z[far] = 0.0
    assert rejected <= alpha
    assert rejected_z > 5 * alpha  # what repeated looks do to a test that is not sequential


def _vector_evidence(k: np.ndarray, n: int, a: float, b: float, expected: float) -> np.ndarray:
    from scipy import special

    out = special.betaln(a + k, b + n - k) - special.betaln(a, b) - k * math.log(expected)
    result: np.ndarray = out - (n - k) * math.log1p(-expected)
    spot = int(k[len(k) // 2])
    assert abs(result[len(k) // 2] - judge.split_evidence(spot, n, expected=expected)) < 1e-6
    return result


def test_refuses_a_share_it_cannot_test() -> None:
    for share in (0.0, 1.0):
        with pytest.raises(ValueError, match="expected share"):
            judge.split_evidence(1, 10, expected=share)
