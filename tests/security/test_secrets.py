"""Tokens are redacted everywhere: a full flow through the `rollout` command (subprocesses with the
GitHub token, a Prometheus bearer token and a Prometheus URL password in the environment and the
config, DEBUG logging of every library, injected 502s and a refused token) leaves none of them in
any output, log, pull request, commit status, comment, git object or file it wrote."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import git
import pytest

from tests.helpers import github_standin as standin_mod
from tests.helpers.gitops import CONFIG, GitOps, add_bad_bot, remote_files

pytestmark = pytest.mark.slow

GITHUB_TOKEN = "ghs_SECRETgithubTOKEN0123456789abcdef"
PROM_TOKEN = "prom-SECRET-bearer-5f1c2d"
PROM_PASSWORD = "urlSECRETpw77"
SECRETS = (GITHUB_TOKEN, PROM_TOKEN, PROM_PASSWORD)
ROOT = Path(__file__).resolve().parents[2]
RUN = (
    "import logging, sys; logging.basicConfig(level=logging.DEBUG); "
    "from controller import cli; sys.exit(cli.main(sys.argv[1:]))"
)


@pytest.fixture
def hub(gitops: GitOps) -> Iterator[standin_mod.StandIn]:
    add_bad_bot(gitops)
    url = gitops.prom_url.replace("http://", f"http://bot:{PROM_PASSWORD}@")
    server = standin_mod.StandIn(
        token=GITHUB_TOKEN, files=remote_files(gitops.remote), limits=standin_mod.UNPACED
    ).start()
    config = CONFIG.format(prom=url).replace(
        "forge: {type: local}",
        f"forge: {{type: github, repository: acme/rollouts, apiUrl: '{server.api_url}'}}",
    )
    config = config.replace(f'url: "{url}"', f'url: "{url}", bearerTokenEnv: PROM_TOKEN')
    gitops.commit({"rollouts/controller.yaml": config}, "GitHub forge, authenticated Prometheus")
    server.config_text = config  # type: ignore[attr-defined]  (the user's own file: it may hold the URL password)
    try:
        yield server
    finally:
        server.stop()


def rollout(gitops: GitOps, *argv: str, token: str = GITHUB_TOKEN) -> str:
    env = {**os.environ, "GITHUB_TOKEN": token, "PROM_TOKEN": PROM_TOKEN, "PYTHONPATH": str(ROOT)}
    extra = ["--remote", str(gitops.remote), "--workdir", str(gitops.work / "cli")]
    if argv[0] == "reconcile":  # the commands that take the lease; the others take no --holder
        extra += ["--holder", "secrets-test"]
    proc = subprocess.run(
        [sys.executable, "-c", RUN, *argv, *extra], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120
    )
    return f"$ rollout {' '.join(argv)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}\n"


def everything_written(gitops: GitOps, hub: standin_mod.StandIn) -> str:
    texts = [repr(r) for r in hub.records]
    texts += [repr(p) for p in hub.pulls.values()]
    texts += [repr(hub.statuses), repr(getattr(hub, "comments", ""))]
    for repo_path in (gitops.remote, gitops.work / "cli" / "clone"):
        objects = git.Repo(repo_path).git.execute(["git", "cat-file", "--batch-all-objects", "--batch"])
        texts.append(str(objects))
    for path in gitops.work.rglob("*"):
        if path.is_file() and path.stat().st_size < 5_000_000:
            texts.append(path.read_bytes().decode("utf-8", "replace"))
    # the user put the URL password in their controller.yaml: that file itself is not our leak
    return "\n".join(texts).replace(hub.config_text, "<controller.yaml>")  # type: ignore[attr-defined]


def test_no_secret_anywhere_after_a_full_run(gitops: GitOps, hub: standin_mod.StandIn) -> None:
    outputs = []
    hub.fail_next(502, op_id="pulls/create", message="Bad Gateway")
    outputs.append(rollout(gitops, "reconcile", "--once"))  # a 502 on the way
    outputs.append(rollout(gitops, "reconcile", "--once", "--format", "json"))
    gitops.advance(timedelta(minutes=2))
    outputs.append(rollout(gitops, "status"))
    outputs.append(rollout(gitops, "status", "--format", "json"))
    outputs.append(rollout(gitops, "abort", "good-bot", "--reason", "testing the kill switch"))
    outputs.append(rollout(gitops, "reconcile", "--once", token="ghs_WRONGtoken"))  # GitHub refuses: 401
    outputs.append(rollout(gitops, "plan"))
    log = "".join(outputs)
    assert "roll back" in log and "bad-bot" in log, log  # the run did what it should
    assert "401" in log or "Bad credentials" in log or "credentials" in log.lower(), log
    assert "DEBUG" in log  # library logging was on
    assert hub.pulls, "the flow opened pull requests"

    written = everything_written(gitops, hub)
    for secret in SECRETS:
        assert secret not in log, f"a secret in the output:\n{log[log.index(secret) - 300 : log.index(secret) + 100]}"
        assert secret not in written, "a secret in what the controller wrote"
    assert "ghs_WRONGtoken" not in log
