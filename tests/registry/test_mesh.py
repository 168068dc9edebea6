"""A rollout with a `prompts:/` prompt on a mesh router (Istio, Gateway API): its pull requests carry the
route's manifest as merging leaves the rollout, rendered from the prompts the tick already read."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import git

from controller import load, plan, proposals, repo, worktree
from controller.forge import local as forge_local
from controller.reconcile import pulls
from controller.registry import mlflow
from tests.helpers import mesh as mesh_kit
from tests.helpers import mlflow_proc, net

_ENV = {"GIT_AUTHOR_NAME": "h", "GIT_AUTHOR_EMAIL": "h@x", "GIT_COMMITTER_NAME": "h", "GIT_COMMITTER_EMAIL": "h@x"}


def test_a_revert_pr_on_a_mesh_router_renders_a_registry_prompts_rollout(
    tmp_path: Path, mlflow_server: mlflow_proc.Server
) -> None:
    name = f"support-{uuid.uuid4().hex[:8]}"
    version = mlflow_server.register_prompt(name, "You are helpful.\n")
    root = mesh_kit.write_repo(tmp_path / "human", istio_step=2)
    config = root / "rollouts/controller.yaml"
    config.write_text(config.read_text() + f"mlflow: {{trackingUri: {mlflow_server.url!r}}}\n")
    path = root / "rollouts/support-bot/rollout.yaml"
    canary = "canary: {model: acme/llm-2025-06-01}"
    assert canary in path.read_text()
    path.write_text(
        path.read_text().replace(canary, f'canary: {{model: acme/llm-2025-06-01, prompt: "prompts:/{name}/{version}"}}')
    )
    human = git.Repo.init(root, initial_branch="main")
    human.git.add(A=True)
    human.git.commit("-m", "rollouts", env=_ENV)
    remote = tmp_path / "remote.git"
    git.Repo.init(remote, bare=True, initial_branch="main")
    human.create_remote("origin", str(remote)).push("main")

    loaded = load.load_repo(worktree.WorkTree(root), prompts=mlflow.Registry(environ={})).rollout("support-bot")
    assert loaded is not None and loaded.prompts["canary"] == f"prompts:/{name}/{version}"
    workspace = repo.Workspace.open(str(remote), tmp_path / "clone")
    workspace.fetch()
    forge = pulls.Pulls(forge_local.LocalForge(remote), workspace, lambda: datetime.now(UTC))
    decision = plan.Decision(plan.Kind.ROLLBACK, "aborted by hand: bad answers")
    p = forge.proposal(loaded, proposals.Action.ROLLBACK, decision, ())
    assert [path for path, _ in p.also] == ["deploy/istio/support-chat.yaml"]
    assert "weight: 100" in p.also[0][1]  # the revert leaves stable at 100%

    # MLflow down (the rollout loaded degraded, its canary's template unread): the revert PR still renders
    config.write_text(config.read_text().replace(mlflow_server.url, f"http://127.0.0.1:{net.free_port()}"))
    down = load.load_repo(worktree.WorkTree(root), prompts=mlflow.Registry(environ={}), degraded=True)
    degraded = down.rollout("support-bot")
    assert degraded is not None and set(degraded.unread) == {"canary"}, down.problems
    assert forge.proposal(degraded, proposals.Action.ROLLBACK, decision, ()).also == p.also
