"""`rollout gates NAME` against a real Prometheus: per-segment rows side by side, three formats."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.helpers import gate_history, prom
from tests.helpers.examples import run

ROLLOUT = """\
apiVersion: rollouts/v1
kind: Rollout
metadata: {name: segmented}
spec:
  router: local
  route: segmented
  stable: {model: acme/m-1}
  canary: {model: acme/m-2}
  steps:
    - {weight: 5, for: 1h, minSamples: 100}
    - {weight: 100}
  analysis:
    gates:
      - {use: eval_pass_rate, maxDrop: 3%, onFail: rollback}
    segments: [tenant_tier]
"""


def repo(tmp_path: Path, prometheus_url: str) -> Path:
    (tmp_path / "rollouts" / "segmented").mkdir(parents=True)
    (tmp_path / "rollouts" / "controller.yaml").write_text(
        "apiVersion: rollouts/v1\nkind: ControllerConfig\n"
        "routers: {local: {type: file}}\n"
        f"prometheus: {{url: '{prometheus_url}'}}\n"
    )
    (tmp_path / "rollouts" / "segmented" / "rollout.yaml").write_text(ROLLOUT)
    return tmp_path


@pytest.mark.parametrize("fmt", ["text", "markdown", "json"], ids=["text", "markdown", "json"])
def test_gates_side_by_side(tmp_path: Path, prom_server: prom.PromServer, fmt: str) -> None:
    root = repo(tmp_path, prom_server.url)
    at = str(gate_history.NOW)
    code, out = run("gates", "segmented", "--repo", str(root), "--at", at, "--window", "1h", "--format", fmt)
    assert code == 1  # the enterprise segment fails
    if fmt == "json":
        gate, check = json.loads(out)["gates"]
        assert check["gate"] == "traffic_split" and check["verdict"] == "INCONCLUSIVE"  # no request counts
        rows = {s["segment"]["tenant_tier"]: s for s in gate["segments"]}
        assert rows["enterprise"]["verdict"] == "FAIL"
        assert rows["enterprise"]["canary"]["value"] == pytest.approx(0.80, abs=0.005)
        assert gate["window"] == "1h"  # as asked
    else:
        for tier in ("free", "pro", "enterprise", "trial"):
            assert tier in out
        assert "FAIL" in out and "0.8" in out and "0.9" in out


def test_gates_usage_errors(tmp_path: Path, prom_server: prom.PromServer) -> None:
    root = repo(tmp_path, prom_server.url)
    assert run("gates", "nope", "--repo", str(root))[0] == 2
    assert run("gates", "segmented", "--repo", str(root), "--at", "yesterday")[0] == 2


def test_gates_measure_over_the_controllers_window_by_default(tmp_path: Path, prom_server: prom.PromServer) -> None:
    """Without --window, `rollout gates` shows what the controller measures when the step's `for` (1h)
    has run: 32 one-minute intervals (`analysis.window`), the same rule as `rollout check` and the tick."""
    root = repo(tmp_path, prom_server.url)
    code, out = run("gates", "segmented", "--repo", str(root), "--at", str(gate_history.NOW), "--format", "json")
    gate, _ = json.loads(out)["gates"]
    assert gate["window"] == "32m", out
    assert code == 1  # 640 samples a side are not yet evidence beyond the 3-point limit: INCONCLUSIVE holds
    assert {s["verdict"] for s in gate["segments"]} <= {"PASS", "INCONCLUSIVE"}


def test_gates_measure_from_the_step_s_start_in_a_clone(tmp_path: Path, prom_server: prom.PromServer) -> None:
    """In a clone whose main set the step 10 minutes before `--at`, the window is the controller's for
    that time in step (8 one-minute intervals), not the step's whole `for`: `rollout gates` and the tick
    look at the same requests."""
    root = repo(tmp_path, prom_server.url)
    at = datetime.fromtimestamp(float(gate_history.NOW), UTC)
    started = (at - timedelta(minutes=10)).isoformat()
    env = {**os.environ, "GIT_COMMITTER_DATE": started, "GIT_AUTHOR_DATE": started}
    for argv in (
        ["init", "-q", "-b", "main"],
        ["add", "-A"],
        ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"],
    ):
        subprocess.run(["git", *argv], cwd=root, check=True, env=env)
    subprocess.run(["git", "update-ref", "refs/remotes/origin/main", "HEAD"], cwd=root, check=True)  # as if fetched
    _code, out = run("gates", "segmented", "--repo", str(root), "--at", str(gate_history.NOW), "--format", "json")
    gate, _ = json.loads(out)["gates"]
    assert gate["window"] == "8m", out
    _code, out = run("gates", "segmented", "--repo", str(root), "--at", str(gate_history.NOW))
    assert out.splitlines()[0].startswith(f"Rollout segmented as read from {root} (working tree of branch main at ")
