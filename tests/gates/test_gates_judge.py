"""Pure judging: canary against stable and against bounds, minSamples, no data, segments."""

from __future__ import annotations

import pytest

from controller import gates, spec
from controller.gates import Measurement as M
from controller.gates import Verdict as V


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
