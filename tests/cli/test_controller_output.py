"""The controller commands' output: `rollout status --watch`, piped (a block when the status changes,
not at every look, such as the change an abort typed in another terminal makes; Ctrl-C exits 0
without a traceback), and `abort`, `retry` and `status` as JSON."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import net
from tests.helpers.examples import ROOT, copy_examples, run


@pytest.fixture
def remote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A bare remote holding the examples on file routers (state under tmp_path), whose Prometheus
    refuses connections; its routes created by one tick."""
    monkeypatch.setenv("ROLLOUT_STATE_DIR", str(tmp_path / "state"))
    work = copy_examples(tmp_path)
    config = work / "rollouts/controller.yaml"
    config.write_text(config.read_text().replace("127.0.0.1:9090", f"127.0.0.1:{net.free_port()}"))
    path = tmp_path / "remote.git"
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q", "-b", "main", str(work)], check=True)
    subprocess.run([*git, "-C", str(work), "add", "-A"], check=True)
    subprocess.run([*git, "-C", str(work), "commit", "-qm", "examples"], check=True)
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(path)], check=True)
    _, out = run("reconcile", "--once", "--remote", str(path), "--workdir", str(tmp_path / "first"))
    assert "Apply" in out, out
    yield path


def _lines(stream: object) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:  # type: ignore[attr-defined]
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _drain(lines: queue.Queue[str], seen: list[str]) -> bool:
    while True:
        try:
            seen.append(lines.get_nowait())
        except queue.Empty:
            return True


def test_watch_prints_a_block_per_change_and_stops_on_ctrl_c(remote: Path, tmp_path: Path) -> None:
    workdir = tmp_path / "watch"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = ["status", "--watch", "--interval", "1s", "--remote", str(remote), "--workdir", str(workdir)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "controller", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        lines, seen = _lines(proc.stdout), []
        net.wait_for("the first block", lambda: _drain(lines, seen) and any("next" in s for s in seen))
        assert seen[0].startswith("remote ") and seen[1].startswith("-- ")
        assert not any("PR       #" in s for s in seen)
        fetched = workdir / "clone/.git/FETCH_HEAD"
        looks = [fetched.stat().st_mtime_ns]
        net.wait_for(  # two more looks at an unchanged status...
            "two more looks",
            lambda: looks.append(fetched.stat().st_mtime_ns) or len(set(looks)) >= 3,
        )
        _drain(lines, seen)
        assert sum(s.startswith("-- ") for s in seen) == 1, "".join(seen)  # ...print nothing new

        abort = ["--remote", str(remote), "--workdir", str(tmp_path / "abort")]  # typed in another terminal
        code, out = run("abort", "support-bot", "--reason", "bad answers", *abort)
        assert code == 0, out
        seen = []
        block = net.wait_for(
            "a block after the abort",
            lambda: _drain(lines, seen) and any("PR       #1 " in s for s in seen) and "".join(seen),
        )
        assert "-- " in block and "support-bot" in block and "canary 0%" in block
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    assert proc.stderr is not None
    stderr = proc.stderr.read()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr


def test_watch_goes_on_through_a_remote_gone_for_a_moment(remote: Path, tmp_path: Path) -> None:
    """A look that fails (the remote moved away, a router hung up) is a block that says so; the watch goes
    on and shows the status again once it can."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = ["status", "--watch", "--interval", "1s", "--remote", str(remote), "--workdir", str(tmp_path / "watch")]
    proc = subprocess.Popen(
        [sys.executable, "-m", "controller", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    away = remote.with_name("away.git")
    try:
        lines, seen = _lines(proc.stdout), []
        net.wait_for("the first block", lambda: _drain(lines, seen) and any("next" in s for s in seen))
        remote.rename(away)
        net.wait_for(
            "a block that says the look failed", lambda: _drain(lines, seen) and "could not look" in "".join(seen)
        )
        away.rename(remote)
        seen = []
        net.wait_for("the status again", lambda: _drain(lines, seen) and any("next" in s for s in seen))
    finally:
        if away.exists():
            away.rename(remote)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    assert proc.returncode == 0 and proc.stderr is not None, proc.stderr and proc.stderr.read()


@pytest.mark.parametrize("interval", ["0s", "bogus"])
def test_a_status_interval_that_cannot_be_one_is_a_usage_error(remote: Path, tmp_path: Path, interval: str) -> None:
    where = ["--remote", str(remote), "--workdir", str(tmp_path / "cli")]
    assert run("status", "--interval", interval, *where)[0] == 2  # with or without --watch


def test_abort_retry_and_status_as_json(remote: Path, tmp_path: Path) -> None:
    where = ["--remote", str(remote), "--workdir", str(tmp_path / "cli")]
    code, out = run("abort", "support-bot", "--reason", "bad answers", "--format", "json", *where)
    aborted = json.loads(out)
    assert code == 0 and aborted["rollout"] == "support-bot" and aborted["decision"] == "Rollback"
    assert aborted["pr"] == 1 and aborted["error"] is None and aborted["actingOn"].startswith("remote ")
    assert aborted["live"]["weights"]["canary"] == 0
    for action in ("approve", "merge"):
        assert run("pr", action, "1", "--remote", str(remote))[0] == 0
    code, out = run("retry", "support-bot", "--format", "json", *where)
    retried = json.loads(out)
    assert code == 0 and retried["rollout"] == "support-bot" and retried["pr"] == 2, retried
    status = json.loads(run("status", "--format", "json", *where)[1])
    assert {"actingOn", "at", "sha", "rollouts"} <= status.keys()
    assert {r["rollout"] for r in status["rollouts"]} == {"support-bot", "release-notes", "ticket-triage"}
