"""The controller's settings: where it keeps router state, and the knobs it runs by. Pure: the CLI
reads the environment and passes it in; nothing here reads it on its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from controller import spec

STATE_ENV = "ROLLOUT_STATE_DIR"  # overrides controller.yaml's stateDir; must be absolute
REMOTE_ENV = "ROLLOUT_REMOTE"  # the GitOps repository when --remote is not given


def state_dir(config: spec.ControllerConfig, *, env: Mapping[str, str], home: Path) -> Path:
    """Where the routers' relative paths resolve, the same for every command and every working
    directory: $ROLLOUT_STATE_DIR, else controller.yaml's `stateDir`, else $XDG_STATE_HOME/rollout
    (`home`/.local/state/rollout). A relative $ROLLOUT_STATE_DIR is a ValueError: two commands run from
    two directories would act on two router states."""
    override = env.get(STATE_ENV)
    if override and not Path(override).expanduser().is_absolute():
        raise ValueError(
            f"${STATE_ENV} is {override!r}, a relative path: give an absolute one, so that every command, "
            "from any directory, reads and writes the same router state"
        )
    chosen = override or config.state_dir
    if chosen:
        return Path(chosen).expanduser().absolute()
    return Path(env.get("XDG_STATE_HOME") or home / ".local" / "state").expanduser() / "rollout"
