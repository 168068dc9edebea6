"""A real etcd cluster on loopback for the tests and the bench: Debian's `etcd-server` (3.4), three
members by default, each in a directory of its own under a temp dir, on free ports, started together
and stopped by their own handles. A member can be killed (SIGKILL) and started again on its data.

Elections are made quick (heartbeat 50 ms, election timeout 500 ms), which makes etcd's minimum lease
TTL about a second: tests may use a two-second TTL."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers import net, procs

ETCD = "etcd"


def available() -> bool:
    return shutil.which(ETCD) is not None


@dataclass
class Member:
    name: str
    client_port: int
    peer_port: int
    data: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"


@dataclass
class Cluster:
    root: Path
    members: list[Member] = field(default_factory=list)
    token: str = "llm-rollouts-test"

    @property
    def endpoints(self) -> list[str]:
        return [m.url for m in self.members]

    def start(self, member: Member, *, state: str = "new") -> None:
        initial = ",".join(f"{m.name}={m.peer}" for m in self.members)
        member.process = procs.spawn(
            [
                ETCD,
                "--name", member.name,
                "--data-dir", str(member.data),
                "--listen-client-urls", member.url,
                "--advertise-client-urls", member.url,
                "--listen-peer-urls", member.peer,
                "--initial-advertise-peer-urls", member.peer,
                "--initial-cluster", initial,
                "--initial-cluster-token", self.token,
                "--initial-cluster-state", state,
                "--heartbeat-interval", "50",
                "--election-timeout", "500",
                "--log-level", "warn",
                "--logger", "zap",
            ],
            log=member.log,
        )  # fmt: skip

    def healthy(self, member: Member) -> bool:
        try:
            with urllib.request.urlopen(f"{member.url}/health", timeout=2) as answer:
                return bool(json.load(answer).get("health") == "true")
        except (OSError, ValueError):
            return False

    def wait_healthy(self, members: list[Member] | None = None, *, deadline: float = 60.0) -> None:
        for member in members or self.members:
            assert member.process is not None
            procs.ready(
                member.process, f"etcd member {member.name}", lambda m=member: self.healthy(m),
                log=member.log, deadline=deadline, every=0.1,
            )  # fmt: skip

    def kill(self, member: Member) -> None:
        """SIGKILL, as a crashed machine: no goodbye to the others."""
        assert member.process is not None
        member.process.kill()
        member.process.wait(timeout=10)
        member.process = None

    def restart(self, member: Member) -> None:
        self.start(member, state="existing")
        self.wait_healthy([member])

    def stop(self) -> None:
        for member in self.members:
            if member.process is not None:
                procs.stop(member.process, grace=5)
                member.process = None


@contextlib.contextmanager
def cluster(root: Path, *, size: int = 3) -> Iterator[Cluster]:
    """A started, healthy cluster of `size` members, stopped when the block ends however it ends."""
    if not available():
        raise RuntimeError("etcd is not installed (apt-get install etcd-server): .ci/run installs it")
    ports = _distinct_ports(2 * size)
    c = Cluster(root)
    for i in range(size):
        directory = root / f"etcd{i}"
        directory.mkdir(parents=True, exist_ok=True)
        c.members.append(Member(f"m{i}", ports[2 * i], ports[2 * i + 1], directory / "data", directory / "etcd.log"))
    try:
        for member in c.members:
            c.start(member)
        c.wait_healthy()
        yield c
    finally:
        c.stop()


def _distinct_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = net.free_port()
        if port not in ports:
            ports.append(port)
    return ports
