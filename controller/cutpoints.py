"""Named boundaries between a tick's effects, where a fault test stops a real `rollout` process.

The product marks each boundary with `reached(NAME)`, just after the effect the name says took place.
Unarmed (always, in production) it is one global read. Only the CLI arms it, and only when the
test-only variable `ROLLOUT_TEST_KILL_AT` names a point: the process then SIGKILLs itself there
(`tests/faults/test_real_kill.py`), leaving what a real death leaves.
"""

from __future__ import annotations

from collections.abc import Callable

LEASE = "lease.renewed"  # the lease ref pushed (taken or renewed); nothing else of the tick done
STATE_TEMP = "state.temp-written"  # a router state file's temp copy written and fsynced, not renamed yet
ROUTER_WRITTEN = "router.written"  # a router batch written, not read back yet
READ_BACK = "router.read-back"  # the batch read back, nothing sent to the forge yet
BRANCH_PUSHED = "forge.branch-pushed"  # a PR's head branch pushed, no PR record yet
PR_OPENED = "forge.pr-opened"  # the PR opened (or updated), its check not set yet
CHECK_SET = "forge.check-set"  # a PR's `rollout/gates` check set

POINTS = (LEASE, STATE_TEMP, ROUTER_WRITTEN, READ_BACK, BRANCH_PUSHED, PR_OPENED, CHECK_SET)

_hook: Callable[[str], None] | None = None


def reached(name: str) -> None:
    """The effect `name` stands for has just taken place."""
    if _hook is not None:
        _hook(name)


def arm(hook: Callable[[str], None] | None) -> None:
    """Call `hook(name)` at every point reached from now on (None: disarm). For the CLI and tests."""
    global _hook
    _hook = hook
