"""One way to run a real process in a test: started with its output in a log file, waited for until
it is ready (failing at once, with the log's tail, if it exits first), and stopped by its own handle.
Envoy (`envoy_proc`), LiteLLM (`litellm_proc`) and Prometheus (`prom`) all start through here.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from controller import demo
from tests.helpers import net

T = TypeVar("T")


def spawn(args: Sequence[str], *, log: Path, env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start `args` with stdout and stderr in `log`, in a session of its own (a Ctrl-C reaches the
    test, which stops the process)."""
    with log.open("wb") as out:
        return subprocess.Popen(
            list(args), stdout=out, stderr=subprocess.STDOUT, env=dict(env) if env is not None else None,
            start_new_session=True,
        )  # fmt: skip


def tail(log: Path, size: int = 3000) -> str:
    return log.read_text(errors="replace")[-size:] if log.exists() else ""


def ready(
    process: subprocess.Popen[bytes],
    what: str,
    check: Callable[[], T | None],
    *,
    log: Path,
    deadline: float,
    every: float = 0.05,
    tolerate: tuple[type[BaseException], ...] = (OSError, ValueError),
) -> T:
    """`net.wait_for(check)`, except that a process that exits while we wait fails at once, saying so
    with its log's tail; a timeout says the tail too."""

    def probe() -> T | None:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}: {tail(log)}")
        return check()

    try:
        return net.wait_for(what, probe, deadline=deadline, every=every, tolerate=tolerate)
    except TimeoutError as exc:
        raise RuntimeError(f"{exc} after {deadline:g}s: {tail(log)}") from exc


def stop(process: subprocess.Popen[bytes], *, grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds: the demo's own rule (`demo.stop_child`)."""
    demo.stop_child(process, grace=grace)


@contextlib.contextmanager
def stopped_on_failure(process: subprocess.Popen[bytes], *, grace: float = 10.0) -> Iterator[None]:
    """Stop `process` if the block raises (a readiness wait that failed), and re-raise."""
    try:
        yield
    except BaseException:
        stop(process, grace=grace)
        raise


@contextlib.contextmanager
def running(
    args: Sequence[str], *, log: Path, env: Mapping[str, str] | None = None, grace: float = 10.0
) -> Iterator[subprocess.Popen[bytes]]:
    """`spawn` for the duration of the block, stopped by its handle when the block ends, however it ends."""
    process = spawn(args, log=log, env=env)
    try:
        yield process
    finally:
        stop(process, grace=grace)


def descendants(pid: int) -> set[int]:
    """Every live process below `pid` (children, their children, ...), read from /proc: what a test
    checks is gone once the process that started them has stopped."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # the command name (in parentheses) may hold spaces: the fields after it are fixed
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    """Whether `pid` is a process that still runs (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def listening_ports(pids: set[int] | None = None) -> set[int]:
    """The TCP ports in LISTEN state on this machine, or only those whose socket one of `pids` holds."""
    listening: dict[int, int] = {}  # socket inode -> port
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for row in Path(table).read_text().splitlines()[1:]:
                fields = row.split()
                if fields[3] == "0A":  # TCP_LISTEN
                    listening[int(fields[9])] = int(fields[1].rsplit(":", 1)[1], 16)
    if pids is None:
        return set(listening.values())
    held: set[int] = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in (Path("/proc") / str(pid) / "fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("socket:["):
                        held.add(int(target[8:-1]))
    return {port for inode, port in listening.items() if inode in held}
