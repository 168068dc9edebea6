"""Fixtures for the gates tests: one real Prometheus per session with deterministic history, and a
counting httpx client (tests/helpers/gate_history.py)."""

from tests.helpers.gate_history import counting, metrics, prom_server  # noqa: F401
