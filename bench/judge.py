"""Seeded simulation of canary judges: `controller.judge` beside a Flagger-style and a Kayenta-style judge.

Run `python bench/judge.py` from the repository root. Prints one table: false rollbacks per rollout
on A/A streams, and detection rate, median canary requests and median time to a FAIL on A/B streams
(over all rollouts: "-" when fewer than half are detected within the step); then the issue's targets,
each with yes or NO.

Each baseline is also calibrated on the A/A streams (its loosest level with at most 1% false rollbacks)
and ours to at most that baseline's rate, every level on a ladder eight steps to a decade, so that
ours is compared at an equal or lower false-alarm rate. ~14 minutes on 2 cores with the defaults
(1000 A/A rollouts per weight, so a rate moves in steps of 0.1%); `--aa 200 --ab 50` for a quick look.

A second table measures the traffic-split check (`controller.split`, `judge.judge_split`): false alarms
per step when the router splits as configured (10,000 simulated days per weight and traffic level,
looked at every minute with the origins the controller uses), and how soon a wrong split fails. About
2 minutes; `--only split` runs it alone, `--split-steps 500` for a quick look.
"""

from __future__ import annotations

import argparse
import bisect
import math
import multiprocessing
import os
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from scipy import special, stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controller import analysis, gates, judge, spec, split

RPS = 10.0  # requests per second on the route
BIN_S = 300  # metrics resolution and the cadence of every judge's looks: 5 minutes
STEP_S = 24 * 3600  # one step, judged for 24 simulated hours
BINS = STEP_S // BIN_S
WEIGHTS = (0.01, 0.05, 0.25)

EVAL_PASS = 0.80  # stable eval pass rate; A/B: 3 points lower
ERROR_RATE = 0.01  # stable error rate; A/B: doubled
LAT_MEDIAN, LAT_SIGMA = 0.8, 0.6  # lognormal latency in seconds; A/B: every latency (so p95) x1.15
EFFECTS = {"eval": -0.03, "errors": 2.0, "p95": 1.15}
INSIDE = -0.008  # an eval drop inside the 1-point limit: failing it is a false rollback too

# The gates every judge gets: the regression each must not exceed.
EVAL_MAX_DROP = 0.01  # 1 point
ERROR_MAX_INCREASE = 0.5  # 1.5 x stable
P95_MAX_INCREASE = 0.05  # 1.05 x stable
EVAL_TOLERANCE = 0.02  # ours only: tune the sequence to catch a drop 2 points beyond the limit (3 points)

BUCKETS = np.append(0.05 * 1.1 ** np.arange(0, 60), np.inf)  # fine buckets: 50 ms .. ~15 s, then +Inf
FLAGGER_THRESHOLD = 5  # Flagger's documented example: roll back after 5 failed checks
KAYENTA_CONFIDENCE = 0.98  # Kayenta's Mann-Whitney classifier at 0.98 confidence
CALIBRATED = ", calibrated on A/A"


@dataclass
class Streams:
    """Per-bin counts for R rollouts: arrays shaped (R, BINS) or (R, BINS, len(BUCKETS))."""

    n: dict[str, Any]
    good: dict[str, Any]
    errors: dict[str, Any]
    hist: dict[str, Any]


def bucket_probs(scale: float) -> Any:
    cdf = stats.lognorm.cdf(BUCKETS[:-1], s=LAT_SIGMA, scale=LAT_MEDIAN * scale)
    return np.diff(np.concatenate([[0.0], cdf, [1.0]]))


def simulate(rng: np.random.Generator, *, rollouts: int, weight: float, effect: str | None) -> Streams:
    n, good, errors, hist = {}, {}, {}, {}
    for arm, share in (("stable", 1 - weight), ("canary", weight)):
        bad = arm == "canary" and effect
        n[arm] = rng.poisson(RPS * BIN_S * share, size=(rollouts, BINS))
        p_eval = EVAL_PASS + {"eval": EFFECTS["eval"], "inside": INSIDE}.get(str(bad), 0)
        p_err = ERROR_RATE * (EFFECTS["errors"] if bad == "errors" else 1)
        good[arm] = rng.binomial(n[arm], p_eval)
        errors[arm] = rng.binomial(n[arm], p_err)
        probs = bucket_probs(EFFECTS["p95"] if bad == "p95" else 1.0)
        hist[arm] = rng.multinomial(n[arm], probs).astype(np.int32)
    return Streams(n, good, errors, hist)


# -- the three judges: each returns, per rollout, the first look (bin index) that fails, or -1 ----------


def gates_at(alpha: float | None = None) -> dict[str, spec.Gate]:
    """The gates every judge gets: ours at `alpha` (the default when None)."""
    level = {} if alpha is None else {"alpha": alpha}
    return {
        "eval": spec.Gate.model_validate(
            {"use": "eval_pass_rate", "maxDrop": EVAL_MAX_DROP, "tolerance": EVAL_TOLERANCE, **level}
        ),
        "errors": spec.Gate.model_validate({"use": "error_rate", "maxIncrease": ERROR_MAX_INCREASE, **level}),
        "p95": spec.Gate.model_validate({"use": "latency_p95", "maxIncrease": P95_MAX_INCREASE, **level}),
    }


METHODS = {
    "eval": gates.Method("ratio", counts_good=True),
    "errors": gates.Method("ratio", counts_good=False),
    "p95": gates.Method("quantile", quantile=0.95),
}


def ours(s: Streams, gate_names: tuple[str, ...], alpha: float | None = None) -> tuple[Any, Any]:
    """`controller.gates.judge` (the path every gate takes, onto `controller.judge`) on the counts since
    the step began, at every look, with every gate at `alpha` (None: the default). Returns, per rollout,
    the first look that fails and the first that passes (-1: none). Rollouts are shared among processes
    (forked, so the streams are not copied)."""
    global _STREAMS
    _STREAMS = s
    rollouts = s.n["stable"].shape[0]
    workers = min(os.cpu_count() or 1, max(1, rollouts // 20))
    chunks = [(int(c[0]), int(c[-1]) + 1, gate_names, alpha) for c in np.array_split(np.arange(rollouts), workers)]
    if workers == 1:
        parts = [_ours_chunk(chunks[0])]
    else:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            parts = pool.map(_ours_chunk, chunks)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


_STREAMS: Streams | None = None  # what the forked workers of `ours` judge


def _ours_chunk(task: tuple[int, int, tuple[str, ...], float | None]) -> tuple[Any, Any]:
    start, stop, gate_names, alpha = task
    assert _STREAMS is not None
    s = Streams(*({k: v[start:stop] for k, v in part.items()} for part in vars(_STREAMS).values()))
    gate_specs = gates_at(alpha)
    rollouts = stop - start
    first_fail = np.full(rollouts, -1)
    first_pass = np.full(rollouts, -1)
    cum = {k: {arm: np.cumsum(v[arm], axis=1) for arm in v} for k, v in vars(s).items()}
    le = BUCKETS.tolist()
    for r in range(rollouts):
        for t in range(BINS):
            verdicts = []
            n = {arm: float(cum["n"][arm][r, t]) for arm in ("stable", "canary")}
            for name in gate_names:
                measured = {}
                for arm in ("stable", "canary"):
                    if name == "p95":
                        buckets = tuple(zip(le, np.cumsum(cum["hist"][arm][r, t]).tolist(), strict=True))
                        measured[arm] = gates.Measurement(0.0, n[arm], buckets)
                    else:
                        events = float(cum["good" if name == "eval" else "errors"][arm][r, t])
                        measured[arm] = gates.Measurement(events / n[arm] if n[arm] else None, n[arm])
                verdicts.append(
                    gates.judge(
                        gate_specs[name],
                        stable=measured["stable"],
                        canary=measured["canary"],
                        min_samples=0,
                        method=METHODS[name],
                    ).verdict
                )
            verdict = gates.worst(verdicts)
            if verdict is gates.Verdict.PASS and first_pass[r] < 0:
                first_pass[r] = t
            if verdict is gates.Verdict.FAIL:
                first_fail[r] = t
                break
    return first_fail, first_pass


def per_bin_values(s: Streams, arm: str) -> dict[str, Any]:
    """What Flagger and Kayenta query: each metric over each 5-minute interval (NaN without traffic)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        n = s.n[arm].astype(float)
        return {
            "eval": np.where(n > 0, s.good[arm] / n, np.nan),
            "errors": np.where(n > 0, s.errors[arm] / n, np.nan),
            "p95": hist_p95(s.hist[arm]),
        }


def hist_p95(hist: Any) -> Any:
    """Vectorised histogram_quantile(0.95) over (R, BINS, buckets) counts."""
    cum = np.cumsum(hist, axis=-1).astype(float)
    total = cum[..., -1:]
    rank = 0.95 * total
    idx = np.minimum((cum < rank).sum(axis=-1), len(BUCKETS) - 2)  # a rank in +Inf reads the top bound
    upper = BUCKETS[idx]
    lower = np.where(idx > 0, BUCKETS[np.maximum(idx - 1, 0)], 0.0)
    c_hi = np.take_along_axis(cum, idx[..., None], axis=-1)[..., 0]
    c_lo = np.where(idx > 0, np.take_along_axis(cum, np.maximum(idx - 1, 0)[..., None], axis=-1)[..., 0], 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(c_hi > c_lo, (rank[..., 0] - c_lo) / (c_hi - c_lo), 1.0)
    return np.where(total[..., 0] > 0, lower + (upper - lower) * frac, np.nan)


def worse_by(metric: str, canary: Any, stable: Any) -> Any:
    """Whether canary values are beyond the gate's limit against stable ones (the same limits as ours)."""
    if metric == "eval":
        return canary < stable - EVAL_MAX_DROP
    if metric == "errors":
        return canary > stable * (1 + ERROR_MAX_INCREASE)
    return canary > stable * (1 + P95_MAX_INCREASE)


TRUE_STABLE = {
    "eval": EVAL_PASS,
    "errors": ERROR_RATE,
    "p95": float(stats.lognorm.ppf(0.95, s=LAT_SIGMA, scale=LAT_MEDIAN)),
}


def flagger_counts(s: Streams, gate_names: tuple[str, ...]) -> Any:
    """Flagger: each interval, a check fails when the canary's value crosses a fixed threshold (set
    here at the true stable value plus the limit, which Flagger users must guess). Returns the running
    count of failed checks; Flagger rolls back once it reaches the analysis `threshold`."""
    values = per_bin_values(s, "canary")
    failed = np.zeros(s.n["stable"].shape, dtype=bool)
    for metric in gate_names:
        failed |= worse_by(metric, values[metric], TRUE_STABLE[metric])
    return np.cumsum(failed, axis=1)


def flagger(counts: Any, *, threshold: int) -> Any:
    hit = counts >= threshold
    return np.where(hit.any(axis=1), hit.argmax(axis=1), -1)


def kayenta_scores(s: Streams, gate_names: tuple[str, ...]) -> Any:
    """Kayenta: at each look, a two-sided Mann-Whitney U test of the canary's per-interval values
    against stable's since the start; a metric fails when the p-value is below 1 - confidence and the
    canary's mean is worse beyond the limit; any failing metric fails the canary. Returns, per rollout
    and look, the smallest p-value among metrics worse beyond the limit, so any confidence can be read."""
    canary, stable = per_bin_values(s, "canary"), per_bin_values(s, "stable")
    rollouts = s.n["stable"].shape[0]
    scores = np.ones((rollouts, BINS))
    for t in range(2, BINS):
        for metric in gate_names:
            x, y = np.nan_to_num(canary[metric][:, : t + 1]), np.nan_to_num(stable[metric][:, : t + 1])
            p = stats.mannwhitneyu(x, y, axis=1, method="asymptotic").pvalue
            worse = worse_by(metric, x.mean(axis=1), y.mean(axis=1))
            scores[:, t] = np.minimum(scores[:, t], np.where(worse, p, 1.0))
    return scores


def kayenta(scores: Any, *, confidence: float) -> Any:
    hit = scores < 1 - confidence
    return np.where(hit.any(axis=1), hit.argmax(axis=1), -1)


def ladder(loosest: float, tightest: float) -> tuple[float, ...]:
    """Error levels from `loosest` down to `tightest`, eight to a decade: every judge's level is
    calibrated on a ladder this fine (ours `alpha`, Kayenta's 1 - confidence)."""
    steps = round(8 * math.log10(loosest / tightest))
    return tuple(float(f"{loosest * 10 ** (-k / 8):.3g}") for k in range(steps + 1))


OURS_LADDER = ladder(0.4, 0.005)  # alpha, loosest first (any alpha below 0.5 is a valid setting)
KAYENTA_LADDER = tuple(1 - level for level in ladder(0.02, 1e-7))  # confidence, loosest first


def calibrate_ours(false_alarms: dict[float, Any], aa: Streams, target: float) -> float:
    """The loosest `alpha` on the ladder whose A/A false rollbacks stay within `target`: ours calibrated
    the way the baselines are, for a comparison at an equal or lower false-alarm rate. A smaller alpha
    only widens the bounds, so false rollbacks fall with it and a bisection finds it. `false_alarms`
    caches each alpha's first FAILs on `aa`."""

    def within(alpha: float) -> bool:
        if alpha not in false_alarms:
            false_alarms[alpha] = ours(aa, tuple(EFFECTS), alpha)[0]
        return bool((false_alarms[alpha] >= 0).mean() <= target)

    first = bisect.bisect_left(OURS_LADDER, True, key=within)  # within() is False, ..., False, True, ...
    return OURS_LADDER[min(first, len(OURS_LADDER) - 1)]


def calibrate_kayenta(false_alarm_scores: list[Any], target: float) -> float:
    """The lowest confidence on the ladder whose false rollbacks stay within `target` on every stream
    (1.0, no FAIL ever, when none does)."""
    for confidence in KAYENTA_LADDER:
        if all((kayenta(sc, confidence=confidence) >= 0).mean() <= target for sc in false_alarm_scores):
            return confidence
    return 1.0


# -- the table -----------------------------------------------------------------------------------


def median_hours(first: Any) -> float:
    """The median time to a FAIL over all rollouts, a rollout never failed counting as never (so the
    median is infinite when fewer than half are detected): comparable between judges that detect
    different shares, unlike the median over the detected ones alone."""
    when = np.where(first >= 0, (first + 1) * BIN_S / 3600, np.inf)
    return float(np.median(when))


def median_requests_and_time(first: Any, s: Streams) -> tuple[str, str]:
    """Median canary requests and time to a FAIL over all rollouts (never failed: never, see
    `median_hours`)."""
    hours = median_hours(first)
    if math.isinf(hours):
        return "-", "-"
    requests = np.cumsum(s.n["canary"], axis=1)[np.arange(len(first)), np.maximum(first, 0)]
    requests = np.where(first >= 0, requests, np.inf)
    return f"{int(np.median(requests)):,}", f"{hours:.1f}h"


def calibrate_flagger(false_alarm_counts: list[Any], target: float) -> int:
    """The smallest failed-check threshold whose false rollbacks stay within `target` on every stream."""
    for threshold in range(FLAGGER_THRESHOLD, BINS + 1):
        if all((flagger(c, threshold=threshold) >= 0).mean() <= target for c in false_alarm_counts):
            return threshold
    return BINS + 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--aa", type=int, default=1000, help="A/A rollouts per weight (default 1000)")
    parser.add_argument("--ab", type=int, default=200, help="A/B rollouts per weight and effect (default 200)")
    parser.add_argument("--seed", type=int, default=20261123)
    parser.add_argument(
        "--weights", type=float, nargs="+", default=WEIGHTS, help="canary weights (default 0.01 0.05 0.25)"
    )
    parser.add_argument(
        "--split-steps", type=int, default=10000, help="traffic split: A/A steps per weight and traffic (default 10000)"
    )
    parser.add_argument(
        "--split-ab", type=int, default=200, help="traffic split: wrong-split steps per case and traffic (default 200)"
    )
    parser.add_argument("--only", choices=("gates", "split"), default=None, help="run one of the two benches")
    args = parser.parse_args(argv)
    verdicts: list[str] = []
    if args.only != "split":
        verdicts += gates_bench(args)
    if args.only != "gates":
        if verdicts:
            print()
        verdicts += split_bench(args)
    print("\ntargets:")
    print("\n".join(verdicts))
    return 0


def gates_bench(args: argparse.Namespace) -> list[str]:
    """The gates' judges: prints their table, returns the target lines."""
    rng = np.random.default_rng(args.seed)
    started = time.monotonic()

    rows: list[list[str]] = []
    verdicts: list[str] = []
    gates_all = tuple(EFFECTS)
    for weight in args.weights:
        aa = simulate(rng, rollouts=args.aa, weight=weight, effect=None)
        ab = {effect: simulate(rng, rollouts=args.ab, weight=weight, effect=effect) for effect in EFFECTS}
        inside = simulate(rng, rollouts=args.ab, weight=weight, effect="inside")
        ab_gate = {"eval": ("eval",), "errors": ("errors",), "p95": ("p95",), "inside": ("eval",)}
        ours_aa, ours_aa_pass = ours(aa, gates_all)
        scores_aa = kayenta_scores(aa, gates_all)
        scores_ab = {effect: kayenta_scores(streams, ab_gate[effect]) for effect, streams in ab.items()}
        scores_ab["inside"] = kayenta_scores(inside, ("eval",))
        counts_aa = flagger_counts(aa, gates_all)
        counts_ab = {effect: flagger_counts(streams, ab_gate[effect]) for effect, streams in ab.items()}
        counts_ab["inside"] = flagger_counts(inside, ("eval",))
        judges: dict[str, tuple[Any, Any]] = {
            "ours (mixture SPRT)": (ours_aa, lambda e, st, g=ab_gate: ours(st, g[e])[0]),
        }
        baselines: dict[str, tuple[Any, Any]] = {}
        for label, n in (
            ("", FLAGGER_THRESHOLD),
            (CALIBRATED, calibrate_flagger([counts_aa], 0.01)),
            (", calibrated on A/A + inside", calibrate_flagger([counts_aa, counts_ab["inside"]], 0.01)),
        ):
            baselines[f"flagger N={n}{label}"] = (
                flagger(counts_aa, threshold=n),
                lambda e, st, n=n, c=counts_ab: flagger(c[e], threshold=n),
            )
        for label, confidence in (
            ("", KAYENTA_CONFIDENCE),
            (CALIBRATED, calibrate_kayenta([scores_aa], 0.01)),
            (", calibrated on A/A + inside", calibrate_kayenta([scores_aa, scores_ab["inside"]], 0.01)),
        ):
            level = f"{confidence:.8g}" if confidence < 1 else f"none up to {KAYENTA_LADDER[-1]:.8g}"
            baselines[f"kayenta MWU {level}{label}"] = (
                kayenta(scores_aa, confidence=confidence),
                lambda e, st, k=confidence, sc=scores_ab: kayenta(sc[e], confidence=k),
            )
        # ours calibrated like each A/A-calibrated baseline, to at most that baseline's A/A false rollbacks
        false_alarms: dict[float, Any] = {}
        rivals: dict[str, str] = {}  # A/A-calibrated baseline -> the row of ours it is compared with
        for name, (aa_first, _) in baselines.items():
            if name.endswith(CALIBRATED):
                alpha = calibrate_ours(false_alarms, aa, min(0.01, float((aa_first >= 0).mean())))
                rivals[name] = f"ours alpha={alpha:g}, calibrated on A/A"
                judges[rivals[name]] = (
                    false_alarms[alpha],
                    lambda e, st, g=ab_gate, a=alpha: ours(st, g[e], a)[0],
                )
        judges.update(baselines)
        results: dict[str, Result] = {}
        for name, (aa_first, run) in judges.items():
            result = results[name] = Result(
                false_rollbacks=float((aa_first >= 0).mean()),
                inside_failed=float((run("inside", inside) >= 0).mean()),
                detected={},
                hours={},
            )
            row = [f"{weight:.0%}", name, f"{result.false_rollbacks:.2%}", f"{result.inside_failed:.1%}"]
            for effect, streams in ab.items():
                first = run(effect, streams)
                requests, hours = median_requests_and_time(first, streams)
                result.detected[effect] = float((first >= 0).mean())
                result.hours[effect] = median_hours(first)
                row += [f"{result.detected[effect]:.0%}", requests, hours]
            rows.append(row)
        passed = ours_aa_pass[ours_aa_pass >= 0]
        when = f"{(np.median(passed) + 1) * BIN_S / 3600:.1f}h" if passed.size else "-"
        rows.append([f"{weight:.0%}", "  ours, A/A: PASS reached", f"{passed.size / args.aa:.0%}, median {when}"])
        rows[-1] += [""] * 10
        rows.append([""] * 13)
        verdicts += targets(weight, results, rivals)

    header = ["weight", "judge", "A/A: false rollback", "eval -0.8pt (inside limit): failed"]
    for effect in ("eval -3pts", "errors x2", "p95 +15%"):
        header += [f"{effect}: detected", "median req", "median time"]
    print_table(header, rows)
    print(
        f"\n{RPS:g} req/s, one 24h step judged every {BIN_S // 60} min; {args.aa} A/A and {args.ab} A/B rollouts "
        f"per weight; limits: eval maxDrop {EVAL_MAX_DROP:.0%}, errors maxIncrease {ERROR_MAX_INCREASE:.0%}, "
        f"p95 maxIncrease {P95_MAX_INCREASE:.0%}; ours at alpha {judge.DEFAULT_ALPHA}, power {judge.DEFAULT_POWER}; "
        f"seed {args.seed}; {time.monotonic() - started:.0f}s"
    )
    return verdicts


@dataclass
class Result:
    false_rollbacks: float  # A/A
    inside_failed: float
    detected: dict[str, float]  # effect -> share detected within the step
    hours: dict[str, float]  # effect -> median hours to the FAIL (inf: never)


def targets(weight: float, results: dict[str, Result], rivals: dict[str, str]) -> list[str]:
    """The issue's targets, checked on this weight's results: at most 1% false rollbacks per rollout in
    A/A, 95% detection of the 3-point eval drop at 5%, and faster median detection than each baseline
    at an equal or lower A/A false-rollback rate (ours calibrated to that baseline's rate on A/A)."""
    mine = results["ours (mixture SPRT)"]
    out = [
        f"  {weight:.0%}: ours at defaults: A/A false rollbacks {mine.false_rollbacks:.2%} <= 1%: "
        + _yes(mine.false_rollbacks <= 0.01)
    ]
    if weight == 0.05:
        out.append(
            f"  {weight:.0%}: ours at defaults: eval -3pts detected {mine.detected['eval']:.0%} >= 95%: "
            + _yes(mine.detected["eval"] >= 0.95)
        )
    for baseline, row in rivals.items():
        theirs, ours_ = results[baseline], results[row]
        faster = all(
            ours_.hours[e] < theirs.hours[e]
            or (math.isinf(theirs.hours[e]) and ours_.detected[e] >= theirs.detected[e])
            for e in EFFECTS
        )
        times = ", ".join(f"{e} {ours_.hours[e]:.2f}h vs {theirs.hours[e]:.2f}h" for e in EFFECTS)
        out.append(
            f"  {weight:.0%}: {row} (A/A {ours_.false_rollbacks:.2%}) against {baseline} "
            f"(A/A {theirs.false_rollbacks:.2%}): {times}: faster: {_yes(faster)}"
        )
    return out


def _yes(ok: bool) -> str:
    return "yes" if ok else "NO"


def print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True))  # noqa: E731
    print(line(header))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print(line(r))


# -- the traffic-split check ---------------------------------------------------------------------------

SPLIT_WEIGHTS = (1, 5, 25, 50)  # configured canary weights, percent
SPLIT_RPS = (1.0, 10.0, 100.0)  # requests per second on the route
SPLIT_TICK_S = 60  # the controller looks every minute (the judge's cadence); counts per minute
SPLIT_INTERVAL = timedelta(seconds=BIN_S)  # the rollout's analysis interval: 5 minutes
SPLIT_WRONG = ((10, 50), (5, 2), (25, 0))  # (configured, real) percent: a router that does not split as told
SPLIT_TARGET = 0.001  # at most 0.1% false alarms per step when the split is right
SPLIT_CHUNK = 2000  # steps simulated at once (memory)
EPOCH = 19675 * 86400  # a midnight: steps begin on whole minutes after it, so origins fall on whole minutes


@dataclass
class SplitRun:
    """One (configured, real, traffic) case: per step, the first look that failed (-1: none) and the
    requests counted at it, plus the same statistic over the gates' sliding windows, for comparison."""

    first: Any
    requests: Any
    sliding_first: Any


def split_case(rng: np.random.Generator, *, steps: int, rps: float, configured: int, real: int) -> SplitRun:
    parts = [
        _split_chunk(rng, steps=min(SPLIT_CHUNK, steps - i), rps=rps, configured=configured, real=real)
        for i in range(0, steps, SPLIT_CHUNK)
    ]
    return SplitRun(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("first", "requests", "sliding_first")))


def _split_chunk(rng: np.random.Generator, *, steps: int, rps: float, configured: int, real: int) -> SplitRun:
    """Simulate `steps` steps of one day: each minute's requests (Poisson), each sent to the canary with
    the real share, except in the minutes before the controller wrote the step's weight (uniform within
    one interval), when the previous step's weight (a fifth of this one) was still in force. At every
    look, count from the origin `controller.split.look` gives and judge with `judge.judge_split`."""
    bins = STEP_S // SPLIT_TICK_S
    total = rng.poisson(rps * SPLIT_TICK_S, size=(steps, bins))
    lag = rng.integers(0, BIN_S // SPLIT_TICK_S, size=steps)
    share = np.where(np.arange(bins)[None, :] < lag[:, None], configured // 5, real) / 100
    canary = rng.binomial(total, share)
    cum_n = np.concatenate([np.zeros((steps, 1)), np.cumsum(total, axis=1)], axis=1)
    cum_k = np.concatenate([np.zeros((steps, 1)), np.cumsum(canary, axis=1)], axis=1)
    since = EPOCH + rng.integers(0, 86400 // SPLIT_TICK_S, size=steps) * SPLIT_TICK_S  # any phase
    origin_bin, alpha = _split_origins(since, bins)
    expected = configured / 100
    rows = np.arange(steps)
    first = np.full(steps, -1)
    requests = np.zeros(steps)
    sliding_first = np.full(steps, -1)
    threshold = -np.log(np.where(alpha > 0, alpha, 1.0))
    for t in range(1, bins + 1):
        judged = origin_bin[:, t] >= 0
        n = cum_n[rows, t] - cum_n[rows, np.maximum(origin_bin[:, t], 0)]
        k = cum_k[rows, t] - cum_k[rows, np.maximum(origin_bin[:, t], 0)]
        # a sound filter: the real judge FAILs only where the evidence reaches log(1/alpha); look at those
        near = judged & (first < 0) & (n > 0) & (_split_evidence(k, n, expected) >= threshold[t] - 1)
        for r in np.flatnonzero(near):
            j = judge.judge_split(canary=k[r], stable=n[r] - k[r], expected=expected, alpha=alpha[t])
            if j.verdict is gates.Verdict.FAIL:
                first[r], requests[r] = t, n[r]
        w = int(analysis.window(SPLIT_INTERVAL, timedelta(seconds=t * SPLIT_TICK_S)).total_seconds()) // SPLIT_TICK_S
        start = max(t - w, 0)
        n_s, k_s = cum_n[:, t] - cum_n[:, start], cum_k[:, t] - cum_k[:, start]
        hit = (sliding_first < 0) & (n_s > 0)
        hit &= _split_evidence(k_s, n_s, expected) >= math.log(1 / judge.DEFAULT_SPLIT_ALPHA)
        sliding_first[hit] = t
    _check_evidence(cum_k, cum_n, origin_bin, expected)
    return SplitRun(first, requests, sliding_first)


def _split_origins(since: Any, bins: int) -> tuple[Any, Any]:
    """Per step and look (minute t = 1..bins): the bin the look counts from (-1: not judged), and per
    look the alpha, from `controller.split.look`. The origin depends on the level alone (a level is a
    range of ages), so `look` is asked once per step and level, and checked against a sample of looks."""
    ages = np.arange(bins + 1) * SPLIT_TICK_S
    levels: dict[int, int] = {}  # level -> the last look at that level
    alpha = np.zeros(bins + 1)
    probe = datetime.fromtimestamp(EPOCH, UTC)
    for t in range(1, bins + 1):
        at = probe + timedelta(seconds=int(ages[t]))
        seen = split.look(since=probe, at=at, interval=SPLIT_INTERVAL) or _level_of(probe, at)
        if seen is not None:
            levels[seen.level] = t
            alpha[t] = seen.alpha
    origin_bin = np.full((len(since), bins + 1), -1)
    for level, last in sorted(levels.items()):
        span = [t for t in range(1, bins + 1) if alpha[t] == judge.DEFAULT_SPLIT_ALPHA / 2 ** (level + 1)]
        for r, start in enumerate(since.tolist()):
            begun = datetime.fromtimestamp(start, UTC)
            found = split.look(since=begun, at=begun + timedelta(seconds=int(ages[last])), interval=SPLIT_INTERVAL)
            assert found is not None and found.level == level
            offset = int((found.origin - begun).total_seconds()) // SPLIT_TICK_S
            for t in span:
                if t - offset >= SPLIT_INTERVAL.total_seconds() // SPLIT_TICK_S:  # at least an interval
                    origin_bin[r, t] = offset
    rng = np.random.default_rng(0)
    for r, t in zip(rng.integers(0, len(since), 200), rng.integers(1, bins + 1, 200), strict=True):
        begun = datetime.fromtimestamp(int(since[r]), UTC)
        found = split.look(since=begun, at=begun + timedelta(seconds=int(ages[t])), interval=SPLIT_INTERVAL)
        want = -1 if found is None else int((found.origin - begun).total_seconds()) // SPLIT_TICK_S
        assert origin_bin[r, t] == want, (r, t, origin_bin[r, t], want)
    return origin_bin, alpha


def _level_of(since: datetime, at: datetime) -> split.Look | None:
    """The level of a look `split.look` does not judge yet (too young at level 0): none, or level 0."""
    return None if at - since < 2 * SPLIT_INTERVAL else split.Look(since, at, 0, judge.DEFAULT_SPLIT_ALPHA / 2)


def _split_evidence(k: Any, n: Any, expected: float) -> Any:
    """`judge.split_evidence`, vectorised (checked against it in `_check_evidence`)."""
    c = judge.SPLIT_CONCENTRATION
    a, b = c * expected, c * (1 - expected)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (
            special.betaln(a + k, b + n - k)
            - special.betaln(a, b)
            - k * np.log(expected)
            - (n - k) * np.log1p(-expected)
        )


def _check_evidence(cum_k: Any, cum_n: Any, origin_bin: Any, expected: float) -> None:
    rng = np.random.default_rng(1)
    for r, t in zip(rng.integers(0, len(cum_n), 50), rng.integers(1, cum_n.shape[1], 50), strict=True):
        o = max(origin_bin[r, t], 0)
        k, n = float(cum_k[r, t] - cum_k[r, o]), float(cum_n[r, t] - cum_n[r, o])
        if n > 0:
            mine = judge.split_evidence(k, n, expected=expected)
            assert abs(float(_split_evidence(np.array(k), np.array(n), expected)) - mine) < 1e-6 * max(1, abs(mine))


def split_bench(args: argparse.Namespace) -> list[str]:
    """The traffic-split check: prints its table, returns the target lines."""
    rng = np.random.default_rng(args.seed + 1)
    started = time.monotonic()
    rows: list[list[str]] = []
    alarms, steps_run = 0, 0
    per_case_ok = True
    for weight in SPLIT_WEIGHTS:
        for rps in SPLIT_RPS:
            run = split_case(rng, steps=args.split_steps, rps=rps, configured=weight, real=weight)
            hits = int((run.first >= 0).sum())
            alarms, steps_run = alarms + hits, steps_run + args.split_steps
            rate = hits / args.split_steps
            per_case_ok &= rate <= SPLIT_TARGET
            sliding = float((run.sliding_first >= 0).mean())
            aa = f"{rate:.3%} ({hits} of {args.split_steps:,})"
            rows.append(["split A/A", f"{weight}%", f"{weight}%", f"{rps:g}", aa, f"{sliding:.3%}", "", "", ""])
    detected: dict[tuple[int, int], list[float]] = {}
    for configured, real in SPLIT_WRONG:
        for rps in SPLIT_RPS:
            run = split_case(rng, steps=args.split_ab, rps=rps, configured=configured, real=real)
            share = float((run.first >= 0).mean())
            detected.setdefault((configured, real), []).append(share)
            minutes = np.where(run.first >= 0, run.first * SPLIT_TICK_S / 60, np.inf)
            when = np.median(minutes)
            reqs = np.median(np.where(run.first >= 0, run.requests, np.inf))
            timing = ("-", "-") if math.isinf(when) else (f"{when:.0f} min", f"{reqs:,.0f}")
            rows.append(["split wrong", f"{configured}%", f"{real}%", f"{rps:g}", "", "", f"{share:.0%}", *timing])
    header = ["check", "configured", "real", "req/s", "false alarms per step", "sliding windows, same test"]
    header += ["detected in the step", "median time to FAIL", "median requests counted"]
    print_table(header, rows)
    upper = float(stats.beta.ppf(0.95, alarms + 1, steps_run - alarms)) if steps_run else math.nan
    print(
        f"\ntraffic split: one 24h step per simulation, a look every {SPLIT_TICK_S // 60} min, analysis interval "
        f"{BIN_S // 60} min; the step's weight written within an interval (before: a fifth of it); "
        f"alpha {judge.DEFAULT_SPLIT_ALPHA} per step, concentration {judge.SPLIT_CONCENTRATION:g}; "
        f"{args.split_steps} A/A and {args.split_ab} wrong-split steps per case; the sliding column judges the "
        f"same statistic at alpha {judge.DEFAULT_SPLIT_ALPHA} over the gates' windows (analysis.window) instead "
        f"of fixed origins; seed {args.seed + 1}; {time.monotonic() - started:.0f}s"
    )
    pooled = alarms / steps_run if steps_run else math.nan
    out = [
        f"  split: A/A false alarms per step <= {SPLIT_TARGET:.1%} at every weight and traffic: {_yes(per_case_ok)}",
        f"  split: A/A false alarms pooled {pooled:.3%} ({alarms} of {steps_run:,}), 95% upper bound {upper:.3%} "
        f"<= {SPLIT_TARGET:.1%}: {_yes(upper <= SPLIT_TARGET)}",
    ]
    for (configured, real), shares in detected.items():
        out.append(
            f"  split: real {real}% against configured {configured}% detected within the step in >= 99% at every "
            f"traffic ({', '.join(f'{x:.0%}' for x in shares)}): {_yes(min(shares) >= 0.99)}"
        )
    return out


if __name__ == "__main__":
    raise SystemExit(main())
