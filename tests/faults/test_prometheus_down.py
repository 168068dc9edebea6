"""Prometheus killed mid-rollout: the controller holds (no promotion, no rollback), says why, and
resumes when Prometheus is back on the same data and port."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client import generate_latest

from controller import cli, plan, telemetry
from controller.forge import base as forge_base
from tests.helpers import net, procs, prom
from tests.helpers.gitops import NOW, GitOps, evals_history, kind, make_gitops, outcome

pytestmark = pytest.mark.slow


class Restartable:
    """A real Prometheus on a fixed loopback port and data dir, stopped and started by its own handle."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.port = net.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._running: contextlib.ExitStack | None = None

    def start(self) -> None:
        (self.work / "prometheus.yml").write_text("global: {scrape_interval: 1s}\nscrape_configs: []\n")
        args = [
            "prometheus",
            f"--config.file={self.work / 'prometheus.yml'}",
            f"--storage.tsdb.path={self.work / 'data'}",
            "--storage.tsdb.retention.time=3650d",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]
        stack = contextlib.ExitStack()
        stack.enter_context(procs.running(args, log=self.work / "prometheus.log"))
        self._running = stack
        prom.prom_poll("Prometheus /-/ready", lambda: httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200)

    def stop(self) -> None:
        if self._running is not None:
            self._running.close()
            self._running = None


@pytest.fixture
def own_prometheus(tmp_path: Path) -> Iterator[Restartable]:
    work = tmp_path / "prom"
    work.mkdir()
    history = evals_history("good", "stable", 0.90, 200) + evals_history("good", "canary", 0.90, 200)
    prom.prom_backfill(prom.prom_openmetrics(history, now=NOW), data_dir=work / "data", work=work)
    server = Restartable(work)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def ops(tmp_path: Path, own_prometheus: Restartable, monkeypatch: pytest.MonkeyPatch) -> GitOps:
    return make_gitops(tmp_path, own_prometheus.url, monkeypatch)


def test_prometheus_killed_mid_rollout_holds_then_resumes(ops: GitOps, own_prometheus: Restartable) -> None:
    c = ops.controller()
    assert kind(c.reconcile_once(), "good-bot") is plan.Kind.APPLY  # step 1: shadow 100
    before = ops.live("good")
    assert before is not None and before.shadow == 100

    own_prometheus.stop()
    ops.advance(timedelta(minutes=2))  # the step's time is up: only the missing gate holds it
    for _ in range(2):
        tick = c.reconcile_once()
        found = outcome(tick, "good-bot")
        assert found.decision is not None and found.decision.kind is plan.Kind.HOLD, found
        reason = found.decision.reason
        assert "could not be measured" in reason and "eval_pass_rate" in reason
        assert f"Prometheus at {own_prometheus.url}" in reason and "query failed" in reason
        assert ops.live("good") == before, "neither a promotion nor a rollback while blind"
        assert ops.forge.list() == []

    tel = telemetry.Telemetry()  # and /metrics shows it
    tel.record(tick)
    assert 'rollout_gates_unmeasured{rollout="good-bot"} 1.0' in generate_latest(tel.registry).decode()

    out = io.StringIO()  # `rollout status` says why it holds
    cli_args = ["--remote", str(ops.remote), "--workdir", str(ops.work / "cli")]
    assert cli.main(["status", *cli_args], out) == 0
    status = out.getvalue()
    assert "eval_pass_rate ERROR" in status and "could not be measured" in status
    assert f"Prometheus at {own_prometheus.url}" in status

    own_prometheus.start()  # same data dir, same port
    tick = c.reconcile_once()
    assert kind(tick, "good-bot") is plan.Kind.ADVANCE
    [pr] = ops.forge.list(state=forge_base.PRState.OPEN)
    assert pr.title.startswith("good-bot: advance to 10%")
    assert ops.live("good") == before, "exposure grows only through a merged PR"
