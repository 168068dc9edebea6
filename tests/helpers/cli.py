"""Running the `rollout` command in-process, as the CLI tests do, and breaking the example repository
in a known place."""

from __future__ import annotations

import io
from pathlib import Path

from controller import cli


def run(*argv: str) -> tuple[int, str]:
    """`rollout ARGV...` in this process: (exit code, standard output)."""
    out = io.StringIO()
    return cli.main(list(argv), out), out.getvalue()


def broken(examples: Path) -> Path:
    """The example ticket-triage rollout with a step weight of 250: an error at rollout.yaml:22:16."""
    path = examples / "rollouts/ticket-triage/rollout.yaml"
    path.write_text(path.read_text().replace("{weight: 25,", "{weight: 250,"))
    return path
