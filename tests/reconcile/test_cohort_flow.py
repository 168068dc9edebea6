"""Cohorts end to end: the file router, the local forge in a real git remote, a real Prometheus holding
cohort-labelled history. Internal users first, then beta tenants, then everyone; a regression only beta
sees is caught on beta and takes the canary out of every cohort at once."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from controller import plan, traffic
from controller.forge import base as forge_base
from controller.routers import file as file_router
from tests.helpers import gitops as g
from tests.helpers import prom

pytestmark = pytest.mark.slow

ROLLOUT = """apiVersion: rollouts/v1
kind: Rollout
metadata:
  name: {name}
spec:
  router: local
  route: {route}
  stable: {{model: acme/chat-2025-01-01, prompt: prompts/v1.md}}
  canary: {{model: acme/chat-2025-01-01, prompt: prompts/v2.md}}
  cohorts:
    - {{name: internal, match: {{user_group: internal}}}}
    - {{name: beta, match: {{tenant_tier: beta}}}}
  steps:
    - {{cohort: internal, weight: 100, for: 1m, minSamples: 100}}
    - {{cohort: beta, weight: 25, for: 1m, minSamples: 100}}
    - {{weight: 5, for: 1m}}
    - {{weight: 100}}
  analysis:
    interval: 1m
    segments: [user_group, tenant_tier]
    gates:
      - {{use: eval_pass_rate, maxDrop: 3%, min: 80%, onFail: rollback}}
"""


def _history(route: str, beta_canary: float) -> list[prom.PromSeries]:
    out: list[prom.PromSeries] = []
    for variant, group, tier, rate, pm in (
        ("canary", "internal", "pro", 0.93, 60),
        ("stable", "external", "beta", 0.90, 60),
        ("canary", "external", "beta", beta_canary, 30),
        ("stable", "external", "pro", 0.90, 120),
        ("canary", "external", "pro", 0.93, 20),
    ):
        labels = {"route": route, "variant": variant, "user_group": group, "tenant_tier": tier}
        out.append(prom.PromSeries("llm_eval_results_total", {**labels, "result": "pass"}, pm * rate))
        out.append(prom.PromSeries("llm_eval_results_total", {**labels, "result": "fail"}, pm * (1 - rate)))
    return out


@pytest.fixture(scope="module")
def cohort_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[prom.PromServer]:
    work = tmp_path_factory.mktemp("cohort-prometheus")
    history = _history("chat", 0.93) + _history("beta-chat", 0.70)
    # the history runs an hour past now: the test moves the controller's clock ahead through the steps
    text = prom.prom_openmetrics(history, now=g.NOW + 3600, span=4 * 3600)
    with prom.backfilled(work, text) as server:
        yield server


def setup(tmp_path: Path, url: str, monkeypatch: pytest.MonkeyPatch, *, name: str, route: str) -> g.GitOps:
    ops = g.make_gitops(tmp_path, url, monkeypatch)
    ops.commit(
        {
            f"rollouts/{name}/rollout.yaml": ROLLOUT.format(name=name, route=route),
            f"rollouts/{name}/prompts/v1.md": "You are helpful.\n",
            f"rollouts/{name}/prompts/v2.md": "You are helpful and brief.\n",
        },
        f"Add {name}",
    )
    return ops


def later(ops: g.GitOps) -> None:
    """Ten minutes on: the gates measure from a step's start, never before it."""
    ops.advance(timedelta(minutes=10))


def users(entry: dict, attributes: dict[str, str]) -> float:
    picks = [file_router.pick(entry, user=f"u{i}", attributes=attributes, route="x") for i in range(2000)]
    return sum(p == traffic.CANARY for p in picks) / len(picks)


def test_internal_then_beta_then_everyone(
    tmp_path: Path, cohort_prometheus: prom.PromServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    ops = setup(tmp_path, cohort_prometheus.url, monkeypatch, name="chat-bot", route="chat")
    c = ops.controller()
    assert g.kind(c.reconcile_once(), "chat-bot") is plan.Kind.APPLY
    entry = ops.router().routes()["chat"]
    assert users(entry, {"user_group": "internal"}) == 1.0 and users(entry, {"tenant_tier": "beta"}) == 0.0

    later(ops)
    tick = c.reconcile_once()
    assert g.kind(tick, "chat-bot") is plan.Kind.ADVANCE, g.outcome(tick, "chat-bot").decision
    [pr] = ops.forge.list(state=forge_base.PRState.OPEN)
    assert pr.title == "chat-bot: advance to beta 25% (step 2 of 4)"
    assert "| cohort internal, user\\_group=internal, tenant\\_tier=pro |" in pr.body  # the evidence row
    assert "cohort beta \\(tenant\\_tier=beta\\) canary 25%" in pr.body  # the route after merge
    assert ops.live("chat").cohorts == (traffic.CohortSplit("internal", "user_group", ("internal",), 100),)
    g.approve_and_merge(ops, pr.number)
    assert g.kind(c.reconcile_once(), "chat-bot") is plan.Kind.APPLY
    live = ops.live("chat")
    assert live is not None and [(x.name, x.canary) for x in live.cohorts] == [("internal", 100), ("beta", 25)]

    later(ops)
    tick = c.reconcile_once()
    assert g.kind(tick, "chat-bot") is plan.Kind.ADVANCE, g.outcome(tick, "chat-bot").decision
    [pr] = ops.forge.list(state=forge_base.PRState.OPEN)
    assert pr.title == "chat-bot: advance to 5% (step 3 of 4)"
    g.approve_and_merge(ops, pr.number)
    assert g.kind(c.reconcile_once(), "chat-bot") is plan.Kind.APPLY
    live = ops.live("chat")
    assert live is not None and live.weight(traffic.CANARY) == 5 and len(live.cohorts) == 2  # cohorts stay open


def test_a_regression_only_beta_sees_rolls_back_every_cohort(
    tmp_path: Path, cohort_prometheus: prom.PromServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    ops = setup(tmp_path, cohort_prometheus.url, monkeypatch, name="beta-bot", route="beta-chat")
    c = ops.controller()
    assert g.kind(c.reconcile_once(), "beta-bot") is plan.Kind.APPLY  # internal: 100%, and internal is fine
    later(ops)
    assert g.kind(c.reconcile_once(), "beta-bot") is plan.Kind.ADVANCE
    [pr] = ops.forge.list(state=forge_base.PRState.OPEN)
    g.approve_and_merge(ops, pr.number)
    later(ops)
    tick = c.reconcile_once()
    assert g.kind(tick, "beta-bot") is plan.Kind.ROLLBACK, g.outcome(tick, "beta-bot").decision
    live = ops.live("beta-chat")
    assert live is not None and traffic.exposure_free(live), live
    [revert] = ops.forge.list(state=forge_base.PRState.OPEN)
    assert "cohort beta" in revert.body and "roll back" in revert.title
