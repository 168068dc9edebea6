"""Sequential verdicts from a real Prometheus: a step that began when the backfilled history did,
judged at several looks on the counts since the step began. Verdicts start INCONCLUSIVE, then
decide on evidence and stay decided; a clean canary passes an error gate only when it is paired."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from controller import analysis, evidence, gates, prometheus, spec
from controller.gates import Verdict as V
from tests.helpers import gate_history

H, P, F = V.INCONCLUSIVE, V.PASS, V.FAIL  # H: hold (INCONCLUSIVE)
LOOKS = (10, 30, 60, 120, 180)  # minutes since the step began
CONFIG = spec.ControllerConfig.model_validate(
    {
        "apiVersion": "rollouts/v1",
        "kind": "ControllerConfig",
        "routers": {"local": {"type": "file"}, "edge": {"type": "envoy", "admin": "http://127.0.0.1:9901"}},
    }
)


def target(route: str, gate: dict[str, object], *, router: str = "file") -> analysis.Target:
    return analysis.Target(route, route, router, (spec.Gate.model_validate(gate),), (), 100)


def look(metrics: prometheus.Prometheus, t: analysis.Target, minutes: int) -> gates.GateEvidence:
    at = datetime.fromtimestamp(gate_history.STEP_START + minutes * 60, UTC)
    [e] = analysis.evaluate([t], config=CONFIG, metrics=metrics, at=at, window=timedelta(minutes=minutes))[t.rollout]
    return e


SEQUENCES = [
    (
        "eval-5pts-worse-fails-after-2h",
        target("seq-worse", {"use": "eval_pass_rate", "maxDrop": "3%"}),
        [H, H, H, F, F],
    ),
    ("eval-equal-passes-after-30m", target("seq-same", {"use": "eval_pass_rate", "maxDrop": "3%"}), [H, P, P, P, P]),
    ("p95-30pct-slower-fails", target("seq-worse", {"use": "latency_p95", "maxIncrease": "10%"}), [H, H, F, F, F]),
    ("p95-equal-passes", target("seq-same", {"use": "latency_p95", "maxIncrease": "10%"}), [H, H, H, P, P]),
    (
        "envoy-p95-in-ms-30pct-slower-fails",
        target("seq-envoy", {"use": "latency_p95", "maxIncrease": "10%"}, router="envoy"),
        [H, H, F, F, F],
    ),
    ("errors-relative-alone-never-decides", target("clean", {"use": "error_rate", "maxIncrease": "50%"}), [H] * 5),
    (  # 1,500 clean canary requests (+30m) do not yet show the canary within 0.25 points of stable
        # (maxIncrease x max / 2) by its exact rate sequence; 3,000 do
        "errors-relative-paired-passes",
        target("clean", {"use": "error_rate", "maxIncrease": "50%", "max": "1%"}),
        [H, H, P, P, P],
    ),
]


@pytest.mark.parametrize(("t", "want"), [c[1:] for c in SEQUENCES], ids=[c[0] for c in SEQUENCES])
def test_verdicts_over_the_step(metrics: prometheus.Prometheus, t: analysis.Target, want: list[V]) -> None:
    got = [look(metrics, t, minutes) for minutes in LOOKS]
    shown = "".join(evidence.text(t.rollout, [e], at=f"+{m}m") for e, m in zip(got, LOOKS, strict=True))
    assert [e.verdict for e in got] == want, shown
    assert all(e.error is None for e in got)


def test_bounds_narrow_as_counts_grow(metrics: prometheus.Prometheus) -> None:
    t = target("seq-worse", {"use": "eval_pass_rate", "maxDrop": "3%"})
    widths = []
    for minutes in LOOKS:
        [row] = look(metrics, t, minutes).segments
        [check] = row.checks
        assert check.estimate == pytest.approx(0.05, abs=0.002)
        assert check.lower is not None and check.upper is not None
        widths.append(check.upper - check.lower)
    assert widths == sorted(widths, reverse=True)


def test_envoy_buckets_are_scaled_to_seconds(metrics: prometheus.Prometheus) -> None:
    e = look(metrics, target("seq-envoy", {"use": "latency_p95", "max": "1500ms"}, router="envoy"), 180)
    [row] = e.segments
    assert row.canary.buckets and row.canary.buckets[-1][0] == float("inf")
    assert row.canary.buckets[0][0] == pytest.approx(0.05)  # 50 ms, in seconds
    [check] = row.checks
    # lognormal median 1.04 s, sigma 0.6: p95 about 2.8 s, beyond a 1.5 s bound
    assert check.unit == "s" and check.estimate == pytest.approx(2.8, rel=0.1)
    assert e.verdict is V.FAIL
