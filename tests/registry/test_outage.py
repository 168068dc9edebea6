"""MLflow cannot be reached (its tracking URI is a closed port, as during an outage): a rollout whose
`prompts:/` prompt cannot be read still loads for the controller, degraded, so nothing stands between it
and its rollback. A failing gate rolls it back, `rollout abort` lowers the router and opens the revert
PR, and every decision that would not lower exposure holds, naming the server. The real server registers
the prompts first, so the revisions are the ones it served."""

from __future__ import annotations

import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from controller import load, plan, reconcile, traffic, worktree
from controller.registry import mlflow
from tests.helpers import gitops as gitops_helper
from tests.helpers import mlflow_proc, net
from tests.helpers.gitops import GitOps, outcome


def _rollout(name: str, route: str, prompt: str) -> str:
    text = gitops_helper.ROLLOUT.format(name=name, route=route, promotion="manual")
    return text.replace("prompt: prompts/v2.md", f'prompt: "{prompt}"')


def _main(ops: GitOps, server: mlflow_proc.Server, tmp_path: Path, *, name: str, route: str, step: int) -> str:
    """Commit rollout `name` with its canary's prompt in MLflow, at `step` with its status recorded as the
    controller would have (read while MLflow answered), then point controller.yaml at a closed port."""
    prompt = f"prompt-{uuid.uuid4().hex[:8]}"
    version = server.register_prompt(prompt, "Answer in riddles.\n")
    uri = f"prompts:/{prompt}/{version}"
    config = gitops_helper.CONFIG.format(prom=ops.prom_url)
    files = {
        "rollouts/controller.yaml": config + f'mlflow: {{trackingUri: "{server.url}"}}\n',
        f"rollouts/{name}/rollout.yaml": _rollout(name, route, uri),
        f"rollouts/{name}/prompts/v1.md": "You are helpful.\n",
    }
    root = tmp_path / f"probe-{name}"
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    loaded = load.load_repo(worktree.WorkTree(root), prompts=mlflow.Registry(environ={})).rollout(name)
    assert loaded is not None
    status = (
        f"status: {{revision: {loaded.revisions['canary']}, stableRevision: {loaded.revisions['stable']}, "
        f"step: {step}, phase: Progressing}}\n"
    )
    files[f"rollouts/{name}/rollout.yaml"] += status
    ops.commit(files, f"Add {name}", at=gitops_helper.HISTORY_BEGAN)
    closed = f"http://127.0.0.1:{net.free_port()}"  # nothing listens: MLflow is down
    ops.commit({"rollouts/controller.yaml": config + f'mlflow: {{trackingUri: "{closed}"}}\n'}, "MLflow moved")
    return closed


def _controller(ops: GitOps) -> reconcile.Controller:
    registry = mlflow.Registry(environ={"MLFLOW_TRACKING_TOKEN": "s3cret-token"})
    return replace(ops.controller(), prompts=registry, registry=registry)


@pytest.mark.slow
def test_a_failing_gate_rolls_back_while_mlflow_is_down(
    gitops: GitOps, mlflow_server: mlflow_proc.Server, tmp_path: Path
) -> None:
    _main(gitops, mlflow_server, tmp_path, name="bad-bot", route="bad", step=0)
    gitops.router().write({"bad": traffic.RouteState({"stable": 100, "canary": 0}, shadow=100)})
    tick = _controller(gitops).reconcile_once()
    bad = outcome(tick, "bad-bot")
    assert bad.decision is not None and bad.decision.kind is plan.Kind.ROLLBACK, bad
    live = gitops.live("bad")
    assert live is not None and live.weight("canary") == 0 and live.shadow == 0
    assert [pr.title for pr in gitops.forge.list()] and bad.pr is not None  # the revert PR records it


@pytest.mark.slow
def test_abort_lowers_the_router_and_opens_the_revert_pr_while_mlflow_is_down(
    gitops: GitOps, mlflow_server: mlflow_proc.Server, tmp_path: Path
) -> None:
    closed = _main(gitops, mlflow_server, tmp_path, name="good-bot", route="good", step=1)
    gitops.router().write({"good": traffic.RouteState({"stable": 90, "canary": 10})})
    controller = _controller(gitops)
    good = outcome(controller.reconcile_once(), "good-bot")
    # its gate passes and the step's time is up: advancing would raise exposure, so it holds
    assert good.decision is not None and good.decision.kind is plan.Kind.HOLD, good
    assert "MLflow could not be reached: prompt 'prompts:/" in good.decision.reason
    assert closed in good.decision.reason and "only a rollback or abort is done" in good.decision.reason
    assert "s3cret-token" not in repr(good)
    live = gitops.live("good")
    assert live is not None and live.weight("canary") == 10  # held where it was
    aborted = controller.abort("good-bot", reason="bad answers")
    live = gitops.live("good")
    assert live is not None and live.weight("canary") == 0 and live.weight("stable") == 100
    assert aborted.pr is not None
    pr = next(p for p in gitops.forge.list() if p.number == aborted.pr)
    assert "rollback" in pr.branch
