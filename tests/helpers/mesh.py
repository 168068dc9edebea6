"""The mesh routers' test kit: a rollouts repository with an `istio` and a `gateway-api` router, and the
upstream validators of npm `@kubernetes-models/istio` and `@kubernetes-models/gateway-api` (generated
from the real CRDs) run by Node (`tests/helpers/k8s_models.mjs`; `bash .ci/run` installs the packages in
tests/.node)."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).resolve().parents[1]
NODE_MODULES = TESTS / ".node" / "node_modules"

CONTROLLER = """\
apiVersion: rollouts/v1
kind: ControllerConfig
routers:
  mesh:
    type: istio
    manifests: deploy/istio
    namespace: llm
    port: 8080
    gateways: [llm/edge-gateway]
    hosts: {support-chat: [chat.example.com]}
  gw:
    type: gateway-api
    manifests: deploy/gateway
    namespace: llm
    parentRefs: [{name: edge, namespace: infra, sectionName: https}]
    hostnames: {triage: [triage.example.com]}
forge: {type: local}
"""

ROLLOUT = """\
apiVersion: rollouts/v1
kind: Rollout
metadata: {{name: {name}}}
spec:
  router: {router}
  route: {route}
  stable: {{model: acme/llm-2025-01-01}}
  canary: {{model: acme/llm-2025-06-01}}
  steps:
    - {{shadow: 100, for: 1h}}
    - {{weight: 5, for: 1h, minSamples: 100}}
    - {{weight: 50, for: 1h}}
    - {{weight: 100}}
  analysis:
    gates: []
{status}"""


def rollout_text(name: str, router: str, route: str, *, step: int | None = None) -> str:
    status = "" if step is None else f"status: {{step: {step}, phase: Progressing}}\n"
    return ROLLOUT.format(name=name, router=router, route=route, status=status)


def write_repo(root: Path, *, istio_step: int | None = None, gateway_step: int | None = None) -> Path:
    """A repository with rollout `support-bot` (route support-chat) on the istio router `mesh` and
    `ticket-triage` (route triage) on the gateway-api router `gw`, at the given steps."""
    rollouts = root / "rollouts"
    (rollouts / "support-bot").mkdir(parents=True)
    (rollouts / "ticket-triage").mkdir(parents=True)
    (rollouts / "controller.yaml").write_text(CONTROLLER, "utf-8")
    (rollouts / "support-bot" / "rollout.yaml").write_text(
        rollout_text("support-bot", "mesh", "support-chat", step=istio_step), "utf-8"
    )
    (rollouts / "ticket-triage" / "rollout.yaml").write_text(
        rollout_text("ticket-triage", "gw", "triage", step=gateway_step), "utf-8"
    )
    return root


def upstream_errors(objects: Sequence[Any]) -> list[str | None]:
    """Each object through the npm packages' validators: None where accepted, else their error."""
    node = shutil.which("node")
    if node is None or not (NODE_MODULES / "@kubernetes-models" / "gateway-api").is_dir():
        pytest.skip("needs node and @kubernetes-models/{istio,gateway-api} in tests/.node (bash .ci/run installs them)")
    run = subprocess.run(
        [node, str(TESTS / "helpers" / "k8s_models.mjs"), str(NODE_MODULES)],
        input=json.dumps(list(objects)),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    answers: list[str | None] = json.loads(run.stdout)
    return answers
