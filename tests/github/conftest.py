"""Fixtures for the GitHub forge tests: a stand-in GitHub per test, stopped by its own handle."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from controller import settings
from controller.forge import github
from tests.helpers import github_standin as standin_mod
from tests.helpers.fake_time import FakeTime

TOKEN = standin_mod.TOKEN
# mutations are not paced here (the forge's clock is a FakeTime, so pacing would take no real time anyway);
# test_budget_standin.py paces them for real
UNPACED = standin_mod.Limits(mutation_interval=0.0)
UNPACED_FORGE = settings.GithubBudget(mutation_interval=0.0)


@pytest.fixture
def standin() -> Iterator[standin_mod.StandIn]:
    server = standin_mod.StandIn(
        token=TOKEN, files={"rollouts/support-bot/rollout.yaml": b"status: {step: 1}\n"}, limits=UNPACED
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def waits(time: FakeTime) -> list[float]:
    return time.slept


@pytest.fixture
def forge(standin: standin_mod.StandIn, time: FakeTime) -> github.GithubForge:
    retry = github.RetryPolicy(attempts=3, max_wait=60, sleep=time.sleep, clock=time.clock)
    return github.GithubForge("acme/rollouts", token=TOKEN, api_url=standin.api_url, retry=retry, limits=UNPACED_FORGE)
