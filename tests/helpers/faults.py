"""The fault suite's tools: wrappers that make a real adapter fail or "kill" the controller at a chosen
call, a controller built with them on the GitOps setup (tests/helpers/gitops.py), and the table of real
kills that tests/faults/conftest.py prints after the run."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from controller import errors
from controller.routers import base


class Killed(BaseException):
    """The controller process died here: a BaseException, so no `except Exception` in the tick can
    swallow it, as no handler runs when a process is killed."""


class KillAt:
    """Wraps a real adapter; the `n`-th call (1-based) of `method` dies before (`after=False`) or
    after (`after=True`) the real call took effect."""

    def __init__(self, real: object, method: str, *, n: int = 1, after: bool = False) -> None:
        self.real, self.method, self.n, self.after = real, method, n, after
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.real, name)
        if name != self.method:
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            if self.calls == self.n and not self.after:
                raise Killed(f"killed before {name}")
            result = attr(*args, **kwargs)
            if self.calls == self.n:
                raise Killed(f"killed after {name}")
            return result

        return call


class FlakyRouter:
    """A real router behind a link that can go down: while `down`, or for the next `fail_writes`
    writes, calls raise RouterUnavailable and nothing reaches the real router."""

    def __init__(self, real: Any, *, fail_writes: int = 0, down: bool = False) -> None:
        self.real = real
        self.name, self.location = real.name, real.location
        self.fail_writes = fail_writes
        self.down = down
        self.writes = 0

    def _check(self, what: str) -> None:
        if self.down:
            raise errors.RouterUnavailable(f"router {self.name!r}: {what}: connection refused")

    def read(self, routes: Any) -> Any:
        self._check(f"read {base.routes_text(routes)}")
        return self.real.read(routes)

    def write(self, states: Any, fences: Any = None) -> None:
        self.writes += 1
        self._check(f"write {base.routes_text(states)}")
        if self.fail_writes > 0:
            self.fail_writes -= 1
            raise errors.RouterUnavailable(
                f"router {self.name!r}: write {base.routes_text(states)}: connection refused"
            )
        self.real.write(states, fences)


Wrap = Callable[[Any], Any]


def make_controller(
    ops: Any,
    *,
    holder: str = "test",
    forge: object | None = None,
    router: Wrap | None = None,
    prom_url: str | None = None,
    sleeps: list[float] | None = None,
) -> Any:
    """A controller like `GitOps.controller`, with the router (and forge) wrapped as a test needs and
    backoff sleeps recorded instead of slept (no timed waits in tests)."""
    from controller import prometheus, reconcile, repo, spec
    from controller.routers import file as file_router

    ws = repo.Workspace.open(str(ops.remote), ops.work / f"clone-{holder}")

    def routers(name: str, cfg: spec.RouterConfig, routes: object, cohorts: object) -> Any:
        assert isinstance(cfg, spec.FileRouterConfig)
        real = file_router.FileRouter(name, ops.work / "state" / cfg.path)
        return router(real) if router else real

    recorded = sleeps if sleeps is not None else []
    return reconcile.Controller(
        ws,
        forge or ops.forge,
        routers,
        prometheus.Prometheus(prom_url or ops.prom_url),
        holder=holder,
        clock=ops.now,
        sleep=recorded.append,
    )


#: One row per real kill (`test_real_kill.py`): scenario, cut point, what the kill left, what the restart made of it.
KILL_TABLE: list[dict[str, str]] = []
