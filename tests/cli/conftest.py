"""Fixtures for the `rollout` command's tests: a copy of the example repository on file routers."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent.parent

FILE_ROUTERS = """apiVersion: rollouts/v1
kind: ControllerConfig
routers:
  gateway: {type: file, path: .rollout/gateway.json}
  edge: {type: file, path: .rollout/edge.json}
  flags: {type: file, path: .rollout/flags.json}
  local: {type: file, path: .rollout/local.json}
prometheus: {url: "http://127.0.0.1:9090"}
gateTemplates:
  rewrite_rate: {kind: ratio, good: 'support_answers_total{rewritten="false"}', total: support_answers_total}
"""


@pytest.fixture
def examples(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the example repository, where every router is the embedded file router, its state
    beside the copy ($ROLLOUT_STATE_DIR)."""
    root = tmp_path / "repo"
    monkeypatch.setenv("ROLLOUT_STATE_DIR", str(root))
    shutil.copytree(ROOT / "rollouts", root / "rollouts")
    (root / "rollouts/controller.yaml").write_text(FILE_ROUTERS)
    return root
