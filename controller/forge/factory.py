"""Build the forge from its validated config: the one place that maps a forge type to its backend.
Called by the CLI; an unknown type cannot reach here (the config is a discriminated union).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from controller import errors, spec
from controller.forge import base, local
from controller.redaction import redact


def build(config: spec.ForgeConfig, *, remote: str, env: Mapping[str, str]) -> base.Forge:
    """The forge for `remote`. A local forge needs a local remote (a path): ForgeError otherwise.
    `env` is where GitHub's token is read (by the variable the config names), never logged."""
    match config:
        case spec.LocalForgeConfig():
            path = Path(remote)
            if not path.exists():
                raise errors.ForgeError(f"forge type local needs a local remote (a path), not {redact(remote)!r}")
            return local.LocalForge(path)
        case spec.GithubForgeConfig():
            from controller.forge import github  # github3.py loads only when a GitHub forge is used

            return github.GithubForge.from_config(config, env=env)
