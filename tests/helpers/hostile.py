"""The bad-input corpus on disk, and `rollout validate` and `rollout plan` run over it inside one process.

`write` and `make` put a case of `tests/helpers/corpus.py` into a copy of tests/corpus/repo; `run_cli` runs
both commands in this process and reports what each printed, whether anything escaped as a traceback,
and the process's peak memory. `python -c "from tests.helpers import hostile; hostile.main()" ROOT`
does the same in a process of its own, so that its peak memory is the case's alone (tests/corpus/
test_hostile.py, bench/hostile_input.py).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import stat
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

from tests.helpers import corpus

ROOT = Path(__file__).resolve().parents[2]  # the checkout: what a subprocess must import


def write(root: Path, case: corpus.Case) -> None:
    """A byte case: its file and extras; a valid rollout beside a bad prompt."""
    for path, data in ((case.path, case.data), *case.extra):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
    if case.target == "rollout" and case.path != corpus.ROLLOUT:
        (root / corpus.ROLLOUT).write_text(corpus.VALID_ROLLOUT)


def make(root: Path, case: corpus.FileCase) -> None:
    """A file case: its FIFO, socket, symlink (a symlink to `*.fifo` makes that FIFO too) or sparse 1 GiB
    file, beside a valid rollout."""
    if case.target == "rollout" and case.path != corpus.ROLLOUT:
        (root / corpus.ROLLOUT).write_text(corpus.VALID_ROLLOUT)
    where = root / case.path
    where.parent.mkdir(parents=True, exist_ok=True)
    where.unlink(missing_ok=True)
    if case.kind == "fifo":
        os.mkfifo(where)
    elif case.kind == "socket":
        os.mknod(where, stat.S_IFSOCK | 0o600)
    elif case.kind == "sparse":
        with open(where, "wb") as f:
            f.truncate(1 << 30)
    else:
        if case.to.endswith(".fifo"):
            os.mkfifo(where.parent / case.to)
        os.symlink(case.to, where)


def build(root: Path, case: corpus.Case | corpus.FileCase) -> None:
    if isinstance(case, corpus.FileCase):
        make(root, case)
    else:
        write(root, case)


@dataclass
class Run:
    code: int | None  # None: it raised
    out: str
    err: str
    raised: str = ""  # the traceback, if it raised
    seconds: float = 0.0


def run(argv: list[str]) -> Run:
    """`rollout ARGV` in this process, its output captured."""
    from controller import cli

    out, err = io.StringIO(), io.StringIO()
    started = time.perf_counter()
    try:
        with contextlib.redirect_stderr(err):
            code: int | None = cli.main(argv, out)
        raised = ""
    except BaseException:  # what escapes is what the test is about
        code, raised = None, traceback.format_exc()
    return Run(code, out.getvalue(), err.getvalue(), raised, time.perf_counter() - started)


def run_cli(root: Path, commands: tuple[str, ...] = ("validate", "plan")) -> dict[str, object]:
    """`rollout validate --format json` and `rollout plan --format json` over the repository at `root`
    (run from it), and this process's peak resident memory in MB."""
    os.chdir(root)
    argv = {
        "validate": ["validate", "--format", "json", "rollouts"],
        "plan": ["plan", "--repo", str(root), "--format", "json"],
    }
    report: dict[str, object] = {c: asdict(run(argv[c])) for c in commands}
    report["peak_mb"] = peak_mb()
    return report


def peak_mb() -> float:
    """This process's own peak resident memory. Not `getrusage`'s ru_maxrss: Linux keeps that across
    fork and exec, so a child of a large pytest process would report its parent's size (VmHWM belongs
    to the address space exec made)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # no /proc: an upper bound


def main() -> None:
    commands = tuple(sys.argv[2].split(",")) if len(sys.argv) > 2 else ("validate", "plan")
    print(json.dumps(run_cli(Path(sys.argv[1]), commands)))


def subprocess_argv(root: Path, commands: tuple[str, ...] = ("validate", "plan")) -> list[str]:
    return [sys.executable, "-c", "from tests.helpers import hostile; hostile.main()", str(root), ",".join(commands)]


def subprocess_env(state: Path) -> dict[str, str]:
    env = {**os.environ, "ROLLOUT_STATE_DIR": str(state)}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    return env
