"""A real Unleash server for tests: PostgreSQL in a temp directory and npm's `unleash-server`, each a
subprocess on a free loopback port, stopped by its own handle.

Nothing is installed here: `.ci/run` installs Node 22 and unleash-server under tests/.node/unleash and
Debian's postgresql; when either is missing, `available()` says why and the tests skip. PostgreSQL
refuses to run as root, so as root it runs as the `postgres` user Debian's package creates.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.helpers import net, procs

ROOT = Path(__file__).resolve().parents[2]
PREFIX = ROOT / "tests" / ".node" / "unleash"
NODE = PREFIX / "node_modules" / ".bin" / "node"
SERVER = PREFIX / "node_modules" / "unleash-server" / "dist" / "server.js"
ADMIN_TOKEN = "*:*.rollouts-test-admin-token"
ENVIRONMENT = "development"
CLIENT_TOKEN = f"default:{ENVIRONMENT}.rollouts-test-client-token"
READY_TIMEOUT = 120.0


def _postgres_bin() -> Path | None:
    """The directory of PostgreSQL's server binaries (Debian keeps them off PATH)."""
    found = shutil.which("pg_ctl") or shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    return versions[-1].parent if versions else None


def available() -> str:
    """Why the Unleash tests cannot run here, or "" when they can."""
    if not NODE.exists() or not SERVER.exists():
        return f"unleash-server or Node 22 not installed under {PREFIX.relative_to(ROOT)} (.ci/run installs them)"
    if _postgres_bin() is None:
        return "PostgreSQL not installed (.ci/run installs Debian's postgresql)"
    if os.geteuid() == 0 and not _has_user("postgres"):
        return "running as root and there is no 'postgres' user to run PostgreSQL as"
    return ""


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@dataclass
class Server:
    url: str
    admin_token: str
    client_token: str
    environment: str
    log: Path

    def admin(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"authorization": self.admin_token}, timeout=10.0)

    def features(self) -> dict[str, Any]:
        """What the client API serves now, by flag name."""
        response = httpx.get(
            self.url + "/api/client/features", headers={"authorization": self.client_token}, timeout=10
        )
        response.raise_for_status()
        return {f["name"]: f for f in response.json()["features"]}

    def served(self, flag: str) -> Any:
        return self.features().get(flag)

    def strategies(self, flags: Sequence[str]) -> dict[str, Any]:
        """Each flag's strategies and enabled state in the environment, as the admin API has them now
        (fresh, unlike the client API, which Unleash refreshes about every second)."""
        out: dict[str, Any] = {}
        with self.admin() as admin:
            for flag in flags:
                response = admin.get(f"/api/admin/projects/default/features/{flag}")
                if response.status_code == 404:
                    out[flag] = None
                    continue
                response.raise_for_status()
                env = next(e for e in response.json()["environments"] if e["name"] == self.environment)
                out[flag] = {"enabled": env["enabled"], "strategies": env["strategies"]}
        return out

    def delete_flags(self, flags: Sequence[str]) -> None:
        """Archive and delete these flags, and wait until the client API no longer serves them."""
        with self.admin() as admin:
            admin.post("/api/admin/projects/default/archive", json={"features": list(flags)}).raise_for_status()
            admin.post("/api/admin/projects/default/delete", json={"features": list(flags)}).raise_for_status()
        net.wait_for("the client API to drop the flags", lambda: not set(flags) & set(self.features()), every=0.1)


def _as_postgres() -> dict[str, str]:
    """Popen's `user`, when root: PostgreSQL will not run as root."""
    return {"user": "postgres"} if os.geteuid() == 0 else {}


@contextlib.contextmanager
def _postgres() -> Iterator[int]:
    """A PostgreSQL cluster in a temp directory of its own (its user must own it, and reach it: a
    directory of its own under /tmp), listening on a free loopback port: the port, while the block
    runs; the server is stopped by its handle and the directory removed afterwards."""
    bindir = _postgres_bin()
    assert bindir is not None
    work = Path(tempfile.mkdtemp(prefix="unleash-pg-"))
    try:
        if os.geteuid() == 0:
            shutil.chown(work, "postgres", "postgres")
        yield from _cluster(bindir, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _cluster(bindir: Path, work: Path) -> Iterator[int]:
    data = work / "pgdata"
    log = work / "postgres.log"
    initdb = subprocess.run(
        [str(bindir / "initdb"), "-D", str(data), "-U", "unleash", "--auth=trust", "-E", "UTF8", "--no-sync"],
        capture_output=True, cwd=work, **_as_postgres(),  # type: ignore[arg-type]
    )  # fmt: skip
    if initdb.returncode != 0:
        raise RuntimeError(f"initdb failed: {initdb.stderr.decode(errors='replace')[-2000:]}")
    port = net.free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(work),
             "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
            stdout=out, stderr=subprocess.STDOUT, cwd=work, start_new_session=True,
            **_as_postgres(),  # type: ignore[arg-type]
        )  # fmt: skip
    try:
        with procs.stopped_on_failure(process):
            procs.ready(process, "postgres", lambda: _accepts(bindir, port), log=log, deadline=60, every=0.1)
            subprocess.run(
                [str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "unleash", "unleash"],
                check=True, capture_output=True,
            )  # fmt: skip
        yield port
    finally:
        procs.stop(process)


def _accepts(bindir: Path, port: int) -> bool:
    ready = bindir / "pg_isready"
    return subprocess.run([str(ready), "-h", "127.0.0.1", "-p", str(port)], capture_output=True).returncode == 0


@contextlib.contextmanager
def running(work: Path | None = None) -> Iterator[Server]:
    """PostgreSQL, then unleash-server on it started from environment variables alone, with one admin
    token and one backend (client) token for the `development` environment of the `default` project."""
    with contextlib.ExitStack() as stack:
        if work is None:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="unleash-")))
        db_port = stack.enter_context(_postgres())
        port = net.free_port()
        log = work / "unleash.log"
        env = {
            "PATH": f"{NODE.parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "HOME": str(work),
            "TZ": "UTC",
            "DATABASE_URL": f"postgres://unleash@127.0.0.1:{db_port}/unleash",
            "DATABASE_SSL": "false",
            "HTTP_HOST": "127.0.0.1",
            "HTTP_PORT": str(port),
            "INIT_ADMIN_API_TOKENS": ADMIN_TOKEN,
            "INIT_BACKEND_API_TOKENS": CLIENT_TOKEN,
            "CHECK_VERSION": "false",
            "SEND_TELEMETRY": "false",
            "LOG_LEVEL": "warn",
        }
        process = procs.spawn([str(NODE), str(SERVER)], log=log, env=env)
        stack.callback(procs.stop, process)
        server = Server(f"http://127.0.0.1:{port}", ADMIN_TOKEN, CLIENT_TOKEN, ENVIRONMENT, log)
        procs.ready(
            process, "unleash-server", lambda: _serves(server), log=log, deadline=READY_TIMEOUT, every=0.2,
            tolerate=(httpx.HTTPError,),
        )  # fmt: skip
        yield server


def _serves(server: Server) -> bool:
    """Ready once the client API answers our token (the tokens are inserted after the HTTP server listens)."""
    response = httpx.get(server.url + "/api/client/features", headers={"authorization": server.client_token}, timeout=2)
    return response.status_code == 200
