"""The traffic-split check end to end: the file router, the local forge, a real git remote and a real
Prometheus with backfilled request counts. Two rollouts at weight 10 whose step began two hours ago:
the router sends one 10% (the promotion PR carries the check in its evidence), the other half (it
holds, says why in `rollout status`, and neither rolls back nor pauses)."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path

import git
import pytest

from controller import cli, spec
from tests.helpers import prom
from tests.helpers.gitops import CONFIG, GitOps

pytestmark = pytest.mark.slow
NOW = int(time.time()) // 60 * 60
STEP_BEGAN = NOW - 2 * 3600  # the commit that set the weight-10 step
SHARES = {"right": (90, 10), "wrong": (50, 50)}  # requests per minute, stable and canary
PROMPTS = {"v1.md": "You are helpful.\n", "v2.md": "You are helpful and brief.\n"}

ROLLOUT = """apiVersion: rollouts/v1
kind: Rollout
metadata: {{name: {name}}}
spec:
  router: local
  route: {name}
  stable: {{model: acme/chat-2025-01-01, prompt: prompts/v1.md}}
  canary: {{model: acme/chat-2025-01-01, prompt: prompts/v2.md}}
  steps:
    - {{shadow: 100, for: 1m}}
    - {{weight: 10, for: 1m}}
    - {{weight: 100}}
  analysis: {{interval: 5m}}
status: {{revision: {revision}, step: 1, phase: Progressing}}
"""


@pytest.fixture(scope="module")
def requests_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[prom.PromServer]:
    work = tmp_path_factory.mktemp("split-prometheus")
    series = [
        prom.PromSeries("llm_requests_total", {"route": route, "variant": variant, "outcome": "ok"}, pm)
        for route, counts in SHARES.items()
        for variant, pm in zip(("stable", "canary"), counts, strict=True)
    ]
    with prom.backfilled(work, prom.prom_openmetrics(series, now=NOW)) as server:
        yield server


@pytest.fixture
def gitops(tmp_path: Path, requests_prometheus: prom.PromServer, monkeypatch: pytest.MonkeyPatch) -> GitOps:
    monkeypatch.setenv("ROLLOUT_STATE_DIR", str(tmp_path / "state"))  # where `rollout status` reads routes
    remote = tmp_path / "remote.git"
    git.Repo.init(remote, bare=True, initial_branch="main")
    clone = tmp_path / "human"
    r = git.Repo.init(clone, initial_branch="main")
    canary = spec.revision(
        spec.Variant(model="acme/chat-2025-01-01", prompt="prompts/v2.md"), PROMPTS["v2.md"].encode()
    )
    files = {"rollouts/controller.yaml": CONFIG.format(prom=requests_prometheus.url)}
    for name in SHARES:
        files[f"rollouts/{name}/rollout.yaml"] = ROLLOUT.format(name=name, revision=canary)
        files.update({f"rollouts/{name}/prompts/{p}": text for p, text in PROMPTS.items()})
    for path, text in files.items():
        (clone / path).parent.mkdir(parents=True, exist_ok=True)
        (clone / path).write_text(text)
    r.git.add("-A")
    when = f"@{STEP_BEGAN} +0000"
    who = {"GIT_AUTHOR_NAME": "human", "GIT_AUTHOR_EMAIL": "h@x", "GIT_COMMITTER_NAME": "human"}
    env = {**who, "GIT_COMMITTER_EMAIL": "h@x", "GIT_AUTHOR_DATE": when, "GIT_COMMITTER_DATE": when}
    r.git.commit("-m", "Two rollouts at weight 10", env=env)
    r.git.push(str(remote), "HEAD:main")
    return GitOps(remote, tmp_path, requests_prometheus.url)


def test_a_mismatch_holds_and_a_right_split_promotes(gitops: GitOps) -> None:
    controller = gitops.controller()
    first = {o.rollout: o for o in controller.reconcile_once().outcomes}
    assert all(o.decision and o.decision.kind.value == "Apply" for o in first.values())  # the router had no route

    tick = {o.rollout: o for o in controller.reconcile_once().outcomes}
    wrong, right = tick["wrong"], tick["right"]
    assert wrong.decision is not None and wrong.decision.kind.value == "Hold"
    assert wrong.decision.reason.startswith("traffic_split: the router is not splitting as configured: canary 50.00%")
    assert "expected 10.00%" in wrong.decision.reason
    assert gitops.live("wrong") is not None and gitops.live("wrong").weight("canary") == 10  # type: ignore[union-attr]
    assert right.decision is not None and right.decision.kind.value == "Advance", right.decision.reason

    [pr] = gitops.forge.list(state=None)  # the promotion; nothing for the mismatch (no pause, no revert)
    assert pr.title.startswith("right: advance to 100%")
    assert "| traffic\\_split | all |" in pr.body and "**PASS**" in pr.body

    out = io.StringIO()
    assert cli.main(["status", "--remote", str(gitops.remote), "--workdir", str(gitops.work / "cli")], out) == 0
    block = out.getvalue().split("wrong  step", 1)[1].split("\n\n", 1)[0]
    assert "gates    traffic_split FAIL" in block
    assert "traffic_split: the router is not splitting as configured: canary 50.00%" in block
    assert "next     Hold: traffic_split: the router is not splitting as configured" in block
