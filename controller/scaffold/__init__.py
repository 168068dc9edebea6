"""The team repository `rollout init` writes: template files (package data) with @PLACEHOLDER@ marks
that `controller.cli.init` fills in. Data only; the schemas are not here: they are generated from
the spec models at init time, as `rollout schema` does."""

from __future__ import annotations

from importlib import resources


def text(name: str) -> str:
    """One template file, by its path under this package (`rollout.yaml`, `routers/envoy.yaml`, ...)."""
    return (resources.files(__name__) / name).read_text("utf-8")
