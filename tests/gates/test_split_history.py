"""The traffic-split check against a real Prometheus holding backfilled request counts (weight 10
everywhere): a router that splits right, one that sends half to the canary, every flavour's series,
segments summed, one request for every rollout, ERROR when Prometheus cannot answer, and the renderings."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from controller import analysis, cli, evidence, prometheus, split
from controller.gates import Verdict as V
from tests.helpers import gate_history, net, prom

INTERVAL = timedelta(minutes=5)
SINCE = datetime.fromtimestamp(gate_history.STEP_START, UTC)  # the history began when the step did


def target(route: str, router_type: str = "file", *, rollout: str | None = None) -> split.Target:
    look = split.look(since=SINCE, at=gate_history.AT, interval=INTERVAL)
    assert look is not None
    return split.Target(rollout or f"r-{route}", route, router_type, 10, 0.1, 100, look)


SCENARIOS = [
    ("app-right", target("split-right"), V.PASS, 0.10),
    ("app-half-while-weight-10", target("split-wrong"), V.FAIL, 0.50),
    ("app-segments-summed", target("split-segmented"), V.PASS, 0.10),
    ("app-too-few", target("split-few"), V.INCONCLUSIVE, 0.10),
    ("app-no-series", target("nowhere"), V.INCONCLUSIVE, None),
    ("envoy-half", target("ignored", "envoy", rollout="split-envoy"), V.FAIL, 0.50),
    ("litellm-right", target("ignored", "litellm", rollout="split-litellm"), V.PASS, 0.10),
]


@pytest.fixture
def judged(metrics: prometheus.Prometheus, counting: gate_history.Counting) -> dict[str, object]:
    found = analysis.evaluate_split([c[1] for c in SCENARIOS], metrics=metrics, at=gate_history.AT)
    assert len(counting.requests) == 1  # every rollout, every flavour: one query
    return dict(found)


@pytest.mark.parametrize(("t", "want", "share"), [c[1:] for c in SCENARIOS], ids=[c[0] for c in SCENARIOS])
def test_scenario(judged: dict[str, object], t: split.Target, want: V, share: float | None) -> None:
    e = judged[t.rollout]
    assert isinstance(e, analysis.gates.GateEvidence)
    assert e.verdict is want, evidence.text(t.rollout, [e], at="test")
    assert e.error is None and e.name == "traffic_split" and e.on_fail == "hold"
    assert t.look is not None and e.window == analysis.spec.format_duration(t.look.window)
    [row] = e.segments
    if share is None:
        assert not row.counted
        return
    assert e.query and row.canary.value == pytest.approx(share, abs=0.002)
    if want is V.FAIL:
        assert row.reason.startswith("the router is not splitting as configured: canary 50.00%")
        assert "expected 10.00%" in row.reason and "weight 10" in row.reason


def test_the_window_starts_at_the_origin(judged: dict[str, object]) -> None:
    """Requests are counted from the look's origin, not from the step's start: 200 a minute."""
    e = judged["r-split-right"]
    assert isinstance(e, analysis.gates.GateEvidence)
    t = target("split-right")
    assert t.look is not None
    minutes = t.look.window.total_seconds() / 60
    [row] = e.segments
    assert (row.stable.samples or 0) + (row.canary.samples or 0) == pytest.approx(200 * minutes, rel=0.02)


def test_prometheus_down_is_an_error_for_every_rollout() -> None:
    port = net.free_port()
    down = prometheus.Prometheus(f"http://127.0.0.1:{port}", timeout=timedelta(seconds=2))
    try:
        found = analysis.evaluate_split(
            [target("split-right"), target("split-wrong")], metrics=down, at=gate_history.AT
        )
    finally:
        down.close()
    assert {e.verdict for e in found.values()} == {V.ERROR}
    assert all(e.error and e.error.startswith("traffic-split check:") for e in found.values())


def test_renderings_show_the_row(judged: dict[str, object]) -> None:
    e = judged["r-split-wrong"]
    assert isinstance(e, analysis.gates.GateEvidence)
    text = evidence.text("r", [e], at="now")
    assert "traffic_split (split, app; canary share 10%;" in text and "onFail hold): FAIL" in text
    assert "share 50.00% [" in text and "/ 10.00%" in text
    md = evidence.markdown("r", [e], at="now")
    assert "| traffic\\_split | all |" in md and "the router is not splitting as configured" in md
    row = evidence.to_json("r", [e], at="now")["gates"][0]
    assert row["gate"] == "traffic_split" and row["onFail"] == "hold" and row["thresholds"] == {"share": 0.1}
    assert row["segments"][0]["checks"][0]["check"] == "share"


ROLLOUT = """\
apiVersion: rollouts/v1
kind: Rollout
metadata: {name: split-wrong}
spec:
  router: local
  route: split-wrong
  stable: {model: acme/m-1}
  canary: {model: acme/m-2}
  steps:
    - {weight: 10, for: 1h}
    - {weight: 100}
  analysis:
    gates: [{use: error_rate, max: 5%}]
"""


def test_rollout_gates_shows_the_check(tmp_path: Path, prom_server: prom.PromServer) -> None:
    (tmp_path / "rollouts" / "split-wrong").mkdir(parents=True)
    (tmp_path / "rollouts" / "controller.yaml").write_text(
        "apiVersion: rollouts/v1\nkind: ControllerConfig\nrouters: {local: {type: file}}\n"
        f"prometheus: {{url: '{prom_server.url}'}}\n"
    )
    (tmp_path / "rollouts" / "split-wrong" / "rollout.yaml").write_text(ROLLOUT)
    argv = ["gates", "split-wrong", "--repo", str(tmp_path), "--at", str(gate_history.NOW)]
    out = io.StringIO()
    assert cli.main([*argv, "--format", "json"], out=out) == 1  # error_rate passes; the split fails
    gate, check = json.loads(out.getvalue())["gates"]
    assert (gate["gate"], gate["verdict"]) == ("error_rate", "PASS")
    assert (check["gate"], check["verdict"], check["window"]) == (
        "traffic_split",
        "FAIL",
        "32m",
    )  # analysis.window(1m, 1h)

    off = ROLLOUT.replace("gates: [", "trafficSplit: false\n    gates: [")
    (tmp_path / "rollouts" / "split-wrong" / "rollout.yaml").write_text(off)
    out = io.StringIO()
    assert cli.main(argv, out=out) == 0, out.getvalue()  # opted out: no check, the gate passes
    assert "traffic_split" not in out.getvalue()
