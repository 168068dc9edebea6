"""`rollout ... | head`: when the reader of the output goes away, the command stops quietly with 141
(128 + SIGPIPE, as a program a closed pipe killed), never a BrokenPipeError traceback."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

from controller import cli
from tests.helpers.examples import FILE_ROUTERS, ROOT

PIPE_BYTES = 4096  # the smallest pipe Linux makes: the output below does not fit, so the writer blocks


def _many_broken_rollouts(root: Path, count: int) -> Path:
    """A repository whose validation prints one error line per rollout, more than a pipe holds."""
    (root / "rollouts").mkdir(parents=True)
    (root / "rollouts/controller.yaml").write_text(FILE_ROUTERS)
    for i in range(count):
        (root / f"rollouts/bad-{i}").mkdir()
        (root / f"rollouts/bad-{i}/rollout.yaml").write_text(
            f"apiVersion: rollouts/v1\nkind: Rollout\nmetadata: {{name: bad-{i}}}\nspec: {{}}\n"
        )
    return root / "rollouts"


def test_validate_into_a_pipe_closed_after_one_line_exits_quietly(tmp_path: Path) -> None:
    rollouts = _many_broken_rollouts(tmp_path / "repo", 100)
    read, write = os.pipe()
    fcntl.fcntl(write, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    # buffered, as a user's Python is: unbuffered (-u), a write into a closed pipe may just stop short
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"} | {"PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "controller", "validate", str(rollouts)],
        stdout=write,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
        env=env,
    )
    os.close(write)
    with os.fdopen(read, "rb") as reader:
        first = reader.readline()  # `| head -1`: one line, then the reader is gone
    _, stderr = proc.communicate(timeout=60)
    assert b"error E002" in first
    assert b"Traceback" not in stderr and b"BrokenPipe" not in stderr, stderr.decode()
    assert proc.returncode == cli.EXIT_PIPE_CLOSED, stderr.decode()
