"""`tests/helpers/procs.py`, the one way tests run a real process: a process that dies while we wait
fails at once with its log, and every process is stopped by its handle."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from tests.helpers import net, procs


def test_a_process_that_exits_while_we_wait_fails_at_once_with_its_log(tmp_path: Path) -> None:
    log = tmp_path / "dies.log"
    script = "import sys; print('bad config on line 3'); sys.exit(7)"
    with (
        procs.running([sys.executable, "-c", script], log=log) as process,
        pytest.raises(RuntimeError, match=r"dies exited with 7: bad config on line 3"),
    ):
        procs.ready(process, "dies", lambda: False, log=log, deadline=600)


def test_running_stops_the_process_by_its_handle(tmp_path: Path) -> None:
    log = tmp_path / "sleeps.log"
    with procs.running([sys.executable, "-c", "import time; time.sleep(600)"], log=log) as process:
        assert process.poll() is None
    assert process.poll() is not None


def test_ready_returns_what_the_check_found(tmp_path: Path) -> None:
    marker = tmp_path / "port"
    script = f"import pathlib, time; pathlib.Path({str(marker)!r}).write_text('8080'); time.sleep(600)"
    log = tmp_path / "writes.log"
    with procs.running([sys.executable, "-c", script], log=log) as process:
        found = procs.ready(
            process, "the port file", lambda: marker.exists() and marker.read_text(), log=log, deadline=60
        )
        assert found == "8080"


def test_descendants_and_their_listening_ports_are_seen_and_gone_once_stopped(tmp_path: Path) -> None:
    """What the demo's tests check after Ctrl-C: a grandchild that listens is found below its
    grandparent, with its port, and neither is left once stopped."""
    port = net.free_port()
    child = (
        "import socket, subprocess, sys, time; "
        f"s = socket.create_server(('127.0.0.1', {port})); "
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); time.sleep(600)"
    )
    script = f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {child!r}]); time.sleep(600)"
    with procs.running([sys.executable, "-c", script], log=tmp_path / "tree.log") as parent:
        below = net.wait_for(
            "two descendants", lambda: len(procs.descendants(parent.pid)) == 2 and procs.descendants(parent.pid)
        )
        assert net.wait_for("the port", lambda: procs.listening_ports(below)) == {port}
        assert port in procs.listening_ports()
        assert all(procs.alive(pid) for pid in below)
        for pid in below:
            os.kill(pid, signal.SIGKILL)
        net.wait_for("the descendants to be gone", lambda: not any(procs.alive(pid) for pid in below))
    assert port not in procs.listening_ports()
