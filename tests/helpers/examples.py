"""The example repository (rollouts/ in this checkout) as a user runs the `rollout` command on it:
a copy whose routers are all the embedded file router, and the CLI run in-process.

Used by tests/cli/ and tests/gates/test_gates_cli.py.
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

from controller import cli

ROOT = Path(__file__).resolve().parents[2]  # the checkout

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


def copy_examples(tmp_path: Path) -> Path:
    """A copy of the example repository under `tmp_path`/repo, every router the file router (FILE_ROUTERS)."""
    root = tmp_path / "repo"
    shutil.copytree(ROOT / "rollouts", root / "rollouts")
    (root / "rollouts/controller.yaml").write_text(FILE_ROUTERS)
    return root


def run(*argv: str, cwd: Path | None = None) -> tuple[int, str]:
    """`rollout ARGV` in-process, from `cwd` if given: (exit code, what it printed)."""
    out = io.StringIO()
    if cwd is None:
        return cli.main(list(argv), out), out.getvalue()
    before = Path.cwd()
    os.chdir(cwd)
    try:
        return cli.main(list(argv), out), out.getvalue()
    finally:
        os.chdir(before)


def broken(examples: Path) -> Path:
    """The example ticket-triage rollout with a step weight of 250: an error at rollout.yaml:22:16."""
    path = examples / "rollouts/ticket-triage/rollout.yaml"
    path.write_text(path.read_text().replace("{weight: 25,", "{weight: 250,"))
    return path
