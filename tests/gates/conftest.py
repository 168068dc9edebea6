"""Fixtures for the gates tests: one real Prometheus per session with deterministic history, a
counting requests session, and a live Prometheus per module (tests/helpers/gate_history.py)."""

from tests.helpers.gate_history import counting, metrics, prom_live, prom_server  # noqa: F401
