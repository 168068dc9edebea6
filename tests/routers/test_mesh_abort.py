"""A rollback on a mesh router, end to end: `abort` lowers the live VirtualService at once (server-side
apply on the schema-checked stand-in API server, read back), and the revert pull request carries the
manifest as merging leaves the rollout, so that once merged git says what is live and the GitOps tool
sees no drift."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import git
from ruamel.yaml import YAML

from controller import cli, load, reconcile, repo, spec, worktree
from controller.forge import local as forge_local
from controller.routers import base, factory, istio
from tests.helpers import gitops, k8s_standin, net
from tests.helpers import mesh as mesh_kit
from tests.helpers.k8s_mesh_standin import MeshServer


def _status_at(root: Path, rollout: str, step: int) -> None:
    path = root / "rollouts" / rollout / "rollout.yaml"
    loaded = load.load_repo(worktree.WorkTree(root)).rollout(rollout)
    assert loaded is not None
    text = path.read_text("utf-8")
    path.write_text(text + f"status: {{revision: {loaded.revisions['canary']}, step: {step}, phase: Progressing}}\n")


def test_abort_lowers_the_live_route_at_once_and_the_revert_pr_brings_git_to_it(tmp_path: Path) -> None:
    root = mesh_kit.write_repo(tmp_path / "human")
    _status_at(root, "support-bot", 2)  # weight 50
    assert cli.main(["render", "istio", "--repo", str(root)]) == 0
    assert cli.main(["render", "gateway-api", "--repo", str(root)]) == 0
    remote = tmp_path / "remote.git"
    git.Repo.init(remote, bare=True, initial_branch="main")
    human = git.Repo.init(root, initial_branch="main")
    human.git.add(A=True)
    human.git.commit(
        "-m",
        "rollouts",
        env={
            "GIT_AUTHOR_NAME": "h",
            "GIT_AUTHOR_EMAIL": "h@x",
            "GIT_COMMITTER_NAME": "h",
            "GIT_COMMITTER_EMAIL": "h@x",
        },
    )
    human.create_remote("origin", str(remote)).push("main")
    manifest: Any = YAML(typ="safe").load((root / "deploy/istio/support-chat.yaml").read_text("utf-8"))

    with MeshServer(port=net.free_port()) as api:
        api.seed(manifest)  # the GitOps tool applied git's manifest: canary 50%
        kubeconfig = k8s_standin.write_kubeconfig(
            tmp_path / "kubeconfig", server=api.url, token=api.token, namespace=None
        )

        def routers(name: str, cfg: spec.RouterConfig, routes: Any, cohorts: Any) -> base.Router:
            return factory.build(
                name, cfg, root=tmp_path, routes=routes, cohorts=cohorts, env={"KUBECONFIG": str(kubeconfig)}
            )

        forge = forge_local.LocalForge(remote)
        controller = reconcile.Controller(
            repo.Workspace.open(str(remote), tmp_path / "clone"), forge, routers, None, holder="test"
        )
        outcome = controller.abort("support-bot", reason="answers got worse")
        assert outcome.error is None, outcome.error
        live = api.object("virtualservices", "llm", "support-chat")
        assert live is not None
        assert istio.state_of(live, rollout="support-bot").describe() == "stable 100%, canary 0%"  # at once
        assert api.violations == []

    assert outcome.pr is not None
    gitops.approve_and_merge(gitops.GitOps(remote, tmp_path, ""), outcome.pr)
    on_main = gitops.remote_files(remote)
    merged: Any = YAML(typ="safe").load(on_main["deploy/istio/support-chat.yaml"])
    # what git now says is what is live: the GitOps tool applies it and changes nothing
    assert merged["spec"] == {k: v for k, v in live["spec"].items()}
    assert "phase: RolledBack" in on_main["rollouts/support-bot/rollout.yaml"].decode()
