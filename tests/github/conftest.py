"""Fixtures for the GitHub forge tests: a stand-in GitHub per test, stopped by its own handle."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from controller.forge import github
from tests.helpers import github_standin as standin_mod

TOKEN = standin_mod.TOKEN


@pytest.fixture
def standin() -> Iterator[standin_mod.StandIn]:
    server = standin_mod.StandIn(token=TOKEN, files={"rollouts/support-bot/rollout.yaml": b"status: {step: 1}\n"})
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def waits() -> list[float]:
    return []


@pytest.fixture
def forge(standin: standin_mod.StandIn, waits: list[float]) -> github.GithubForge:
    retry = github.RetryPolicy(attempts=3, max_wait=60, sleep=waits.append, clock=lambda: 1_000_000.0)
    return github.GithubForge("acme/rollouts", token=TOKEN, api_url=standin.api_url, retry=retry)
