"""A real Envoy for tests and benches: started on port 0, stopped by its handle (its upstreams are
`openai_standin.standin(name, plain=True)`).

Used by tests/helpers/live_routers.py and bench/router_apply.py; nothing here is imported by the controller.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.helpers import procs

ENVOY = shutil.which("envoy") or "envoy"
READY_TIMEOUT = 30.0


@dataclass
class Envoy:
    """A running Envoy: its admin URL and the port of its one listener."""

    process: subprocess.Popen[bytes]
    admin: str
    listener_port: int
    log: Path
    config: Path
    workdir: Path = field(repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener_port}"


def start_envoy(config: dict[str, Any], workdir: Path) -> Envoy:
    """Start Envoy from a bootstrap whose admin and listener ports are 0; wait until it is ready."""
    workdir.mkdir(parents=True, exist_ok=True)
    tag = f"{os.getpid()}-{random.randrange(1 << 30)}"
    cfg = workdir / f"envoy-{tag}.json"
    cfg.write_text(json.dumps(config), "utf-8")
    admin_path = workdir / f"admin-{tag}.txt"
    log = workdir / f"envoy-{tag}.log"
    process = procs.spawn(
        [
            ENVOY,
            "-c", str(cfg),
            "--admin-address-path", str(admin_path),
            "--disable-hot-restart",
            "--base-id", str(random.randrange(1, 1 << 20)),
            "--concurrency", "1",
            "-l", "warning",
        ],
        log=log,
    )  # fmt: skip
    with procs.stopped_on_failure(process):
        admin = procs.ready(
            process,
            "envoy",
            lambda: _admin_ready(admin_path),
            log=log,
            deadline=READY_TIMEOUT,
            tolerate=(httpx.HTTPError,),
        )
        port = _listener_port(admin)
    return Envoy(process, admin, port, log, cfg, workdir)


@contextlib.contextmanager
def running_envoy(config: dict[str, Any], workdir: Path) -> Iterator[Envoy]:
    proxy = start_envoy(config, workdir)
    try:
        yield proxy
    finally:
        procs.stop(proxy.process)


def _admin_ready(admin_path: Path) -> str | None:
    """Envoy's admin URL once it has written its address and answers /ready."""
    address = admin_path.read_text().strip() if admin_path.exists() else ""
    if not address:
        return None
    admin = f"http://{address}"
    return admin if httpx.get(admin + "/ready", timeout=1.0).status_code == 200 else None


def _listener_port(admin: str) -> int:
    data = httpx.get(admin + "/listeners", params={"format": "json"}, timeout=5).json()
    port: int = data["listener_statuses"][0]["local_address"]["socket_address"]["port_value"]
    return port
