"""`rollout demo`: the examples on the embedded defaults, in a throwaway GitOps repository.

Called by the CLI only. It builds a local remote and a clone from `rollouts/`, points every router
at the embedded file router, then validates and plans, makes drift by hand and plans again.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import git

from controller import load, plan, repo
from controller.routers import base
from controller.routers import file as file_router

FILE_CONFIG = """# yaml-language-server: $schema=../schemas/controller.schema.json
# The demo's controller config: every router is the embedded file router.
apiVersion: rollouts/v1
kind: ControllerConfig
routers:
{routers}
forge: {{type: local}}
{rest}"""


@dataclass(frozen=True)
class DemoRepo:
    remote: Path  # the bare repository that plays the remote
    clone: Path  # the controller's working clone


def build(examples: Path, into: Path | None = None) -> DemoRepo:
    """A bare remote and a clone holding the examples, with file routers instead of real ones."""
    base_dir = into or Path(tempfile.mkdtemp(prefix="rollout-demo-"))
    remote, clone = base_dir / "remote.git", base_dir / "clone"
    git.Repo.init(remote, bare=True, initial_branch="main")
    shutil.copytree(examples / "rollouts", clone / "rollouts")
    if (examples / "schemas").is_dir():
        shutil.copytree(examples / "schemas", clone / "schemas")
    config = load.load_config(repo.WorkTree(clone))
    routers = "\n".join(f"  {name}: {{type: file, path: .rollout/{name}.json}}" for name in config.routers)
    text = (clone / load.CONFIG_FILE).read_text()
    rest = text[text.index("prometheus:") :] if "prometheus:" in text else ""
    rest = rest.replace("forge:\n  type: local\n", "")
    (clone / load.CONFIG_FILE).write_text(FILE_CONFIG.format(routers=routers, rest=rest))
    (clone / ".gitignore").write_text(".rollout/\n")
    r = git.Repo.init(clone, initial_branch="main")
    r.index.add([str(p.relative_to(clone)) for p in clone.rglob("*") if p.is_file() and ".git" not in p.parts])
    actor = git.Actor("rollout demo", "demo@rollouts.local")
    r.index.commit("Add the example rollouts", author=actor, committer=actor)
    r.create_remote("origin", str(remote)).push("main:main")
    return DemoRepo(remote, clone)


def touch_by_hand(clone: Path, loaded: load.LoadedRollout) -> base.RouteState:
    """Someone edits the live router by hand: the canary gets 30% it was never promoted to."""
    router = file_router.FileRouter(loaded.rollout.spec.router, clone / f".rollout/{loaded.rollout.spec.router}.json")
    state = base.RouteState({base.STABLE: 70, base.CANARY: 30}, 0, plan.served(loaded))
    router.write(loaded.rollout.spec.route, state)
    return state
