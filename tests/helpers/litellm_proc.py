"""A real LiteLLM proxy for tests: a subprocess on a free loopback port, stopped by its handle.

Used by tests/routers (the contract suite and the LiteLLM tests). The proxy loads our weights
callback from this checkout (PYTHONPATH) and LiteLLM's Prometheus callback; /metrics needs no key.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from controller.routers import litellm as litellm_router
from tests.helpers import net, procs

ROOT = Path(__file__).resolve().parents[2]
MASTER_KEY = "sk-rollouts-test-master-key"
READY_TIMEOUT = 120.0


def available() -> str:
    """Why LiteLLM tests cannot run here, or "" when they can."""
    missing = [m for m in ("litellm", "prometheus_client", "fastapi") if importlib.util.find_spec(m) is None]
    if missing:
        return f"LiteLLM proxy not installed (pip install -e '.[litellm]'): no module {', '.join(missing)}"
    # not imported here: importing litellm fetches its cost map unless this is set
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    return ""


@dataclass
class Proxy:
    process: subprocess.Popen[bytes]
    url: str
    config: Path
    weights_file: Path
    log: Path

    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {MASTER_KEY}"}

    def answers_readiness(self) -> bool:
        return httpx.get(self.url + "/health/readiness", timeout=2.0).status_code == 200

    def model_info(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = httpx.get(self.url + "/model/info", headers=self.headers(), timeout=10).json()[
            "data"
        ]
        return rows

    def stamped(self) -> bool:
        """Every deployment of ours (with `model_info.rollout`) says its group's routing strategy."""
        ours = [
            r["model_info"]["rollout"] for r in self.model_info() if isinstance(r["model_info"].get("rollout"), dict)
        ]
        return all("routing_strategy" in record for record in ours)

    def weights(self) -> list[tuple[str, str, Any]]:
        """(group, deployment id, weight) for every deployment the proxy routes to, sorted."""
        return sorted(
            (r["model_name"], r["model_info"]["id"], r["litellm_params"].get("weight")) for r in self.model_info()
        )


def config(
    model_list: Sequence[Mapping[str, Any]], *, router_settings: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A proxy config: our callback and LiteLLM's Prometheus one, simple-shuffle unless
    `router_settings` says otherwise (a routing strategy, routing groups)."""
    return {
        "model_list": list(model_list),
        "litellm_settings": {
            **litellm_router.metrics_settings(),  # what `rollout render litellm` emits: buckets, then callbacks
            "require_auth_for_metrics_endpoint": False,
            "num_retries": 0,
        },
        "router_settings": {"routing_strategy": "simple-shuffle", "disable_cooldowns": True, **(router_settings or {})},
        "general_settings": {"master_key": "os.environ/LITELLM_MASTER_KEY"},
    }


def start(
    model_list: Sequence[Mapping[str, Any]],
    workdir: Path,
    *,
    weights_file: Path | None = None,
    router_settings: Mapping[str, Any] | None = None,
) -> Proxy:
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = workdir / "litellm-config.json"  # YAML is a superset of JSON
    cfg.write_text(json.dumps(config(model_list, router_settings=router_settings), indent=2), "utf-8")
    return launch(cfg, workdir, weights_file=weights_file or workdir / "weights.json")


def launch(
    cfg: Path, workdir: Path, *, weights_file: Path, port: int | None = None, env: Mapping[str, str] | None = None
) -> Proxy:
    """A proxy started from the config file `cfg` (as a user starts one from theirs), its callback
    watching `weights_file`, with `env` over the test's environment; ready once it answers and has
    stamped our deployments."""
    port = port or net.free_port()
    log = workdir / f"litellm-{port}.log"
    environment = {
        **os.environ,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_MASTER_KEY": MASTER_KEY,
        "ROLLOUT_WEIGHTS_FILE": str(weights_file),
        "ROLLOUT_WEIGHTS_INTERVAL": "0.05",
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
        "NO_PROXY": "127.0.0.1,localhost",
        **(env or {}),
    }
    exe = shutil.which("litellm")
    command = [exe] if exe else [sys.executable, "-m", "litellm.proxy.proxy_cli"]
    process = procs.spawn(
        [*command, "--config", str(cfg), "--host", "127.0.0.1", "--port", str(port)], log=log, env=environment
    )
    proxy = Proxy(process, f"http://127.0.0.1:{port}", cfg, weights_file, log)
    with procs.stopped_on_failure(process, grace=15):
        procs.ready(
            process, "litellm", proxy.answers_readiness, log=log, deadline=READY_TIMEOUT, every=0.1,
            tolerate=(httpx.HTTPError,),
        )  # fmt: skip
        what = "the callback to stamp our deployments with their routing strategy"
        procs.ready(process, what, proxy.stamped, log=log, deadline=60)
    return proxy


@contextlib.contextmanager
def running(
    model_list: Sequence[Mapping[str, Any]],
    workdir: Path,
    *,
    weights_file: Path | None = None,
    router_settings: Mapping[str, Any] | None = None,
) -> Iterator[Proxy]:
    proxy = start(model_list, workdir, weights_file=weights_file, router_settings=router_settings)
    try:
        yield proxy
    finally:
        procs.stop(proxy.process, grace=15)


def completion(client: httpx.Client, url: str, model: str, **params: Any) -> httpx.Response:
    return client.post(
        url + "/v1/chat/completions",
        headers={"authorization": f"Bearer {MASTER_KEY}"},
        json={"model": model, "messages": [{"role": "user", "content": "hello"}], **params},
    )


def answered_by(client: httpx.Client, url: str, model: str, n: int) -> dict[str, int]:
    """Send `n` completions to the model group `model`: how many each deployment answered (LiteLLM's
    `x-litellm-model-id` header); a failed request counts as its status code."""
    seen: dict[str, int] = {}
    for _ in range(n):
        response = completion(client, url, model)
        key = (
            response.headers.get("x-litellm-model-id", "") if response.status_code == 200 else str(response.status_code)
        )
        seen[key] = seen.get(key, 0) + 1
    return seen
