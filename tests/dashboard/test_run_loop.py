"""What `rollout run` gives the dashboard's pages, tick by tick (controller/cli/run.py `_loop_tick`), on
a real GitOps remote: each tick's look when the pages are served, none when they are not (no forge or
git call for a page nobody can load), a tick that fails said on the pages above the last look, and a
publishing step that fails never stopping the loop."""

from __future__ import annotations

import argparse
import io
import shutil
import signal
from collections.abc import Iterator

import pytest

from controller import telemetry
from controller.cli import run
from controller.dashboard import look, source
from tests.helpers import net
from tests.helpers.gitops import GitOps


@pytest.fixture
def handlers() -> Iterator[None]:
    """`_loop_setup` takes SIGTERM and SIGINT for the loop; give them back to pytest after."""
    kept = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    yield
    for sig, handler in kept.items():
        signal.signal(sig, handler)


@pytest.mark.parametrize(("host", "dashboard", "pages"), [("127.0.0.1", False, True), ("0.0.0.0", False, False),
                                                          ("0.0.0.0", True, True)])  # fmt: skip
def test_the_loop_publishes_only_when_the_pages_are_served(
    handlers: None, host: str, dashboard: bool, pages: bool
) -> None:
    args = argparse.Namespace(metrics_port=net.free_port(), metrics_host=host, dashboard=dashboard)
    _, _, server, published = run._loop_setup(args, io.StringIO(), 10.0)
    try:
        assert (published is not None) == pages
    finally:
        server.shutdown()
        server.server_close()


def test_a_tick_that_fails_is_said_on_the_pages_above_the_last_look(gitops: GitOps) -> None:
    controller, published, out = gitops.controller(), source.Published(), io.StringIO()
    tel = telemetry.Telemetry()
    run._loop_tick(controller, tel, published, {}, out)
    seen = published().look
    assert seen is not None and published().error == "", out.getvalue()
    shutil.move(gitops.remote, gitops.work / "gone.git")  # the remote is unreachable: the next tick fails
    run._loop_tick(controller, tel, published, {}, out)
    assert "tick failed" in out.getvalue()
    assert published().look is seen and "the last tick failed" in published().error


def test_a_publishing_step_that_fails_never_stops_the_loop(gitops: GitOps, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the look raises, the loop goes on; its type is said, never its text."""

    def broken(*_: object, **__: object) -> look.Look:
        raise KeyError("secret-token-value")

    monkeypatch.setattr(look, "after", broken)
    published, out = source.Published(), io.StringIO()
    run._loop_tick(gitops.controller(), telemetry.Telemetry(), published, {}, out)
    assert "KeyError" in out.getvalue() and "KeyError" in published().error
    assert "secret-token-value" not in out.getvalue() + published().error
