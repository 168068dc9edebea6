"""One reconcile tick at 10, 100 and 1000 rollouts: wall time, Prometheus requests, router calls, memory.

Run from the repository root: `python bench/reconcile_scale.py [--sizes 10,100,1000]`. Each size gets
a bare git remote with N rollouts, the local forge, the file router, and one real Prometheus (Debian
`prometheus`) with backfilled eval history for every route. Prometheus requests are counted with a
requests response hook, router calls with a counting wrapper around the real file router (`writes`: write
calls, one per router batch; `routes`: the routes they wrote). Three ticks:
`cold` (a new controller: every route is written), `steady` (the same controller again: nothing to
write), `restart` (a new controller with every cache emptied, as in a new process; routes already live). Peak memory is the Python heap
(tracemalloc) of a separate steady tick, so tracing does not slow the timed ones.
Target: 1000 rollouts under 2 s per tick; Prometheus requests bounded by gate templates, not rollouts.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # a script: import the checkout it sits in


from controller import load, prometheus, reconcile, repo, spec, traffic
from controller.forge import local as forge_local
from controller.routers import base
from controller.routers import file as file_router
from tests.helpers import prom

GATES = ("eval_pass_rate", "error_rate")  # two templates: Prometheus requests must stay at 2 per tick

CONFIG = """apiVersion: rollouts/v1
kind: ControllerConfig
routers:
  local: {{type: file, path: routes.json}}
prometheus: {{url: "{prom}"}}
forge: {{type: local}}
"""

ROLLOUT = """apiVersion: rollouts/v1
kind: Rollout
metadata:
  name: {name}
spec:
  router: local
  route: {name}-route
  stable: {{model: acme/chat-2025-01-01, prompt: prompts/v1.md}}
  canary: {{model: acme/chat-2025-01-01, prompt: prompts/v2.md}}
  steps:
    - {{shadow: 100, for: 1h, minSamples: 100}}
    - {{weight: 10, for: 1h}}
    - {{weight: 100}}
  analysis:
    interval: 10m
    gates:
      - {{use: eval_pass_rate, maxDrop: 2%, onFail: rollback}}
      - {{use: error_rate, max: 5%, onFail: rollback}}
  promotion: manual
"""


class CountingRouter:
    """The real file router; counts read calls and write calls (each a batch) and the routes written."""

    def __init__(self, real: file_router.FileRouter, calls: Counter[str]) -> None:
        self.real, self.calls, self.name, self.location = real, calls, real.name, real.location

    def read(self, routes: Sequence[str]) -> dict[str, base.Live]:
        self.calls["read"] += 1
        return self.real.read(routes)

    def write(self, states: Mapping[str, traffic.RouteState], fences: base.Fences | None = None) -> None:
        self.calls["write"] += 1
        self.calls["routes written"] += len(states)
        self.real.write(states, fences)


@dataclass(frozen=True)
class Row:
    size: int
    tick: str
    wall: float
    queries: int
    reads: int  # read calls: one per router in the decide pass, one per write batch read back
    writes: int  # write calls: one per router batch (and per split of a refused batch)
    routes: int  # routes those calls wrote
    errors: int
    decisions: str
    peak_mb: float = 0.0


def git(*args: str, cwd: Path) -> None:
    env = {"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@x", "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@x"}
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, env={**env, "PATH": "/usr/bin:/bin"})


def make_remote(work: Path, size: int, prom_url: str) -> Path:
    remote = work / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    seed = work / "seed"
    subprocess.run(["git", "init", "-q", "-b", "main", str(seed)], check=True)
    (seed / "rollouts").mkdir()
    (seed / "rollouts/controller.yaml").write_text(CONFIG.format(prom=prom_url))
    for i in range(size):
        d = seed / "rollouts" / f"bot-{i:04d}"
        (d / "prompts").mkdir(parents=True)
        (d / "rollout.yaml").write_text(ROLLOUT.format(name=f"bot-{i:04d}"))
        (d / "prompts/v1.md").write_text(f"You are helpful, bot {i}.\n")
        (d / "prompts/v2.md").write_text(f"You are helpful and brief, bot {i}.\n")
    git("add", "-A", cwd=seed)
    git("commit", "-q", "-m", f"{size} rollouts", cwd=seed)
    git("push", "-q", str(remote), "HEAD:main", cwd=seed)
    return remote


def backfill(work: Path, size: int, now: int) -> Path:
    series = []
    for i in range(size):
        for variant in ("stable", "canary"):
            labels = {"route": f"bot-{i:04d}-route", "variant": variant}
            series.append(prom.PromSeries("llm_eval_results_total", {**labels, "result": "pass"}, 180))
            series.append(prom.PromSeries("llm_eval_results_total", {**labels, "result": "fail"}, 20))
            series.append(prom.PromSeries("llm_requests_total", {**labels, "code": "200"}, 200))
    data = work / "data"
    prom.prom_backfill(prom.prom_openmetrics(series, now=now, span=1800, step=60), data_dir=data, work=work)
    return data


def controller(remote: Path, work: Path, prom_url: str, queries: list[str], calls: Counter[str]) -> Any:
    session = prometheus.Session()
    session.hooks["response"].append(lambda r, *args, **kwargs: queries.append(str(r.request.url)))
    metrics = prometheus.Prometheus(prom_url, session=session, timeout=timedelta(seconds=30))

    def routers(name: str, cfg: spec.RouterConfig, routes: object, cohorts: object) -> base.Router:
        assert isinstance(cfg, spec.FileRouterConfig)
        return CountingRouter(file_router.FileRouter(name, work / "state" / cfg.path), calls)

    ws = repo.Workspace.open(str(remote), work / f"clone-{time.monotonic_ns()}")
    return reconcile.Controller(ws, forge_local.LocalForge(remote), routers, metrics, holder="bench")


def one(c: Any, size: int, name: str, queries: list[str], calls: Counter[str], *, trace: bool = False) -> Row:
    queries.clear()
    calls.clear()
    if trace:
        tracemalloc.start()
    started = time.perf_counter()
    tick = c.reconcile_once()
    wall = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1] / 2**20 if trace else 0.0
    if trace:
        tracemalloc.stop()
    kinds = Counter(o.decision.kind.value if o.decision else "Error" for o in tick.outcomes)
    errors = sum(1 for o in tick.outcomes if o.error) + len(tick.problems) + bool(tick.skipped)
    return Row(
        size,
        name,
        wall,
        sum("/api/v1/query" in q for q in queries),
        calls["read"],
        calls["write"],
        calls["routes written"],
        errors,
        " ".join(f"{k}={v}" for k, v in sorted(kinds.items())),
        peak,
    )


def run(size: int) -> list[Row]:
    now = int(time.time()) // 60 * 60
    with tempfile.TemporaryDirectory(prefix=f"scale-{size}-") as tmp:
        work = Path(tmp)
        data = backfill(work, size, now)
        with prom.prom_server(work, data_dir=data) as server:
            remote = make_remote(work, size, server.url)
            queries: list[str] = []
            calls: Counter[str] = Counter()
            c = controller(remote, work, server.url, queries, calls)
            rows = [one(c, size, "cold", queries, calls), one(c, size, "steady", queries, calls)]
            load._PARSED.clear()  # a new process: no parse or blob cache either
            repo.clear_caches()
            fresh = controller(remote, work, server.url, queries, calls)
            rows.append(one(fresh, size, "restart", queries, calls))
            traced = one(c, size, "steady", queries, calls, trace=True)
            return [r if r.tick != "steady" else Row(**{**r.__dict__, "peak_mb": traced.peak_mb}) for r in rows]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000")
    args = parser.parse_args()
    print(f"# reconcile_scale  {datetime.now(UTC):%Y-%m-%d %H:%M}Z  gate templates per rollout: {len(GATES)}")
    header = f"{'rollouts':>8} {'tick':<8} {'wall s':>7} {'prom q':>6} {'reads':>6} {'writes':>6} {'routes':>6} {'errors':>6} "
    print(header + f"{'peak MB':>8}  decisions")
    ok = True
    for size in (int(s) for s in args.sizes.split(",")):
        for r in run(size):
            peak = f"{r.peak_mb:8.1f}" if r.peak_mb else f"{'':>8}"
            print(
                f"{r.size:>8} {r.tick:<8} {r.wall:>7.2f} {r.queries:>6} {r.reads:>6} {r.writes:>6} {r.routes:>6} {r.errors:>6} "
                f"{peak}  {r.decisions}",
                flush=True,
            )
            ok = ok and r.queries <= len(GATES) and r.errors == 0
            if size >= 1000 and r.wall >= 2.0:
                print(f"   target missed: {r.wall:.2f} s >= 2 s for {size} rollouts ({r.tick} tick)")
    print("prometheus queries bounded by gate templates:", "yes" if ok else "NO")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
