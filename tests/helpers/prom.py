"""A real Prometheus for tests: backfilled history (promtool), a server stopped by its own handle, and
polling it instead of sleeping.

Used by the gates, reconcile, fault and observability tests; prefixed `prom` to stay clear of other helpers.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx

from tests.helpers import net, procs

T = TypeVar("T")


def prom_poll(what: str, check: Callable[[], T | None], *, deadline: float = 60.0, every: float = 0.1) -> T:
    """`net.wait_for` with Prometheus's patience: a refused connection or a half-started server's bad
    answer counts as "not yet"."""
    return net.wait_for(
        what, check, deadline=deadline, every=every, tolerate=(httpx.HTTPError, OSError, ValueError, KeyError)
    )


# -- OpenMetrics history for promtool ----------------------------------------------------------------


def escape(value: str) -> str:
    """A label value as OpenMetrics text quotes it."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


@dataclass(frozen=True)
class PromSeries:
    """One counter series growing linearly: `per_minute` per minute from `start` seconds ago to now."""

    name: str
    labels: Mapping[str, str]
    per_minute: float

    def line(self, value: float, ts: int) -> str:
        body = ",".join(f'{k}="{escape(v)}"' for k, v in sorted(self.labels.items()))
        return f"{self.name}{{{body}}} {value:g} {ts}"


def prom_openmetrics(series: Sequence[PromSeries], *, now: int, span: int = 3 * 3600, step: int = 60) -> str:
    """OpenMetrics text: each series from `now - span` to `now` every `step` seconds; ends with # EOF."""
    lines = []
    for s in sorted(series, key=lambda s: (s.name, sorted(s.labels.items()))):
        for i, ts in enumerate(range(now - span, now + 1, step)):
            lines.append(s.line(s.per_minute * i * step / 60, ts))
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def prom_backfill(text: str, *, data_dir: Path, work: Path) -> None:
    source = work / "history.om"
    source.write_text(text, "utf-8")
    data_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["promtool", "tsdb", "create-blocks-from", "openmetrics", str(source), str(data_dir)],
        check=True,
        capture_output=True,
    )


# -- Prometheus --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PromServer:
    url: str
    targets_file: Path  # file_sd targets for the job "live", scraped every second

    def set_targets(self, targets: Sequence[str], *, metrics_path: str = "/stats/prometheus") -> None:
        self.set_target_groups([(targets, {"__metrics_path__": metrics_path})])

    def set_target_groups(self, groups: Sequence[tuple[Sequence[str], Mapping[str, str]]]) -> None:
        """Targets with labels Prometheus adds to their series, per group (as static_configs' `labels`)."""
        tmp = self.targets_file.with_suffix(".tmp")
        tmp.write_text(json.dumps([{"targets": list(t), "labels": dict(labels)} for t, labels in groups]))
        tmp.replace(self.targets_file)


@contextlib.contextmanager
def prom_server(work: Path, *, data_dir: Path) -> Iterator[PromServer]:
    """A real Prometheus on loopback, ready when this yields."""
    targets = work / "targets.json"
    targets.write_text("[]")
    config = work / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: live\n"
        "    file_sd_configs: [{files: ['" + str(targets) + "'], refresh_interval: 1s}]\n"
    )
    port = net.free_port()
    args = [
        "prometheus",
        f"--config.file={config}",
        f"--storage.tsdb.path={data_dir}",
        "--storage.tsdb.retention.time=3650d",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    url = f"http://127.0.0.1:{port}"
    log = work / "prometheus.log"
    process = procs.spawn(args, log=log)
    try:
        up = lambda: httpx.get(f"{url}/-/ready", timeout=2).status_code == 200  # noqa: E731
        procs.ready(
            process, "Prometheus /-/ready", up, log=log, deadline=60, every=0.1, tolerate=(httpx.HTTPError, OSError)
        )
        yield PromServer(url, targets)
    finally:
        procs.stop(process)


@contextlib.contextmanager
def backfilled(work: Path, openmetrics: str) -> Iterator[PromServer]:
    """A real Prometheus over `openmetrics` (a history, backfilled by promtool into `work`/data), ready
    when this yields."""
    prom_backfill(openmetrics, data_dir=work / "data", work=work)
    with prom_server(work, data_dir=work / "data") as server:
        yield server
