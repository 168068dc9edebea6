"""The coordinator a fleet's `coordination:` names, with its backend's client loaded only when used."""

from __future__ import annotations

from collections.abc import Mapping

from controller import spec
from controller.coordination import Coordinator, Store


def build(fleet: spec.FleetConfig, *, identity: str, env: Mapping[str, str]) -> Coordinator:
    """This member's coordinator. It stops writing a third of the TTL before its lease could expire:
    a keepalive runs every third of the TTL, so one late keepalive costs no write."""
    config = fleet.coordination
    store: Store
    match config:
        case spec.EtcdCoordination():
            from controller.coordination import etcd

            store = etcd.EtcdStore(
                config.endpoints,
                prefix=config.prefix,
                fleet=fleet.name,
                identity=identity,
                ttl=int(config.ttl.total_seconds()),
            )
        case spec.KubernetesCoordination():
            from controller.coordination import kubernetes

            store = kubernetes.LeaseStore.from_environment(
                fleet=fleet.name,
                identity=identity,
                ttl=int(config.ttl.total_seconds()),
                namespace=config.namespace,
                env=env,
            )
    ttl = config.ttl.total_seconds()
    return Coordinator(store, identity, shards=fleet.shards, ttl=ttl, margin=ttl / 3)
