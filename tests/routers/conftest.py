"""Fixtures for the router tests: one live router per backend, each real (tests/helpers/live_routers.py)."""

from tests.helpers.live_routers import (  # noqa: F401
    backend,
    envoy_proxy,
    litellm_stack,
    mesh_standin,
    strategy_stack,
    unleash_server,
)
