"""Colour on a terminal, plain text anywhere else: the same words either way, colour codes only on a
terminal (a real pseudo-terminal here) and never with $NO_COLOR."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.examples import ROOT, copy_examples

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _broken_examples(tmp_path: Path) -> Path:
    """The examples with one error, a weight above 100: a line with a coloured severity."""
    root = copy_examples(tmp_path)
    path = root / "rollouts/support-bot/rollout.yaml"
    path.write_text(path.read_text().replace("weight: 5,", "weight: 500,"))
    return root


def _on_a_terminal(argv: list[str], *, cwd: Path, env: dict[str, str]) -> str:
    """What `python -m controller ARGV` writes to a pseudo-terminal."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "controller", *argv], stdout=follower, stderr=follower, cwd=cwd, env=env
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the terminal's other side is closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    proc.wait(timeout=60)
    return b"".join(chunks).decode().replace("\r\n", "\n")


@pytest.fixture
def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")} | {
        "PYTHONPATH": str(ROOT),
        "TERM": "xterm-256color",
    }


def test_a_terminal_gets_the_same_words_in_colour(tmp_path: Path, env: dict[str, str]) -> None:
    root = _broken_examples(tmp_path)
    argv = ["validate", "rollouts"]
    piped = subprocess.run(
        [sys.executable, "-m", "controller", *argv], cwd=root, env=env, capture_output=True, text=True, check=False
    )
    shown = _on_a_terminal(argv, cwd=root, env=env)
    assert "\x1b[" not in piped.stdout
    assert "\x1b[31merror\x1b[0m E002" in shown  # the severity in red
    assert ANSI.sub("", shown) == piped.stdout + piped.stderr


def test_no_color_keeps_a_terminal_plain(tmp_path: Path, env: dict[str, str]) -> None:
    root = _broken_examples(tmp_path)
    shown = _on_a_terminal(["validate", "rollouts"], cwd=root, env=env | {"NO_COLOR": "1"})
    assert "error E002" in shown and "\x1b[" not in shown
