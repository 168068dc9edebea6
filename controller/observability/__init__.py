"""Shipped observability files: a Grafana dashboard (stable and canary side by side) and Prometheus
recording and alerting rules with their `promtool test rules` cases. Data only, no imports at load;
the demo and the docs point users at these paths."""

from __future__ import annotations

from importlib import resources
from importlib.resources import abc

DASHBOARD = "grafana-dashboard.json"
RULES = "rules.yml"
RULES_TEST = "rules_test.yml"


def path(name: str) -> abc.Traversable:
    """One of the shipped files, by name (DASHBOARD, RULES, RULES_TEST)."""
    if name not in (DASHBOARD, RULES, RULES_TEST):
        raise ValueError(f"no observability file named {name!r}")
    return resources.files(__name__) / name
