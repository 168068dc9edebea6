"""`rollout demo --manual`: the user is the reviewer. The demo runs as a real process; the commands it
prints run as a second process that knows only what the demo printed, and act on the demo's remote and
router; Ctrl-C stops every process the demo started and leaves no port listening."""

from __future__ import annotations

import json
import os
import queue
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from controller import demo
from tests.helpers import net, procs

pytestmark = pytest.mark.slow
CHECKOUT = Path(__file__).resolve().parents[2]


class Lines:
    """The demo's output, read by a thread so that a wait for a line has a deadline."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        assert proc.stdout is not None
        stdout = proc.stdout

        def pump() -> None:
            for line in stdout:
                self._queue.put(line.rstrip("\n"))
            self._queue.put(None)

        threading.Thread(target=pump, daemon=True).start()

    def until(self, pattern: str, *, deadline: float) -> re.Match[str]:
        """Read lines until one matches `pattern`; fail with everything read so far on a timeout or EOF."""
        end = time.monotonic() + deadline
        while (left := end - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                pytest.fail("the demo ended early:\n" + "\n".join(self.seen))
            self.seen.append(line)
            if found := re.search(pattern, line):
                return found
        pytest.fail(f"no line matching {pattern!r} within {deadline:g}s:\n" + "\n".join(self.seen))


def typed(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A printed `$ rollout ...` line, typed in a second terminal (this checkout's `rollout`)."""
    argv = shlex.split(command.removeprefix("$ "))
    assert argv[0] == "rollout", command
    return subprocess.run(
        [sys.executable, "-m", "controller", *argv[1:]], env=env, capture_output=True, text=True, timeout=120
    )


def test_the_driven_demo_waits_for_the_user_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "controller", "demo", "--manual", "--plain"],
        cwd=CHECKOUT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(CHECKOUT)},
    )
    try:
        lines = Lines(proc)
        export = lines.until(r"^\s+\$ export (\w+)=(\S+)$", deadline=120)
        # the second terminal: its own home, cache and even a different $ROLLOUT_STATE_DIR; the printed export only
        home = tmp_path / "home"
        home.mkdir()
        second = {
            "PATH": os.environ["PATH"],
            "HOME": str(home),
            "PYTHONPATH": str(CHECKOUT),
            "ROLLOUT_STATE_DIR": str(tmp_path / "another-state"),
            export[1]: shlex.split(export[2])[0],
        }
        number = lines.until(r"PR #(\d+) opened: .*advance to 25%", deadline=240)[1]
        commands = [
            lines.until(rf"^\s+(\$ rollout pr {verb} {number})$", deadline=5)[1]
            for verb in ("show", "approve", "merge")
        ]
        shown = typed(commands[0], second)
        assert shown.returncode == 0 and "advance to 25%" in shown.stdout, shown.stdout + shown.stderr
        for command in commands[1:]:
            done = typed(command, second)
            assert done.returncode == 0, done.stdout + done.stderr
        lines.until(rf"PR #{number} merged", deadline=30)

        def canary_weight() -> int | None:
            status = typed("$ rollout status --format json", second)
            assert status.returncode == 0, status.stdout + status.stderr
            [rollout] = json.loads(status.stdout)["rollouts"]
            weight = int(rollout["live"]["weights"]["canary"])
            return weight if weight == 25 else None

        assert net.wait_for("the merged weight, seen from the second terminal", canary_weight, deadline=60) == 25

        children = procs.descendants(proc.pid)
        ports = procs.listening_ports(children)
        assert len(ports) >= 5, (children, ports)  # Envoy's listener and admin, Prometheus, both model servers
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        lines.until(r"stopped \(Ctrl-C\)", deadline=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not [pid for pid in children if procs.alive(pid)]
    assert not ports & procs.listening_ports()


def test_the_second_terminal_activates_the_demos_virtual_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the demo runs in a virtual environment (.ci/demo on a stock Debian Python), `rollout` is
    on the second terminal's PATH only once it is activated: the demo says so first."""
    remote = tmp_path / "remote dir" / "remote.git"
    monkeypatch.setattr(sys, "prefix", str(tmp_path / ".venv"))
    assert demo.second_terminal(remote) == [
        f"$ . {tmp_path}/.venv/bin/activate",
        f"$ export ROLLOUT_REMOTE='{remote}'",
        "$ rollout status",
    ]
    monkeypatch.setattr(sys, "prefix", sys.base_prefix)
    assert demo.second_terminal(remote)[0].startswith("$ export ROLLOUT_REMOTE=")
