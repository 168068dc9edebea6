"""The coordinator a fleet's `coordination:` names, built from controller.yaml as a user writes it:
on a real etcd cluster, and on the Kubernetes Lease stand-in through a kubeconfig."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from controller import spec
from controller.coordination import factory
from tests.helpers import etcd_cluster, net
from tests.helpers.k8s_standin import LeaseServer, write_kubeconfig


def fleet(coordination: str) -> spec.FleetConfig:
    text = f"name: prod\nshards: 4\ncoordination: {coordination}\n"
    return spec.FleetConfig.model_validate(YAML(typ="safe").load(text))


@pytest.fixture
def lone_etcd(tmp_path: Path) -> Iterator[etcd_cluster.Cluster]:
    if not etcd_cluster.available():
        pytest.skip("etcd-server is not installed (.ci/run installs it)")
    with etcd_cluster.cluster(tmp_path, size=1) as c:
        yield c


def test_etcd_as_controller_yaml_names_it(lone_etcd: etcd_cluster.Cluster) -> None:
    config = fleet(f"{{type: etcd, endpoints: {json.dumps(lone_etcd.endpoints)}, ttl: 3s}}")
    member = factory.build(config, identity="host-1", env={})
    try:
        assert member.sync() and len(member.owned) == 4 and member.proven
        assert member.ttl == 3 and member.margin == 1  # a third of the TTL: one late keepalive costs no write
        assert member.confirm(range(4)) == {0, 1, 2, 3}
    finally:
        member.close()


def test_kubernetes_as_controller_yaml_names_it(tmp_path: Path) -> None:
    with LeaseServer(port=net.free_port(), token="t0ken") as api:
        env = {
            "KUBECONFIG": str(write_kubeconfig(tmp_path / "kubeconfig", server=api.url, token="t0ken", namespace=None))
        }
        member = factory.build(fleet("{type: kubernetes, namespace: rollouts, ttl: 6s}"), identity="pod-a", env=env)
        try:
            assert len(member.sync()) == 4 and member.proven
            assert member.margin == 2
            assert len(api.leases("rollouts")) == 5 and not api.leases("default")  # 4 shards and the member
        finally:
            member.close()
        assert api.violations == []
