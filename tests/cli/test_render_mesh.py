"""`rollout render istio|gateway-api` writes each mesh route's manifest into the repository, `rollout
validate` checks them (rendered, schema-valid, and the same as the repository holds), and the controller's
pull requests carry the manifest as merging leaves the rollout."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import git
import pytest
from ruamel.yaml import YAML

from controller import cli, load, plan, proposals, worktree
from controller import repo as repo_mod
from controller.forge import local as local_forge
from controller.reconcile import pulls
from controller.routers import gateway_api, istio
from tests.helpers import mesh as mesh_kit


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = cli.main(list(argv), out=out)
    return code, out.getvalue()


def at_step(root: Path, rollout: str, step: int) -> None:
    """Set the rollout's status to `step` of its canary's revision, as a merged promotion PR does."""
    path = root / "rollouts" / rollout / "rollout.yaml"
    result = load.load_repo(worktree.WorkTree(root))
    revision = result.rollout(rollout).revisions["canary"]  # type: ignore[union-attr]
    text = path.read_text("utf-8").split("status:")[0]
    path.write_text(text + f"status: {{revision: {revision}, step: {step}, phase: Progressing}}\n", "utf-8")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return mesh_kit.write_repo(tmp_path / "repo")


def test_render_writes_each_route_into_the_manifests_directory_and_check_guards_it(root: Path) -> None:
    code, said = run("render", "istio", "--repo", str(root))
    assert code == 0 and "wrote deploy/istio/support-chat.yaml" in said
    code, said = run("render", "gateway-api", "gw", "--repo", str(root))
    assert code == 0 and "wrote deploy/gateway/triage.yaml" in said
    vs = YAML(typ="safe").load((root / "deploy/istio/support-chat.yaml").read_text("utf-8"))
    hr = YAML(typ="safe").load((root / "deploy/gateway/triage.yaml").read_text("utf-8"))
    assert istio.state_of(vs, rollout="support-bot").describe() == "stable 100%, canary 0%, shadow 100%"
    assert gateway_api.state_of(hr, rollout="ticket-triage").describe() == "stable 100%, canary 0%, shadow 100%"
    assert vs["spec"]["hosts"] == ["chat.example.com"] and vs["spec"]["gateways"] == ["llm/edge-gateway"]
    assert hr["spec"]["parentRefs"] == [{"name": "edge", "namespace": "infra", "sectionName": "https"}]
    assert run("render", "istio", "--repo", str(root), "--check") == (0, "1 manifest(s) of router 'mesh' up to date\n")
    assert run("validate", str(root / "rollouts"))[0] == 0

    at_step(root, "support-bot", 1)  # the rollout moves on, its manifest does not
    code, said = run("render", "istio", "--repo", str(root), "--check")
    assert code == 1 and "out of date (run `rollout render istio mesh`): deploy/istio/support-chat.yaml" in said
    code, said = run("validate", str(root / "rollouts"))
    assert code == 1
    assert "deploy/istio/support-chat.yaml: error E010" in said and "differs from what the rollout renders" in said
    assert run("render", "istio", "--repo", str(root))[0] == 0
    vs = YAML(typ="safe").load((root / "deploy/istio/support-chat.yaml").read_text("utf-8"))
    assert istio.state_of(vs, rollout="support-bot").describe() == "stable 95%, canary 5%"
    assert run("validate", str(root / "rollouts"))[0] == 0


def test_the_rendered_files_pass_the_upstream_validators(root: Path) -> None:
    assert run("render", "istio", "--repo", str(root))[0] == 0
    assert run("render", "gateway-api", "--repo", str(root))[0] == 0
    vs = YAML(typ="safe").load((root / "deploy/istio/support-chat.yaml").read_text("utf-8"))
    hr = YAML(typ="safe").load((root / "deploy/gateway/triage.yaml").read_text("utf-8"))
    assert mesh_kit.upstream_errors([vs, hr]) == [None, None]  # skipped without node: only this test


def test_validate_reports_a_missing_manifest(root: Path) -> None:
    code, said = run("validate", str(root / "rollouts"))
    assert code == 1
    assert (
        "deploy/gateway/triage.yaml: error E010" in said and "is missing: run `rollout render gateway-api gw`" in said
    )


def test_validate_refuses_what_a_mesh_route_cannot_express(root: Path) -> None:
    path = root / "rollouts" / "support-bot" / "rollout.yaml"
    text = path.read_text("utf-8").replace("route: support-chat", "route: Support_Chat")
    text = text.replace("  steps:\n", "  cohorts:\n    - {name: staff, match: {tenant_tier: [internal]}}\n  steps:\n")
    path.write_text(text, "utf-8")
    code, said = run("validate", str(root / "rollouts"))
    assert code == 1
    assert "E007 spec.route: router 'mesh' (istio): route 'Support_Chat' names the object" in said
    assert "E007 spec.cohorts: router 'mesh' (istio) cannot route by cohort" in said
    code, said = run("render", "istio", "--repo", str(root))
    assert code == 1 and not (root / "deploy").exists()  # nothing written


def test_a_pull_request_carries_the_manifest_as_merging_leaves_the_rollout(root: Path, tmp_path: Path) -> None:
    at_step(root, "support-bot", 0)
    assert run("render", "istio", "--repo", str(root))[0] == 0
    remote = tmp_path / "remote.git"
    git.Repo.init(remote, bare=True, initial_branch="main")
    human = git.Repo.init(root, initial_branch="main")
    human.git.add(A=True)
    human.index.commit("rollouts")
    human.create_remote("origin", str(remote)).push("main")
    workspace = repo_mod.Workspace.open(str(remote), tmp_path / "clone")
    desired = load.load_repo(workspace.tree())
    loaded = desired.rollout("support-bot")
    assert loaded is not None
    forge = local_forge.LocalForge(remote)
    p = pulls.Pulls(forge, workspace, lambda: datetime(2026, 1, 1, tzinfo=UTC)).proposal(
        loaded, proposals.Action.ADVANCE, plan.Decision(plan.Kind.ADVANCE, "gates passed", to_step=1), ()
    )
    assert [path for path, _ in p.also] == ["deploy/istio/support-chat.yaml"]
    vs = YAML(typ="safe").load(p.also[0][1])
    assert istio.state_of(vs, rollout="support-bot").describe() == "stable 95%, canary 5%"
    rollback = pulls.Pulls(forge, workspace, lambda: datetime(2026, 1, 1, tzinfo=UTC)).proposal(
        loaded, proposals.Action.ROLLBACK, plan.Decision(plan.Kind.ROLLBACK, "error rate"), ()
    )
    vs = YAML(typ="safe").load(rollback.also[0][1])
    assert istio.state_of(vs, rollout="support-bot").describe() == "stable 100%, canary 0%"


def test_validate_reports_a_manifest_that_cannot_be_rendered_at_the_rollouts_route(tmp_path: Path) -> None:
    root = mesh_kit.write_repo(tmp_path / "repo")
    long = "support-bot-" + "x" * 50  # a DNS label, but `<rollout>-canary` is longer than a Service name may be
    (root / "rollouts" / "support-bot").rename(root / "rollouts" / long)
    path = root / "rollouts" / long / "rollout.yaml"
    path.write_text(path.read_text("utf-8").replace("name: support-bot", f"name: {long}"), "utf-8")
    code, said = run("validate", str(root / "rollouts"))
    assert code == 1
    assert (
        f"rollouts/{long}/rollout.yaml:6:10: error E009 spec.route: router 'mesh' (istio) route 'support-chat'" in said
    )
    assert "is not a DNS label of 63 characters at most" in said
