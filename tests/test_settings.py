"""`settings.Settings`: one frozen value holds every knob, and the adapters take theirs from it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import git
import pytest

from controller import llm, reconcile, repo, settings, spec
from controller.forge import factory as forge_factory
from controller.forge import github as forge_github
from controller.forge import local as forge_local
from controller.routers import envoy, litellm
from controller.routers import factory as router_factory


@pytest.mark.parametrize(
    ("backoff", "delays"),
    [
        (settings.Backoff(), [0.25, 0.5, 1.0]),
        (settings.Backoff(attempts=1), []),
        (settings.Backoff(attempts=0), []),
        (settings.Backoff(attempts=6, first=1.0, cap=3.0), [1.0, 2.0, 3.0, 3.0, 3.0]),
    ],
)
def test_backoff_doubles_up_to_its_cap(backoff: settings.Backoff, delays: list[float]) -> None:
    assert backoff.delays() == delays


def test_settings_are_frozen_and_changed_by_replace() -> None:
    knobs = settings.Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        knobs.lease_ttl = knobs.lease_ttl * 2  # type: ignore[misc]
    longer = dataclasses.replace(knobs, timeouts=dataclasses.replace(knobs.timeouts, envoy_admin=7.5))
    assert longer.timeouts.envoy_admin == 7.5 and knobs.timeouts.envoy_admin == settings.Timeouts.envoy_admin


def test_the_router_factory_passes_the_timeouts_down(tmp_path: Path) -> None:
    timeouts = settings.Timeouts(envoy_admin=3.5, envoy_clusters=12.0, litellm_admin=4.5)
    knobs = settings.Settings(timeouts=timeouts)
    edge = spec.EnvoyRouterConfig(type="envoy", admin="http://127.0.0.1:9")
    router = router_factory.build("edge", edge, root=tmp_path, routes={}, env={}, knobs=knobs)
    assert isinstance(router, envoy.EnvoyRouter)
    assert router.cds_timeout == 12.0 and router._client.timeout.read == 3.5
    proxy = spec.LitellmRouterConfig(type="litellm", url="http://127.0.0.1:9")
    router = router_factory.build("proxy", proxy, root=tmp_path, routes={}, env={}, knobs=knobs)
    assert isinstance(router, litellm.LitellmRouter) and router._client.timeout.read == 4.5


def test_adapters_built_without_settings_use_the_defaults(tmp_path: Path) -> None:
    defaults = settings.Settings()
    edge = envoy.EnvoyRouter("edge", "http://127.0.0.1:9", routes={})
    assert edge.cds_timeout == defaults.timeouts.envoy_clusters
    assert edge._client.timeout.read == defaults.timeouts.envoy_admin
    client = llm.Client("http://127.0.0.1:9/v1")
    assert client.retries == defaults.retries.llm_retries and client._http.timeout.read == defaults.timeouts.llm


def test_the_forge_factory_passes_the_retry_policies_down(tmp_path: Path) -> None:
    knobs = settings.Settings(
        timeouts=settings.Timeouts(github=4.0),
        retries=settings.Retries(local_forge_updates=3, github_rate_limit_attempts=5, github_rate_limit_max_wait=9.0),
        github=settings.GithubBudget(content_per_hour=123, etags=7),
    )
    git.Repo.init(tmp_path / "remote.git", bare=True)
    local = forge_factory.build(
        spec.LocalForgeConfig(type="local"), remote=str(tmp_path / "remote.git"), env={}, knobs=knobs
    )
    assert isinstance(local, forge_local.LocalForge) and local.updates == 3
    config = spec.GithubForgeConfig(type="github", repository="acme/rollouts", api_url="http://127.0.0.1:9")
    hub = forge_factory.build(config, remote="unused", env={"GITHUB_TOKEN": "t0ken"}, knobs=knobs)
    assert isinstance(hub, forge_github.GithubForge)
    assert (hub._retry.attempts, hub._retry.max_wait) == (5, 9.0)
    assert hub._gh.session.default_read_timeout == 4.0
    assert hub.budget.limits.content_per_hour == 123 and hub._gate.keep == 7


def test_the_controller_bounds_its_memory_by_its_settings(tmp_path: Path) -> None:
    git.Repo.init(tmp_path / "remote.git", bare=True)
    workspace = repo.Workspace(git.Repo.init(tmp_path / "clone"), branch="main")
    knobs = settings.Settings(memory=settings.Memory(step_histories=7, checks=11))
    forge = forge_local.LocalForge(tmp_path / "remote.git")
    controller = reconcile.Controller(workspace, forge, lambda *a: None, knobs=knobs)  # type: ignore[arg-type,return-value]
    assert controller.steps.limit == 7 and controller.pull_requests.remember == 11


def test_the_readme_documents_every_knob() -> None:
    """README's Settings table names every field of `Settings` and its sections."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    table = readme[readme.index("### Settings") : readme.index("### A router adapter")]
    knobs = settings.Settings()
    for top in dataclasses.fields(knobs):
        value = getattr(knobs, top.name)
        assert f"`{top.name}" in table, top.name
        if dataclasses.is_dataclass(value) and top.name != "writes":
            for leaf in dataclasses.fields(value):
                assert leaf.name in table, f"{top.name}.{leaf.name}"
