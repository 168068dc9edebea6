"""Clustered events: `judge.clustering` and `judge.inflation` read how much one arm's counts vary between
time blocks beyond independent trials, and `judge_ratio`/`judge_rate_bound` widen by it."""

from __future__ import annotations

import numpy as np
import pytest

from controller import judge
from controller.gates import Verdict as V


def blocks_of(events: np.ndarray, totals: np.ndarray) -> judge.Blocks:
    e, n = events.astype(float), totals.astype(float)
    return judge.Blocks(len(n), e.sum(), n.sum(), (e * e).sum(), (e * n).sum(), (n * n).sum())


def independent(seed: int, *, blocks: int = 64, per_block: int = 600, p: float = 0.005) -> judge.Blocks:
    rng = np.random.default_rng(seed)
    n = rng.poisson(per_block, blocks)
    return blocks_of(rng.binomial(n, p), n)


def bursty(
    seed: int, *, blocks: int = 64, per_block: int = 600, burst: float = 0.05, share: float = 0.1
) -> judge.Blocks:
    rng = np.random.default_rng(seed)
    n = rng.poisson(per_block, blocks)
    return blocks_of(rng.binomial(n, np.where(rng.random(blocks) < burst, share, 0.0005)), n)


@pytest.mark.parametrize("seed", range(5))
def test_independent_events_have_a_design_effect_near_one(seed: int) -> None:
    effect, rho = judge.clustering(independent(seed))
    assert 1.0 <= effect < 1.7 and rho < 0.002


@pytest.mark.parametrize("seed", range(5))
def test_bursts_have_a_large_design_effect(seed: int) -> None:
    effect, rho = judge.clustering(bursty(seed))
    assert effect > 10 and rho > 0.01


@pytest.mark.parametrize(
    ("blocks", "why"),
    [
        (None, "not measured"),
        (judge.Blocks(1, 5, 100, 25, 500, 10_000), "one block"),
        (judge.Blocks(3, 0, 0, 0, 0, 0), "no requests"),
        (judge.Blocks(3, 0, 300, 0, 0, 30_000), "no events"),
        (judge.Blocks(3, 300, 300, 30_000, 30_000, 30_000), "every request an event"),
    ],
)
def test_nothing_to_measure_is_independence(blocks: judge.Blocks | None, why: str) -> None:
    assert judge.clustering(blocks) == (1.0, 0.0), why


def test_the_canary_gets_stables_burstiness_before_its_own_shows() -> None:
    """Stable, with ten times the requests a block, shows the correlation; a canary whose blocks show no
    burst yet is still widened by what that correlation means at its block sizes (smaller, as its blocks
    are smaller)."""
    stable = bursty(1, per_block=6000)
    canary = independent(2, per_block=600, p=0.0005)
    s_factor, c_factor = judge.inflation(stable, canary)
    own, _ = judge.clustering(canary)
    assert s_factor > 100 and c_factor > 10 * own and c_factor < s_factor


def outages(seed: int, *, per_block: int, out: list[int]) -> judge.Blocks:
    """64 blocks of 0.05% errors, and 10% in the blocks `out` (a provider's outages)."""
    rng = np.random.default_rng(seed)
    n = np.full(64, per_block)
    p = np.where(np.isin(np.arange(64), out), 0.1, 0.0005)
    return blocks_of(rng.binomial(n, p), n)


def test_bursts_keep_an_a_a_canary_from_failing_and_a_steady_regression_still_fails() -> None:
    """The same counts, judged as independent trials and with the blocks they came in: both arms' providers
    fail alike, but the canary's happened to be out in four blocks and stable's in one."""
    stable, canary = outages(3, per_block=6000, out=[40]), outages(4, per_block=600, out=[5, 20, 33, 60])
    counts = dict(
        stable_good=stable.events, stable_total=stable.total, canary_good=canary.events, canary_total=canary.total
    )
    plain = judge.judge_ratio(**counts, higher_is_better=False, max_increase=0.5)
    widened = judge.judge_ratio(
        **counts, higher_is_better=False, max_increase=0.5, stable_blocks=stable, canary_blocks=canary
    )
    assert plain.verdict is V.FAIL, plain.reason
    assert widened.verdict is not V.FAIL and "events clustered in time" in widened.reason
    assert widened.upper is not None and plain.upper is not None and widened.upper > plain.upper

    steady_s, steady_c = independent(5, per_block=6000, p=0.005), independent(6, per_block=600, p=0.02)
    counts = dict(
        stable_good=steady_s.events,
        stable_total=steady_s.total,
        canary_good=steady_c.events,
        canary_total=steady_c.total,
    )
    j = judge.judge_ratio(
        **counts, higher_is_better=False, max_increase=0.5, stable_blocks=steady_s, canary_blocks=steady_c
    )
    assert j.verdict is V.FAIL, j.reason


def test_a_bound_widens_for_bursts_too() -> None:
    canary = outages(7, per_block=600, out=[3, 9, 30, 50])
    rate = canary.events / canary.total
    kwargs = dict(events=canary.events, total=canary.total, limit=rate / 2, at_most=True)
    assert judge.judge_rate_bound(**kwargs).verdict is V.FAIL
    widened = judge.judge_rate_bound(**kwargs, blocks=canary)
    assert widened.lower is not None and widened.lower < judge.judge_rate_bound(**kwargs).lower  # type: ignore[operator]


@pytest.mark.parametrize(
    ("stable", "canary", "want"),
    [
        ((0, 20_000), (0, 2_000), V.PASS),  # clean beside clean: exact, so 2,000 clean requests show it
        ((0, 20_000), (0, 300), V.INCONCLUSIVE),
        ((100, 20_000), (10, 2_000), V.INCONCLUSIVE),  # 0.5% each: not yet within 0.25 points
        ((1_000, 200_000), (100, 20_000), V.PASS),
        ((1_000, 200_000), (200, 20_000), V.INCONCLUSIVE),  # 1%: 0.5 points worse, never passes
    ],
)
def test_judge_within_passes_only_on_evidence(stable: tuple[int, int], canary: tuple[int, int], want: V) -> None:
    j = judge.judge_within(
        stable_bad=stable[0], stable_total=stable[1], canary_bad=canary[0], canary_total=canary[1], margin=0.0025
    )
    assert j.verdict is want, j.reason


def test_judge_within_keeps_power_for_a_canary_at_the_margin() -> None:
    """A canary exactly 0.25 points worse than stable, looked at every 500 of its requests up to 100,000:
    passed in at most 1 - power of 400 runs, though each run has 200 looks."""
    rng = np.random.default_rng(5)
    passed = 0
    for _ in range(400):
        s = np.cumsum(rng.binomial(5000, 0.005, 200))
        c = np.cumsum(rng.binomial(500, 0.0075, 200))
        for k in range(0, 200, 5):
            n = (k + 1) * 500
            j = judge.judge_within(stable_bad=s[k], stable_total=10 * n, canary_bad=c[k], canary_total=n, margin=0.0025)
            if j.verdict is V.PASS:
                passed += 1
                break
    assert passed / 400 <= 1 - judge.DEFAULT_POWER
