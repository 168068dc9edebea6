"""Shipped deployment files: the controller's container build file, a systemd unit with its environment
file, and Kubernetes manifests for the controller beside its router. Data only, no imports at load; the
README's Deploy section and the tests point at these paths, and `rollout init` may copy them."""

from __future__ import annotations

from importlib import resources
from importlib.resources import abc

DOCKERFILE = "Dockerfile"
UNIT = "rollout.service"
ENV_FILE = "rollout.env.example"
KUBERNETES = (
    "kubernetes/secret.yaml",
    "kubernetes/configmap.yaml",
    "kubernetes/deployment.yaml",
    "fleet/deployment.yaml",  # several replicas sharing the shards (README "A fleet"), applied on its own
)
FILES = (DOCKERFILE, UNIT, ENV_FILE, *KUBERNETES)


def path(name: str) -> abc.Traversable:
    """One of the shipped files, by name (one of FILES)."""
    if name not in FILES:
        raise ValueError(f"no deployment file named {name!r}")
    return resources.files(__name__).joinpath(*name.split("/"))
