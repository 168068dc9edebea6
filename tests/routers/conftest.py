"""Fixtures for the router tests: one live router per backend, each real (tests/helpers/live_routers.py)."""

from tests.helpers.live_routers import backend, envoy_proxy, litellm_stack, strategy_stack, unleash_server  # noqa: F401
