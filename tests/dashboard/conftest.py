"""Fixtures for the dashboard: the GitOps remote and the session's Prometheus (tests/helpers/gitops.py)."""

from tests.helpers.gitops import eval_prometheus, gitops  # noqa: F401
