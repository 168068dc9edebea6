"""Reading the file router's write log (`writeLog`), for the fleet's end-to-end test and bench/fleet.py:
who wrote which route, and the writes that break the one-writer rule."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: A controller.yaml (format with `prom`, and `prefix`: "" or "team-a/", a directory of the state dir
#: of its own for a listed repository) whose file router keeps its write log beside its routes.
CONFIG = """apiVersion: rollouts/v1
kind: ControllerConfig
routers:
  local: {{type: file, path: {prefix}routes.json, writeLog: {prefix}writes.jsonl}}
prometheus: {{url: "{prom}"}}
forge: {{type: local}}
"""


@dataclass(frozen=True)
class Tally:
    writes: int  # accepted writes
    fenced: int  # of those, the ones that carried a fence (a raise, or any write of a proven owner)
    refused: int  # stale writes the router's fence refused (layers 1 and 2 let them through)
    double: int  # accepted fenced writes under a token older than one the shard had already seen


def records(*logs: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for log in logs:
        if log.exists():
            out += [json.loads(line) for line in log.read_text("utf-8").splitlines() if line.strip()]
    return out


def tally(lines: list[dict[str, Any]]) -> Tally:
    """A double write is an accepted fenced write on a shard whose newest token, at that moment in the
    log's order, was already higher: a controller wrote after another had taken the shard over. Each
    log is one router's, so its order is the order of the writes."""
    newest: dict[int, int] = {}
    writes = fenced = refused = double = 0
    for r in lines:
        if r.get("refused"):
            refused += 1
            continue
        writes += 1
        fence = r.get("fence")
        if fence is None:
            continue
        fenced += 1
        shard, token = int(fence["shard"]), int(fence["token"])
        if token < newest.get(shard, 0):
            double += 1
        newest[shard] = max(token, newest.get(shard, 0))
    return Tally(writes, fenced, refused, double)


def writers(lines: list[dict[str, Any]]) -> dict[str, set[int]]:
    """Route -> the processes whose writes of it were accepted."""
    out: dict[str, set[int]] = {}
    for r in lines:
        if not r.get("refused"):
            out.setdefault(r["route"], set()).add(int(r["pid"]))
    return out
