"""The plots of one rollout's page: stable and canary side by side over the step, from Prometheus
range queries. A placeholder that answers no panel: it is replaced by the plots' own module, which
keeps this signature (`server` routes `GET /api/rollouts/NAME/series` here)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from controller import load, prometheus, spec


def plots(
    loaded: load.LoadedRollout,
    config: spec.ControllerConfig,
    metrics: prometheus.Prometheus | None,
    *,
    start: datetime,
    end: datetime,
) -> dict[str, Any]:
    """The panels to draw for `loaded` between `start` and `end` (timezone-aware); none here."""
    return {"panels": []}
