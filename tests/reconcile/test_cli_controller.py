"""The controller's commands as a user runs them: reconcile, status, pr, abort, hold, retry, run."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from controller import cli
from tests.helpers import net
from tests.helpers.gitops import GitOps, add_bad_bot

pytestmark = pytest.mark.slow
ROOT = Path(__file__).parent.parent.parent


def rollout(gitops: GitOps, *argv: str) -> tuple[int, str]:
    out = io.StringIO()
    extra = ["--remote", str(gitops.remote)]
    if argv[0] != "pr":
        extra += ["--workdir", str(gitops.work / "cli")]
    code = cli.main([*argv, *extra], out)
    return code, out.getvalue()


def test_reconcile_status_and_pull_requests(gitops: GitOps) -> None:
    add_bad_bot(gitops)
    code, out = rollout(gitops, "reconcile", "--once")
    assert code == 0, out
    assert "bad-bot" in out and "Rollback" in out and "opened #1" in out
    assert "good-bot" in out and "Apply" in out

    code, out = rollout(gitops, "status")
    assert code == 0
    block = out.split("bad-bot", 1)[1].split("\n\n", 1)[0]
    assert "step 1/3 (shadow 100%)" in block and "canary 0%" in block
    assert "eval_pass_rate FAIL" in block and "PR       #1 bad-bot: roll back" in block
    assert "decide   traffic unknown: set analysis.expectedRate" in block  # the time-to-a-decision advice
    assert "rolled back" in block or "revert PR" in block
    assert "RolledBack" in block and "Progressing" not in block  # its revert PR is open: never Progressing
    code, out = rollout(gitops, "status", "--format", "json")
    shown = {r["rollout"]: r for r in json.loads(out)["rollouts"]}
    assert (shown["bad-bot"]["phase"], shown["bad-bot"]["step"], shown["bad-bot"]["stepNumber"]) == ("RolledBack", 0, 1)

    code, out = rollout(gitops, "pr", "list")
    assert code == 0
    assert "#1" in out and "open" in out and "bad-bot: roll back" in out
    code, out = rollout(gitops, "pr", "show", "1")
    assert "check rollout/gates: success" in out and "merging records the rollback" in out and "already" in out
    code, out = rollout(gitops, "pr", "merge", "1")
    assert code == 2  # not approved
    assert rollout(gitops, "pr", "approve", "1")[0] == 0
    code, out = rollout(gitops, "pr", "merge", "1")
    assert code == 0 and "merged #1" in out
    code, out = rollout(gitops, "pr", "list")
    assert out.strip() == "no open pull requests"
    assert "merged" in rollout(gitops, "pr", "list", "--all")[1]


def test_abort_and_retry_from_the_command_line(gitops: GitOps) -> None:
    rollout(gitops, "reconcile", "--once")
    code, out = rollout(gitops, "abort", "good-bot", "--reason", "pager went off")
    assert code == 0 and "router local: set stable 100%, canary 0%" in out
    code, out = rollout(gitops, "retry", "good-bot")
    assert code == 0 and "good-bot: retry from step 1 (revision " in out
    assert len(gitops.forge.list(state=None)) == 2


def test_hold_then_retry_from_the_command_line(gitops: GitOps) -> None:
    rollout(gitops, "reconcile", "--once")
    before = gitops.live("good")
    code, out = rollout(gitops, "hold", "good-bot", "--reason", "launch day", "--by", "alice")
    assert code == 0 and "good-bot: pause at step 1 (held by hand by @\u200balice: launch day)" in out
    assert gitops.live("good") == before  # no router write
    code, out = rollout(gitops, "hold", "good-bot", "--reason", "launch day", "--by", "alice", "--format", "json")
    assert code == 0 and json.loads(out)["pr"] == 1  # the open pause PR holds already: the same PR
    code, out = rollout(gitops, "retry", "good-bot")
    assert code == 0 and "#1 holds until #2 is merged" in out  # the hold stands until the retry is merged


def test_dry_run_json(gitops: GitOps) -> None:
    code, out = rollout(gitops, "reconcile", "--dry-run", "--format", "json")
    assert code == 0
    report = json.loads(out)
    [good] = report["rollouts"]
    assert good["decision"] == "Apply" and good["actions"][0].startswith("would apply")
    assert (good["phase"], good["step"], good["stepNumber"]) == ("Progressing", 0, 1)
    assert gitops.live("good") is None


def lease_listed(gitops: GitOps) -> bool:
    refs = subprocess.run(["git", "ls-remote", str(gitops.remote)], capture_output=True, text=True, check=True)
    return "refs/rollout/lease" in refs.stdout


def test_run_serves_metrics_and_stops_on_sigterm(gitops: GitOps) -> None:
    port = net.free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "controller",
            "run",
            "--interval",
            "1s",
            "--metrics-port",
            str(port),
            "--remote",
            str(gitops.remote),
            "--workdir",
            str(gitops.work / "run"),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        deadline = time.monotonic() + 60
        text = ""
        while time.monotonic() < deadline:
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
                if 'rollout_decisions_total{kind="Hold",rollout="good-bot"}' in text:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        assert 'rollout_canary_weight{rollout="good-bot",route="good"} 0.0' in text
        assert "rollout_tick_duration_seconds_count" in text
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
        assert lease_listed(gitops), "it holds the lease while it runs"
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0 and out.decode().rstrip().endswith("released the lease\nstopped")
        assert not lease_listed(gitops), "it gives the lease back on SIGTERM"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
