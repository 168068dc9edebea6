"""Helpers for the live tests on the demo's stand-ins (`controller.demo`): point a live Prometheus
(the `prom_live` fixture in `tests/gates/conftest.py`) at targets, query it."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

from tests.helpers import prom


def scrape(server: prom.PromServer, targets: Mapping[str, Sequence[str]]) -> None:
    """Point the live job at `targets`: metrics path -> host:port list (one file_sd group per path)."""
    groups = [{"targets": list(t), "labels": {"__metrics_path__": path}} for path, t in targets.items()]
    tmp = server.targets_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(groups))
    tmp.replace(server.targets_file)


def instant(server: prom.PromServer, expr: str) -> list[dict[str, object]]:
    """An instant query's result; raises on an error answer."""
    answer = httpx.get(f"{server.url}/api/v1/query", params={"query": expr}, timeout=10).json()
    if answer.get("status") != "success":
        raise ValueError(f"{expr}: {answer.get('errorType')}: {answer.get('error')}")
    result: list[dict[str, object]] = answer["data"]["result"]
    return result


def scalar(server: prom.PromServer, expr: str) -> float | None:
    result = instant(server, expr)
    if not result:
        return None
    value = result[0]["value"]
    assert isinstance(value, list)
    return float(value[1])


def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir(exist_ok=True)
    return path
