"""The router unreachable during a rollback: the write is retried with backoff within the tick, the
outcome, `rollout status`, the PR body and /metrics say it is not confirmed, and it is never reported
as done; when the router answers again the next tick takes the canary out."""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path

import pytest

from controller import cli, plan, telemetry, traffic
from controller.forge import base as forge_base
from tests.helpers.faults import FlakyRouter, make_controller
from tests.helpers.gitops import GitOps, add_bad_bot, outcome

pytestmark = pytest.mark.slow

RUNNING = traffic.RouteState({traffic.STABLE: 100, traffic.CANARY: 0}, 100)  # the bad canary gets shadow traffic


def test_a_write_that_fails_twice_is_retried_with_backoff(gitops: GitOps) -> None:
    add_bad_bot(gitops)
    gitops.router().write({"bad": RUNNING})
    sleeps: list[float] = []
    flaky: list[FlakyRouter] = []

    def wrap(real: object) -> FlakyRouter:
        flaky.append(FlakyRouter(real, fail_writes=2))
        return flaky[-1]

    tick = make_controller(gitops, router=wrap, sleeps=sleeps).reconcile_once()
    found = outcome(tick, "bad-bot")
    assert found.decision is not None and found.decision.kind is plan.Kind.ROLLBACK
    assert found.error is None and not found.rollback_unconfirmed
    assert found.router_attempts == 3 and sleeps == [0.25, 0.5]  # doubling backoff
    assert any("after 3 attempts" in a for a in found.actions)
    live = gitops.live("bad")
    assert live is not None and live.weight("canary") == 0 and live.shadow == 0
    [pr] = gitops.forge.list(prefix="rollout/bad-bot/")
    assert "**already** sends no traffic" in pr.body

    tel = telemetry.Telemetry()
    tel.record(tick)
    text = tel_text(tel)
    assert 'rollout_router_write_retries_total{rollout="bad-bot"} 2.0' in text
    assert 'rollout_rollback_unconfirmed{rollout="bad-bot"} 0.0' in text


def test_an_unreachable_router_is_never_reported_as_rolled_back(
    gitops: GitOps, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_bad_bot(gitops)
    gitops.router().write({"bad": RUNNING})
    sleeps: list[float] = []
    link = {"down": True}

    def wrap(real: object) -> FlakyRouter:
        return FlakyRouter(real, down=link["down"])

    c = make_controller(gitops, router=wrap, sleeps=sleeps)
    tick = c.reconcile_once()
    found = outcome(tick, "bad-bot")
    assert found.decision is not None and found.decision.kind is plan.Kind.ROLLBACK  # decided though unread
    assert found.error and found.adapter == "router" and found.rollback_unconfirmed
    assert found.router_attempts == 4 and sleeps == [0.25, 0.5, 1.0]
    assert not any("read back" in a for a in found.actions)
    assert any("NOT confirmed" in a for a in found.actions)
    assert gitops.live("bad") == RUNNING  # honest: nothing changed on the router
    [pr] = gitops.forge.list(prefix="rollout/bad-bot/", state=forge_base.PRState.OPEN)
    assert "Not yet confirmed on the router" in pr.body and "already" not in pr.body

    tel = telemetry.Telemetry()
    tel.record(tick)
    text = tel_text(tel)
    assert 'rollout_rollback_unconfirmed{rollout="bad-bot"} 1.0' in text
    assert 'rollout_errors_total{adapter="router"}' in text  # good-bot, too, could not be read

    # `rollout status` with the router unreachable: a real file router whose directory is a file
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory")
    out = io.StringIO()
    monkeypatch.setenv("ROLLOUT_STATE_DIR", str(blocker))
    args = ["status", "--remote", str(gitops.remote), "--workdir", str(tmp_path / "cli")]
    assert cli.main(args, out) == 0
    text = out.getvalue()
    section = text[text.index("bad-bot") :]
    assert "ROLLBACK NOT CONFIRMED" in section and "error    router:" in section

    link["down"] = False  # the router answers again: the pending rollback is applied at once
    gitops.advance(timedelta(minutes=1))
    tick = c.reconcile_once()
    found = outcome(tick, "bad-bot")
    assert found.error is None and not found.rollback_unconfirmed
    live = gitops.live("bad")
    assert live is not None and live.weight("canary") == 0 and live.shadow == 0
    assert len(gitops.forge.list(prefix="rollout/bad-bot/")) == 1  # still the one revert PR


def tel_text(tel: telemetry.Telemetry) -> str:
    from prometheus_client import generate_latest

    return generate_latest(tel.registry).decode()
