"""`rollout demo`: a real rollout, closed loop, on one machine, in under three minutes.

Called by the CLI only. It builds a throwaway GitOps repository (a bare remote and the controller's
clone) from the checkout's example rollout, starts two stand-in model servers (stable and canary,
`python -m controller.demo.model_server`), Envoy in front of them configured by `rollout render envoy`, Prometheus scraping Envoy and the model
servers every second, a traffic generator with three tenants, and the controller loop with the local
forge and an auto-approver that plays the reviewer. The scenario sets how the canary behaves once it
takes half the live traffic: `good` is promoted step by step through pull requests; `regression`,
`latency` and `errors` are rolled back in seconds, with a revert commit; so is `feedback`, whose canary
every machine metric finds fine and only its users' thumbs down catch. `cohorts` ramps by who: the
internal tenant gets the canary first, then the beta tier, whose requests alone the canary answers
worse; the gates catch it on beta, and the rollback takes the canary out of every cohort at once. Every process it starts is stopped
when it ends, on Ctrl-C too. With `manual`, nobody plays the reviewer: the demo prints the commands that
let the user review and merge each pull request from a second terminal, and runs until Ctrl-C.

The demo and its stand-ins (`model_server`, `loadgen`) are a package of their own that ships with the
controller: the controller's core never imports it, and it imports neither the CLI nor anything from
the checkout's tests/. `rollout demo` still runs from a checkout, for the example rollouts' files.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import git
import httpx

from controller import errors, load, plan, prometheus, proposals, reconcile, render, repo, settings, spec, traffic
from controller.demo import loadgen
from controller.forge import base as forge_base
from controller.forge import local as forge_local
from controller.routers import base
from controller.routers import factory as router_factory

ROUTE = "support-chat"
NAME = "support-bot"
STABLE_MODEL = "openai/gpt-4o-2024-08-06"
CANARY_MODEL = "openai/gpt-4o-2024-11-20"
TENANTS = {"free": 5.0, "pro": 3.0, "enterprise": 2.0}
RATE = 200.0  # requests per second through Envoy: what these 2-core machines sustain with room to spare
TICK = 1.0  # seconds between reconcile ticks
SCRAPE = 1.0  # seconds between Prometheus scrapes
INTERVAL = 2.0  # the rollout's analysis interval, seconds
DEADLINE = 300.0  # the whole demo, seconds: a good canary completes in about two minutes (its gates need a few hundred requests per tenant and step to pass on evidence)
REGRESS_AT = 50  # a bad canary starts to misbehave once it takes this much live traffic
RATING_SHARE = 0.5  # of answers their users rate: far more than real users do, so feedback gates decide in seconds
MANUAL_DEADLINE = 4 * 3600.0  # the driven demo (and its traffic) stops by itself after this many seconds

#: How the canary misbehaves once it takes live traffic, per scenario (stand-in behaviour fields).
SCENARIOS: dict[str, dict[str, Any]] = {
    "good": {},
    "regression": {"eval_pass": 0.55},  # 35 points fewer answers pass the online eval
    "latency": {"latency": 0.15, "jitter": 0.02},  # five times slower
    "errors": {"error_rate": 0.2},  # one answer in five is a 500
    "cohorts": {"eval_pass": 0.55},  # as `regression`, for the beta tier's requests only (`BETA`)
    "feedback": {"liked": 0.5},  # users rate down half its answers, stable's one in ten; nothing else changes
}
#: The `cohorts` scenario's tenants (the cohorts' values of tenant_tier, and everyone else's) and the tier
#: that alone sees its regression, once the canary serves it.
COHORT_TENANTS = {"internal": 2.0, "beta": 3.0, "free": 3.0, "pro": 2.0}
BETA = "beta"
STABLE_BEHAVIOUR = ["--latency", "0.03", "--jitter", "0.004", "--eval-pass", "0.9"]

ROLLOUT = f"""# yaml-language-server: $schema=../../schemas/rollout.schema.json
# The demo's rollout: the support bot's model upgrade, with its steps scaled down to seconds.
apiVersion: rollouts/v1
kind: Rollout
metadata:
  name: {NAME}
spec:
  router: edge
  route: {ROUTE}
  stable:
    model: {STABLE_MODEL}
    prompt: prompts/support-v3.md
    params: {{temperature: 0.2, max_tokens: 800}}
  canary:
    model: {CANARY_MODEL}
    prompt: prompts/support-v3.md
    params: {{temperature: 0.2, max_tokens: 800}}
  allowPairedChange: false
  steps:
    - {{shadow: 100, for: 16s, minSamples: 100}}
    - {{weight: 25, for: 16s, minSamples: 100}}
    - {{weight: 50, for: 16s, minSamples: 100}}
    - {{weight: 100}}
  analysis:
    interval: {int(INTERVAL)}s
    gates:
      - {{use: eval_pass_rate, maxDrop: 10%, onFail: rollback}}
      - {{use: error_rate, max: 5%, onFail: rollback}}
      - {{use: latency_p95, maxIncrease: 100%, max: 2s, onFail: rollback}}
      - {{use: cost_per_request, maxIncrease: 50%, onFail: pause}}
      - {{use: feedback_negative_rate, maxIncrease: 100%, onFail: rollback}}  # users' thumbs down
    segments: [tenant_tier]
  promotion: manual   # the demo's auto-approver plays the reviewer
  keepPreviousFor: 8s
"""

#: The `cohorts` scenario's rollout: internal users first, then beta tenants, then everyone.
COHORT_ROLLOUT = ROLLOUT.replace(
    """  steps:
    - {shadow: 100, for: 16s, minSamples: 100}
    - {weight: 25, for: 16s, minSamples: 100}
    - {weight: 50, for: 16s, minSamples: 100}
""",
    """  cohorts:                # tenant_tier is the header x-tenant-tier on Envoy, and the metric label
    - {name: internal, match: {tenant_tier: internal}}
    - {name: beta, match: {tenant_tier: beta}}
  steps:
    - {cohort: internal, weight: 100, for: 16s, minSamples: 100}
    - {cohort: beta, weight: 50, for: 16s, minSamples: 100}
    - {weight: 25, for: 16s, minSamples: 100}
""",
)


@dataclass(frozen=True)
class DemoRepo:
    remote: Path  # the bare repository that plays the remote
    clone: Path  # a working clone, as a user would have


def _git_env() -> dict[str, str]:
    who = {"GIT_AUTHOR_NAME": "demo user", "GIT_AUTHOR_EMAIL": "user@demo.local"}
    return {
        **os.environ,
        **who,
        "GIT_COMMITTER_NAME": who["GIT_AUTHOR_NAME"],
        "GIT_COMMITTER_EMAIL": who["GIT_AUTHOR_EMAIL"],
    }


def build(examples: Path, into: Path, *, config: str, rollout: str = ROLLOUT) -> DemoRepo:
    """A bare remote and a clone holding the demo rollout, the examples' prompts, and `config`."""
    remote, clone = into / "remote.git", into / "clone"
    git.Repo.init(remote, bare=True, initial_branch="main")
    (clone / "rollouts" / NAME).mkdir(parents=True)
    shutil.copytree(examples / "rollouts" / NAME / "prompts", clone / "rollouts" / NAME / "prompts")
    if (examples / "schemas").is_dir():
        shutil.copytree(examples / "schemas", clone / "schemas")
    (clone / load.CONFIG_FILE).write_text(config)
    (clone / "rollouts" / NAME / load.ROLLOUT_FILE).write_text(rollout)
    r = git.Repo.init(clone, initial_branch="main")
    r.git.add("-A")
    r.git.commit("-m", f"Roll out {CANARY_MODEL} for {NAME}", env=_git_env())
    r.create_remote("origin", str(remote))
    r.git.push("origin", "main:main", env=_git_env())
    return DemoRepo(remote, clone)


# -- processes -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, check: Callable[[], bool], *, deadline: float = 30.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        with contextlib.suppress(httpx.HTTPError, OSError, ValueError, KeyError):
            if check():
                return
        time.sleep(0.1)
    raise RuntimeError(f"gave up waiting for {what}")


@contextlib.contextmanager
def process(
    args: list[str], *, log: Path, cwd: Path | None = None, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A child process for the duration of the block, stopped by its own handle (in its own session,
    so a Ctrl-C in the terminal reaches only us, and we stop it)."""
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=env, start_new_session=True)
        try:
            yield proc
        finally:
            stop_child(proc)


def _exited(proc: subprocess.Popen[bytes], log: Path) -> bool:
    """False while `proc` runs; once it has exited, a RuntimeError with the end of its log, so that a
    child that could not start says why at once instead of being waited for."""
    if proc.poll() is None:
        return False
    tail = log.read_text("utf-8", "replace").strip().splitlines()[-5:]
    raise RuntimeError(f"the process logging to {log} exited with {proc.returncode}: {' | '.join(tail)}")


def stop_child(proc: subprocess.Popen[bytes], *, grace: float = 10.0) -> None:
    """Stop a child by its own handle: SIGTERM, then SIGKILL if it is still running after `grace` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def model_server_command(variant: str, *, port_file: Path, tenants: Iterable[str] = TENANTS) -> list[str]:
    """The command line of one stand-in model server: this interpreter running the module shipped in
    this package, so it imports the same `controller` the demo does, checkout or install alike."""
    return [
        sys.executable, "-m", "controller.demo.model_server", "--variant", variant, "--route", ROUTE,
        "--model", STABLE_MODEL if variant == traffic.STABLE else CANARY_MODEL,
        "--port", "0", "--port-file", str(port_file), "--segments", ",".join(tenants), *STABLE_BEHAVIOUR,
    ]  # fmt: skip


def _model_server(stack: contextlib.ExitStack, variant: str, *, work: Path, tenants: Iterable[str]) -> str:
    port_file = work / f"{variant}.port"
    args = model_server_command(variant, port_file=port_file, tenants=tenants)
    log = work / f"{variant}.log"
    proc = stack.enter_context(process(args, log=log, cwd=work))
    wait_for(f"the {variant} model server", lambda: port_file.exists() or _exited(proc, log), deadline=60)
    address = f"127.0.0.1:{int(port_file.read_text().strip())}"
    wait_for(f"the {variant} model server", lambda: httpx.get(f"http://{address}/healthz", timeout=2).is_success)
    return address


def _prometheus(stack: contextlib.ExitStack, targets: dict[str, list[str]], *, port: int, work: Path) -> str:
    jobs = "\n".join(
        f"  - job_name: {name}\n    metrics_path: {path}\n    static_configs: [{{targets: {json.dumps(hosts)}}}]"
        for name, (path, hosts) in {
            "envoy": ("/stats/prometheus", targets["envoy"]),
            "models": ("/metrics", targets["models"]),
        }.items()
    )
    (work / "prometheus.yml").write_text(
        f"global: {{scrape_interval: {int(SCRAPE)}s, evaluation_interval: {int(SCRAPE)}s}}\nscrape_configs:\n{jobs}\n"
    )
    args = [
        "prometheus", f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn",
    ]  # fmt: skip
    stack.enter_context(process(args, log=work / "prometheus.log"))
    url = f"http://127.0.0.1:{port}"

    def targets_up() -> bool:
        active = httpx.get(f"{url}/api/v1/targets", timeout=2).json()["data"]["activeTargets"]
        return len(active) == 3 and all(t["health"] == "up" for t in active)

    wait_for("Prometheus to scrape Envoy and the model servers", targets_up, deadline=60)
    return url


class EnvoyProcess:
    """Envoy started from `rollout render envoy` output. Its clusters come from the router's `cdsPath`,
    which the router rewrites when a completion changes which model a role serves: no restart."""

    def __init__(self, clone: Path, *, work: Path) -> None:
        self.clone, self.work = clone, work
        self.stack = contextlib.ExitStack()

    def start(self) -> None:
        result = load.load_repo(repo.WorkTree(self.clone))
        if result.config is None or result.problems:
            raise RuntimeError("the demo's rollouts are invalid:\n" + "\n".join(str(p) for p in result.problems))
        edge = result.config.routers["edge"]
        assert isinstance(edge, spec.EnvoyRouterConfig)
        state = settings.state_dir(result.config, env=os.environ, home=Path.home())
        rendered = render.envoy_bootstrap(result, "edge", edge, state=state)
        config = self.work / "envoy.yaml"
        config.write_text(rendered.text)
        args = ["envoy", "-c", str(config), "--disable-hot-restart", "--base-id", str(os.getpid() % 60000 + 1000),
                "--log-level", "warn"]  # fmt: skip
        self.stack.enter_context(process(args, log=self.work / "envoy.log"))

    def stop(self) -> None:
        self.stack.close()
        self.stack = contextlib.ExitStack()


# -- the run -------------------------------------------------------------------------------------


@dataclass
class Result:
    scenario: str
    repo: Path
    completed: bool = False
    rolled_back: bool = False
    regressed_at: float | None = None  # monotonic time the canary began to misbehave
    zero_at: float | None = None  # monotonic time the live canary weight was back at 0
    merged: list[str] = field(default_factory=list)  # PR titles merged, in order
    log: list[str] = field(default_factory=list)  # `git log --oneline` of main, newest first
    promoted_after_rollback: bool = False
    traffic: dict[str, Any] = field(default_factory=dict)  # the traffic generator's report
    stable_hosts: set[str] = field(default_factory=set)  # what Envoy's stable cluster serves at the end
    stopped: bool = False  # Ctrl-C ended it

    @property
    def rollback_seconds(self) -> float | None:
        if self.regressed_at is None or self.zero_at is None:
            return None
        return self.zero_at - self.regressed_at


class View:
    """What the demo shows while it runs: a live panel on a terminal, plain lines otherwise."""

    def __init__(self, out: TextIO, *, live: bool) -> None:
        self.out = out
        self.events: list[str] = []
        self.setup: list[str] = []
        self.hints: list[str] = []
        self.live = None
        self.started = time.monotonic()
        if live:
            from rich.console import Console
            from rich.live import Live

            self.live = Live(console=Console(file=out), refresh_per_second=4, transient=False)
            self.live.start()

    def event(self, text: str) -> None:
        line = f"[{time.monotonic() - self.started:5.1f}s] {text}"
        self.events.append(line)
        if self.live is None:
            self.out.write(line + "\n")
            self.out.flush()

    def hint(self, lines: list[str], *, setup: bool = False) -> None:
        """Commands for the user to type: printed as they come, or kept below the live panel (the
        `setup` ones for good, the others until the next)."""
        if setup:
            self.setup = lines
        else:
            self.hints = lines
        if self.live is None:
            self.out.write("".join(f"    {line}\n" for line in lines))
            self.out.flush()

    def show(self, outcome: reconcile.Outcome | None, loaded: load.LoadedRollout | None) -> None:
        if self.live is None or outcome is None or loaded is None:
            return
        self.live.update(_panel(outcome, loaded, self.events[-12:], self.setup + self.hints))

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()


def _panel(outcome: reconcile.Outcome, loaded: load.LoadedRollout, events: list[str], hints: list[str]) -> Any:
    from rich.console import Group
    from rich.panel import Panel
    from rich.progress_bar import ProgressBar
    from rich.table import Table

    s = loaded.rollout.spec
    step = plan.current_step(loaded)
    head = Table.grid(padding=(0, 2))
    live = outcome.live.describe() if outcome.live else "absent"
    head.add_row("rollout", f"{NAME}  ({s.stable.model} → {s.canary.model if s.canary else '-'})")
    head.add_row("step", f"{step + 1}/{len(s.steps)}: {s.steps[step].describe()}  [{outcome.phase or 'no canary'}]")
    head.add_row("live", live)
    decision = outcome.decision
    head.add_row("decision", f"{decision.kind.value}: {decision.reason}" if decision else f"error: {outcome.error}")
    parts: list[Any] = [head]
    duration = s.steps[step].for_
    if duration and outcome.step_since:
        done = (datetime.now(UTC) - outcome.step_since).total_seconds()
        parts.append(
            ProgressBar(total=duration.total_seconds(), completed=min(done, duration.total_seconds()), width=50)
        )
    gates_table = Table("gate", "stable", "canary", "n (canary)", "verdict", box=None)
    for e in outcome.evidence:
        counted = [r for r in e.segments if r.counted] or list(e.segments)
        st = [r.stable.value for r in counted if r.stable.value is not None]
        ca = [r.canary.value for r in counted if r.canary.value is not None]
        n = sum(r.canary.samples or 0 for r in counted)
        gates_table.add_row(
            e.name,
            f"{sum(st) / len(st):.3f}" if st else "-",
            f"{sum(ca) / len(ca):.3f}" if ca else "-",
            f"{n:.0f}",
            str(e.verdict),
        )
    parts += [gates_table, "\n".join(events)]
    if hints:
        parts.append(Panel("\n".join(hints), title="in a second terminal"))
    return Panel(Group(*parts), title="rollout demo")


def run(
    scenario: str, *, checkout: Path, out: TextIO, live_view: bool = False, keep: bool = False, manual: bool = False
) -> Result:
    """Run the demo end to end; returns what happened. Raises on a broken environment. With `manual`,
    the user reviews and merges the pull requests, and it runs until Ctrl-C (or `MANUAL_DEADLINE`)."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; known: {', '.join(SCENARIOS)}")
    for tool in ("envoy", "prometheus"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"`{tool}` is not on PATH; run `bash .ci/demo`, which installs it")
    work = Path(tempfile.mkdtemp(prefix="rollout-demo-"))
    result = Result(scenario, work / "remote.git")
    view = View(out, live=live_view)
    terminated = _terminate_cleanly()
    try:
        with contextlib.ExitStack() as stack:
            _run(stack, scenario, checkout=checkout, work=work, result=result, view=view, manual=manual)
    finally:
        terminated()
        view.close()
        out.write("\n".join(view.events[-3:]) + "\n" if live_view else "")
        if result.log:
            out.write(f"\n$ git log --oneline main   (in {result.repo})\n" + "\n".join(result.log) + "\n")
        out.write(
            f"\nLook around: git -C {result.repo} log --stat main; git -C {result.repo} show refs/rollout-forge/db:pulls/000001.json\n"
        )
        if not keep:
            for sub in ("tsdb",):
                shutil.rmtree(work / sub, ignore_errors=True)
    return result


def _terminate_cleanly() -> Callable[[], None]:
    """Until the returned function is called, SIGTERM unwinds the demo like Ctrl-C does, so Envoy,
    Prometheus and the model servers are stopped rather than left running. (Only the main thread can
    take signals; elsewhere this does nothing.)"""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def terminate(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, terminate)

    def restore() -> None:
        signal.signal(signal.SIGTERM, previous)

    return restore


def _run(
    stack: contextlib.ExitStack, scenario: str, *, checkout: Path, work: Path, result: Result, view: View, manual: bool
) -> None:
    cohorts = scenario == "cohorts"
    tenants = COHORT_TENANTS if cohorts else TENANTS
    stable = _model_server(stack, traffic.STABLE, work=work, tenants=tenants)
    canary = _model_server(stack, traffic.CANARY, work=work, tenants=tenants)
    listen, admin = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    prom_port = free_port()
    config = (
        "# yaml-language-server: $schema=../schemas/controller.schema.json\n"
        "apiVersion: rollouts/v1\nkind: ControllerConfig\nrouters:\n"
        f"  edge:\n    type: envoy\n    admin: http://{admin}\n    listen: {listen}\n"
        f"    cdsPath: {work / 'envoy-clusters.json'}\n"
        f"    upstreams:\n      {STABLE_MODEL}: {stable}\n      {CANARY_MODEL}: {canary}\n"
        f"prometheus: {{url: 'http://127.0.0.1:{prom_port}'}}\nforge: {{type: local}}\n"
        f"stateDir: {work}\n"
    )
    made = build(checkout, work, config=config, rollout=COHORT_ROLLOUT if cohorts else ROLLOUT)
    view.event(f"GitOps repository: {made.remote} (a clone in {made.clone})")
    edge = EnvoyProcess(made.clone, work=work)
    edge.start()
    stack.callback(edge.stop)
    wait_for("Envoy", lambda: httpx.get(f"http://{admin}/ready", timeout=2).is_success)
    view.event(f"Envoy on {listen} (admin {admin}), rendered by `rollout render envoy`, clusters from its cdsPath")
    prom_url = _prometheus(stack, {"envoy": [admin], "models": [stable, canary]}, port=prom_port, work=work)
    view.event(f"Prometheus on {prom_url}, scraping Envoy and both model servers every second")

    load_gen = loadgen.Traffic(
        loadgen.Plan(
            url=f"http://{listen}/{ROUTE}/v1",
            rate=RATE,
            max_requests=10**7,
            duration=(MANUAL_DEADLINE if manual else DEADLINE) + 30,
            tenants=tenants,
            concurrency=32,
            feedback={traffic.STABLE: f"http://{stable}/v1/feedback", traffic.CANARY: f"http://{canary}/v1/feedback"},
            rating_share=RATING_SHARE,
        )
    ).start()
    stack.callback(load_gen.stop)
    view.event(
        f"traffic: {RATE:.0f} requests/s from tenants {', '.join(tenants)}; users rate {RATING_SHARE:.0%} of the "
        "answers they get, thumbs up or down, sent to the answering variant's /v1/feedback"
    )

    ws = repo.Workspace.open(str(made.remote), work / "controller")
    metrics = prometheus.Prometheus(prom_url)
    stack.callback(metrics.close)
    forge = forge_local.LocalForge(made.remote)
    desired = load.load_repo(ws.tree())
    assert desired.config is not None
    state = settings.state_dir(desired.config, env=os.environ, home=Path.home())
    routes = {ROUTE: NAME}

    def routers(name: str, cfg: spec.RouterConfig, _: Any, cohorts: Mapping[str, Sequence[str]]) -> base.Router:
        return router_factory.build(name, cfg, root=state, routes=routes, cohorts=cohorts, env=os.environ)

    controller = reconcile.Controller(ws, forge, routers, metrics, holder="demo")
    router = routers("edge", desired.config.routers["edge"], routes, load.rollout_cohorts(desired, "edge"))

    if manual:
        view.event("the controller opens pull requests and waits for you; in a second terminal, first:")
        view.hint(second_terminal(made.remote), setup=True)
    _loop(controller, forge, router, scenario, canary=canary, result=result, view=view, manual=manual)
    main = git.Repo(made.remote)
    result.log = [f"{c.hexsha[:7]} {c.summary!s}" for c in main.iter_commits("main", first_parent=True)]
    result.traffic = load_gen.report().as_json()
    clusters = httpx.get(f"http://{admin}/clusters", params={"format": "json"}, timeout=5).json()
    result.stable_hosts = {
        f"{h['address']['socket_address']['address']}:{h['address']['socket_address']['port_value']}"
        for c in clusters.get("cluster_statuses", [])
        if c["name"] == spec.cluster_name(NAME, traffic.STABLE)
        for h in c.get("host_statuses", [])
    }
    which = {stable: STABLE_MODEL, canary: CANARY_MODEL}
    view.event(
        f"Envoy, never restarted, sends {spec.cluster_name(NAME, traffic.STABLE)} to "
        + ", ".join(f"{h} ({which.get(h, 'unknown')})" for h in sorted(result.stable_hosts))
    )
    view.event(f"traffic report: {json.dumps(result.traffic)}")


def _loop(
    controller: reconcile.Controller,
    forge: forge_local.LocalForge,
    router: base.Router,
    scenario: str,
    *,
    canary: str,
    result: Result,
    view: View,
    manual: bool,
) -> None:
    end = time.monotonic() + (MANUAL_DEADLINE if manual else DEADLINE)
    seen_prs: set[tuple[int, str]] = set()
    announced: dict[int, forge_base.PRState] = {}
    last_said: list[str] = []
    stopped = {"now": False}
    previous = signal.signal(signal.SIGINT, lambda *_: stopped.__setitem__("now", True))
    quiet_ticks = 0
    try:
        while time.monotonic() < end and not stopped["now"]:
            tick = controller.reconcile_once()
            outcome = next((o for o in tick.outcomes if o.rollout == NAME), None)
            loaded = load.load_repo(controller.workspace.tree()).rollout(NAME)
            said = _said(outcome)
            if _gist(said) != _gist(last_said):  # said once while it repeats (a PR waits; counts grow)
                for line in said:
                    view.event(line)
                last_said = said
            view.show(outcome, loaded)
            live = router.read([ROUTE])[ROUTE]
            if isinstance(live, errors.RouterError):
                raise live
            if scenario != "good" and result.regressed_at is None and _regresses(scenario, live):
                where = "?segment=" + BETA if scenario == "cohorts" else ""
                httpx.post(
                    f"http://{canary}/admin/behaviour{where}", json=SCENARIOS[scenario], timeout=5
                ).raise_for_status()
                result.regressed_at = time.monotonic()
                whom = f" for the {BETA} tier only" if where else ""
                view.event(f"the canary now misbehaves{whom} ({scenario}: {json.dumps(SCENARIOS[scenario])})")
            if result.regressed_at is not None and result.zero_at is None and live and traffic.exposure_free(live):
                result.zero_at = time.monotonic()
                view.event(
                    f"live canary weight back at 0 in every cohort, {result.rollback_seconds:.1f}s after the "
                    "regression began"
                )
            if manual:
                _announce(forge, announced, view)
            else:
                _review(forge, seen_prs, result, view)
            if (
                result.rolled_back
                and outcome
                and outcome.decision
                and outcome.decision.kind in (plan.Kind.ADVANCE, plan.Kind.COMPLETE)
            ):
                result.promoted_after_rollback = True
            done = loaded is not None and loaded.rollout.spec.canary is None and loaded.rollout.spec.previous is None
            rolled = loaded is not None and plan.rolled_back(loaded)
            if done or rolled:
                quiet_ticks += 1
                result.completed = done
                if manual and quiet_ticks == 1:
                    result.rolled_back = rolled
                    view.event(
                        f"the rollout {'completed' if done else 'was rolled back'}; everything keeps running so you "
                        "can look around (`rollout status`, Prometheus, the repository); Ctrl-C stops it all"
                    )
                if quiet_ticks >= 3 and not manual:  # a few more ticks prove nothing else happens
                    break
            time.sleep(TICK)
    finally:
        signal.signal(signal.SIGINT, previous)
    if stopped["now"]:
        result.stopped = True
        view.event("stopped (Ctrl-C): stopping every process")


def _regresses(scenario: str, live: traffic.RouteState | None) -> bool:
    """Whether a bad canary begins to misbehave now: once it takes REGRESS_AT% of live traffic or, in the
    `cohorts` scenario, once the beta cohort is open."""
    if live is None:
        return False
    if scenario == "cohorts":
        return live.cohort(BETA) is not None
    return live.weight(traffic.CANARY) >= REGRESS_AT


def _said(outcome: reconcile.Outcome | None) -> list[str]:
    """What a tick's outcome shows: its decision (a Hold too, so a rollout that waits says why), its
    actions, and an error."""
    if outcome is None:
        return []
    decision = outcome.decision
    lines = [f"{decision.kind.value}: {decision.reason}"] if decision else []
    lines += [f"  {action}" for action in outcome.actions]
    return lines + ([f"  held ({outcome.adapter}): {outcome.error}"] if outcome.error else [])


def _gist(said: list[str]) -> list[str]:
    """What is said, digits aside: a Hold whose counts or seconds change is the same Hold."""
    return [re.sub(r"[0-9]+(\.[0-9]+)?", "#", line) for line in said]


def second_terminal(remote: Path) -> list[str]:
    """What a second terminal needs to act on the demo: this virtual environment, if the demo runs in
    one (for `rollout`), and the remote. Nothing else: the router state is the demo's own (absolute
    paths in its controller.yaml, and Envoy), whatever that terminal's $ROLLOUT_STATE_DIR or home."""
    venv = [f"$ . {shlex.quote(str(Path(sys.prefix) / 'bin' / 'activate'))}"] if sys.prefix != sys.base_prefix else []
    return [*venv, f"$ export {settings.REMOTE_ENV}={shlex.quote(str(remote))}", "$ rollout status"]


def _announce(forge: forge_local.LocalForge, announced: dict[int, forge_base.PRState], view: View) -> None:
    """The driven demo's reviewer is the user: each pull request of the bot is announced once when it
    opens, with the commands that review and merge it, and once more when it is merged or closed."""
    open_now = {pr.number: pr for pr in forge.list(prefix=proposals.BRANCH_PREFIX, state=forge_base.PRState.OPEN)}
    for number, state in sorted(announced.items()):
        if state is forge_base.PRState.OPEN and number not in open_now:
            pr = forge.get(number)
            announced[number] = pr.state
            view.event(f"PR #{number} {pr.state.value}: {pr.title}")
    for number, pr in sorted(open_now.items()):
        if number in announced:
            continue
        announced[number] = pr.state
        view.event(f"PR #{number} opened: {pr.title}; review it in the second terminal:")
        view.hint(
            [
                f"$ rollout pr show {number}",
                f"$ rollout pr approve {number}",
                f"$ rollout pr merge {number}",
                f'or: $ rollout status, $ rollout abort {NAME} --reason "..."',
            ]
        )


def _review(forge: forge_local.LocalForge, seen: set[tuple[int, str]], result: Result, view: View) -> None:
    """The auto-approver: a reviewer who approves and merges each of the bot's PRs."""
    for pr in forge.list(prefix=proposals.BRANCH_PREFIX, state=forge_base.PRState.OPEN):
        if (pr.number, pr.head_sha) in seen:
            continue
        seen.add((pr.number, pr.head_sha))
        view.event(f"PR #{pr.number} opened: {pr.title}")
        forge.approve(pr.number, by="demo-reviewer")
        merged = forge.merge(pr.number, message="approved by the demo's reviewer")
        result.merged.append(pr.title)
        if "roll back" in pr.title:
            result.rolled_back = True
        view.event(f"PR #{pr.number} approved and merged ({merged.merge_sha[:7]})")
