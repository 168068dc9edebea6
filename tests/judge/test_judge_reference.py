"""The judge's statistics against reference values: scipy integrals and distributions, and seeded
simulations of the error rates the judge promises across repeated looks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats
from scipy.stats import contingency

from controller import judge


@pytest.mark.parametrize(
    ("estimate", "variance", "tau"),
    [(0.01, 1e-4, 0.01), (0.0, 4e-6, 0.005), (-0.3, 0.02, 0.1), (0.5, 0.5, 0.05)],
    ids=["moderate", "no-effect", "negative", "noisy"],
)
def test_msprt_statistic_is_the_mixture_likelihood_ratio(estimate: float, variance: float, tau: float) -> None:
    """Closed form = the integral of N(est; theta, V) over a N(0, tau^2) prior, divided by N(est; 0, V)."""
    sd = math.sqrt(variance)
    numerator, _ = integrate.quad(
        lambda t: stats.norm.pdf(estimate, loc=t, scale=sd) * stats.norm.pdf(t, scale=tau),
        -10 * tau - abs(estimate),
        10 * tau + abs(estimate),
        points=[0.0, estimate],
        limit=200,
    )
    reference = numerator / stats.norm.pdf(estimate, loc=0, scale=sd)
    assert judge.msprt_statistic(estimate, variance, theta=0.0, tau=tau) == pytest.approx(reference, rel=1e-6)


@pytest.mark.parametrize(
    ("variance", "alpha", "tau"), [(1e-4, 0.05, 0.01), (1e-6, 0.01, 0.02), (0.3, 0.1, 0.05)], ids=["a", "b", "c"]
)
def test_mixture_radius_is_where_the_statistic_reaches_one_over_alpha(
    variance: float, alpha: float, tau: float
) -> None:
    radius = judge.mixture_radius(variance, alpha=alpha, tau=tau)
    assert judge.msprt_statistic(radius, variance, theta=0.0, tau=tau) == pytest.approx(1 / alpha, rel=1e-9)
    # and it is wider than the fixed-sample interval, which is only valid for one look
    assert radius > stats.norm.ppf(1 - alpha / 2) * math.sqrt(variance)


def _random_walk(seed: int, paths: int, looks: int) -> tuple[np.ndarray, np.ndarray]:
    """Running means of N(0, 1) data and their variance 1 / n, at every look."""
    rng = np.random.default_rng(seed)
    sums = np.cumsum(rng.standard_normal((paths, looks)), axis=1)
    n = np.arange(1, looks + 1)
    return sums / n, 1 / n


def test_the_sequence_covers_the_truth_at_every_look_but_a_fixed_interval_does_not() -> None:
    alpha, tau = 0.05, 0.2
    means, variances = _random_walk(7, paths=2000, looks=1000)
    radius = np.array([judge.mixture_radius(v, alpha=alpha, tau=tau) for v in variances])
    ever_excluded = (np.abs(means) > radius).any(axis=1).mean()
    assert ever_excluded <= alpha
    naive = (np.abs(means) > stats.norm.ppf(1 - alpha / 2) * np.sqrt(variances)).any(axis=1).mean()
    assert naive > 4 * alpha  # peeking at a fixed interval inflates false alarms: the reason for the sequence


def test_one_sided_bound_errs_at_most_alpha() -> None:
    alpha, tau = 0.05, 0.2
    means, variances = _random_walk(11, paths=2000, looks=1000)
    radius = np.array([judge.mixture_radius(v, alpha=judge.one_sided(alpha), tau=tau) for v in variances])
    upper_crossed = (means > radius).any(axis=1).mean()
    assert upper_crossed <= alpha
    assert upper_crossed > alpha / 4  # and it is not wastefully conservative


@pytest.mark.parametrize(
    ("stable", "canary"),
    [((120, 10_000), (30, 1_000)), ((5, 2_000), (9, 800)), ((400, 1_000), (300, 1_000))],
    ids=["rare-errors", "few-events", "common"],
)
def test_log_ratio_matches_scipy_katz_relative_risk(stable: tuple[int, int], canary: tuple[int, int]) -> None:
    estimate, variance = judge.log_ratio(stable[0], stable[1], canary[0], canary[1])
    rr = contingency.relative_risk(canary[0], canary[1], stable[0], stable[1])
    ci = rr.confidence_interval(confidence_level=0.95)
    z = stats.norm.ppf(0.975)
    assert estimate == pytest.approx(math.log(rr.relative_risk))
    assert math.sqrt(variance) == pytest.approx((math.log(ci.high) - math.log(ci.low)) / (2 * z))


@pytest.mark.parametrize(
    ("q", "expected"),
    [(0.95, 2 + 2 * (95 - 90) / (99 - 90)), (0.5, 1 + (50 - 50) / 40), (0.05, 0.5 * 5 / 10), (0.995, 4.0)],
    ids=["in-bucket", "on-a-bound", "first-bucket-from-zero", "in-inf-returns-top-bound"],
)
def test_histogram_quantile_follows_prometheus(q: float, expected: float) -> None:
    buckets = [(0.5, 10), (1, 50), (2, 90), (4, 99), (math.inf, 100)]
    assert judge.histogram_quantile(q, buckets) == pytest.approx(expected)


def test_histogram_quantile_of_fine_buckets_matches_the_distribution() -> None:
    dist = stats.lognorm(s=0.6, scale=0.8)
    edges = 0.05 * 1.05 ** np.arange(100)
    counts = (dist.cdf(edges) * 1_000_000).tolist()
    buckets = [*zip(edges.tolist(), counts, strict=True), (math.inf, 1_000_000)]
    assert judge.histogram_quantile(0.95, buckets) == pytest.approx(dist.ppf(0.95), rel=0.01)


@pytest.mark.parametrize("n", [200, 2_000, 50_000], ids=["200", "2k", "50k"])
def test_quantile_bounds_contain_the_exact_fixed_sample_interval(n: int) -> None:
    """The time-uniform rank interval must be at least as wide as scipy's exact binomial one."""
    q, alpha = 0.95, 0.01
    edges = list(range(1, n + 1))  # one sample per bucket: value = rank
    buckets = [*((float(e), float(e)) for e in edges), (math.inf, float(n))]
    low, high = judge._quantile_bounds(judge._cumulative(buckets), q=q, alpha=alpha)
    exact_low, exact_high = stats.binom.ppf(alpha, n, q), stats.binom.ppf(1 - alpha, n, q)
    assert low <= exact_low
    assert high >= exact_high or math.isinf(high)


@pytest.mark.parametrize("p", [0.5, 0.8, 0.9, 0.975, 0.999], ids=["0.5", "0.8", "0.9", "0.975", "0.999"])
def test_normal_ppf_matches_scipy(p: float) -> None:
    assert judge._normal_ppf(p) == pytest.approx(stats.norm.ppf(p), abs=1e-9)
