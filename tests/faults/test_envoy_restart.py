"""Envoy restarted: its runtime overrides live in memory and are lost. The next tick sees the route at
the bootstrap defaults, calls it drift, and heals it to what main says, in that one tick."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import git
import pytest

from controller import load, plan, reconcile, repo, spec, traffic
from controller.forge import local as forge_local
from controller.routers import base, envoy
from tests.helpers import envoy_proc, net, procs
from tests.helpers.gitops import ROLLOUT, GitOps, kind
from tests.helpers.routes import read_one

pytestmark = pytest.mark.slow

CONFIG = """apiVersion: rollouts/v1
kind: ControllerConfig
routers:
  edge:
    type: envoy
    admin: "{admin}"
    upstreams: {{acme/chat-2025-01-01: "127.0.0.1:9", acme/chat-2025-06-01: "127.0.0.1:10"}}
forge: {{type: local}}
"""


@pytest.fixture
def admin_port() -> int:
    return net.free_port()


@pytest.fixture
def bootstrap(admin_port: int) -> dict[str, Any]:
    nowhere = f"127.0.0.1:{net.free_port()}"  # no traffic is sent in this test
    route = envoy.RouteSpec(
        rollout="good-bot", route="good", upstreams={traffic.STABLE: nowhere, traffic.CANARY: nowhere}
    )
    return envoy.bootstrap(
        [route], admin=f"http://127.0.0.1:{admin_port}", listen="127.0.0.1:0", runtime_prefix="rollouts"
    )


@pytest.fixture
def ops(tmp_path: Path, admin_port: int) -> GitOps:
    remote = tmp_path / "remote.git"
    git.Repo.init(remote, bare=True, initial_branch="main")
    ops = GitOps(remote, tmp_path, "")
    # A model upgrade: without a prompt bundle, Envoy carries a model difference only (each role's cluster).
    rollout = (
        ROLLOUT.format(name="good-bot", route="good", promotion="manual")
        .replace("router: local", "router: edge")
        .replace(
            "canary: {model: acme/chat-2025-01-01, prompt: prompts/v2.md}",
            "canary: {model: acme/chat-2025-06-01, prompt: prompts/v1.md}",
        )
    )
    ops.commit(
        {
            "rollouts/controller.yaml": CONFIG.format(admin=f"http://127.0.0.1:{admin_port}"),
            "rollouts/good-bot/rollout.yaml": rollout,
            "rollouts/good-bot/prompts/v1.md": "You are helpful.\n",
            "rollouts/good-bot/prompts/v2.md": "You are helpful and brief.\n",
        },
        "Add good-bot on Envoy",
    )
    return ops


@pytest.fixture
def proxy(bootstrap: dict[str, Any], tmp_path: Path) -> Iterator[list[envoy_proc.Envoy]]:
    """The running Envoy, in a list so the test can replace it; whichever runs last is stopped."""
    running = [envoy_proc.start_envoy(bootstrap, tmp_path / "envoy")]
    try:
        yield running
    finally:
        for p in running:
            procs.stop(p.process)


def controller(ops: GitOps) -> reconcile.Controller:
    ws = repo.Workspace.open(str(ops.remote), ops.work / "clone")

    def routers(
        name: str, cfg: spec.RouterConfig, routes: dict[str, str], cohorts: dict[str, tuple[str, ...]]
    ) -> base.Router:
        assert isinstance(cfg, spec.EnvoyRouterConfig)
        return envoy.EnvoyRouter(name, str(cfg.admin), routes=routes, cohorts=cohorts)

    forge = forge_local.LocalForge(ops.remote, clock=ops.now)
    return reconcile.Controller(ws, forge, routers, None, holder="test", clock=ops.now)  # type: ignore[arg-type]


def test_envoy_restart_is_drift_healed_within_one_tick(
    ops: GitOps, proxy: list[envoy_proc.Envoy], bootstrap: dict[str, Any], tmp_path: Path
) -> None:
    c = controller(ops)
    router = envoy.EnvoyRouter("edge", proxy[0].admin, routes={"good": "good-bot"})
    assert kind(c.reconcile_once(), "good-bot") is plan.Kind.APPLY
    wanted = read_one(router, "good")
    assert wanted is not None and wanted.shadow == 100
    assert router.overrides()

    procs.stop(proxy[0].process)
    proxy[0] = envoy_proc.start_envoy(bootstrap, tmp_path / "envoy")  # same bootstrap, same admin port
    assert router.overrides() == {}, "a restarted Envoy has lost its overrides"
    lost = read_one(router, "good")
    assert lost is not None and not lost.same_traffic(wanted)
    loaded = load.load_repo(c.workspace.tree()).rollout("good-bot")
    assert loaded is not None and plan.diff(loaded, lost).drift  # `rollout plan` calls it drift

    tick = c.reconcile_once()  # one tick heals it
    assert kind(tick, "good-bot") is plan.Kind.APPLY
    healed = read_one(router, "good")
    assert healed is not None and healed.same_traffic(wanted)
    assert any("read back" in a for a in tick.outcomes[0].actions)
    assert kind(c.reconcile_once(), "good-bot") is plan.Kind.HOLD  # and stays healed
