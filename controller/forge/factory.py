"""Build the forge from its validated config: the one place that maps a forge type to its backend.
Called by the CLI; an unknown type cannot reach here (the config is a discriminated union).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from controller import errors, settings, spec
from controller.forge import base, local
from controller.redaction import redact

if TYPE_CHECKING:
    from controller.forge import budget


def build(
    config: spec.ForgeConfig,
    *,
    remote: str,
    env: Mapping[str, str],
    knobs: settings.Settings | None = None,
    share: Callable[[], int] = lambda: 1,
    budgets: budget.Registry | None = None,
) -> base.Forge:
    """The forge for `remote`. A local forge needs a local remote (a path): ForgeError otherwise.
    `env` is where GitHub's token is read (by the variable the config names), never logged; `knobs`
    gives the forges' timeouts and retry policies. For GitHub, `share()` is the number of live
    controllers using the identity, and `budgets` the process's budgets by identity (see forge.budget)."""
    knobs = knobs or settings.Settings()
    match config:
        case spec.LocalForgeConfig():
            path = Path(remote)
            if not path.exists():
                raise errors.ForgeError(f"forge type local needs a local remote (a path), not {redact(remote)!r}")
            return local.LocalForge(path, updates=knobs.retries.local_forge_updates)
        case spec.GithubForgeConfig():
            from controller.forge import github  # github3.py loads only when a GitHub forge is used

            return github.GithubForge.from_config(config, env=env, knobs=knobs, share=share, budgets=budgets)
