"""A real MLflow tracking server for tests: `mlflow server` on a sqlite file, on a free loopback port,
started and stopped by its handle (`procs`), with its job workers off (MLFLOW_SERVER_ENABLE_JOB_EXECUTION:
about 10 s to start and 500 MB, against 2.4 GB with them). Prompts and models are put in with MLflow's
own client, as a team would.

Used by tests/registry.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.helpers import net, procs

READY_TIMEOUT = 90.0


@dataclass(frozen=True)
class Server:
    url: str
    log: Path

    def client(self) -> Any:
        """MLflow's own client, on this server."""
        from mlflow import MlflowClient

        logging.getLogger("mlflow").setLevel(logging.WARNING)  # "Waiting up to 300 seconds ..." per prompt
        return MlflowClient(tracking_uri=self.url, registry_uri=self.url)

    def register_prompt(self, name: str, template: str) -> int:
        """A new version of prompt `name` (created if absent): its version number."""
        return int(self.client().register_prompt(name=name, template=template).version)

    def register_model_version(self, name: str) -> int:
        """A new version of registered model `name` (created if absent), its source a run's artifacts (no
        model files: the registry is what is tested): its version number."""
        client = self.client()
        if not client.search_registered_models(filter_string=f"name = '{name}'"):
            client.create_registered_model(name)
        experiment = client.get_experiment_by_name("rollouts") or client.get_experiment(
            client.create_experiment("rollouts")
        )
        run = client.create_run(experiment.experiment_id)
        source = f"{run.info.artifact_uri}/model"
        return int(client.create_model_version(name, source=source, run_id=run.info.run_id).version)


def answers(url: str) -> bool:
    return httpx.get(url + "/health", timeout=2.0).status_code == 200


@contextlib.contextmanager
def server(work: Path) -> Iterator[Server]:
    """`mlflow server` for the duration of the block, its database and artifacts under `work`."""
    work.mkdir(parents=True, exist_ok=True)
    port = net.free_port()
    url = f"http://127.0.0.1:{port}"
    log = work / "mlflow.log"
    args = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", f"sqlite:///{work / 'mlflow.db'}", "--artifacts-destination", str(work / "artifacts"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    with procs.running(args, log=log, env=env) as process:
        procs.ready(
            process, "mlflow server", lambda: answers(url), log=log, deadline=READY_TIMEOUT, tolerate=(httpx.HTTPError,)
        )
        yield Server(url, log)
