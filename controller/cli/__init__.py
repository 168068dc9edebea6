"""The `rollout` command: parses arguments, builds adapters, prints, and sets exit codes.

Apart from the demo (its own closed loop), this is the only package that reads the environment or
prints, and the one that builds the adapters (through the factories); one module per command group, each
with `add_parser(sub)` and its `cmd_*` functions. Exit codes: 0 success, 1 a check failed (invalid
spec, drift asked about, gate failed), 2 usage error, 3 `reconcile` skipped its tick because another
controller holds the lease (the output names it), 4 `comment` refused a PR comment command (answered on
the PR), 141 the reader of the output went away (`rollout
... | head`): quietly, as a program killed by SIGPIPE.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

from controller import __version__, cutpoints, errors
from controller.cli import common, dashboard, demo, doctor, gates, init, plan, pr, render, run, validate
from controller.cli import eval as eval_command

# what other code and the tests name as `cli.X`
UsageError = common.UsageError
EXIT_SKIPPED = run.EXIT_SKIPPED
default_holder = run.default_holder

KILL_ENV = "ROLLOUT_TEST_KILL_AT"  # tests only: see `arm_kill_point`
EXIT_PIPE_CLOSED = 141  # 128 + SIGPIPE, what a shell reports for a program that a closed pipe stopped
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a program Ctrl-C stopped


def parser() -> argparse.ArgumentParser:
    p = common.Parser(
        prog="rollout",
        description="GitOps rollouts for LLM model and prompt changes.",
        epilog=common.example("rollout validate rollouts/"),
    )
    p.add_argument("--version", action="version", version=f"rollout {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # the order of `rollout --help`
    for group in (validate, init, plan, demo, gates, doctor, render, run, dashboard, pr, eval_command):
        group.add_parser(sub)
    return p


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    args = parser().parse_args(argv)
    func: Callable[[argparse.Namespace, TextIO], int] = args.func
    try:
        arm_kill_point(os.environ.get(KILL_ENV))
        code = func(args, out)
        out.flush()
        return code
    except BrokenPipeError:
        return _reader_gone(out)
    except KeyboardInterrupt:  # Ctrl-C before a command set its own handling (the loops stop cleanly)
        print(file=sys.stderr)
        return EXIT_INTERRUPTED
    except UsageError as exc:
        print(f"rollout: {exc}", file=sys.stderr)
        return 2
    except errors.SpecError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except errors.RolloutError as exc:
        print(f"rollout {args.command}: {exc}", file=sys.stderr)
        return 1
    finally:
        cutpoints.arm(None)


def _reader_gone(out: TextIO) -> int:
    """Our output's reader closed the pipe (`| head`): stop without a traceback. Standard output now
    points at /dev/null, so what is still buffered in it cannot fail again when Python exits."""
    if out is sys.stdout:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_PIPE_CLOSED


def arm_kill_point(name: str | None) -> None:
    """Tests only: with `ROLLOUT_TEST_KILL_AT=NAME` (a point of `controller.cutpoints`), the process
    SIGKILLs itself the first time it reaches that point, leaving what a real death leaves (half-written
    files, a held lease, a branch without its PR, child processes) for the restart to deal with
    (`tests/faults/test_real_kill.py`). Unset, nothing is armed; an unknown name is a usage error, so a
    typo never passes for a test that survived. It says on stderr that it is armed."""
    if not name:
        return
    if name not in cutpoints.POINTS:
        raise common.UsageError(f"${KILL_ENV}={name!r}: not a cut point; one of {', '.join(cutpoints.POINTS)}")
    print(f"rollout: ${KILL_ENV} is set: this process kills itself at {name}", file=sys.stderr)

    def kill(reached: str) -> None:
        if reached == name:
            print(f"rollout: killed at {name}", file=sys.stderr, flush=True)
            sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGKILL)

    cutpoints.arm(kill)
