"""`rollout run` as a fleet member (controller/cli/fleet.py), in-process on real remotes, the file
router and a real Prometheus, with the in-memory coordinator (etcd's semantics): it serves the home
repository and the ones its controller.yaml lists, each for the rollouts of its own shards; a broken
repository is its own line and never stops the others; each repository's router state is its own."""

from __future__ import annotations

import io
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import git
import pytest

from controller import coordination, telemetry
from controller.cli import fleet, run
from tests.helpers import net
from tests.helpers.gitops import CONFIG, HISTORY_BEGAN, ROLLOUT, GitOps
from tests.helpers.memory_store import Cluster, MemoryStore

Member = tuple[io.StringIO, threading.Event, threading.Thread, telemetry.Telemetry]

FLEET = """fleet:
  name: test
  shards: 8
  coordination: {{type: etcd, endpoints: ["http://127.0.0.1:9"]}}
  repositories:
    - {{name: team-a, remote: "{team_a}"}}
    - {{name: broken, remote: "{broken}"}}
    - {{name: clash, remote: "{clash}"}}
"""


def team_a(tmp_path: Path, prom_url: str, *, name: str = "team-a", routes: str = "team-a/routes.json") -> Path:
    """A listed repository with one rollout; its file router writes `routes` in the state dir."""
    remote = tmp_path / f"{name}.git"
    git.Repo.init(remote, bare=True, initial_branch="main")
    ops = GitOps(remote, tmp_path / f"{name}-work", prom_url)
    ops.commit(
        {
            "rollouts/controller.yaml": CONFIG.format(prom=prom_url).replace("path: routes.json", f"path: {routes}"),
            "rollouts/faq-bot/rollout.yaml": ROLLOUT.format(name="faq-bot", route="faq", promotion="manual"),
            "rollouts/faq-bot/prompts/v1.md": "You answer FAQs.\n",
            "rollouts/faq-bot/prompts/v2.md": "You answer FAQs briefly.\n",
        },
        "Add faq-bot",
        at=HISTORY_BEGAN,
    )
    return remote


@pytest.fixture
def cluster() -> Cluster:
    """The members' coordinator (etcd's semantics, in memory): `down` makes it unreachable."""
    return Cluster(time.monotonic)


@pytest.fixture
def member(gitops: GitOps, tmp_path: Path, cluster: Cluster) -> Callable[[], Member]:
    remote_a = team_a(tmp_path, gitops.prom_url)
    clash = team_a(tmp_path, gitops.prom_url, name="clash", routes="routes.json")  # home's own file
    fleet_yaml = FLEET.format(team_a=remote_a, broken=tmp_path / "nowhere.git", clash=clash)
    config = CONFIG.format(prom=gitops.prom_url) + fleet_yaml
    gitops.commit({"rollouts/controller.yaml": config}, "Serve team-a too", at=HISTORY_BEGAN)

    def start() -> Member:
        out, stop, tel = io.StringIO(), threading.Event(), telemetry.Telemetry()
        home = run.build_for(str(gitops.remote), tmp_path / "member" / "clone", branch="main", holder="fleet-test")
        assert home.config.fleet is not None
        coordinator = coordination.Coordinator(MemoryStore(cluster, "m1"), "m1", shards=8)

        def build(remote: str, clone: Path, branch: str) -> run.Built:
            return run.build_for(remote, clone, branch=branch, holder="fleet-test")

        thread = threading.Thread(
            target=fleet.run,
            args=(home,),
            kwargs={
                "workdir": tmp_path / "member",
                "coordinator": coordinator,
                "build": build,
                "interval": 0.2,
                "stop": stop,
                "out": out,
                "tel": tel,
                "lines": run._tick_lines,
            },
        )
        thread.start()
        return out, stop, thread, tel

    return start


def test_a_member_serves_every_repository_and_a_broken_one_is_only_its_own_line(
    gitops: GitOps, member: Callable[[], Member], tmp_path: Path
) -> None:
    out, stop, thread, tel = member()
    try:
        net.wait_for(
            "every repository's line",
            lambda: all(f"{r}: " in out.getvalue() for r in ("home", "team-a", "broken", "clash")),
        )
        net.wait_for(
            "team-a's routes in its own state", lambda: (gitops.work / "state" / "team-a" / "routes.json").exists()
        )
    finally:
        stop.set()
        thread.join(timeout=30)
    text = out.getvalue()
    assert "fleet test: member m1, 8 shards, 4 repositories" in text
    assert "owns 8 of 8 shards (1 member): 0-7" in text
    assert "broken: tick failed:" in text and text.count("broken: tick failed:") == 1  # said once, not every tick
    assert "faq-bot" in text and "good-bot" in text
    # clash's router would write home's routes.json: refused, said once, and nothing of it written
    state = gitops.work / "state"
    assert f"clash: tick failed: its routers would write {(state / 'routes.json').resolve()}, which home's" in text
    assert text.count("clash: tick failed:") == 1 and "clash: released" not in text
    live = gitops.live("good")
    assert live is not None and live.shadow == 100  # home's route, in home's state
    assert "faq" not in gitops.router().routes()  # team-a's route lives in team-a's own file
    # where a second terminal's command on team-a finds it: the state every command resolves
    second = run.build_for(str(tmp_path / "team-a.git"), tmp_path / "second", branch="main", holder="someone")
    assert (state / "team-a" / "routes.json").resolve() in second.files
    assert "left, its shards free for the others" in text
    assert "home: released the lease" in text and "team-a: released the lease" in text  # the last one out
    assert git.Repo(gitops.remote).git.for_each_ref("refs/rollout/lease") == ""
    assert not thread.is_alive()
    metrics = tel.registry.get_sample_value
    assert (metrics("rollout_fleet_passes_total") or 0) >= 1 and metrics("rollout_fleet_shards_owned") == 8
    assert metrics("rollout_fleet_members") == 1 and (metrics("rollout_fleet_pass_seconds") or 0) > 0
    # a listed repository's rollouts are named with it, so two repositories' `faq-bot`s are two series
    assert metrics("rollout_step", {"rollout": "team-a/faq-bot"}) is not None
    assert metrics("rollout_step", {"rollout": "good-bot"}) is not None  # home's as they always were


def test_a_coordinator_out_of_reach_is_said_once_and_its_return_too(
    member: Callable[[], Member], cluster: Cluster
) -> None:
    cluster.down = True
    out, stop, thread, tel = member()
    passes = lambda: tel.registry.get_sample_value("rollout_fleet_passes_total") or 0  # noqa: E731
    try:
        said = (
            "fleet test: cannot reach its coordinator (etcd: no endpoint answers); owns no shard (1 member), unproven"
        )
        net.wait_for("the member to say it cannot reach etcd", lambda: said in out.getvalue())
        net.wait_for("three passes while it cannot", lambda: passes() >= 3)
        cluster.down = False
        net.wait_for("the member to own its shards", lambda: "owns 8 of 8 shards (1 member): 0-7" in out.getvalue())
    finally:
        stop.set()
        thread.join(timeout=30)
    assert out.getvalue().count("cannot reach its coordinator") == 1  # said once, not every pass


def test_a_members_forges_draw_on_one_budget_per_identity_and_take_their_share(
    gitops: GitOps, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every repository a process serves on one GitHub token draws on one budget; a fleet member takes
    1/k of it, k the live members (set when it joins, so home's forge, built first, takes it too)."""
    github = 'forge: {type: github, repository: "acme/rollouts", apiUrl: "http://127.0.0.1:9"}\n'
    config = CONFIG.format(prom=gitops.prom_url).replace("forge: {type: local}\n", github)
    gitops.commit({"rollouts/controller.yaml": config}, "On GitHub", at=HISTORY_BEGAN)
    monkeypatch.setenv("GITHUB_TOKEN", "t0ken-for-the-test")
    home = run.build_for(str(gitops.remote), tmp_path / "one", branch="main", holder="fleet-test")
    other = run.build_for(str(gitops.remote), tmp_path / "two", branch="main", holder="fleet-test")
    spending = home.controller.forge.budget  # type: ignore[attr-defined]
    assert spending is other.controller.forge.budget  # type: ignore[attr-defined]
    assert spending.share() == 1
    monkeypatch.setattr(run.SHARING, "members", lambda: 3)
    assert spending.share() == 3


def test_two_processes_with_one_holder_and_one_pid_are_two_members() -> None:
    """Replicas in containers are all pid 1, often with the same --holder: their identities still
    differ, or each would take every shard held under the shared name for its own."""
    assert fleet.identity("pod") != fleet.identity("pod")
    assert fleet.identity("pod").startswith(f"pod-{os.getpid()}-")
