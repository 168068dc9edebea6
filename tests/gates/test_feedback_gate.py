"""Users' feedback as a gate, measured by a real Prometheus: `feedback_negative_rate` reads
`llm_feedback_total{value="up"|"down"}` like any ratio. A canary whose answers every machine metric
finds fine (no errors, the same latency) but whose users rate down two and a half times as often fails
it; one rated like stable passes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from controller import analysis, evidence, gates, load, prometheus, spec
from controller.gates import Verdict as V
from tests.helpers import gate_history, prom

pytestmark = pytest.mark.slow

NOW = gate_history.NOW
PER_MINUTE = 60  # ratings a minute, per variant
DOWN = {("liked", "stable"): 0.08, ("liked", "canary"): 0.08, ("disliked", "stable"): 0.08, ("disliked", "canary"): 0.2}


def _history() -> str:
    lines = []
    for (route, variant), down in DOWN.items():
        labels = f'route="{route}",variant="{variant}"'
        requests = ups = downs = 0.0
        for minute in range(120, -1, -1):
            ts = NOW - minute * 60
            lines.append(f'llm_requests_total{{{labels},outcome="ok"}} {requests:g} {ts}')
            lines.append(f'llm_feedback_total{{{labels},value="up"}} {ups:g} {ts}')
            lines.append(f'llm_feedback_total{{{labels},value="down"}} {downs:g} {ts}')
            requests += 10 * PER_MINUTE
            ups += PER_MINUTE * (1 - down)
            downs += PER_MINUTE * down
    return "\n".join(sorted(lines, key=lambda line: line.split(" ")[0])) + "\n# EOF\n"


@pytest.fixture(scope="module")
def metrics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[prometheus.Prometheus]:
    work = tmp_path_factory.mktemp("prometheus-feedback")
    with prom.backfilled(work, _history()) as server:
        client = prometheus.Prometheus(server.url, timeout=timedelta(seconds=30))
        try:
            yield client
        finally:
            client.close()


CONFIG = spec.ControllerConfig.model_validate(
    {
        "apiVersion": "rollouts/v1",
        "kind": "ControllerConfig",
        "routers": {"local": {"type": "file"}},
        "prometheus": {"url": "http://127.0.0.1:9090"},
    }
)
GATES = (
    spec.Gate.model_validate({"use": "feedback_negative_rate", "maxIncrease": "50%"}),
    spec.Gate.model_validate({"use": "error_rate", "max": "1%"}),
)


@pytest.mark.parametrize(("route", "verdict"), [("liked", V.PASS), ("disliked", V.FAIL)])
def test_only_the_users_feedback_catches_a_canary_they_dislike(
    metrics: prometheus.Prometheus, route: str, verdict: V
) -> None:
    target = analysis.Target(
        rollout=f"r-{route}", route=route, router_type="file", gates=GATES, segments=(), min_samples=100
    )
    found = analysis.evaluate([target], config=CONFIG, metrics=metrics, at=gate_history.AT, window=timedelta(hours=1))
    feedback, errors = found[target.rollout]
    assert feedback.error is None and errors.error is None, (feedback.error, errors.error)
    assert errors.verdict is V.PASS  # no machine metric sees anything wrong
    assert feedback.verdict is verdict, evidence.text(target.rollout, [feedback], at="test")


def test_a_shadow_step_leaves_the_feedback_gate_unjudged(metrics: prometheus.Prometheus) -> None:
    """Users never see a shadow's answers, so there is nothing of the canary's for them to rate: in a
    shadow step the gate holds nothing (undecidable), even where the metrics hold ratings (here: the
    canary's earlier live step), and every other gate is judged as before."""
    target = analysis.Target(
        rollout="r-shadow",
        route="disliked",
        router_type="file",
        gates=GATES,
        segments=(),
        min_samples=100,
        users_see_canary=False,
    )
    found = analysis.evaluate([target], config=CONFIG, metrics=metrics, at=gate_history.AT, window=timedelta(hours=1))
    feedback, errors = found[target.rollout]
    assert (feedback.verdict, feedback.undecidable) == (V.INCONCLUSIVE, True)
    assert feedback.segments and all("shadow" in row.reason for row in feedback.segments)
    assert errors.verdict is V.PASS and not errors.undecidable
    assert gates.deciding([feedback, errors]) == [V.PASS]


@pytest.mark.parametrize(
    ("step", "users_see_it"),
    [(0, False), (1, True), (2, True)],  # shadow 100; the internal cohort at 100 (everyone else: 0); weight 50
)
def test_users_see_the_canary_in_a_step_that_gives_it_live_traffic(step: int, users_see_it: bool) -> None:
    data = {
        "apiVersion": "rollouts/v1",
        "kind": "Rollout",
        "metadata": {"name": "bot"},
        "spec": {
            "router": "local",
            "route": "chat",
            "stable": {"model": "m-1"},
            "canary": {"model": "m-2"},
            "cohorts": [{"name": "internal", "match": {"tenant_tier": "internal"}}],
            "steps": [{"shadow": 100, "for": "1h"}, {"cohort": "internal", "weight": 100, "for": "1h"}, {"weight": 50}],
            "analysis": {"gates": [{"use": "feedback_negative_rate", "max": "10%"}], "segments": ["tenant_tier"]},
        },
        "status": {"revision": "c0ffee000001", "step": step, "phase": "Progressing"},
    }
    loaded = load.LoadedRollout(
        "rollouts/bot/rollout.yaml",
        spec.Rollout.model_validate(data),
        {"stable": "5ab1e0000001", "canary": "c0ffee000001"},
        {},
    )
    assert analysis.target(loaded, CONFIG).users_see_canary is users_see_it
