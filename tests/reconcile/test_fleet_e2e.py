"""A fleet end to end: two `rollout run` processes, started as a user would (one command each, default
flags but the workdir), on a real three-member etcd cluster, serving two repositories (home and
team-a) with the file router and a real Prometheus. Each rollout is written by exactly one member, the
owner of its shard; a member killed with SIGKILL has its shards taken over by the survivor; a member
paused (SIGSTOP) past its lease and resumed writes nothing twice. The routers' write logs are the
evidence (tests/helpers/write_log.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import git
import pytest

from controller import coordination
from controller.coordination import etcd
from tests.helpers import etcd_cluster, net, procs, write_log
from tests.helpers.gitops import HISTORY_BEGAN, ROLLOUT, GitOps
from tests.helpers.write_log import CONFIG

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not etcd_cluster.available(), reason="etcd-server is not installed (.ci/run installs it)"),
]

SHARDS = 8
FLEET = """fleet:
  name: e2e
  shards: {shards}
  coordination: {{type: etcd, endpoints: {endpoints}, prefix: /e2e, ttl: 2s}}
  repositories:
    - {{name: team-a, remote: "{team_a}"}}
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[etcd_cluster.Cluster]:
    with etcd_cluster.cluster(tmp_path_factory.mktemp("etcd")) as c:
        yield c


def rollouts(names: list[str]) -> dict[str, str]:
    files: dict[str, str] = {}
    for name in names:
        files[f"rollouts/{name}/rollout.yaml"] = ROLLOUT.format(name=name, route=name, promotion="manual")
        files[f"rollouts/{name}/prompts/v1.md"] = "You are helpful.\n"
        files[f"rollouts/{name}/prompts/v2.md"] = "You are helpful and brief.\n"
    return files


class Fleet:
    """The two repositories, the members' processes, and what their routers logged."""

    def __init__(self, gitops: GitOps, cluster: etcd_cluster.Cluster, tmp_path: Path) -> None:
        self.gitops, self.cluster, self.tmp = gitops, cluster, tmp_path
        self.state = gitops.work / "state"  # $ROLLOUT_STATE_DIR, set by the gitops fixture
        remote = tmp_path / "team-a.git"
        git.Repo.init(remote, bare=True, initial_branch="main")
        self.team_a = GitOps(remote, tmp_path / "team-a-work", gitops.prom_url)
        team_a = CONFIG.format(prom=gitops.prom_url, prefix="team-a/")  # its own files in the shared state dir
        self.team_a.commit({"rollouts/controller.yaml": team_a}, "Start", at=HISTORY_BEGAN)
        fleet = FLEET.format(shards=SHARDS, endpoints=cluster.endpoints, team_a=remote).replace("'", '"')
        gitops.commit(
            {"rollouts/controller.yaml": CONFIG.format(prom=gitops.prom_url, prefix="") + fleet},
            "Make a fleet",
            at=HISTORY_BEGAN,
        )
        self.members: dict[str, subprocess.Popen[bytes]] = {}

    def logs(self) -> dict[str, Path]:
        return {"home": self.state / "writes.jsonl", "team-a": self.state / "team-a" / "writes.jsonl"}

    def start(self, name: str) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", "controller", "run", "--remote", str(self.gitops.remote)]
        argv += ["--workdir", str(self.tmp / name), "--interval", "1s"]
        process = procs.spawn(argv, log=self.log(name), env=os.environ)
        self.members[name] = process
        return process

    def log(self, name: str) -> Path:
        return self.tmp / f"{name}.log"

    def says(self, name: str, text: str) -> bool:
        process = self.members[name]
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}: {procs.tail(self.log(name))}")
        return text in self.log(name).read_text(errors="replace")

    def wait(self, what: str, check: Callable[[], object], *, deadline: float = 90) -> None:
        try:
            net.wait_for(what, check, deadline=deadline, every=0.1)
        except TimeoutError:
            tails = "\n".join(f"--- {n}\n{procs.tail(self.log(n))}" for n in self.members)
            raise AssertionError(f"{what}: not in {deadline}s\n{tails}") from None

    def view(self) -> coordination.View:
        return etcd.EtcdStore(self.cluster.endpoints, prefix="/e2e", fleet="e2e", identity="test", ttl=2).view()

    def owner_pid(self, repository: str, rollout: str) -> int | None:
        holder = self.view().shards.get(coordination.shard_of(repository, rollout, SHARDS))
        return None if holder is None else int(holder.identity.rsplit("-", 2)[1])

    def written(self) -> dict[str, dict[str, set[int]]]:
        return {repo: write_log.writers(write_log.records(log)) for repo, log in self.logs().items()}

    def double_writes(self) -> int:
        return sum(write_log.tally(write_log.records(log)).double for log in self.logs().values())

    def stop(self) -> None:
        for process in self.members.values():
            if process.poll() is None:
                os.kill(process.pid, signal.SIGCONT)  # a paused member must be able to hear the SIGTERM
                procs.stop(process)


@pytest.fixture
def fleet(gitops: GitOps, cluster: etcd_cluster.Cluster, tmp_path: Path) -> Iterator[Fleet]:
    f = Fleet(gitops, cluster, tmp_path)
    try:
        yield f
    finally:
        f.stop()


def balanced(f: Fleet, *names: str) -> bool:
    per = SHARDS // len(names)
    return all(f.says(n, f"owns {per} of {SHARDS} shards ({len(names)} members)") for n in names)


def held_by(f: Fleet, member: subprocess.Popen[bytes]) -> set[int]:
    return {s for s, h in f.view().shards.items() if f"-{member.pid}-" in h.identity}


def names_in(f: Fleet, repository: str, shards: set[int], count: int, *, prefix: str = "late") -> list[str]:
    """`count` rollout names of `repository` that fall in `shards`."""
    names = (f"{prefix}-{i}" for i in range(500))
    found = [n for n in names if coordination.shard_of(repository, n, SHARDS) in shards]
    return found[:count]


def test_each_rollout_is_written_by_its_shards_owner_and_a_killed_members_shards_move(fleet: Fleet) -> None:
    a, b = fleet.start("a"), fleet.start("b")
    fleet.wait("a and b to share the shards", lambda: balanced(fleet, "a", "b"))
    home, team = [f"bot-{i}" for i in range(6)], [f"bot-{i}" for i in range(6)]
    fleet.gitops.commit(rollouts(home), "Add six rollouts")
    fleet.team_a.commit(rollouts(team), "Add six rollouts")
    fleet.wait(
        "every new route written",
        lambda: all(r in fleet.written()["home"] for r in home) and all(r in fleet.written()["team-a"] for r in team),
    )
    written = fleet.written()
    for repository, names in (("home", home), ("team-a", team)):
        for name in names:
            assert written[repository][name] == {fleet.owner_pid(repository, name)}, (repository, name)
    assert {pid for w in written.values() for r in home + team for pid in w.get(r, set())} == {a.pid, b.pid}

    # b dies without a word: its lease expires, and a takes its shards over
    b_shards = held_by(fleet, b)
    b.kill()
    b.wait(timeout=10)
    fleet.wait("a to own every shard", lambda: fleet.says("a", f"owns {SHARDS} of {SHARDS} shards (1 member)"))
    late = names_in(fleet, "team-a", b_shards, 3)
    fleet.team_a.commit(rollouts(late), "Add rollouts in b's former shards")
    fleet.wait("a to write b's former shards", lambda: all(r in fleet.written()["team-a"] for r in late))
    assert all(fleet.written()["team-a"][r] == {a.pid} for r in late)
    assert fleet.double_writes() == 0


def test_a_member_paused_past_its_lease_writes_nothing_twice(fleet: Fleet) -> None:
    a, b = fleet.start("a"), fleet.start("b")
    fleet.wait("a and b to share the shards", lambda: balanced(fleet, "a", "b"))
    b_shards = held_by(fleet, b)
    os.kill(b.pid, signal.SIGSTOP)  # paused mid-whatever: no keepalive, no write
    fleet.wait("a to own every shard", lambda: fleet.says("a", f"owns {SHARDS} of {SHARDS} shards (1 member)"))
    late = names_in(fleet, "home", b_shards, 4)
    fleet.gitops.commit(rollouts(late), "Add rollouts in b's shards while b is paused")
    fleet.wait("a to write them", lambda: all(r in fleet.written()["home"] for r in late))
    os.kill(b.pid, signal.SIGCONT)  # b resumes believing its shards are its own
    fleet.wait("b to rejoin and take half the shards", lambda: len(held_by(fleet, b)) == SHARDS // 2)
    b_now = held_by(fleet, b)
    again = names_in(fleet, "home", b_now, 3, prefix="again")
    fleet.gitops.commit(rollouts(again), "Add rollouts in b's new shards")
    fleet.wait("b to write them", lambda: all(r in fleet.written()["home"] for r in again))
    assert all(fleet.written()["home"][r] == {b.pid} for r in again)
    assert all(fleet.written()["home"][r] == {a.pid} for r in late)  # b wrote nothing of what it had lost
    assert fleet.double_writes() == 0
    assert a.poll() is None and b.poll() is None
