"""The tests' repository (tests/fixtures/repo: a fixture, not the examples under rollouts/, so what a
user adds to this checkout never changes a test) as a user runs the `rollout` command on it: a copy
whose routers are all the embedded file router, and the CLI run in-process.

Used by tests/cli/ and tests/gates/test_gates_cli.py.
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

from controller import cli

ROOT = Path(__file__).resolve().parents[2]  # the checkout
FIXTURE = ROOT / "tests" / "fixtures" / "repo"  # holds rollouts/: three rollouts and their controller.yaml
EXAMPLES = ("support-bot", "ticket-triage", "release-notes")  # the examples this checkout ships, by name

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
    """A copy of the fixture repository under `tmp_path`/repo, every router the file router (FILE_ROUTERS)."""
    root = tmp_path / "repo"
    shutil.copytree(FIXTURE / "rollouts", root / "rollouts")
    (root / "rollouts/controller.yaml").write_text(FILE_ROUTERS)
    return root


def shipped_examples(tmp_path: Path) -> Path:
    """The examples this checkout ships (EXAMPLES, with rollouts/controller.yaml and schemas/) copied under
    `tmp_path`/shipped, as they are: what a user reads and copies. Named, never globbed, so a rollout a user
    adds beside them is theirs, not the tests'."""
    root = tmp_path / "shipped"
    (root / "rollouts").mkdir(parents=True)
    shutil.copy(ROOT / "rollouts" / "controller.yaml", root / "rollouts" / "controller.yaml")
    for name in EXAMPLES:
        shutil.copytree(ROOT / "rollouts" / name, root / "rollouts" / name)
    shutil.copytree(ROOT / "schemas", root / "schemas")
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
