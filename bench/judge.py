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

A third table, "real shapes", drives the judge with data shaped like an LLM route's, one 7-day step per
rollout judged every minute on what the controller counts then (the window `analysis.window` gives, and
for error_rate the 64 blocks `templates.blocks` gives, reaching back before the step): latency_p95
(maxIncrease 10%) on lognormal (sigma 1.5) and Pareto (alpha 1.5) latencies, stable p95 log-uniform in
2-4 s, read through the buckets `rollout render envoy` configures (`templates.LATENCY_BUCKETS_MS`) and
LiteLLM's default ones; error_rate ({maxIncrease: 50%, max: 1%}, stable 0.5%, so the gate's limit is
+50% whichever route passes) with Poisson errors and one-minute bursts shared by both arms or independent;
steady, diurnal (tenfold) and very low traffic (under one canary request a minute). Per case: A/A false
rollbacks with a 95% Clopper-Pearson interval, detection and median time to detect a regression at 1x
and 2x the limit, the share of those canaries promoted, and how often a better canary is rolled back,
beside the Flagger-style (a check per minute) and Kayenta-style (Mann-Whitney on hourly values, a look
an hour) baselines. The real judge is called only where a vectorised pre-filter says it could decide,
which is checked on a sample of the other looks. About 10-15 minutes on 2 cores with the defaults (500
A/A and 200 rollouts per other effect and case); `--only shapes --shapes-aa 20 --shapes-ab 10` for a
quick look. `python bench/judge.py` runs all three.
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

from controller import analysis, gates, judge, spec, split, templates

RPS = 10.0  # requests per second on the route
BIN_S = 300  # metrics resolution and the cadence of every judge's looks: 5 minutes
STEP_S = 24 * 3600  # one step, judged for 24 simulated hours
BINS = STEP_S // BIN_S
WEIGHTS = (0.01, 0.05, 0.25)

EVAL_PASS = 0.80  # stable eval pass rate; A/B: 3 points lower
ERROR_RATE = 0.01  # stable error rate; A/B: doubled
LAT_MEDIAN, LAT_SIGMA = 0.8, 0.6  # lognormal latency in seconds; A/B: every latency (so p95) x1.2
EFFECTS = {"eval": -0.03, "errors": 2.0, "p95": 1.2}
INSIDE = -0.008  # an eval drop inside the 1-point limit: failing it is a false rollback too

# The gates every judge gets: the regression each must not exceed.
EVAL_MAX_DROP = 0.01  # 1 point
ERROR_MAX_INCREASE = 0.5  # 1.5 x stable
P95_MAX_INCREASE = 0.10  # 1.1 x stable
EVAL_TOLERANCE = 0.02  # ours only: tune the sequence to catch a drop 2 points beyond the limit (3 points)

BUCKETS = np.append(
    0.05 * 1.025 ** np.arange(0, 241), np.inf
)  # 2.5% apart (the judge reads bucket edges): 50 ms .. 19 s
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


def hist_p95(hist: Any, edges: Any = BUCKETS) -> Any:
    """Vectorised histogram_quantile(0.95) over (R, BINS, buckets) counts, bucket bounds `edges` (+Inf last)."""
    cum = np.cumsum(hist, axis=-1).astype(float)
    total = cum[..., -1:]
    rank = 0.95 * total
    idx = np.minimum((cum < rank).sum(axis=-1), len(edges) - 2)  # a rank in +Inf reads the top bound
    upper = edges[idx]
    lower = np.where(idx > 0, edges[np.maximum(idx - 1, 0)], 0.0)
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
    parser.add_argument("--shapes-aa", type=int, default=500, help="real shapes: A/A rollouts per case (default 500)")
    parser.add_argument(
        "--shapes-ab", type=int, default=200, help="real shapes: rollouts per other effect and case (default 200)"
    )
    parser.add_argument(
        "--only", choices=("gates", "split", "shapes"), default=None, help="run one of the three benches"
    )
    args = parser.parse_args(argv)
    verdicts: list[str] = []
    for name, bench in (("gates", gates_bench), ("split", split_bench), ("shapes", shapes_bench)):
        if args.only in (None, name):
            if verdicts:
                print()
            verdicts += bench(args)
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
    for effect in ("eval -3pts", "errors x2", "p95 +20%"):
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


# -- real shapes: heavy latency tails on real bucket layouts, bursty errors, uneven traffic, a week of looks -----

SHAPES_DAY = 1440  # minutes
SHAPES_MINUTES = 7 * SHAPES_DAY  # one step of seven days, judged every minute (the analysis interval)
SHAPES_HOURS = SHAPES_MINUTES // 60
SHAPES_LAT_LIMIT = 0.10  # latency_p95 maxIncrease
SHAPES_ERR_LIMIT, SHAPES_ERR_MAX = 0.5, 0.01  # error_rate {maxIncrease: 50%, max: 1%}
SHAPES_ERR_RATE = 0.005  # stable error rate
SHAPES_P95 = (
    2.0,
    4.0,
)  # stable p95 in seconds, LLM-like: log-uniform per rollout, so it falls anywhere among the edges
LOGNORMAL_SIGMA, PARETO_ALPHA = 1.5, 1.5
BURST_P = 0.01  # a minute is a burst with this probability ...
BURST_BACKGROUND = 0.0005  # ... on top of independent background errors; the burst share below makes 0.5%
BURST_SHARE = (SHAPES_ERR_RATE - BURST_BACKGROUND) / ((1 - BURST_BACKGROUND) * BURST_P)  # ~0.45 of requests fail
DIURNAL_AMPLITUDE = 9 / 11  # 1 + a sin: the day's maximum is ten times the night's minimum, the mean unchanged
LAYOUTS = {
    "envoy": tuple(b * 0.001 for b in templates.LATENCY_BUCKETS_MS),  # `rollout render envoy`'s, in seconds
    "litellm": templates.LITELLM_DEFAULT_LATENCY_BUCKETS,  # LiteLLM 1.106.2's defaults (not the rendered ones)
}
SHAPES_TRAFFIC = {  # route requests per second, canary weight, diurnal
    "steady": (10.0, 0.05, False),
    "diurnal": (10.0, 0.05, True),
    "very low": (1.0, 0.01, False),
}
SHAPES_EFFECTS = ("A/A", "1x", "2x", "better")
LATENCY_SCALE = {"A/A": 1.0, "1x": 1 + SHAPES_LAT_LIMIT, "2x": 1 + 2 * SHAPES_LAT_LIMIT, "better": 0.8}
ERROR_SCALE = {"A/A": 1.0, "1x": 1 + SHAPES_ERR_LIMIT, "2x": 1 + 2 * SHAPES_ERR_LIMIT, "better": 0.5}
SHAPES_TARGET = 0.01  # A/A false rollbacks per gate and step ...
SHAPES_TARGET_UPPER = 0.02  # ... and the 95% interval's upper end
SHAPES_PROMOTED = 1 - judge.DEFAULT_POWER  # a canary beyond its limit promoted at most this often
KAYENTA_INTERVAL_H = 1  # Kayenta-style: hourly values, a look every hour (every minute over 7 days is quadratic)
BAND = (0.85, 0.995)  # latency buckets generated one by one between these quantiles (see `_band`)
LAT_CHUNK, ERR_CHUNK = 25, 100  # rollouts simulated at once (memory: a latency chunk is ~100 MB per arm)

# What the controller counts at each look (index t: the look after minute t + 1 of the step), as it does
# it: the window `analysis.window` gives for a 1-minute interval (the last W minutes, not the step so far),
# and for ratio gates the 64 blocks `templates.blocks` gives, which reach back before a short window.
LOOK_WINDOW = np.array(
    [
        int(analysis.window(timedelta(minutes=1), timedelta(minutes=t + 1)).total_seconds()) // 60
        for t in range(SHAPES_MINUTES)
    ]
)
LOOK_BLOCK = np.array([int(templates.blocks(timedelta(minutes=int(w)))[0].total_seconds()) // 60 for w in LOOK_WINDOW])
PRE_MINUTES = int(templates.blocks(timedelta(minutes=1))[1].total_seconds()) // 60  # error streams begin this early

SHAPES_GATES = {
    "latency": spec.Gate.model_validate({"use": "latency_p95", "maxIncrease": SHAPES_LAT_LIMIT}),
    "errors": spec.Gate.model_validate({"use": "error_rate", "maxIncrease": SHAPES_ERR_LIMIT, "max": SHAPES_ERR_MAX}),
}
SHAPES_METHODS = {
    "latency": gates.Method("quantile", quantile=0.95),
    "errors": gates.Method("ratio", counts_good=False),
}


@dataclass(frozen=True)
class Shape:
    """One case of the shapes bench: a gate, the shape of its data, a bucket layout (latency) and traffic."""

    gate: str  # latency | errors
    shape: str  # lognormal | pareto | poisson | shared bursts | independent bursts
    layout: str  # envoy | litellm | "" (errors)
    traffic: str  # a key of SHAPES_TRAFFIC

    def label(self) -> list[str]:
        gate = "latency_p95" if self.gate == "latency" else "error_rate"
        return [gate, self.shape, self.layout or "-", self.traffic]


SHAPES = [
    *(
        Shape("latency", shape, layout, traffic)
        for shape in ("lognormal", "pareto")
        for layout in LAYOUTS
        for traffic in SHAPES_TRAFFIC
    ),
    *(
        Shape("errors", shape, "", traffic)
        for shape in ("poisson", "shared bursts", "independent bursts")
        for traffic in SHAPES_TRAFFIC
    ),
]


def latency_cdf(shape: str, x: Any, scale: Any) -> Any:
    """The latency distribution's CDF with stable's p95 at 1 s, every latency times `scale` (seconds)."""
    if shape == "lognormal":
        median = 1 / math.exp(float(special.ndtri(0.95)) * LOGNORMAL_SIGMA)
        return stats.lognorm.cdf(x, s=LOGNORMAL_SIGMA, scale=median * scale)
    minimum = 0.05 ** (1 / PARETO_ALPHA)
    return stats.pareto.cdf(x, b=PARETO_ALPHA, scale=minimum * scale)


def latency_ppf(shape: str, q: float, scale: float) -> float:
    if shape == "lognormal":
        median = 1 / math.exp(float(special.ndtri(0.95)) * LOGNORMAL_SIGMA)
        return float(stats.lognorm.ppf(q, s=LOGNORMAL_SIGMA, scale=median * scale))
    return float(stats.pareto.ppf(q, b=PARETO_ALPHA, scale=0.05 ** (1 / PARETO_ALPHA) * scale))


@dataclass(frozen=True)
class Band:
    """A layout's buckets as simulated: one by one between two edges near the p95, and below and above
    them each a lump of buckets, drawn as one and split at a look only when the real judge reads it.
    `le` are the simulated bounds (+Inf last); `groups[i]` the layout's bucket indices lump i holds."""

    le: tuple[float, ...]
    groups: tuple[tuple[int, ...], ...]
    fine: tuple[float, ...]  # the layout's own bounds, +Inf last


def _band(shape: str, layout: str) -> Band:
    """Which buckets to simulate one by one: those from the edge below the fastest arm's BAND[0] quantile
    to the edge above the slowest arm's BAND[1] quantile. The judge reads bucket edges at ranks of its
    rank sequence only, near the p95 once an arm has a few hundred samples; where a rank falls in a lump
    the pre-filter assumes the most generous edge inside it (so it stays sound), and a judged look gets
    the lump split by the exact conditional law (multinomial given the lump's count). Only which of a
    lump's buckets an early sample fell in is redrawn at each judged look, a freedom no verdict uses."""
    fine = (*LAYOUTS[layout], math.inf)
    low = latency_ppf(shape, BAND[0], min(LATENCY_SCALE.values()) * SHAPES_P95[0])
    high = latency_ppf(shape, BAND[1], max(LATENCY_SCALE.values()) * SHAPES_P95[1])
    first = max([i for i, le in enumerate(fine) if le <= low], default=0)
    last = min(i for i, le in enumerate(fine) if le >= high)
    groups = [tuple(range(first + 1))] + [(i,) for i in range(first + 1, last + 1)]
    if last < len(fine) - 1:
        groups.append(tuple(range(last + 1, len(fine))))
    return Band(tuple(fine[g[-1]] for g in groups), tuple(groups), fine)


def _edge_ranges(band: Band) -> dict[str, Any]:
    """Per simulated bucket, the range of the layout's edges the judge could read there: the lower edge
    of the layout bucket holding a sample (`lo_min`..`lo_max`) and its upper edge (`hi_min`..`hi_max`)."""
    fine = band.fine
    lower = [0.0 if i == 0 else fine[i - 1] for i in range(len(fine))]
    out: dict[str, list[float]] = {"lo_min": [], "lo_max": [], "hi_min": [], "hi_max": []}
    for g in band.groups:
        out["lo_min"].append(lower[g[0]])
        out["lo_max"].append(lower[g[-1]])
        out["hi_min"].append(fine[g[0]])
        out["hi_max"].append(fine[g[-1]])
    return {k: np.array(v) for k, v in out.items()}


_EDGE_BOUNDS = hasattr(judge, "_edge_below")  # the judge reads quantile bounds at bucket edges (else interpolates)


def _rank_radius(n: Any, alpha: float, q: float = 0.95) -> Any:
    """`judge._quantile_bounds`' rank radius, vectorised, a hair narrower (so the pre-filter is looser)."""
    variance = n * q * (1 - q)
    rho = judge._QUANTILE_RHO_SAMPLES * q * (1 - q)
    return (1 - 1e-9) * np.sqrt(
        (variance + rho) * (2 * math.log(1 / judge.one_sided(alpha)) + np.log1p(variance / rho))
    )


def _read(cum: Any, sample: Any, table: Any) -> Any:
    """`table[i]` for the simulated bucket i holding sample number `sample` (per rollout and look)."""
    idx = np.minimum((cum < sample[..., None]).sum(axis=-1), cum.shape[-1] - 1)
    return table[idx]


def _quantile_bound(cum: Any, n: Any, *, alpha: float, ranges: dict[str, Any], upper: bool, q: float = 0.95) -> Any:
    """Per rollout and look, the most generous value the judge's lower (or `upper`) bound on one arm's
    quantile can take: the largest possible lower bound, the smallest possible upper bound (at bucket
    edges; with a judge that interpolates, anywhere inside the bucket)."""
    radius = _rank_radius(n, alpha, q)
    if upper:
        rank = q * n + radius
        table = ranges["hi_min"] if _EDGE_BOUNDS else ranges["lo_min"]
        return np.where(np.floor(rank) + 1 > n, np.inf, _read(cum, np.floor(rank) + 1, table))
    rank = q * n - radius
    table = ranges["lo_max"] if _EDGE_BOUNDS else ranges["hi_max"]
    return np.where(rank <= 0, 0.0, _read(cum, np.ceil(rank), table))


def _relative_v(canary: Any, stable: Any) -> Any:
    """`judge._relative`, vectorised."""
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = canary / stable - 1
    out = np.where((stable <= 0) | np.isinf(canary), np.inf, ratio)
    return np.where(np.isinf(canary) & np.isinf(stable), np.nan, out)


def latency_candidates(cum: dict[str, Any], ranges: dict[str, Any]) -> tuple[Any, Any]:
    """The sound pre-filter of the quantile gate: per rollout and look, whether the real judge could FAIL
    and whether it could PASS. `judge_quantile` FAILs when canary-lower / stable-upper - 1 reaches the
    limit and PASSes when canary-upper / stable-lower - 1 is within it with 200 canary samples; here each
    bound takes its most generous value, at a radius a hair narrower (so the filter never misses)."""
    levels = judge.levels(SHAPES_GATES["latency"])
    share = judge._CANARY_SHARE
    n = {arm: cum[arm][..., -1] for arm in cum}
    fail_a, pass_a = levels.alpha, 1 - levels.power
    c_fail = _quantile_bound(cum["canary"], n["canary"], alpha=fail_a * share, ranges=ranges, upper=False)
    s_fail = _quantile_bound(cum["stable"], n["stable"], alpha=fail_a * (1 - share), ranges=ranges, upper=True)
    c_pass = _quantile_bound(cum["canary"], n["canary"], alpha=pass_a * share, ranges=ranges, upper=True)
    s_pass = _quantile_bound(cum["stable"], n["stable"], alpha=pass_a * (1 - share), ranges=ranges, upper=False)
    both = (n["canary"] > 0) & (n["stable"] > 0)
    with np.errstate(invalid="ignore"):
        fail = both & (_relative_v(c_fail, s_fail) >= SHAPES_LAT_LIMIT - 1e-9)
        passing = both & (n["canary"] >= judge.DEFAULT_QUANTILE_MIN_SAMPLES)
        passing &= _relative_v(c_pass, s_pass) <= SHAPES_LAT_LIMIT + 1e-9
    return fail, passing


def _radius_v(variance: Any, *, alpha: float, tau: float) -> Any:
    """`judge.mixture_radius`, vectorised, a hair narrower."""
    return (1 - 1e-9) * np.sqrt(
        variance * (1 + variance / tau**2) * (2 * math.log(1 / alpha) + np.log1p(tau**2 / variance))
    )


def inflation_v(c: dict[str, Any]) -> tuple[Any, Any]:
    """`judge.inflation` of each look's 64 blocks, vectorised: the variance factors (>= 1) of stable's and
    canary's rates, per rollout and look (checked against the judge at judged looks)."""
    rho, effect, m = {}, {}, {}
    with np.errstate(invalid="ignore", divide="ignore"):
        for arm in ("stable", "canary"):
            e, n = c[f"be_{arm}"], c[f"bn_{arm}"]
            ee, en, nn = c[f"ee_{arm}"], c[f"en_{arm}"], c[f"nn_{arm}"]
            p = e / n
            expected = p * (1 - p) * (n - nn / n)
            spread = np.maximum(ee - 2 * p * en + p * p * nn, 0.0)
            usable = (n > 0) & np.isfinite(expected) & (expected > 0)
            effect[arm] = np.where(usable, np.maximum(spread / expected, 1.0), 1.0)
            m[arm] = np.where(n > 0, nn / n, 1.0)
            rho[arm] = np.where(usable & (m[arm] > 1), (effect[arm] - 1) / (m[arm] - 1), 0.0)
    both = np.maximum(rho["stable"], rho["canary"])
    factor = {
        arm: np.where(c[f"bn_{arm}"] > 0, np.maximum(effect[arm], 1 + np.maximum(m[arm] - 1, 0.0) * both), effect[arm])
        for arm in ("stable", "canary")
    }
    return factor["stable"], factor["canary"]


def _lower_edge_v(k: Any, n: Any, threshold: float, concentration: Any) -> Any:
    """The lower end of `judge.rate_interval` (the smallest rate not rejected at `threshold`), vectorised:
    bisection between the observed share (never rejected) and 0, as `judge._split_bounds` does."""
    share = np.where(n > 0, k / np.maximum(n, 1e-300), 0.0)
    lo, hi = np.full_like(share, 1e-12), np.maximum(share, 1e-12)
    for _ in range(50):
        mid = (lo + hi) / 2
        rejected = _evidence_v(k, n, mid, concentration) >= threshold
        lo, hi = np.where(rejected, mid, lo), np.where(rejected, hi, mid)
    return np.where(_evidence_v(k, n, np.full_like(share, 1e-12), concentration) >= threshold, hi, 0.0)


def _evidence_v(k: Any, n: Any, p0: Any, concentration: Any) -> Any:
    """`judge.split_evidence`, vectorised: the beta-binomial mixture's log likelihood ratio against p0."""
    a, b = concentration * p0, concentration * (1 - p0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return special.betaln(a + k, b + n - k) - special.betaln(a, b) - k * np.log(p0) - (n - k) * np.log1p(-p0)


def error_candidates(c: dict[str, Any]) -> tuple[Any, Any]:
    """The pre-filter of `{maxIncrease: 50%, max: 1%}` on error_rate: per rollout and look, whether the
    real judge could FAIL and whether it could PASS, looser than the judge (the block factors taken 1%
    smaller, thresholds a hair lower). FAIL: the `max` bound's exact sequence (`judge.rate_interval`)
    excludes 1% from below, or the log ratio's lower end is above log 1.5. PASS: 100 canary samples,
    the `max` sequence excludes 1% from above, and either the log ratio's upper end is within log 1.5
    or the canary is at most the margin (`maxIncrease x max / 2`) above stable at all (the exact
    margin route can pass only then)."""
    levels = judge.levels(SHAPES_GATES["errors"])
    es, ns, ec, nc = c["e_stable"], c["n_stable"], c["e_canary"], c["n_canary"]
    fs, fc = (np.maximum(0.99 * f, 1.0) for f in inflation_v(c))
    fail_a, half = judge.one_sided(levels.alpha), judge.one_sided(1 - (1 + levels.power) / 2)
    limit = SHAPES_ERR_MAX
    concentration = min(max((1 - limit) / (4 * limit), 2.0), 1e4)  # `rate_interval` near the bound, spread = it
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = ec / nc
        evidence = _evidence_v(ec / fc, nc / fc, limit, concentration)
        fail = (nc > 0) & (rate > limit) & (evidence >= math.log(1 / levels.alpha) - 1e-6)
        passing = (nc >= judge.DEFAULT_MIN_SAMPLES) & (ns > 0) & (rate < limit)
        passing &= evidence >= math.log(1 / (1 - levels.power)) - 1e-6
        # maxIncrease: the log ratio (Katz, +0.5 where a count is 0)
        zero = (es == 0) | (ec == 0)
        es2, ec2 = np.where(zero, es + 0.5, es), np.where(zero, ec + 0.5, ec)
        ns2, nc2 = np.where(zero, ns + 0.5, ns), np.where(zero, nc + 0.5, nc)
        est = np.log(ec2 / nc2) - np.log(es2 / ns2)
        var = fc * (1 / ec2 - 1 / nc2) + fs * (1 / es2 - 1 / ns2)
        tau = judge._tau_log(SHAPES_ERR_LIMIT, None)
        log_limit = math.log1p(SHAPES_ERR_LIMIT)
        fail |= (nc > 0) & (ns > 0) & (est - _radius_v(var, alpha=fail_a, tau=tau) > log_limit)
        rel_pass = est + _radius_v(var, alpha=half, tau=tau) <= log_limit
        # the margin route (`judge.judge_within`): the canary's exact upper end at most stable's lower end
        # plus the margin, so at most stable's rate plus the margin: that rate must be outside its sequence
        margin = SHAPES_ERR_LIMIT * SHAPES_ERR_MAX / 2
        spread = max(margin, judge._MIN_TAU_ABSOLUTE)  # as `judge.judge_within` spreads its priors
        level = (1 - (1 + levels.power) / 2) / 2
        threshold = math.log(1 / level) - 1e-6
        near = np.clip(es / ns + margin, 1e-9, 1 - 1e-9)
        centre = np.clip(near, spread, 1 - spread)
        spread_c = np.clip(centre * (1 - centre) / (2 * spread) ** 2, 2.0, 1e4)
        margin_pass = (rate < near) & (_evidence_v(ec / fc, nc / fc, near, spread_c) >= threshold)
        # ... and below stable's exact lower end plus the margin, where the above leaves it possible
        maybe = passing & ~rel_pass & margin_pass
        if maybe.any():
            ps = es[maybe] / ns[maybe]
            centre_s = np.clip(ps, spread, 1 - spread)
            spread_s = np.clip(centre_s * (1 - centre_s) / (2 * spread) ** 2, 2.0, 1e4)
            s_lo = _lower_edge_v(es[maybe] / fs[maybe], ns[maybe] / fs[maybe], threshold, spread_s) + 1e-9
            p0 = np.clip(s_lo + margin, 1e-9, 1 - 1e-9)
            c_ok = (rate[maybe] < p0) & (
                _evidence_v(ec[maybe] / fc[maybe], nc[maybe] / fc[maybe], p0, spread_c[maybe]) >= threshold
            )
            margin_pass[maybe] = c_ok
        passing &= rel_pass | margin_pass
    return fail, passing


def _error_measurement(sums: dict[str, Any], arm: str, r: int, t: int) -> gates.Measurement:
    """One arm's error_rate measurement at look t, as `controller.analysis` builds it: the value and the
    requests over the look's window, and the sums over its 64 blocks."""
    n, e = float(sums[f"n_{arm}"][r, t]), float(sums[f"e_{arm}"][r, t])
    sum_of = {name: float(sums[f"{name}_{arm}"][r, t]) for name in ("be", "bn", "ee", "en", "nn")}
    blocks = judge.Blocks(float(templates.BLOCKS), sum_of["be"], sum_of["bn"], sum_of["ee"], sum_of["en"], sum_of["nn"])
    return gates.Measurement(e / n if n else None, n, (), blocks)


def _real_verdict(case: Shape, stable: gates.Measurement, canary: gates.Measurement) -> gates.Verdict:
    """The gate's verdict exactly as production asks for it."""
    _, verdict = gates.judge_segments(
        SHAPES_GATES[case.gate],
        {(): {"stable": stable, "canary": canary}},
        min_samples=0,
        method=SHAPES_METHODS[case.gate],
    )
    return verdict


def walk(
    fail: Any, passing: Any, verdict_at: Any, rng: np.random.Generator, *, checks: int
) -> tuple[Any, Any, int, int, int]:
    """Per rollout, the first look the real judge FAILs and the first it PASSes before that (-1: none),
    calling it only where the pre-filter says it could decide: in time order, stopping at the first FAIL,
    and after the first PASS at FAIL candidates only. Then `checks` random looks the filter rules out are
    judged too, and must be INCONCLUSIVE (or at least not the verdict ruled out). Returns also the number
    of judge calls and of checks."""
    rollouts = fail.shape[0]
    first_fail, first_pass = np.full(rollouts, -1), np.full(rollouts, -1)
    calls = 0
    for r in range(rollouts):
        fails = np.flatnonzero(fail[r])
        for t in np.flatnonzero(fail[r] | passing[r]):
            if first_pass[r] >= 0:
                break
            calls += 1
            v = verdict_at(r, int(t))
            if v is gates.Verdict.FAIL:
                first_fail[r] = t
                break
            if v is gates.Verdict.PASS:
                first_pass[r] = t
        if first_pass[r] >= 0 and first_fail[r] < 0:
            for t in fails[fails > first_pass[r]]:
                calls += 1
                if verdict_at(r, int(t)) is gates.Verdict.FAIL:
                    first_fail[r] = t
                    break
    ruled_out = np.argwhere(~fail | ~passing)
    checks = min(checks, len(ruled_out))
    missed = 0
    for r, t in ruled_out[rng.integers(0, max(len(ruled_out), 1), checks)]:
        v = verdict_at(int(r), int(t))
        if (v is gates.Verdict.FAIL and not fail[r, t]) or (v is gates.Verdict.PASS and not passing[r, t]):
            missed += 1
            print(f"the pre-filter ruled out a {v} (rollout {r}, look {t})", file=sys.stderr)
    return first_fail, first_pass, calls, checks, missed


@dataclass
class ShapeChunk:
    """One chunk of rollouts of one case and effect: each judge's outcome per rollout."""

    ours_fail: Any  # first FAIL look (minute), -1: none
    ours_pass: Any  # first PASS look before any FAIL, -1: none
    flagger: Any  # (rollouts, minutes) int16: the running count of failed per-minute checks
    kayenta: Any  # (rollouts, hours): the smallest p-value among metrics worse beyond the limit, per look
    calls: int  # real judge calls
    checks: int  # looks the filter ruled out, judged to check it
    missed: int  # of those, the ones the real judge decided (the filter was not looser there)


def route_rates(rng: np.random.Generator, traffic: str, rollouts: int) -> Any:
    """Route requests per minute, per rollout and minute: steady, or a daily sinusoid (any phase), the
    day's peak ten times the night's low, the same daily mean."""
    rps, _, diurnal = SHAPES_TRAFFIC[traffic]
    rate = np.full((rollouts, SHAPES_MINUTES), rps * 60)
    if diurnal:
        phase = rng.uniform(0, 2 * math.pi, size=(rollouts, 1))
        rate *= 1 + DIURNAL_AMPLITUDE * np.sin(2 * math.pi * np.arange(SHAPES_MINUTES) / SHAPES_DAY + phase)
    return rate


def _mwu_scores(canary: Any, stable: Any, worse: Any) -> Any:
    """Kayenta-style: at each hourly look, Mann-Whitney U of the canary's hourly values against stable's
    since the step began; the p-value where the canary's mean is worse beyond the limit, else 1."""
    scores = np.ones(canary.shape)
    for h in range(2, canary.shape[1]):
        x, y = np.nan_to_num(canary[:, : h + 1]), np.nan_to_num(stable[:, : h + 1])
        with np.errstate(invalid="ignore", divide="ignore"):
            p = stats.mannwhitneyu(x, y, axis=1, method="asymptotic").pvalue
        scores[:, h] = np.where(worse(x.mean(axis=1), y.mean(axis=1)), np.nan_to_num(p, nan=1.0), 1.0)
    return scores


def windowed(cum: Any) -> Any:
    """Counts cumulative over the step's minutes (axis 1) turned into what the controller counts at each
    look: the last `LOOK_WINDOW` minutes."""
    t = np.arange(cum.shape[1])
    start = t - LOOK_WINDOW[: cum.shape[1]]
    out = cum.copy()
    inside = start >= 0
    out[:, inside] -= cum[:, start[inside]]
    return out


def block_sums(n: Any, e: Any) -> dict[str, Any]:
    """Per look, the sums over the 64 blocks `templates.blocks` gives (production's subqueries), from
    per-minute counts that begin `PRE_MINUTES` before the step: blocks of `LOOK_BLOCK` minutes ending at
    the look. For each block length, a strided running sum (one per residue of the minute) gives every
    look's 64-block sum at once."""
    rollouts, minutes = n.shape
    cn = np.concatenate([np.zeros((rollouts, 1)), np.cumsum(n, axis=1)], axis=1)
    ce = np.concatenate([np.zeros((rollouts, 1)), np.cumsum(e, axis=1)], axis=1)
    out = {name: np.zeros((rollouts, SHAPES_MINUTES)) for name in ("bn", "be", "ee", "en", "nn")}
    for length in np.unique(LOOK_BLOCK):
        b = int(length)
        sn = np.zeros((rollouts, minutes))
        se = np.zeros((rollouts, minutes))
        sn[:, b - 1 :] = cn[:, b:] - cn[:, :-b]  # the block ending at minute u (index u)
        se[:, b - 1 :] = ce[:, b:] - ce[:, :-b]
        looks = np.flatnonzero(length == LOOK_BLOCK)
        for name, x in (("bn", sn), ("be", se), ("ee", se * se), ("en", se * sn), ("nn", sn * sn)):
            pad = (-minutes) % b
            strided = np.concatenate([x, np.zeros((rollouts, pad))], axis=1).reshape(rollouts, -1, b)
            running = np.cumsum(strided, axis=1).reshape(rollouts, -1)[:, :minutes]
            shifted = np.zeros_like(running)
            shifted[:, templates.BLOCKS * b :] = running[:, : -templates.BLOCKS * b]
            out[name][:, looks] = (running - shifted)[:, PRE_MINUTES + looks]
    return out


def _latency_chunk(rng: np.random.Generator, case: Shape, effect: str, rollouts: int, checks: int) -> ShapeChunk:
    """Latency streams: each minute's requests per bucket (Poisson thinning of Poisson arrivals: the same
    law as a multinomial split of a Poisson count), cumulative since the step began."""
    band = _band(case.shape, case.layout)
    ranges = _edge_ranges(band)
    rate = route_rates(rng, case.traffic, rollouts)
    weight = SHAPES_TRAFFIC[case.traffic][1]
    le = np.array(band.le)
    low, high = (math.log(x) for x in SHAPES_P95)
    p95 = np.exp(rng.uniform(low, high, size=rollouts))  # stable's p95 per rollout, seconds
    cum: dict[str, Any] = {}
    fine_probs: dict[str, list[Any]] = {}
    p95_minute, p95_hour = {}, {}
    for arm, share in (("stable", 1 - weight), ("canary", weight)):
        scale = LATENCY_SCALE[effect] if arm == "canary" else 1.0
        cdf = latency_cdf(case.shape, np.array(band.fine[:-1])[None, :], scale * p95[:, None])
        fine_p = np.diff(np.concatenate([np.zeros((rollouts, 1)), cdf, np.ones((rollouts, 1))], axis=1), axis=1)
        probs = np.stack([fine_p[:, list(g)].sum(axis=1) for g in band.groups], axis=1)
        fine_probs[arm] = [
            [fine_p[r, list(g)] / max(fine_p[r, list(g)].sum(), 1e-300) for g in band.groups] for r in range(rollouts)
        ]
        counts = rng.poisson(rate[..., None] * share * probs[:, None, :]).astype(np.int32)
        if arm == "canary":
            p95_minute[arm] = hist_p95(counts, le)
        hourly = counts.reshape(rollouts, SHAPES_HOURS, 60, -1).sum(axis=2)
        p95_hour[arm] = hist_p95(hourly, le)
        np.cumsum(counts, axis=1, out=counts)
        np.cumsum(counts, axis=2, out=counts)
        cum[arm] = windowed(counts)
    fail, passing = latency_candidates(cum, ranges)

    def verdict_at(r: int, t: int) -> gates.Verdict:
        m = {arm: _latency_measurement(cum[arm][r, t], band, fine_probs[arm][r], rng) for arm in cum}
        return _real_verdict(case, m["stable"], m["canary"])

    first_fail, first_pass, calls, checked, missed = walk(fail, passing, verdict_at, rng, checks=checks)
    threshold = p95[:, None] * (1 + SHAPES_LAT_LIMIT)
    with np.errstate(invalid="ignore"):
        flagger_counts = np.cumsum(p95_minute["canary"] > threshold, axis=1).astype(np.int16)
    scores = _mwu_scores(p95_hour["canary"], p95_hour["stable"], lambda c, s: c > s * (1 + SHAPES_LAT_LIMIT))
    return ShapeChunk(first_fail, first_pass, flagger_counts, scores, calls, checked, missed)


def _latency_measurement(cum: Any, band: Band, fine_probs: list[Any], rng: np.random.Generator) -> gates.Measurement:
    """One arm's latency measurement at one look: the layout's cumulative `(le, count)` buckets, +Inf
    last, each lump split among its buckets by the conditional law of its count."""
    per = np.diff(np.concatenate([[0], cum]))
    fine = np.concatenate(
        [rng.multinomial(int(k), p) if len(p) > 1 else [int(k)] for k, p in zip(per, fine_probs, strict=True)]
    )
    counts = np.cumsum(fine).tolist()
    return gates.Measurement(0.0, float(counts[-1]), tuple(zip(band.fine, counts, strict=True)))


def _error_chunk(rng: np.random.Generator, case: Shape, effect: str, rollouts: int, checks: int) -> ShapeChunk:
    """Error streams, per minute: requests (Poisson), and errors binomial at a rate that is constant
    (Poisson errors) or bursty: each minute is a burst with probability BURST_P for stable, in which
    BURST_SHARE of requests fail, on a BURST_BACKGROUND of independent errors. The canary's error rate
    is stable's times ERROR_SCALE[effect] through its burst probability (the background unchanged);
    with shared bursts one uniform per minute drives both arms, so the canary bursts in stable's burst
    minutes (all of them, or a subset when better) and more. The streams begin `PRE_MINUTES` before the
    step (the same arms at the same weight, as if the step before had it), which production's blocks
    read; the controller's windows and blocks are what is judged (`windowed`, `block_sums`)."""
    rate = route_rates(rng, case.traffic, rollouts)
    rate = np.concatenate([rate[:, -PRE_MINUTES:], rate], axis=1)  # the day is periodic: the minutes before
    weight = SHAPES_TRAFFIC[case.traffic][1]
    shared = rng.random(rate.shape) if case.shape == "shared bursts" else None
    sums: dict[str, Any] = {}
    hourly: dict[str, Any] = {}
    minute_rate: dict[str, Any] = {}
    for arm, share in (("stable", 1 - weight), ("canary", weight)):
        scale = ERROR_SCALE[effect] if arm == "canary" else 1.0
        n = rng.poisson(rate * share)
        if case.shape == "poisson":
            p: Any = SHAPES_ERR_RATE * scale
        else:
            burst_p = (SHAPES_ERR_RATE * scale - BURST_BACKGROUND) / ((1 - BURST_BACKGROUND) * BURST_SHARE)
            u = shared if shared is not None else rng.random(rate.shape)
            p = BURST_BACKGROUND + (1 - BURST_BACKGROUND) * BURST_SHARE * (u < burst_p)
        e = rng.binomial(n, p)
        step_n, step_e = n[:, PRE_MINUTES:], e[:, PRE_MINUTES:]
        with np.errstate(invalid="ignore", divide="ignore"):
            minute_rate[arm] = np.where(step_n > 0, step_e / step_n, np.nan)
            hn, he = (x.reshape(rollouts, SHAPES_HOURS, 60).sum(axis=2) for x in (step_n, step_e))
            hourly[arm] = np.where(hn > 0, he / hn, np.nan)
        n, e = n.astype(float), e.astype(float)
        sums[f"n_{arm}"] = windowed(np.cumsum(n[:, PRE_MINUTES:], axis=1))
        sums[f"e_{arm}"] = windowed(np.cumsum(e[:, PRE_MINUTES:], axis=1))
        sums.update({f"{name}_{arm}": x for name, x in block_sums(n, e).items()})
    fail, passing = error_candidates(sums)

    def verdict_at(r: int, t: int) -> gates.Verdict:
        return _real_verdict(case, _error_measurement(sums, "stable", r, t), _error_measurement(sums, "canary", r, t))

    first_fail, first_pass, calls, checked, missed = walk(fail, passing, verdict_at, rng, checks=checks)
    with np.errstate(invalid="ignore"):
        failed = minute_rate["canary"] > SHAPES_ERR_RATE * (1 + SHAPES_ERR_LIMIT)
    flagger_counts = np.cumsum(failed, axis=1).astype(np.int16)
    scores = _mwu_scores(hourly["canary"], hourly["stable"], lambda c, s: c > s * (1 + SHAPES_ERR_LIMIT))
    return ShapeChunk(first_fail, first_pass, flagger_counts, scores, calls, checked, missed)


def _shapes_task(task: tuple[int, int, int, int, int, int]) -> tuple[int, int, int, ShapeChunk]:
    """A worker's share: one chunk of one case and effect, seeded by (seed, case, effect, chunk)."""
    seed, case_i, effect_i, chunk_i, rollouts, checks = task
    rng = np.random.default_rng([seed, 3, case_i, effect_i, chunk_i])
    case, effect = SHAPES[case_i], SHAPES_EFFECTS[effect_i]
    run = _latency_chunk if case.gate == "latency" else _error_chunk
    return case_i, effect_i, chunk_i, run(rng, case, effect, rollouts, checks)


def shapes_run(args: argparse.Namespace) -> dict[tuple[int, int], ShapeChunk]:
    """Every case and effect, in chunks of rollouts shared among forked workers; chunks joined in order."""
    tasks = []
    for case_i, case in enumerate(SHAPES):
        size = LAT_CHUNK if case.gate == "latency" else ERR_CHUNK
        for effect_i, effect in enumerate(SHAPES_EFFECTS):
            total = args.shapes_aa if effect == "A/A" else args.shapes_ab
            for chunk_i, start in enumerate(range(0, total, size)):
                tasks.append((args.seed, case_i, effect_i, chunk_i, min(size, total - start), 20))
    workers = min(os.cpu_count() or 1, len(tasks))
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        done = sorted(pool.imap_unordered(_shapes_task, tasks), key=lambda d: d[:3])
    out: dict[tuple[int, int], ShapeChunk] = {}
    for case_i, effect_i, _, part in done:
        key = (case_i, effect_i)
        if key not in out:
            out[key] = part
            continue
        joined = out[key]
        out[key] = ShapeChunk(
            ours_fail=np.concatenate([joined.ours_fail, part.ours_fail]),
            ours_pass=np.concatenate([joined.ours_pass, part.ours_pass]),
            flagger=np.concatenate([joined.flagger, part.flagger]),
            kayenta=np.concatenate([joined.kayenta, part.kayenta]),
            calls=joined.calls + part.calls,
            checks=joined.checks + part.checks,
            missed=joined.missed + part.missed,
        )
    return out


def clopper_pearson(k: int, n: int) -> tuple[float, float]:
    """The exact 95% interval of a binomial share k / n."""
    lower = float(stats.beta.ppf(0.025, k, n - k + 1)) if k > 0 else 0.0
    upper = float(stats.beta.ppf(0.975, k + 1, n - k)) if k < n else 1.0
    return lower, upper


@dataclass
class ShapeRow:
    """One judge on one case: the figures the targets read."""

    false_rollbacks: int
    rollouts: int
    detected: dict[str, float]  # 1x, 2x: share failed within the step
    median_h: dict[str, float]  # 1x, 2x: median hours to the FAIL over all rollouts (inf: under half)
    promoted: dict[str, float]  # 1x, 2x: share promoted (ours: PASS before any FAIL; baselines: never failed)
    better_failed: float
    passes: int  # ours: PASS reached at all in the 1x and 2x cases (the coarse-bucket check)


def _shape_row(aa: Any, first: dict[str, Any], promoted: dict[str, Any], per_hour: float) -> ShapeRow:
    """A judge's figures from the first FAIL per rollout (-1: none; in looks, `per_hour` of them an hour)."""
    hours = {e: np.where(first[e] >= 0, (first[e] + 1) / per_hour, np.inf) for e in ("1x", "2x")}
    return ShapeRow(
        false_rollbacks=int((aa >= 0).sum()),
        rollouts=len(aa),
        detected={e: float((first[e] >= 0).mean()) for e in ("1x", "2x")},
        median_h={e: float(np.median(hours[e])) for e in ("1x", "2x")},
        promoted={e: float(promoted[e].mean()) for e in ("1x", "2x")},
        better_failed=float((first["better"] >= 0).mean()),
        passes=int(sum((promoted[e]).sum() for e in ("1x", "2x"))),
    )


def _first_reach(counts: Any, threshold: int) -> Any:
    hit = counts >= threshold
    return np.where(hit[:, -1], hit.argmax(axis=1), -1)  # running counts: reached at all iff at the end


def shapes_bench(args: argparse.Namespace) -> list[str]:
    """The real shapes: prints their table, returns the target lines."""
    started = time.monotonic()
    runs = shapes_run(args)
    rows: list[list[str]] = []
    mine: dict[int, ShapeRow] = {}
    calls = checks = missed = 0
    for case_i, case in enumerate(SHAPES):
        got = {effect: runs[(case_i, effect_i)] for effect_i, effect in enumerate(SHAPES_EFFECTS)}
        calls += sum(g.calls for g in got.values())
        checks += sum(g.checks for g in got.values())
        missed += sum(g.missed for g in got.values())
        judged: dict[str, ShapeRow] = {}
        ours_first = {e: g.ours_fail for e, g in got.items()}
        ours_promoted = {
            e: (g.ours_pass >= 0) & ((g.ours_fail < 0) | (g.ours_pass < g.ours_fail)) for e, g in got.items()
        }
        judged["ours (mixture SPRT)"] = mine[case_i] = _shape_row(got["A/A"].ours_fail, ours_first, ours_promoted, 60)
        finals = np.sort(got["A/A"].flagger[:, -1])[::-1]
        calibrated = max(FLAGGER_THRESHOLD, int(finals[int(SHAPES_TARGET * len(finals))]) + 1)
        for label, n in (("", FLAGGER_THRESHOLD), (CALIBRATED, calibrated)):
            first = {e: _first_reach(g.flagger, n) for e, g in got.items()}
            never = {e: first[e] < 0 for e in first}
            judged[f"flagger N={n} per minute{label}"] = _shape_row(first["A/A"], first, never, 60)
        confidence = calibrate_kayenta([got["A/A"].kayenta], SHAPES_TARGET)
        for label, k in (("", KAYENTA_CONFIDENCE), (CALIBRATED, confidence)):
            first = {e: kayenta(g.kayenta, confidence=k) for e, g in got.items()}
            never = {e: first[e] < 0 for e in first}
            level = f"{k:.8g}" if k < 1 else f"none up to {KAYENTA_LADDER[-1]:.8g}"
            judged[f"kayenta MWU {level} hourly{label}"] = _shape_row(
                first["A/A"], first, never, 1 / KAYENTA_INTERVAL_H
            )
        aa_pass = got["A/A"].ours_pass
        for name, row in judged.items():
            low, high = clopper_pearson(row.false_rollbacks, row.rollouts)
            cells = [f"{row.false_rollbacks / row.rollouts:.1%} [{low:.1%}, {high:.1%}]"]
            for e in ("1x", "2x"):
                when = "-" if math.isinf(row.median_h[e]) else f"{row.median_h[e]:.1f}h"
                cells += [f"{row.detected[e]:.0%}", when]
            cells += [f"{row.promoted['1x']:.1%} / {row.promoted['2x']:.1%}", f"{row.better_failed:.1%}"]
            if name.startswith("ours"):
                passed = aa_pass[aa_pass >= 0]
                cells.append(
                    f"{passed.size / len(aa_pass):.0%}, {np.median(passed) / 60:.1f}h" if passed.size else "0%"
                )
            else:
                cells.append("at 7d, if not failed")
            rows.append([*case.label(), name, *cells])
        rows.append([""] * 13)
    header = ["gate", "shape", "buckets", "traffic", "judge", "A/A: false rollbacks [95%]"]
    header += ["1x: detected", "median", "2x: detected", "median", "beyond limit promoted 1x / 2x", "better: failed"]
    header += ["A/A: promoted, median"]
    print_table(header, rows[:-1])
    print(
        f"\nreal shapes: one 7-day step per rollout, ours judged every minute on what the controller counts then "
        f"(analysis.window's window; error_rate's 64 blocks from templates.blocks, reaching back before the step) "
        f"(gates.judge_segments, alpha {judge.DEFAULT_ALPHA}, power {judge.DEFAULT_POWER}); latency_p95 maxIncrease "
        f"{SHAPES_LAT_LIMIT:.0%} (stable p95 {SHAPES_P95[0]:g}-{SHAPES_P95[1]:g}s, log-uniform per rollout; lognormal sigma {LOGNORMAL_SIGMA:g}, Pareto alpha "
        f"{PARETO_ALPHA:g}; 1x/2x: every latency x{LATENCY_SCALE['1x']:g}/x{LATENCY_SCALE['2x']:g}, better x0.8); "
        f"error_rate maxIncrease {SHAPES_ERR_LIMIT:.0%} + max {SHAPES_ERR_MAX:.0%} (stable {SHAPES_ERR_RATE:.1%}; "
        f"bursts: a minute bursts with p {BURST_P:g}, {BURST_SHARE:.0%} of its requests failing, background "
        f"{BURST_BACKGROUND:.2%}; the canary's burst probability scaled for x1.5/x2/x0.5); traffic 10 req/s at 5% "
        f"(diurnal: tenfold day/night sinusoid), very low 1 req/s at 1%; {args.shapes_aa} A/A and {args.shapes_ab} "
        f"rollouts per other effect and case. Flagger-style: a check per minute against stable's true value x (1 + "
        f"limit), rolled back at N failed checks. Kayenta-style: Mann-Whitney on hourly values (p95 or error rate), a "
        f"look every hour (every minute over 7 days would be quadratic). Ours 'promoted': PASS at any look before "
        f"any FAIL; the baselines promote at the step's end. Ours called the real judge {calls:,} times (the "
        f"vectorised pre-filter ruled out the rest; {checks:,} ruled-out looks checked against it); seed "
        f"{args.seed}; {time.monotonic() - started:.0f}s"
    )
    agreed = f"  shapes: the pre-filter ruled out no look the judge decided ({missed} of {checks:,} checked did)"
    return [*shapes_targets(mine), f"{agreed}: {_yes(missed == 0)}"]


def _aa_rate(row: ShapeRow) -> float:
    return row.false_rollbacks / row.rollouts


def shapes_targets(mine: dict[int, ShapeRow]) -> list[str]:
    """The targets of the real shapes, ours only: A/A false rollbacks per gate and step, beyond-limit
    canaries promoted, better canaries failed, and no PASS where the buckets cannot resolve the limit."""
    out = []
    for gate in ("latency", "errors"):
        cases = [(SHAPES[i], row) for i, row in mine.items() if SHAPES[i].gate == gate]
        name = cases[0][0].label()[0]
        worst = max(cases, key=lambda c: _aa_rate(c[1]))
        upper = max(cases, key=lambda c: clopper_pearson(c[1].false_rollbacks, c[1].rollouts)[1])
        up = clopper_pearson(upper[1].false_rollbacks, upper[1].rollouts)[1]
        out.append(
            f"  shapes: {name}: A/A false rollbacks <= {SHAPES_TARGET:.0%} in every case (worst {_aa_rate(worst[1]):.2%}, "
            f"{' / '.join(worst[0].label()[1:])}): {_yes(_aa_rate(worst[1]) <= SHAPES_TARGET)}"
        )
        out.append(
            f"  shapes: {name}: A/A 95% upper end <= {SHAPES_TARGET_UPPER:.0%} in every case (worst {up:.2%}, "
            f"{' / '.join(upper[0].label()[1:])}): {_yes(up <= SHAPES_TARGET_UPPER)}"
        )
        promoted = max(((c, e, r.promoted[e]) for c, r in cases for e in ("1x", "2x")), key=lambda x: x[2])
        out.append(
            f"  shapes: {name}: beyond-limit canaries promoted <= {SHAPES_PROMOTED:.0%} in every case (worst "
            f"{promoted[2]:.1%}, {promoted[1]} {' / '.join(promoted[0].label()[1:])}): "
            f"{_yes(promoted[2] <= SHAPES_PROMOTED + 1e-12)}"
        )
        better = max(cases, key=lambda c: c[1].better_failed)
        out.append(
            f"  shapes: {name}: a better canary never rolled back (worst {better[1].better_failed:.1%}, "
            f"{' / '.join(better[0].label()[1:])}): {_yes(better[1].better_failed == 0)}"
        )
    coarse = sum(row.passes for i, row in mine.items() if SHAPES[i].layout == "litellm")
    out.append(
        f"  shapes: latency_p95 on LiteLLM's buckets (too coarse for a {SHAPES_LAT_LIMIT:.0%} limit): no PASS in "
        f"the 1x/2x cases ({coarse} PASS): {_yes(coarse == 0)}"
    )
    return out


if __name__ == "__main__":
    raise SystemExit(main())
