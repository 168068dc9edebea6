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
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from controller import demo

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
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [
                ENVOY,
                "-c", str(cfg),
                "--admin-address-path", str(admin_path),
                "--disable-hot-restart",
                "--base-id", str(random.randrange(1, 1 << 20)),
                "--concurrency", "1",
                "-l", "warning",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        admin = _wait_admin(process, admin_path, log)
        port = _listener_port(admin)
    except BaseException:
        demo.stop_child(process)
        raise
    return Envoy(process, admin, port, log, cfg, workdir)


@contextlib.contextmanager
def running_envoy(config: dict[str, Any], workdir: Path) -> Iterator[Envoy]:
    proxy = start_envoy(config, workdir)
    try:
        yield proxy
    finally:
        demo.stop_child(proxy.process)


def _wait_admin(process: subprocess.Popen[bytes], admin_path: Path, log: Path) -> str:
    deadline = time.monotonic() + READY_TIMEOUT
    with httpx.Client(timeout=1.0) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"envoy exited with {process.returncode}: {log.read_text(errors='replace')[-2000:]}")
            address = admin_path.read_text().strip() if admin_path.exists() else ""
            if address:
                admin = f"http://{address}"
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(admin + "/ready").status_code == 200:
                        return admin
            time.sleep(0.02)  # polling interval while waiting on readiness, not a timed assertion
    raise RuntimeError(f"envoy not ready after {READY_TIMEOUT}s: {log.read_text(errors='replace')[-2000:]}")


def _listener_port(admin: str) -> int:
    data = httpx.get(admin + "/listeners", params={"format": "json"}, timeout=5).json()
    port: int = data["listener_statuses"][0]["local_address"]["socket_address"]["port_value"]
    return port
