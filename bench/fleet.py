"""A fleet at scale: controllers (processes on this machine) sharing the rollouts of many repositories
through shards on a real three-member etcd cluster, with the file router and a real Prometheus.

Run from the repository root: `python bench/fleet.py [--rollouts 10000] [--repositories 20]
[--controllers 4] [--shards 64] [--ttl 10] [--interval 5]`. It takes about ten minutes on 2 cores.

The topology: `--repositories` bare git remotes (one is home, whose controller.yaml names the fleet and
lists the others), each with its share of the rollouts (two gate templates each, manual promotion),
the file router with its write log, the local forge; `--controllers` `rollout run` processes, each
started with the one command a user runs, each with its own workdir. The run has two phases in one
fleet: a tenth of the rollouts first, then all of them, so that the Prometheus figures at both sizes
are measured in the same run.

Figures:
- steady pass time, per member and per shard it owns (`rollout_fleet_pass_seconds`, from each member's
  /metrics), once every route is live;
- takeover: a member killed with SIGKILL, until etcd shows every shard held by the survivors (target:
  within the lease TTL plus one pass), and until their next pass has served those shards;
- double writes, from every router's write log (target 0; stale writes the routers' fence refused are
  counted apart);
- Prometheus queries per pass, from Prometheus's own request counter (target: the same at both sizes:
  one query per gate template and repository, whatever the rollouts per template).
- GitHub's budget (`--github-rollouts`, one repository on one identity, the GitHub stand-in counting
  what it would charge, a real Prometheus with backfilled eval history so that every rollout passes
  its gates): the requests a quiet tick costs, and what one promotion costs (all requests, and the
  content-creating ones), from which the hourly cost at one promotion per rollout per hour follows,
  beside GitHub's limits.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # a script: import the checkout it sits in

from bench.reconcile_scale import ROLLOUT, backfill, git
from controller import prometheus, reconcile, repo, settings, spec
from controller.coordination import etcd
from controller.forge import github
from controller.routers import base
from controller.routers import file as file_router
from tests.helpers import etcd_cluster, net, procs, prom, write_log
from tests.helpers import github_standin as standin_mod
from tests.helpers.gitops import remote_files
from tests.helpers.write_log import CONFIG

FLEET = """fleet:
  name: bench
  shards: {shards}
  coordination: {{type: etcd, endpoints: [{endpoints}], prefix: /bench, ttl: {ttl}s}}
  repositories:
{repositories}
"""


COMMITTER = {"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@x", "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@x"}


@dataclass
class Repo:
    name: str
    remote: Path
    seed: Path
    state: Path  # its router state, under the fleet's state dir

    def add(self, names: range, config: str | None = None) -> None:
        rollouts = self.seed / "rollouts"
        rollouts.mkdir(parents=True, exist_ok=True)
        if config is not None:
            (rollouts / "controller.yaml").write_text(config)
        for i in names:
            d = rollouts / f"bot-{i:04d}"
            (d / "prompts").mkdir(parents=True, exist_ok=True)
            (d / "rollout.yaml").write_text(ROLLOUT.format(name=f"bot-{i:04d}"))
            (d / "prompts/v1.md").write_text(f"You are helpful, bot {i}.\n")
            (d / "prompts/v2.md").write_text(f"You are helpful and brief, bot {i}.\n")
        git("add", "-A", cwd=self.seed)
        # dated three hours back, both phases: every canary is older than its analysis interval, so every
        # gate measures over the same window and the query count shows what the rollouts add, not ages
        when = f"@{int(time.time()) - 3 * 3600} +0000"
        subprocess.run(
            ["git", "commit", "-q", "-m", f"rollouts {names.start}-{names.stop - 1}"],
            cwd=self.seed,
            check=True,
            env={**COMMITTER, "GIT_AUTHOR_DATE": when, "GIT_COMMITTER_DATE": when, "PATH": os.environ["PATH"]},
        )
        git("push", "-q", str(self.remote), "HEAD:main", cwd=self.seed)

    def live(self) -> int:
        import json

        path = self.state / "routes.json"
        try:
            return len(json.loads(path.read_text())["routes"])
        except (OSError, ValueError, KeyError):
            return 0


@dataclass
class Member:
    name: str
    process: subprocess.Popen[bytes]
    metrics: str
    log: Path

    def gauge(self, metric: str) -> float:
        text = httpx.get(self.metrics, timeout=5).text
        found = re.search(rf"^{metric}(?:_total)? ([0-9.e+-]+)$", text, re.M)
        return float(found.group(1)) if found else 0.0


def prometheus_queries(url: str) -> float:
    """Queries Prometheus has answered, by its own counter (instant and range)."""
    text = httpx.get(f"{url}/metrics", timeout=5).text
    pattern = r'^prometheus_http_requests_total\{[^}]*handler="/api/v1/query(?:_range)?"[^}]*\} ([0-9.e+-]+)$'
    return sum(float(v) for v in re.findall(pattern, text, re.M))


def wait(what: str, check: Callable[[], object], members: list[Member], *, deadline: float = 1800) -> None:
    try:
        net.wait_for(what, check, deadline=deadline, every=0.25)
    except TimeoutError:
        tails = "\n".join(f"--- {m.name}\n{procs.tail(m.log)}" for m in members)
        raise SystemExit(f"{what}: not within {deadline:.0f}s\n{tails}") from None


def alive_or_fail(members: list[Member]) -> None:
    for m in members:
        if m.process.poll() is not None:
            raise SystemExit(f"{m.name} exited with {m.process.returncode}:\n{procs.tail(m.log)}")


def steady(members: list[Member], prom_url: str, passes: int = 3) -> tuple[float, float, float]:
    """Let every member complete `passes` more passes: the mean pass time, the mean shards owned, and
    Prometheus queries per pass of the whole fleet (each member's pass counted once)."""
    start = {m.name: m.gauge("rollout_fleet_passes") for m in members}
    queries = prometheus_queries(prom_url)
    times: list[float] = []
    shards: list[float] = []

    def done() -> bool:
        alive_or_fail(members)
        counts = {m.name: m.gauge("rollout_fleet_passes") - start[m.name] for m in members}
        return all(c >= passes for c in counts.values())

    seen: dict[str, float] = dict(start)
    end = time.monotonic() + 1800
    while not done():
        if time.monotonic() > end:
            raise SystemExit("steady passes: not within 1800 s")
        for m in members:
            count = m.gauge("rollout_fleet_passes")
            if count > seen[m.name]:
                seen[m.name] = count
                times.append(m.gauge("rollout_fleet_pass_seconds"))
                shards.append(m.gauge("rollout_fleet_shards_owned"))
        time.sleep(0.2)
    total = sum(m.gauge("rollout_fleet_passes") - start[m.name] for m in members)
    per_pass = (prometheus_queries(prom_url) - queries) / (total / len(members))
    return sum(times) / len(times), sum(shards) / len(shards), per_pass


GH_TOKEN = "ghs_fleetbench0123456789abcdefghijk"
NO_LIMIT = 10**9  # the GitHub section counts what each request would cost; pacing is tested elsewhere


def github_figures(rollouts: int, interval: float, per_identity: int) -> list[tuple[str, str, str]]:
    """One repository of `rollouts` on one identity, through the real GitHub forge and reconciler: the
    stand-in's count of a promotion tick and of a quiet one, and the hourly cost they make for
    `per_identity` rollouts on one identity, each promoted once an hour."""
    now = int(time.time()) // 60 * 60
    with tempfile.TemporaryDirectory(prefix="fleet-github-") as tmp:
        work = Path(tmp)
        data = backfill(work, rollouts, now)
        with prom.prom_server(work, data_dir=data) as server:
            r = Repo("github", work / "remote.git", work / "seed", work / "state")
            subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(r.remote)], check=True)
            subprocess.run(["git", "init", "-q", "-b", "main", str(r.seed)], check=True)
            r.add(range(rollouts), CONFIG.format(prom=server.url, prefix=""))
            limits = standin_mod.Limits(
                total_per_hour=NO_LIMIT, content_per_minute=NO_LIMIT, content_per_hour=NO_LIMIT, mutation_interval=0.0
            )
            hub = standin_mod.StandIn(token=GH_TOKEN, files=remote_files(r.remote), limits=limits).start()
            try:
                spend = settings.GithubBudget(
                    total_per_hour=NO_LIMIT, content_per_minute=NO_LIMIT, content_per_hour=NO_LIMIT, mutation_interval=0
                )
                forge = github.GithubForge("acme/rollouts", token=GH_TOKEN, api_url=hub.api_url, limits=spend)
                metrics = prometheus.Prometheus(server.url, timeout=timedelta(seconds=30))

                def routers(name: str, cfg: spec.RouterConfig, routes: object, cohorts: object) -> base.Router:
                    return file_router.FileRouter(name, r.state / "routes.json")

                workspace = repo.Workspace.open(str(r.remote), work / "clone")
                c = reconcile.Controller(workspace, forge, routers, metrics, holder="bench")
                ticks: list[tuple[int, int, int, int]] = []  # advances, reads, mutations, 304s
                for _ in range(4):
                    before = dict(hub.counts[GH_TOKEN])
                    tick = c.reconcile_once()
                    after = hub.counts[GH_TOKEN]
                    delta = {k: after.get(k, 0) - before.get(k, 0) for k in ("read", "mutation", "not_modified")}
                    advances = sum(
                        1 for o in tick.outcomes if o.decision and o.decision.kind.value == "Advance" and o.pr
                    )
                    ticks.append((advances, delta["read"], delta["mutation"], delta["not_modified"]))
                violations = len(hub.violations)
            finally:
                hub.stop()
    promoting = max(ticks, key=lambda t: t[0])
    quiet = ticks[-1]
    promotions = max(promoting[0], 1)
    per_read, per_write = promoting[1] / promotions, promoting[2] / promotions
    ticks_per_hour = 3600 / interval
    hourly = ticks_per_hour * (quiet[1] + quiet[2]) + per_identity * (per_read + per_write)
    content = per_identity * per_write
    limits_now = settings.GithubBudget()
    carried = min(
        limits_now.content_per_hour / max(per_write, 1e-9), limits_now.total_per_hour / (per_read + per_write)
    )
    return [
        (f"GitHub: promotions in one tick, {rollouts} rollouts", f"{promoting[0]}", f"{violations} OpenAPI violations"),
        ("GitHub: requests per promotion (content-creating)", f"{per_read + per_write:.1f} ({per_write:.1f})", ""),
        ("GitHub: counted requests of a quiet tick (304s, free)", f"{quiet[1] + quiet[2]} ({quiet[3]})", "0"),
        (
            f"GitHub: requests an hour, {per_identity} rollouts promoted hourly, ticks {interval:g}s",
            f"{hourly:.0f}",
            f"<= {limits_now.total_per_hour} per identity",
        ),
        (
            "GitHub: content-creating requests an hour, the same",
            f"{content:.0f}",
            f"<= {limits_now.content_per_hour}: {'within' if content <= limits_now.content_per_hour else 'over, queued'}",
        ),
        ("GitHub: promotions an hour one identity carries", f"{carried:.0f}", "the budget queues the rest"),
    ]


def fleet_figures(args: argparse.Namespace) -> tuple[list[tuple[str, str, str]], int]:
    """The fleet on etcd: pass times, takeover, double writes, Prometheus queries."""
    per_repo = args.rollouts // args.repositories
    first = max(1, per_repo // 10)
    print(
        f"# fleet  {datetime.now(UTC):%Y-%m-%d %H:%M}Z  {args.rollouts} rollouts over {args.repositories} "
        f"repositories, {args.controllers} controllers, {args.shards} shards, etcd 3 members, TTL {args.ttl}s, "
        f"interval {args.interval}s, {os.cpu_count()} cores"
    )
    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as tmp:
        work = Path(tmp)
        state = work / "state"
        (work / "prom").mkdir()
        with (
            etcd_cluster.cluster(work / "etcd") as cluster,
            prom.prom_server(work / "prom", data_dir=work / "prom" / "data") as prometheus,
        ):
            repos = [
                Repo(
                    "home" if i == 0 else f"team-{i:02d}",
                    work / f"repo-{i:02d}.git",
                    work / f"seed-{i:02d}",
                    state if i == 0 else state / f"team-{i:02d}",
                )
                for i in range(args.repositories)
            ]
            for r in repos:
                subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(r.remote)], check=True)
                subprocess.run(["git", "init", "-q", "-b", "main", str(r.seed)], check=True)
            listed = "\n".join(f'    - {{name: {r.name}, remote: "{r.remote}"}}' for r in repos[1:])
            endpoints = ", ".join(f'"{e}"' for e in cluster.endpoints)
            fleet = FLEET.format(shards=args.shards, endpoints=endpoints, ttl=args.ttl, repositories=listed)
            started = time.monotonic()
            for r in repos:
                config = CONFIG.format(prom=prometheus.url, prefix="" if r.name == "home" else f"{r.name}/")
                r.add(range(first), config + fleet if r.name == "home" else config)
            print(f"phase 1: {first * len(repos)} rollouts committed in {time.monotonic() - started:.1f} s")

            env = {**os.environ, "ROLLOUT_STATE_DIR": str(state)}
            members: list[Member] = []
            try:
                for i in range(args.controllers):
                    port = net.free_port()
                    argv = [sys.executable, "-m", "controller", "run", "--remote", str(repos[0].remote)]
                    argv += ["--workdir", str(work / f"member-{i}"), "--interval", f"{args.interval}s"]
                    argv += ["--metrics-port", str(port)]
                    log = work / f"member-{i}.log"
                    process = procs.spawn(argv, log=log, env=env)
                    members.append(Member(f"member-{i}", process, f"http://127.0.0.1:{port}/metrics", log))
                store = etcd.EtcdStore(cluster.endpoints, prefix="/bench", fleet="bench", identity="bench", ttl=2)

                def balanced(group: list[Member]) -> bool:
                    alive_or_fail(group)
                    view = store.view()
                    counts = [sum(1 for h in view.shards.values() if h.identity == m) for m in view.members]
                    most = -(-args.shards // len(group))  # the balance's target: ceil(shards / members)
                    return len(view.members) == len(group) and len(view.shards) == args.shards and max(counts) <= most

                def all_live(expected: int) -> Callable[[], bool]:
                    return lambda: (alive_or_fail(members), sum(r.live() for r in repos) >= expected)[1]

                wait("the members to share the shards", lambda: balanced(members), members)
                wait("every phase-1 route live", all_live(first * len(repos)), members)
                small = steady(members, prometheus.url)

                started = time.monotonic()
                for r in repos:
                    r.add(range(first, per_repo))
                total = per_repo * len(repos)
                print(
                    f"phase 2: {total - first * len(repos)} more rollouts committed in {time.monotonic() - started:.1f} s"
                )
                started = time.monotonic()
                wait("every route live", all_live(total), members)
                cold = time.monotonic() - started
                big = steady(members, prometheus.url)

                victim = members[-1]
                lost = {s for s, h in store.view().shards.items() if f"-{victim.process.pid}-" in h.identity}
                killed = time.monotonic()
                victim.process.send_signal(signal.SIGKILL)
                victim.process.wait(timeout=30)
                survivors = members[:-1]
                wait("the survivors to hold every shard", lambda: balanced(survivors), survivors)
                claimed = time.monotonic() - killed
                passes = {m.name: m.gauge("rollout_fleet_passes") for m in survivors}
                wait(
                    "a pass of every survivor over its new shards",
                    lambda: all(m.gauge("rollout_fleet_passes") >= passes[m.name] + 1 for m in survivors),
                    survivors,
                )
                served = time.monotonic() - killed

                tallies = [write_log.tally(write_log.records(r.state / "writes.jsonl")) for r in repos]
            finally:
                for m in members:
                    if m.process.poll() is None:
                        procs.stop(m.process)

    double = sum(t.double for t in tallies)
    refused = sum(t.refused for t in tallies)
    writes = sum(t.writes for t in tallies)
    templates = 2
    rows = [
        (f"pass time per member, {first * len(repos)} rollouts (s)", f"{small[0]:.2f}", ""),
        (f"pass time per member, {total} rollouts (s)", f"{big[0]:.2f}", ""),
        (
            f"pass time per shard owned, {total} rollouts (ms)",
            f"{1000 * big[0] / max(big[1], 1):.0f}",
            f"{big[1]:.0f} shards a member",
        ),
        (f"first pass over {total - first * len(repos)} new rollouts (s)", f"{cold:.1f}", ""),
        (
            f"takeover: {len(lost)} shards claimed by the survivors (s)",
            f"{claimed:.1f}",
            f"<= TTL + a pass = {args.ttl + big[0] + args.interval:.1f}",
        ),
        ("takeover: the survivors' next pass done (s)", f"{served:.1f}", ""),
        ("router writes, all repositories", f"{writes}", ""),
        ("double writes (write logs)", f"{double}", "0"),
        ("stale writes refused by the routers' fence", f"{refused}", ""),
        (
            f"Prometheus queries per fleet pass, {first * len(repos)} rollouts",
            f"{small[2]:.0f}",
            f"~ {templates} templates x {len(repos)} repositories x {args.controllers} members",
        ),
        (
            f"Prometheus queries per fleet pass, {total} rollouts",
            f"{big[2]:.0f}",
            f"the same, whatever the rollouts ({big[2] / max(small[2], 1):.2f}x)",
        ),
    ]
    return rows, double


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rollouts", type=int, default=10_000)
    p.add_argument("--repositories", type=int, default=20)
    p.add_argument("--controllers", type=int, default=4)
    p.add_argument("--shards", type=int, default=64)
    p.add_argument("--ttl", type=int, default=10, help="the members' etcd lease, seconds")
    p.add_argument("--interval", type=int, default=5, help="the pause between a member's passes, seconds")
    p.add_argument("--github-rollouts", type=int, default=100, help="rollouts of the GitHub section's repository")
    p.add_argument("--github-interval", type=float, default=30, help="ticks of the hourly GitHub figure, seconds")
    p.add_argument("--only", choices=["fleet", "github"], help="one section only")
    args = p.parse_args()
    rows: list[tuple[str, str, str]] = []
    double = 0
    if args.only != "github":
        rows, double = fleet_figures(args)
    if args.only != "fleet":
        print(f"# GitHub: {args.github_rollouts} rollouts on one identity, a tick every {args.github_interval:g}s")
        rows += github_figures(args.github_rollouts, args.github_interval, args.rollouts // args.repositories)
    print()
    print(f"{'figure':<64} {'value':>12}  target")
    for name, value, target in rows:
        print(f"{name:<64} {value:>12}  {target}")
    return 1 if double else 0


if __name__ == "__main__":
    sys.exit(main())
