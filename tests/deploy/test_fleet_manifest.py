"""The fleet's shipped Kubernetes manifest (controller/deploy/fleet/deployment.yaml): its container runs
`rollout run` through the real parser and is probed where that serves /healthz, and its Role grants
exactly the Lease verbs the Lease store uses in a member's life (join, balance, keep alive, leave), as
the Lease stand-in saw them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from controller import cli, coordination, deploy
from controller.cli import run
from controller.coordination import kubernetes
from tests.helpers import net
from tests.helpers.k8s_standin import LeaseServer, write_kubeconfig


def documents() -> dict[str, dict[str, Any]]:
    text = deploy.path("fleet/deployment.yaml").read_text()
    return {d["kind"]: d for d in YAML(typ="safe").load_all(text)}


def test_the_fleet_runs_rollout_run_probed_where_it_serves_healthz() -> None:
    docs = documents()
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    [rollout] = pod["containers"]
    args = cli.parser().parse_args(rollout["args"])
    assert args.func is run.cmd_run and args.metrics_host == "0.0.0.0"
    ports = {p["name"]: p["containerPort"] for p in rollout["ports"]}
    for probe in ("startupProbe", "livenessProbe"):
        assert ports[rollout[probe]["httpGet"]["port"]] == args.metrics_port
    assert docs["Deployment"]["spec"]["replicas"] > 1
    assert pod["serviceAccountName"] == docs["ServiceAccount"]["metadata"]["name"]
    binding = docs["RoleBinding"]
    assert binding["roleRef"]["name"] == docs["Role"]["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": docs["ServiceAccount"]["metadata"]["name"]}]


def test_the_role_grants_exactly_the_lease_verbs_a_member_uses(tmp_path: Path) -> None:
    with LeaseServer(port=net.free_port(), token="t") as api:
        env = {"KUBECONFIG": str(write_kubeconfig(tmp_path / "kc", server=api.url, token="t", namespace="ns"))}
        stores = [
            kubernetes.LeaseStore.from_environment(fleet="f", identity=i, ttl=2, namespace=None, env=env)
            for i in ("a", "b")
        ]
        a, b = (coordination.Coordinator(s, s.identity, shards=4, ttl=2) for s in stores)
        for _ in range(3):
            a.sync()
            b.sync()
        a.heartbeat()
        b.close()
        a.sync()
        a.close()
        used = {_verb(r.method, r.path) for r in api.requests}
    [rule] = documents()["Role"]["rules"]
    assert rule["apiGroups"] == ["coordination.k8s.io"] and rule["resources"] == ["leases"]
    assert set(rule["verbs"]) == used


def _verb(method: str, path: str) -> str:
    named = not path.rstrip("/").endswith("/leases")
    return {"GET": "get" if named else "list", "POST": "create", "PUT": "update", "DELETE": "delete"}[method]
