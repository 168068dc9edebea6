"""The canary judge: sequential statistics that fail on evidence and pass on evidence.

Pure (no I/O). `controller.gates` calls `judge_ratio` / `judge_quantile` (canary against stable) and
`judge_rate_bound` / `judge_quantile_bound` (canary against an absolute bound) with counts measured since
the step began; `controller.advice` calls `advise_ratio` to say how long a step needs to reach a decision.

Method. Each comparison keeps a time-uniform confidence sequence (a normal-mixture sequential
probability ratio test, Johari, Pekelis & Walsh 2017; Howard et al. 2021) for the canary's
*regression* against stable, so the error rates below hold however often the gate is evaluated:

- FAIL when the whole `1 - alpha` sequence lies beyond the limit: a canary whose true regression is
  within the limit fails with probability at most `alpha`, across every look of the step.
- PASS when the whole `power` sequence lies within the limit, and the canary has `min_samples`: a canary
  whose true regression is beyond the limit passes with probability at most `1 - power`.
- Otherwise INCONCLUSIVE: hold, never promote.

The sequences rest on a normal approximation of the counts (smoothed by +0.5 where a count is 0),
so below `min_samples` canary samples a gate never passes. Judge each step on the counts since that
step began. Two things real metrics do are accounted for: events that come in bursts (a ratio's
variance is multiplied by the design effect its time blocks show, `Blocks`, `inflation`), and
histograms that only say which bucket a latency fell in (a quantile's bounds are read at bucket
edges, so a bucket wider than the limit holds the gate instead of passing or failing it by
interpolation). `alpha` is per gate and per step: for a rollout
of `k` judged steps and `g` rollback gates, `alpha * k * g` bounds the whole rollout's false rollbacks.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from controller import spec, verdicts

DEFAULT_ALPHA = 0.01  # chance of rolling back a canary that is within its limit, over all looks of a step
DEFAULT_POWER = 0.9  # 1 - chance of passing a canary that is beyond its limit
DEFAULT_MIN_SAMPLES = 100  # canary samples below which a gate never passes
DEFAULT_QUANTILE_MIN_SAMPLES = 200

_MIN_TAU_ABSOLUTE = 0.005  # mixing scale floors: the sequence is tightest near regressions of this size
_MIN_TAU_LOG = 0.05
_QUANTILE_RHO_SAMPLES = 250.0  # the quantile sequence is tightest near this many samples per arm
CLUSTERED = 1.25  # a variance factor from which the evidence says the events cluster in time
_CANARY_SHARE = 0.8  # of a quantile comparison's alpha (and 1 - power), for the canary: usually the smaller arm


@dataclass(frozen=True)
class Comparison:
    """One gate's verdict with its evidence. Values are the canary's regression against stable: in
    rate points when `relative` is false (0.02 = 2 points worse), else relative (0.15 = 15% worse).
    `lower`/`upper` bound the regression: `lower` at `1 - alpha`, `upper` at `power`."""

    verdict: verdicts.Verdict
    estimate: float | None
    lower: float | None
    upper: float | None
    limit: float
    relative: bool
    canary_samples: int
    stable_samples: int
    reason: str
    resolution: float | None = None  # quantile gates: the relative width of the bucket at the quantile


@dataclass(frozen=True)
class Advice:
    """How long a step needs before a gate can decide. None means never within the horizon."""

    pass_after: timedelta | None  # a canary as good as stable passes, with probability `power`
    fail_after: timedelta | None  # a canary `tolerance` beyond the limit fails, with probability `power`
    pass_samples: int | None  # canary samples at `pass_after`
    fail_samples: int | None

    def decides_within(self, duration: timedelta) -> bool:
        """Whether either decision is reachable within `duration` (lint: is a step's `for` long enough)."""
        return any(t is not None and t <= duration for t in (self.pass_after, self.fail_after))


@dataclass(frozen=True)
class Levels:
    """A gate's statistical settings with the defaults filled in, ready to pass as keyword arguments."""

    alpha: float
    power: float
    tolerance: float | None


def levels(gate: spec.Gate) -> Levels:
    """`alpha`, `power` and `tolerance` of a gate from the spec, defaults where it sets none."""
    return Levels(
        alpha=DEFAULT_ALPHA if gate.alpha is None else gate.alpha,
        power=DEFAULT_POWER if gate.power is None else gate.power,
        tolerance=gate.tolerance,
    )


# -- the confidence sequence --------------------------------------------------------------------


def mixture_radius(variance: float, *, alpha: float, tau: float) -> float:
    """Half-width of the two-sided normal-mixture confidence sequence for a mean whose estimate has
    `variance` now, mixing N(0, tau^2) over effects: the set of theta where the mSPRT statistic
    sqrt(V / (V + tau^2)) * exp(tau^2 (est - theta)^2 / (2 V (V + tau^2))) stays below 1 / alpha."""
    if variance <= 0:
        return 0.0
    if math.isinf(variance):
        return math.inf
    tau2 = tau * tau
    return math.sqrt(variance * (1 + variance / tau2) * (2 * math.log(1 / alpha) + math.log1p(tau2 / variance)))


def msprt_statistic(estimate: float, variance: float, *, theta: float, tau: float) -> float:
    """The mixture likelihood ratio of `theta` against the data; >= 1 / alpha rejects `theta`."""
    tau2 = tau * tau
    return math.sqrt(variance / (variance + tau2)) * math.exp(
        tau2 * (estimate - theta) ** 2 / (2 * variance * (variance + tau2))
    )


def one_sided(alpha: float) -> float:
    """The two-sided level whose upper (or lower) bound alone errs with probability at most `alpha`.

    With the symmetric mixture M = (M+ + M-) / 2 and M- <= 1 on the upper side, crossing M >= 1 / a
    implies the one-sided martingale M+ >= 2 / a - 1, which Ville's inequality bounds by a / (2 - a)."""
    return 2 * alpha / (1 + alpha)


def _decide(
    *,
    estimate: float,
    variance: float,
    limit: float,
    tau: float,
    alpha: float,
    power: float,
    enough: bool,
    pass_variance: float | None = None,
) -> tuple[verdicts.Verdict, float, float]:
    """Verdict and bounds for a regression estimate on a scale where larger is worse. `pass_variance`
    (default `variance`) is the variance the PASS bound uses: see `_compare`."""
    lower = estimate - mixture_radius(variance, alpha=one_sided(alpha), tau=tau)
    upper = estimate + mixture_radius(
        variance if pass_variance is None else pass_variance, alpha=one_sided(1 - power), tau=tau
    )
    if lower > limit:
        return verdicts.Verdict.FAIL, lower, upper
    if upper <= limit and enough:
        return verdicts.Verdict.PASS, lower, upper
    return verdicts.Verdict.INCONCLUSIVE, lower, upper


def _check_levels(alpha: float, power: float, *, q: float = 0.5) -> None:
    if not 0 < q < 1:
        raise ValueError(f"q must be in (0, 1), got {q}")
    if not 0 < alpha < 0.5:
        raise ValueError(f"alpha must be in (0, 0.5), got {alpha}")
    if not 0.5 <= power < 1:
        raise ValueError(f"power must be in [0.5, 1), got {power}")


# -- clustered events: how much the counts vary beyond independent trials -------------------------


@dataclass(frozen=True)
class Blocks:
    """One arm's counts in consecutive time blocks of the window, summed over the blocks: `count`
    blocks, `events` = sum e_b, `total` = sum n_b, `events_sq` = sum e_b^2, `cross` = sum e_b n_b,
    `total_sq` = sum n_b^2 (e_b events among n_b requests in block b). All `inflation` needs to see
    whether events come in bursts; Prometheus answers each sum with one subquery."""

    count: float
    events: float
    total: float
    events_sq: float
    cross: float
    total_sq: float


def clustering(blocks: Blocks | None) -> tuple[float, float]:
    """`(design effect, correlation)` of one arm's events from its blocks: how many times the variance of
    its rate exceeds the binomial one, and the intra-block correlation rho behind it, by the moment
    estimator of the ratio estimator's between-block variance (its expectation under independence is
    `p (1 - p) (N - sum n_b^2 / N)`; bursts make it `1 + (m - 1) rho` times that, m = sum n_b^2 / N the
    size-weighted mean block). (1, 0) without two blocks or without variation to measure."""
    if blocks is None or blocks.count < 2 or blocks.total <= 0:
        return 1.0, 0.0
    p = blocks.events / blocks.total
    expected = p * (1 - p) * (blocks.total - blocks.total_sq / blocks.total)
    if not math.isfinite(expected) or expected <= 0:
        return 1.0, 0.0
    spread = max(blocks.events_sq - 2 * p * blocks.cross + p * p * blocks.total_sq, 0.0)
    effect = max(spread / expected, 1.0)
    m = blocks.total_sq / blocks.total
    return effect, ((effect - 1) / (m - 1) if m > 1 else 0.0)


def inflation(stable: Blocks | None, canary: Blocks | None) -> tuple[float, float]:
    """The variance factors (>= 1) for stable's and canary's rates: each arm's own design effect, or the
    one the other arm's correlation implies at this arm's block sizes, whichever is larger. Stable,
    with more requests per block, usually measures the burstiness first; the canary gets it at once,
    before a burst of its own has had time to mislead the judge. With independent events both are 1."""
    (s_effect, s_rho), (c_effect, c_rho) = clustering(stable), clustering(canary)
    rho = max(s_rho, c_rho)

    def at(blocks: Blocks | None, own: float) -> float:
        if blocks is None or blocks.total <= 0:
            return own
        m = blocks.total_sq / blocks.total
        return max(own, 1 + max(m - 1, 0.0) * rho)

    return at(stable, s_effect), at(canary, c_effect)


# -- ratio gates (error rate, eval pass rate, JSON validity) ---------------------------------------


def judge_ratio(
    *,
    stable_good: float,
    stable_total: float,
    canary_good: float,
    canary_total: float,
    higher_is_better: bool,
    max_drop: float | None = None,
    max_increase: float | None = None,
    alpha: float = DEFAULT_ALPHA,
    power: float = DEFAULT_POWER,
    min_samples: int = DEFAULT_MIN_SAMPLES,
    tolerance: float | None = None,
    stable_blocks: Blocks | None = None,
    canary_blocks: Blocks | None = None,
) -> Comparison:
    """Judge a rate, canary against stable, from counts since the step began.

    `good`/`total` count the template's events (for `error_rate`, `good` counts errors and
    `higher_is_better` is false). `max_drop` is absolute rate points of regression (0.03 = 3 points);
    `max_increase` is relative growth of the *bad* rate (errors, or failed evals when higher is better).
    With both, the worse judgement wins. `tolerance` (in the limit's unit, default: the limit) is the
    regression beyond the limit the sequence is tuned to catch fastest; any value keeps the error rates.

    `stable_blocks`/`canary_blocks` (the same counts in time blocks) let the judge see events that come
    in bursts: each arm's variance is multiplied by its `inflation`, so clustered failures (an outage of
    one arm's provider for a minute) widen the bounds instead of counting as many independent trials.
    Without them the trials are taken as independent.
    """
    _check_levels(alpha, power)
    if max_drop is None and max_increase is None:
        raise ValueError("judge_ratio needs max_drop or max_increase")
    counts = (stable_good, stable_total, canary_good, canary_total)
    if any(not math.isfinite(c) or c < 0 for c in counts) or stable_good > stable_total or canary_good > canary_total:
        return _error(
            f"counts are not a rate: stable {stable_good}/{stable_total}, canary {canary_good}/{canary_total}",
            limit=max_drop if max_drop is not None else max_increase or 0.0,
            relative=max_drop is None,
        )
    stable_bad = stable_total - stable_good if higher_is_better else stable_good
    canary_bad = canary_total - canary_good if higher_is_better else canary_good
    args = (stable_bad, stable_total, canary_bad, canary_total)
    factors = inflation(stable_blocks, canary_blocks)
    compare = functools.partial(_compare, *args, alpha=alpha, power=power, min_samples=min_samples, factors=factors)
    judgements = []
    if max_drop is not None:
        judgements.append(compare(limit=max_drop, relative=False, tau=_tau_absolute(max_drop, tolerance)))
    if max_increase is not None:
        judgements.append(compare(limit=max_increase, relative=True, tau=_tau_log(max_increase, tolerance)))
    return max(judgements, key=lambda j: j.verdict.rank)


def _compare(
    stable_bad: float,
    stable_total: float,
    canary_bad: float,
    canary_total: float,
    *,
    limit: float,
    relative: bool,
    tau: float,
    alpha: float,
    power: float,
    min_samples: int,
    factors: tuple[float, float] = (1.0, 1.0),
) -> Comparison:
    """One comparison of bad rates: the difference in rate points, or (`relative`) the ratio, judged on
    the log scale where its estimate is close to normal and read back as a relative change. `factors`
    multiply stable's and canary's variance (see `inflation`)."""
    ns, nc = int(stable_total), int(canary_total)
    if stable_total <= 0 or canary_total <= 0:
        return _inconclusive("no samples yet", limit=limit, relative=relative, nc=nc, ns=ns)
    if relative:
        estimate, variance = log_ratio(stable_bad, stable_total, canary_bad, canary_total, factors=factors)
        scale_limit = math.log1p(limit)
        pass_variance = variance  # Katz's variance grows as the canary's count falls: already cautious
    else:
        estimate = canary_bad / canary_total - stable_bad / stable_total
        variance = difference_variance(stable_bad, stable_total, canary_bad, canary_total, factors=factors)
        scale_limit = limit
        # PASS tests "the canary is `limit` worse"; a variance read at the canary's observed rate shrinks
        # with an unlucky run of good answers (0 errors in 270 requests at a true 1%), so the PASS bound
        # also reads it where that hypothesis puts the canary (a score test's variance)
        ps = (stable_bad + 0.5) / (stable_total + 1)
        pc = min(ps + limit, 1.0)
        at_limit = factors[0] * ps * (1 - ps) / stable_total + factors[1] * pc * (1 - pc) / canary_total
        pass_variance = max(variance, at_limit)
    verdict, lower, upper = _decide(
        estimate=estimate,
        variance=variance,
        limit=scale_limit,
        tau=tau,
        alpha=alpha,
        power=power,
        enough=canary_total >= min_samples,
        pass_variance=pass_variance,
    )
    if relative:
        estimate, lower, upper = math.expm1(estimate), _expm1(lower), _expm1(upper)
        reason = (
            f"canary {_pct(canary_bad / canary_total)} vs stable {_pct(stable_bad / stable_total)} bad: "
            f"{_rel(estimate)} (bounds {_rel(lower)} .. {_rel(upper)}), limit {_rel(limit)}"
        )
    else:
        reason = (
            f"canary {_pct(1 - canary_bad / canary_total)} vs stable {_pct(1 - stable_bad / stable_total)} good: "
            f"regression {_pts(estimate)} (bounds {_pts(lower)} .. {_pts(upper)}), limit {_pts(limit)}"
        )
    if max(factors) >= CLUSTERED:  # below, the factor is mostly the noise of 64 blocks: not worth a word
        reason += f"; events clustered in time: variance x{factors[1]:.3g} canary, x{factors[0]:.3g} stable"
    explained = _explain(verdict, reason, nc, min_samples)
    return Comparison(verdict, estimate, lower, upper, limit, relative, nc, ns, explained)


def difference_variance(
    stable_bad: float,
    stable_total: float,
    canary_bad: float,
    canary_total: float,
    *,
    factors: tuple[float, float] = (1.0, 1.0),
) -> float:
    """Variance of the difference of two rates; +0.5 smoothing keeps it above 0 when a rate is 0 or 1.
    `factors` multiply stable's and canary's binomial variance (clustered events, see `inflation`)."""
    ps = (stable_bad + 0.5) / (stable_total + 1)
    pc = (canary_bad + 0.5) / (canary_total + 1)
    return factors[0] * ps * (1 - ps) / stable_total + factors[1] * pc * (1 - pc) / canary_total


def log_ratio(
    stable_bad: float,
    stable_total: float,
    canary_bad: float,
    canary_total: float,
    *,
    factors: tuple[float, float] = (1.0, 1.0),
) -> tuple[float, float]:
    """log(canary rate / stable rate) and its variance (Katz's log risk ratio, +0.5 when a count is 0),
    each arm's term multiplied by its factor (clustered events, see `inflation`)."""
    if stable_bad == 0 or canary_bad == 0:
        stable_bad, canary_bad = stable_bad + 0.5, canary_bad + 0.5
        stable_total, canary_total = stable_total + 0.5, canary_total + 0.5
    estimate = math.log(canary_bad / canary_total) - math.log(stable_bad / stable_total)
    variance = factors[1] * (1 / canary_bad - 1 / canary_total) + factors[0] * (1 / stable_bad - 1 / stable_total)
    return estimate, variance


# -- latency gates -----------------------------------------------------------------------------

Buckets = Sequence[tuple[float, float]]


def judge_quantile(
    *,
    stable_buckets: Buckets,
    canary_buckets: Buckets,
    q: float,
    max_increase: float,
    alpha: float = DEFAULT_ALPHA,
    power: float = DEFAULT_POWER,
    min_samples: int = DEFAULT_QUANTILE_MIN_SAMPLES,
) -> Comparison:
    """Judge a latency quantile, canary against stable, from cumulative `(le, count)` histogram buckets
    (as `increase(x_bucket[...])` gives them since the step began, `+Inf` included).

    Each arm's quantile gets a time-uniform confidence sequence over its rank: the count of samples
    below the true quantile is binomial, so the rank `n q` moves by a normal-mixture radius with
    variance `n q (1 - q)`; ranks become latencies at bucket edges (see `_quantile_bounds`), so the
    bounds hold wherever inside its bucket the quantile lies: FAIL only when even the placement most
    favourable to the canary is beyond the limit, PASS only when even the least favourable is within
    it. Where a bucket is wider than the limit the gate can only hold, and says so (`resolution`, the
    reason). The two arms' bounds are combined conservatively (Bonferroni), the canary (usually the arm
    with fewer samples) getting `_CANARY_SHARE` of the error rates. A bound that falls in the `+Inf`
    bucket is infinite: coarse or overflowing buckets hold, they never pass. The estimate shown is
    `histogram_quantile`'s interpolation, for reading only: no verdict rests on it.
    """
    _check_levels(alpha, power, q=q)
    try:
        stable, canary = _cumulative(stable_buckets), _cumulative(canary_buckets)
    except ValueError as exc:
        return _error(f"histogram buckets unusable: {exc}", limit=max_increase, relative=True)
    ns, nc = int(stable[-1][1]), int(canary[-1][1])
    if ns <= 0 or nc <= 0:
        return _inconclusive("no samples yet", limit=max_increase, relative=True, nc=nc, ns=ns)

    s_est, c_est = _value_at_rank(stable, q * ns), _value_at_rank(canary, q * nc)
    c_share = _CANARY_SHARE
    s_fail = _quantile_bounds(stable, q=q, alpha=alpha * (1 - c_share))
    c_fail = _quantile_bounds(canary, q=q, alpha=alpha * c_share)
    s_pass = _quantile_bounds(stable, q=q, alpha=(1 - power) * (1 - c_share))
    c_pass = _quantile_bounds(canary, q=q, alpha=(1 - power) * c_share)
    estimate = _relative(c_est, s_est)
    lower = _relative(c_fail[0], s_fail[1])
    upper = _relative(c_pass[1], s_pass[0])
    if lower >= max_increase:  # lower is an open edge: the canary's quantile is beyond it
        verdict = verdicts.Verdict.FAIL
    elif upper <= max_increase and nc >= min_samples:
        verdict = verdicts.Verdict.PASS
    else:
        verdict = verdicts.Verdict.INCONCLUSIVE
    reason = (
        f"p{_qname(q)} canary {_secs(c_est)} vs stable {_secs(s_est)}: {_rel(estimate)} "
        f"(bounds {_rel(lower)} .. {_rel(upper)}), limit {_rel(max_increase)}"
    )
    widths = [(resolution(arm, est), est) for arm, est in ((canary, c_est), (stable, s_est))]
    (edge_lo, edge_hi), at = max(widths, key=lambda w: _relative(w[0][1], w[0][0]))
    width = _relative(edge_hi, edge_lo)
    if verdict is not verdicts.Verdict.FAIL and width > max_increase:
        reason += f"; {too_coarse(at, edge_lo, edge_hi, max_increase)}"
    return Comparison(
        verdict,
        estimate,
        lower,
        upper,
        max_increase,
        True,
        nc,
        ns,
        _explain(verdict, reason, nc, min_samples),
        resolution=width,
    )


CANNOT_PASS = "this gate cannot pass on these buckets"


def too_coarse(at: float, lower: float, upper: float, limit: float) -> str:
    """Why a quantile gate cannot pass at `at`: its bucket `(lower, upper]` is wider than the limit."""
    apart = "unbounded" if math.isinf(upper) else f"{_secs(upper - lower)} apart"
    return (
        f"at {_secs(at)} the buckets are {apart} ({_secs(lower)} .. {_secs(upper)}, {_rel(_relative(upper, lower))}), "
        f"wider than the limit {_rel(limit)}: {CANNOT_PASS}"
    )


def histogram_quantile(q: float, buckets: Buckets) -> float:
    """Prometheus' `histogram_quantile`: linear interpolation in the bucket holding rank `q * n`;
    the lowest bucket starts at 0 and a rank in `+Inf` returns the highest finite bound."""
    cumulative = _cumulative(buckets)
    value = _value_at_rank(cumulative, q * cumulative[-1][1])
    return _highest_finite(cumulative) if math.isinf(value) else value


def _cumulative(buckets: Buckets) -> list[tuple[float, float]]:
    """Sorted cumulative buckets with `+Inf` last and counts made monotone, as Prometheus does."""
    if not buckets:
        raise ValueError("no buckets")
    rows = sorted((float(le), float(count)) for le, count in buckets)
    if rows[-1][0] != math.inf:
        raise ValueError("the +Inf bucket is missing")
    out: list[tuple[float, float]] = []
    running, previous = 0.0, -math.inf
    for le, count in rows:
        if not (count >= 0 and le > previous):  # also refuses NaN
            raise ValueError(f"bucket le={le} has a negative or NaN count, or a duplicate bound")
        running = max(running, count)
        out.append((le, running))
        previous = le
    return out


def _value_at_rank(cumulative: list[tuple[float, float]], rank: float) -> float:
    if rank <= 0:
        return 0.0 if cumulative[0][0] > 0 else cumulative[0][0]
    lower_le, lower_count = 0.0, 0.0
    for le, count in cumulative:
        if count >= rank:
            if math.isinf(le):
                return math.inf
            if le <= 0 or count == lower_count:
                return le
            return lower_le + (le - lower_le) * (rank - lower_count) / (count - lower_count)
        lower_le, lower_count = le, count
    return math.inf


def _highest_finite(cumulative: list[tuple[float, float]]) -> float:
    finite = [le for le, _ in cumulative if not math.isinf(le)]
    return finite[-1] if finite else math.nan


def _quantile_bounds(cumulative: list[tuple[float, float]], *, q: float, alpha: float) -> tuple[float, float]:
    """Time-uniform bounds for the q-quantile, read off the histogram; each errs with chance `alpha`.

    The rank sequence bounds how many samples lie below the true quantile; the latencies are then read
    at bucket edges, not interpolated: the quantile is above the lower edge of the bucket holding the
    lowest plausible rank and at most the upper edge of the bucket holding the highest. So the bounds
    hold wherever inside its bucket the quantile lies, and a bucket wider than a limit shows as bounds
    that cannot be within it (no interpolation can make a coarse histogram look precise)."""
    n = cumulative[-1][1]
    variance = n * q * (1 - q)
    rho = _QUANTILE_RHO_SAMPLES * q * (1 - q)
    radius = math.sqrt((variance + rho) * (2 * math.log(1 / one_sided(alpha)) + math.log1p(variance / rho)))
    return _edge_below(cumulative, q * n - radius), _edge_above(cumulative, q * n + radius)


def _bucket_of(cumulative: list[tuple[float, float]], sample: float) -> int:
    """The index of the bucket holding the `sample`-th smallest sample (1-based)."""
    for i, (_, count) in enumerate(cumulative):
        if count >= sample:
            return i
    return len(cumulative) - 1


def _lower_edge(cumulative: list[tuple[float, float]], i: int) -> float:
    if i > 0:
        return cumulative[i - 1][0]
    first = cumulative[0][0]
    return 0.0 if first > 0 else -math.inf  # latencies are not negative: the first bucket starts at 0


def _edge_below(cumulative: list[tuple[float, float]], rank: float) -> float:
    """A lower bound for the value at `rank`: at least ceil(rank) samples are at or below it, so it is
    above the lower edge of the bucket holding sample number ceil(rank)."""
    if rank <= 0:
        return _lower_edge(cumulative, 0)
    return _lower_edge(cumulative, _bucket_of(cumulative, math.ceil(rank)))


def _edge_above(cumulative: list[tuple[float, float]], rank: float) -> float:
    """An upper bound for the value at `rank`: at most floor(rank) samples are below it, so it is at most
    the upper edge of the bucket holding sample number floor(rank) + 1 (infinite past the last sample)."""
    sample = math.floor(rank) + 1
    if sample > cumulative[-1][1]:
        return math.inf
    return cumulative[_bucket_of(cumulative, sample)][0]


def resolution(cumulative: list[tuple[float, float]], value: float) -> tuple[float, float]:
    """The edges `(a, b]` of the bucket that holds `value`: the finest a quantile there can be known."""
    for i, (le, _) in enumerate(cumulative):
        if value <= le:
            return _lower_edge(cumulative, i), le
    return cumulative[-1][0], math.inf


def _relative(canary: float, stable: float) -> float:
    if math.isinf(canary) and math.isinf(stable):
        return math.nan
    if stable <= 0 or math.isinf(canary):
        return math.inf
    return canary / stable - 1


# -- absolute bounds (max, min) on the canary alone ---------------------------------------------


def judge_rate_bound(
    *,
    events: float,
    total: float,
    limit: float,
    at_most: bool,
    alpha: float = DEFAULT_ALPHA,
    power: float = DEFAULT_POWER,
    min_samples: int = DEFAULT_MIN_SAMPLES,
    tolerance: float | None = None,
    blocks: Blocks | None = None,
    reference: Blocks | None = None,
) -> Comparison:
    """Judge the canary's rate `events / total` against an absolute bound: `max` when `at_most`, else `min`.

    One time-uniform confidence sequence for the rate, exact for any count (no normal approximation,
    which a run of clean requests at a true rate near the bound fools): the rates `p` whose
    beta-binomial mixture likelihood ratio (`split_evidence`, a prior centred on `p`) stays below
    1 / level. FAIL only when the `1 - alpha` sequence is beyond the limit (for `max`: its lower end
    above it), PASS only when the `power` sequence is within it and the canary has `min_samples`.
    The prior's spread is twice `tolerance` (default: the distance from the limit to the nearer end),
    wide enough that a clean canary passes a small `max` soon. The Comparison's values are the canary's
    rate itself; `lower`/`upper` are the bounds each decision reads (for `max`: lower at `1 - alpha`,
    upper at `power`; for `min` the other way round). `blocks` (the canary's counts in time blocks)
    and `reference` (stable's) make bursty events count as fewer independent trials (the counts are
    divided by the design effect, as in `judge_ratio`).
    """
    _check_levels(alpha, power)
    if not (math.isfinite(events) and math.isfinite(total)) or events < 0 or events > total:
        return _error(f"counts are not a rate: {events}/{total}", limit=limit, relative=False)
    n = int(total)
    if total <= 0:
        return _inconclusive("no samples yet", limit=limit, relative=False, nc=n, ns=0)
    rate = events / total
    factor = inflation(reference, blocks)[1]
    tau = max(min(limit, 1 - limit) if tolerance is None else tolerance, _MIN_TAU_ABSOLUTE)
    fail_lo, fail_hi = rate_interval(events, total, level=alpha, near=limit, spread=tau, factor=factor)
    pass_lo, pass_hi = rate_interval(events, total, level=1 - power, near=limit, spread=tau, factor=factor)
    if at_most:
        lower, upper = fail_lo, pass_hi
        failed, passed = lower > limit, upper <= limit
    else:
        lower, upper = pass_lo, fail_hi
        failed, passed = upper < limit, lower >= limit
    verdict = _bound_verdict(failed, passed and total >= min_samples)
    word = "max" if at_most else "min"
    reason = f"canary {_pct(rate)} (bounds {_pct(lower)} .. {_pct(upper)}), {word} {_pct(limit)}"
    if factor >= CLUSTERED:
        reason += f"; events clustered in time: counts / {factor:.3g}"
    return Comparison(verdict, rate, lower, upper, limit, False, n, 0, _explain_bound(verdict, reason, n, min_samples))


def rate_interval(
    events: float, total: float, *, level: float, near: float, spread: float, factor: float = 1.0
) -> tuple[float, float]:
    """An exact time-uniform confidence sequence for a rate, erring with chance at most `level` over
    every look: the rates `p` whose beta-binomial mixture likelihood ratio (`split_evidence`, a prior
    centred on `p` spreading about `2 spread` around rates `near`) stays below 1 / level. `factor`
    (a design effect, `inflation`) divides the counts: bursty events count as fewer trials."""
    centre = min(max(near, spread), 1 - spread) if spread < 0.5 else 0.5
    concentration = min(max(centre * (1 - centre) / (2 * spread) ** 2, 2.0), 1e4)
    return _split_bounds(events / factor, total / factor, threshold=math.log(1 / level), concentration=concentration)


def judge_within(
    *,
    stable_bad: float,
    stable_total: float,
    canary_bad: float,
    canary_total: float,
    margin: float,
    power: float = DEFAULT_POWER,
    min_samples: int = DEFAULT_MIN_SAMPLES,
    factors: tuple[float, float] = (1.0, 1.0),
) -> Comparison:
    """PASS when the canary's bad rate is shown to be at most `margin` rate points above stable's: the
    upper end of the canary's exact rate sequence minus the lower end of stable's (`rate_interval`, each
    at half of `1 - power`) within `margin`. Exact, so a rare-event rate (errors at 0.5%) is judged
    without the normal approximation that a run of clean requests fools, and sooner than a variance
    read at the margin would allow. Never FAILs: an equivalence route beside a relative limit."""
    counts = (stable_bad, stable_total, canary_bad, canary_total)
    if any(not math.isfinite(c) or c < 0 for c in counts) or stable_bad > stable_total or canary_bad > canary_total:
        return _error(
            f"counts are not a rate: stable {stable_bad}/{stable_total}, canary {canary_bad}/{canary_total}",
            limit=margin,
            relative=False,
        )
    ns, nc = int(stable_total), int(canary_total)
    if stable_total <= 0 or canary_total <= 0:
        return _inconclusive("no samples yet", limit=margin, relative=False, nc=nc, ns=ns)
    level = (1 - power) / 2
    spread = max(margin, _MIN_TAU_ABSOLUTE)
    ps, pc = stable_bad / stable_total, canary_bad / canary_total
    s_lo, s_hi = rate_interval(stable_bad, stable_total, level=level, near=ps, spread=spread, factor=factors[0])
    c_lo, c_hi = rate_interval(
        canary_bad, canary_total, level=level, near=ps + margin, spread=spread, factor=factors[1]
    )
    estimate, lower, upper = pc - ps, c_lo - s_hi, c_hi - s_lo
    passed = upper <= margin and canary_total >= min_samples
    verdict = verdicts.Verdict.PASS if passed else verdicts.Verdict.INCONCLUSIVE
    reason = (
        f"canary {_pct(1 - pc)} vs stable {_pct(1 - ps)} good: regression {_pts(estimate)} "
        f"(bounds {_pts(lower)} .. {_pts(upper)}), limit {_pts(margin)}"
    )
    return Comparison(
        verdict, estimate, lower, upper, margin, False, nc, ns, _explain(verdict, reason, nc, min_samples)
    )


def judge_quantile_bound(
    *,
    buckets: Buckets,
    q: float,
    limit: float,
    at_most: bool,
    alpha: float = DEFAULT_ALPHA,
    power: float = DEFAULT_POWER,
    min_samples: int = DEFAULT_QUANTILE_MIN_SAMPLES,
) -> Comparison:
    """Judge the canary's q-quantile (from cumulative `(le, count)` buckets) against an absolute bound.

    The rank confidence sequence of `judge_quantile`, one arm: FAIL only when the `1 - alpha` bound is
    beyond the limit, PASS only when the `power` bound is within it. A rank in the `+Inf` bucket reads
    as the highest finite bound on the side that would fail (the quantile is at least that) and as
    infinite on the side that would pass, so overflowing buckets can fail a `max` but never pass it."""
    _check_levels(alpha, power, q=q)
    try:
        cumulative = _cumulative(buckets)
    except ValueError as exc:
        return _error(f"histogram buckets unusable: {exc}", limit=limit, relative=False)
    n = int(cumulative[-1][1])
    if n <= 0:
        return _inconclusive("no samples yet", limit=limit, relative=False, nc=n, ns=0)
    estimate = _value_at_rank(cumulative, q * cumulative[-1][1])
    fail_lo, fail_hi = _quantile_bounds(cumulative, q=q, alpha=alpha)
    pass_lo, pass_hi = _quantile_bounds(cumulative, q=q, alpha=1 - power)
    if at_most:  # a lower bound is an open edge (the quantile lies above it), an upper bound a closed one
        lower, upper = fail_lo, pass_hi
        failed, passed = lower >= limit, upper <= limit
    else:
        lower, upper = pass_lo, fail_hi
        failed, passed = upper < limit, lower >= limit
    verdict = _bound_verdict(failed, passed and n >= min_samples)
    word = "max" if at_most else "min"
    reason = f"p{_qname(q)} canary {_secs(estimate)} (bounds {_secs(lower)} .. {_secs(upper)}), {word} {_secs(limit)}"
    return Comparison(
        verdict, estimate, lower, upper, limit, False, n, 0, _explain_bound(verdict, reason, n, min_samples)
    )


def _bound_verdict(failed: bool, passed: bool) -> verdicts.Verdict:
    if failed:
        return verdicts.Verdict.FAIL
    return verdicts.Verdict.PASS if passed else verdicts.Verdict.INCONCLUSIVE


def _explain_bound(verdict: verdicts.Verdict, reason: str, canary_samples: int, min_samples: int) -> str:
    if verdict is verdicts.Verdict.FAIL:
        return f"beyond the bound: {reason}"
    if verdict is verdicts.Verdict.PASS:
        return f"within the bound: {reason}"
    if canary_samples < min_samples:
        return f"not enough canary samples ({canary_samples} < {min_samples}): {reason}"
    return f"not enough evidence yet: {reason}"


# -- the traffic-split check -------------------------------------------------------------------

DEFAULT_SPLIT_ALPHA = 0.001  # chance per step of saying a router that splits as configured does not
SPLIT_CONCENTRATION = 30.0  # the mixture's prior over the share: Beta(c p0, c (1 - p0)); see `split_evidence`


def split_evidence(
    canary: float, total: float, *, expected: float, concentration: float = SPLIT_CONCENTRATION
) -> float:
    """The log of the mixture likelihood ratio against "each request goes to the canary with probability
    `expected`", after `canary` of `total` requests went there.

    The alternative mixes every share q with a Beta(c p0, c (1 - p0)) prior (mean p0, so a small share
    keeps a prior that is wide in relative terms): the ratio of the beta-binomial marginal to the binomial
    likelihood at p0. Exact for any count (no normal approximation), and a nonnegative martingale under
    the null, so by Ville's inequality it reaches 1 / alpha with probability at most alpha over every
    look of one growing count. Never above 0 at the observed share (a marginal is at most the best
    likelihood)."""
    if not 0 < expected < 1:
        raise ValueError(f"expected share must be in (0, 1), got {expected}")
    a, b = concentration * expected, concentration * (1 - expected)
    stable = total - canary
    mixture = _lbeta(a + canary, b + stable) - _lbeta(a, b)
    return mixture - canary * math.log(expected) - stable * math.log1p(-expected)


def judge_split(
    *,
    canary: float,
    stable: float,
    expected: float,
    alpha: float = DEFAULT_SPLIT_ALPHA,
    min_samples: int = DEFAULT_MIN_SAMPLES,
    concentration: float = SPLIT_CONCENTRATION,
) -> Comparison:
    """Judge whether requests reach the canary at the configured share `expected` (0.1 = weight 10),
    from the requests each variant counted since one fixed origin in the step.

    FAIL when `split_evidence` reaches 1 / alpha: the router is not splitting as configured (two-sided:
    too many canary requests or too few). PASS when it does not and the canary has `min_samples`
    requests; else INCONCLUSIVE. `lower`/`upper` are the `1 - alpha` confidence sequence for the
    share (every share the test would not reject), `estimate` the observed share, `limit` the expected one.
    """
    if not 0 < alpha < 0.5:
        raise ValueError(f"alpha must be in (0, 0.5), got {alpha}")
    counts = (canary, stable)
    if any(not math.isfinite(c) or c < 0 for c in counts):
        return _error(
            f"request counts are not counts: canary {canary}, stable {stable}", limit=expected, relative=False
        )
    total = canary + stable
    if total <= 0:
        return _inconclusive("no requests yet", limit=expected, relative=False, nc=0, ns=0)
    share = canary / total
    evidence = split_evidence(canary, total, expected=expected, concentration=concentration)
    threshold = math.log(1 / alpha)
    lower, upper = _split_bounds(canary, total, threshold=threshold, concentration=concentration)
    nc, ns = int(canary), int(stable)
    counted = (
        f"canary {_pct(share)} of {total:,.0f} requests ({canary:,.0f} canary, {stable:,.0f} stable; "
        f"bounds {_pct(lower)} .. {_pct(upper)}), expected {_pct(expected)}"
    )
    if evidence >= threshold:
        verdict, reason = verdicts.Verdict.FAIL, f"{SPLIT_MISMATCH}: {counted}"
    elif canary >= min_samples:
        verdict, reason = verdicts.Verdict.PASS, f"splitting as configured: {counted}"
    else:
        verdict = verdicts.Verdict.INCONCLUSIVE
        reason = f"not enough canary requests ({nc} < {min_samples}): {counted}"
    return Comparison(verdict, share, lower, upper, expected, False, nc, ns, reason)


SPLIT_MISMATCH = "the router is not splitting as configured"


def _split_bounds(canary: float, total: float, *, threshold: float, concentration: float) -> tuple[float, float]:
    """The confidence sequence for the share: the shares whose `split_evidence` stays below `threshold`,
    found by bisection on each side of the observed share (where the evidence is at most 0)."""
    share = canary / total

    def rejected(p: float) -> bool:
        return split_evidence(canary, total, expected=p, concentration=concentration) >= threshold

    def edge(inside: float, outside: float) -> float:
        if not rejected(outside):
            return outside
        for _ in range(60):
            mid = (inside + outside) / 2
            if rejected(mid):
                outside = mid
            else:
                inside = mid
        return inside

    tiny = 1e-12
    lower = 0.0 if share <= tiny else edge(min(share, 1 - tiny), tiny)
    upper = 1.0 if share >= 1 - tiny else edge(max(share, tiny), 1 - tiny)
    return (0.0 if lower <= tiny else lower), (1.0 if upper >= 1 - tiny else upper)


def _lbeta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


# -- sample-size advice ------------------------------------------------------------------------


def advise_ratio(
    *,
    requests_per_second: float,
    weight: float,
    base_rate: float,
    higher_is_better: bool,
    max_drop: float | None = None,
    max_increase: float | None = None,
    tolerance: float | None = None,
    alpha: float = DEFAULT_ALPHA,
    power: float = DEFAULT_POWER,
    min_samples: int = DEFAULT_MIN_SAMPLES,
    horizon: timedelta = timedelta(days=30),
    stable_weight: float | None = None,
) -> Advice:
    """How long a step at canary `weight` (0.05 = 5%) needs for `judge_ratio` to decide, from the
    route's traffic and the stable `base_rate` (of the template's `good` events).

    `pass_after`: a canary equal to stable passes with probability `power`. `fail_after`: a canary
    regressing by the limit plus `tolerance` (default: the limit again, so 2x the limit) fails with
    probability `power`. Stable gets the rest of the traffic; at weight 0 (shadow) pass 1.0 and the
    mirrored share as `weight` and `stable_weight=1.0`: stable then keeps all traffic. `stable_weight`
    defaults to `1 - weight` (and 1.0 at weight 1). Either is None when not reached in `horizon`.
    """
    _check_levels(alpha, power)
    if max_drop is None and max_increase is None:
        raise ValueError("advise_ratio needs max_drop or max_increase")
    if not 0 < weight <= 1 or requests_per_second <= 0 or not 0 <= base_rate <= 1:
        raise ValueError("weight must be in (0, 1], requests_per_second > 0, base_rate in [0, 1]")
    bad = 1 - base_rate if higher_is_better else base_rate
    relative = max_drop is None
    limit = max_increase if relative else max_drop
    assert limit is not None
    extra = limit if tolerance is None else tolerance
    canary_bad = bad * (1 + limit + extra) if relative else bad + limit + extra
    canary_bad = min(canary_bad, 1.0)
    z = _normal_ppf(power)
    stable_share = stable_weight if stable_weight is not None else (1 - weight if weight < 1 else 1.0)

    def check(seconds: float, *, canary_p: float, fail: bool) -> bool:
        nc, ns = requests_per_second * weight * seconds, requests_per_second * stable_share * seconds
        if nc < 1 or ns < 1:
            return False
        if relative:
            log_limit = math.log1p(limit)
            est, var = math.log(max(canary_p, 1e-12) / max(bad, 1e-12)), _log_ratio_variance(bad, ns, canary_p, nc)
            tau = _tau_log(limit, tolerance)
        else:
            log_limit = limit
            est, var = canary_p - bad, difference_variance(bad * ns, ns, canary_p * nc, nc)
            tau = _tau_absolute(limit, tolerance)
        spread = z * math.sqrt(var)
        if fail:
            return est - spread - mixture_radius(var, alpha=one_sided(alpha), tau=tau) > log_limit
        if not relative:  # the judge's PASS bound reads the variance at the limit too (see `_compare`)
            at_limit = min(bad + limit, 1.0)
            var = max(var, difference_variance(bad * ns, ns, at_limit * nc, nc))
        within = est + spread + mixture_radius(var, alpha=one_sided(1 - power), tau=tau) <= log_limit
        return nc >= min_samples and within

    pass_after = _first_time(lambda s: check(s, canary_p=bad, fail=False), horizon)
    fail_after = _first_time(lambda s: check(s, canary_p=canary_bad, fail=True), horizon)
    return Advice(
        pass_after=pass_after,
        fail_after=fail_after,
        pass_samples=_samples(pass_after, requests_per_second * weight),
        fail_samples=_samples(fail_after, requests_per_second * weight),
    )


def advise_rate_bound(
    *,
    requests_per_second: float,
    weight: float,
    limit: float,
    at_most: bool,
    tolerance: float | None = None,
    alpha: float = DEFAULT_ALPHA,
    power: float = DEFAULT_POWER,
    min_samples: int = DEFAULT_MIN_SAMPLES,
    horizon: timedelta = timedelta(days=30),
) -> Advice:
    """How long `judge_rate_bound` needs at canary `weight`: `pass_after` for a canary halfway between
    0 and a `max` (or between a `min` and 1), `fail_after` for one `tolerance` beyond the bound (default:
    as far again, so twice a `max`, or twice the shortfall `1 - min`), each with probability `power`."""
    _check_levels(alpha, power)
    if not 0 < weight <= 1 or requests_per_second <= 0 or not 0 <= limit <= 1:
        raise ValueError("weight must be in (0, 1], requests_per_second > 0, limit in [0, 1]")
    room = limit if at_most else 1 - limit  # the distance from the bound to the better end
    extra = room if tolerance is None else tolerance
    good_p = limit - room / 2 if at_most else limit + room / 2
    bad_p = min(limit + extra, 1.0) if at_most else max(limit - extra, 0.0)
    z = _normal_ppf(power)
    judged = functools.partial(
        judge_rate_bound,
        limit=limit,
        at_most=at_most,
        alpha=alpha,
        power=power,
        min_samples=min_samples,
        tolerance=tolerance,
    )

    def check(seconds: float, *, p: float, fail: bool) -> bool:
        """The judge itself on the counts of a draw `z` standard errors on the unlucky side of `p`."""
        n = requests_per_second * weight * seconds
        if n < 1:
            return False
        spread = z * math.sqrt(max(p * (1 - p), 0.25 / (n + 1)) / n)
        worse = at_most != fail  # passing, an unlucky draw is worse than p; failing, better
        drawn = min(max(p + spread if worse else p - spread, 0.0), 1.0)
        want = verdicts.Verdict.FAIL if fail else verdicts.Verdict.PASS
        return judged(events=drawn * n, total=n).verdict is want

    pass_after = _first_time(lambda s: check(s, p=good_p, fail=False), horizon) if room > 0 else None
    fail_after = _first_time(lambda s: check(s, p=bad_p, fail=True), horizon) if bad_p != limit else None
    return Advice(
        pass_after=pass_after,
        fail_after=fail_after,
        pass_samples=_samples(pass_after, requests_per_second * weight),
        fail_samples=_samples(fail_after, requests_per_second * weight),
    )


def _log_ratio_variance(stable_p: float, stable_n: float, canary_p: float, canary_n: float) -> float:
    if stable_p <= 0 or canary_p <= 0:
        return math.inf
    return (1 - canary_p) / (canary_n * canary_p) + (1 - stable_p) / (stable_n * stable_p)


def _first_time(decided: Callable[[float], bool], horizon: timedelta) -> timedelta | None:
    """The first time (to the second) at which `decided` holds, by doubling then bisection; the
    conditions grow easier with time, so the search is monotone."""
    limit = horizon.total_seconds()
    hi = 1.0
    while not decided(hi):
        if hi >= limit:
            return None
        hi = min(hi * 2, limit)
    lo = hi / 2
    while hi - lo > 1:
        mid = (lo + hi) / 2
        if decided(mid):
            hi = mid
        else:
            lo = mid
    return timedelta(seconds=math.ceil(hi))


def _samples(after: timedelta | None, rate: float) -> int | None:
    return None if after is None else math.ceil(after.total_seconds() * rate)


def _normal_ppf(p: float) -> float:
    """The standard normal quantile, by bisection on erf (exact enough for advice)."""
    lo, hi = -10.0, 10.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if 0.5 * (1 + math.erf(mid / math.sqrt(2))) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


# -- small helpers -----------------------------------------------------------------------------


def _tau_absolute(limit: float, tolerance: float | None) -> float:
    return max(limit if tolerance is None else tolerance, _MIN_TAU_ABSOLUTE)


def _tau_log(limit: float, tolerance: float | None) -> float:
    extra = limit if tolerance is None else tolerance
    return max(math.log1p(limit + extra) - math.log1p(limit), _MIN_TAU_LOG)


def _error(reason: str, *, limit: float, relative: bool) -> Comparison:
    return Comparison(verdicts.Verdict.ERROR, None, None, None, limit, relative, 0, 0, reason)


def _inconclusive(reason: str, *, limit: float, relative: bool, nc: int, ns: int) -> Comparison:
    return Comparison(verdicts.Verdict.INCONCLUSIVE, None, None, None, limit, relative, nc, ns, reason)


def _explain(verdict: verdicts.Verdict, reason: str, canary_samples: int, min_samples: int) -> str:
    if verdict is verdicts.Verdict.FAIL:
        return f"regression beyond the limit: {reason}"
    if verdict is verdicts.Verdict.PASS:
        return f"within the limit: {reason}"
    if canary_samples < min_samples:
        return f"not enough canary samples ({canary_samples} < {min_samples}): {reason}"
    return f"not enough evidence yet: {reason}"


def _expm1(value: float) -> float:
    return math.inf if value > 700 else math.expm1(value)


def _pct(value: float) -> str:
    return f"{value * 100:.2f}%"


def _pts(value: float) -> str:
    return "inf" if math.isinf(value) else f"{value * 100:+.2f} pts"


def _rel(value: float) -> str:
    return "inf" if math.isinf(value) else "n/a" if math.isnan(value) else f"{value * 100:+.1f}%"


def _secs(value: float) -> str:
    return "+Inf" if math.isinf(value) else f"{value:.3g}s"


def _qname(q: float) -> str:
    return f"{q * 100:g}"
