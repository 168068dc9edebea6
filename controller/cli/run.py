"""The controller's commands: `rollout reconcile` (one tick), `run` (the loop, with /metrics), `abort`
(the kill switch), `hold`, `retry`, `comment` (the same three from a PR comment on GitHub) and `status`;
each builds a `reconcile.Controller` for the named remote."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import signal
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TextIO

from controller import errors, redaction
from controller.cli import common, console

if TYPE_CHECKING:
    from controller import gates, notifier, reconcile, settings, spec, telemetry
    from controller.dashboard import look, source
    from controller.routers import base

EXIT_SKIPPED = 3  # `reconcile` skipped its tick: another controller holds the lease
EXIT_REFUSED = 4  # `comment`: not a PR of the bot's, or a commenter who may not steer; nothing was done


def _controller_args(p: argparse.ArgumentParser, *, lease: bool = False) -> None:
    """The options of the controller commands; `--holder` only where the command takes the lease."""
    p.add_argument("--remote", default=None, help="the GitOps repository, a URL or a path (default: $ROLLOUT_REMOTE)")
    p.add_argument(
        "--workdir", default=None, help="where the controller keeps its clone (default: ~/.cache/rollout/...)"
    )
    p.add_argument("--branch", default="main", help="the branch that holds the desired state")
    if lease:
        p.add_argument(
            "--holder",
            default=None,
            help="this controller's name in the lease (default: HOST-HASH, the same for every run on this host "
            "and workdir)",
        )


def add_parser(sub: Any) -> None:
    r = sub.add_parser(
        "reconcile",
        help="one tick: observe, decide, act, verify",
        epilog=common.example("rollout reconcile --once --dry-run --remote /srv/rollouts.git"),
    )
    r.add_argument("--once", action="store_true", help="run one tick and exit (the default)")
    r.add_argument("--dry-run", action="store_true", help="decide and report; change nothing")
    _format(r)
    _controller_args(r, lease=True)
    r.set_defaults(func=cmd_reconcile)

    run = sub.add_parser(
        "run",
        help="reconcile every --interval until SIGTERM; serves /metrics, /healthz and the dashboard",
        epilog=common.example("rollout run --interval 30s --metrics-port 9464 --remote /srv/rollouts.git"),
    )
    run.add_argument("--interval", default="10s", help="time between the starts of two ticks")
    run.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="serve /metrics, /healthz and the dashboard's pages on this port (default: not served)",
    )
    run.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        help="the address /metrics, /healthz and the dashboard bind (0.0.0.0 for a kubelet's probes; anyone who "
        "reaches it then reads every rollout)",
    )
    run.add_argument(
        "--dashboard",
        action="store_true",
        help="serve the dashboard's pages even when --metrics-host is not loopback (default: only on loopback)",
    )
    _controller_args(run, lease=True)
    run.set_defaults(func=cmd_run)

    a = sub.add_parser(
        "abort",
        help="the kill switch: canary to 0 now, then a revert PR",
        epilog=common.example('rollout abort support-bot --reason "bad answers in #support"'),
    )
    a.add_argument("name", metavar="NAME", help="the rollout")
    a.add_argument("--reason", required=True, help="why, for the revert PR and the rollout's status")
    _format(a)
    _controller_args(a)
    a.set_defaults(func=cmd_abort)

    h = sub.add_parser(
        "hold",
        help="a pause by hand: a pause PR; the rollout advances no further, its weights stay (retry resumes)",
        epilog=common.example('rollout hold support-bot --reason "waiting for the support team"'),
    )
    h.add_argument("name", metavar="NAME", help="the rollout")
    h.add_argument("--reason", required=True, help="why, for the pause PR and the rollout's status")
    h.add_argument("--by", default=None, help="who holds it, named in the PR (default: your user name)")
    _format(h)
    _controller_args(h)
    h.set_defaults(func=cmd_hold)

    rt = sub.add_parser(
        "retry",
        help="propose a PR that lets a rolled-back or paused revision run again (an open pause PR holds until it "
        "is merged)",
        epilog=common.example("rollout retry support-bot"),
    )
    rt.add_argument("name", metavar="NAME", help="the rollout")
    _format(rt)
    _controller_args(rt)
    rt.set_defaults(func=cmd_retry)

    cm = sub.add_parser(
        "comment",
        help="a PR comment command (/rollout hold|abort|retry) from GitHub's issue_comment event: the commenter's "
        "permission checked, the command run as the CLI runs it, an answer on the PR",
        epilog=common.example("rollout comment --event event.json --remote https://github.com/acme/rollouts.git"),
    )
    cm.add_argument("--event", default=None, help="the issue_comment event's JSON file (default: $GITHUB_EVENT_PATH)")
    _controller_args(cm)
    cm.set_defaults(func=cmd_comment)

    st = sub.add_parser(
        "status",
        help="every rollout: step, weights, verdicts, open PRs, time in step",
        epilog=common.example("rollout status --watch --interval 5s"),
    )
    _format(st)
    st.add_argument(
        "--watch",
        action="store_true",
        help="keep watching until Ctrl-C: a live view on a terminal; piped, a new block when the status changes",
    )
    st.add_argument("--interval", default="2s", help="with --watch: time between two looks")
    _controller_args(st)
    st.set_defaults(func=cmd_status)


def _format(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=("text", "json"), default="text", help="json: one object, stable keys")


def _seconds(option: str, value: str) -> float:
    """A duration option (`30s`, `5m`) in seconds, at least one: a loop at 0s would fetch and tick
    without pause (and `run` push lease commits as fast as git can)."""
    from controller import spec

    try:
        seconds = spec.parse_duration(value).total_seconds()
    except ValueError as exc:
        raise common.UsageError(f"{option} {value!r}: {exc}") from exc
    if seconds < 1:
        raise common.UsageError(f"{option} {value!r}: at least 1s")
    return seconds


def _acting_on(remote: str, sha: str, state: Path) -> str:
    """The line every controller command starts with: which remote, at which commit, and which router
    state it acts on."""
    return f"remote {redaction.redact(remote)} (main at {sha[:10]}); router state in {state}"


class Built(NamedTuple):
    controller: reconcile.Controller
    acting_on: str  # which remote, at which commit, and which router state: `_acting_on`
    config: spec.ControllerConfig  # as the branch had it when the controller was built
    files: tuple[Path, ...] = ()  # the router state files its routers write (`state_files`)


def state_files(config: spec.ControllerConfig, state: Path) -> tuple[Path, ...]:
    """The local files the routers of `config` write, resolved as the router factory resolves them
    (relative to `state`): what two repositories of one fleet must not share."""
    from controller import spec

    paths: list[str | None] = []
    for router in config.routers.values():
        match router:
            case spec.FileRouterConfig():
                paths += [router.path, router.write_log]
            case spec.FlagdRouterConfig():
                paths.append(router.path)
            case spec.LitellmRouterConfig():
                paths.append(router.weights_file)
            case spec.EnvoyRouterConfig():
                paths += [router.cds_path, router.prompts_path]
    return tuple(dict.fromkeys((state / Path(p).expanduser()).resolve() for p in paths if p))


def _workdir(args: argparse.Namespace) -> Path:
    """The controller's workdir: --workdir, else a directory under ~/.cache/rollout named after the remote."""
    return Path(args.workdir).absolute() if args.workdir else _cache_dir(common.remote(args))


def default_holder(workdir: Path) -> str:
    """A controller's name in the lease: its host and a hash of its workdir. The same for every process
    on that host and workdir, so a restarted controller takes back at once the lease its predecessor
    left (killed, or stopped before it could release it); `repo.workdir_lock` keeps a second process
    off the same workdir."""
    digest = hashlib.sha1(str(workdir.resolve()).encode()).hexdigest()[:8]
    return f"{socket.gethostname()}-{digest}"


def _holder(args: argparse.Namespace) -> str:
    from controller import repo

    holder: str = getattr(args, "holder", None) or default_holder(_workdir(args))
    if not repo.valid_holder(holder):
        raise common.UsageError(f"--holder {holder!r}: a name without spaces or '=' (it is written into the lease)")
    return holder


def build_controller(args: argparse.Namespace, *, clone: str = "clone") -> Built:
    """The controller for the remote the user named, its clone at `<workdir>/<clone>`; refuses one whose
    branch holds no rollouts/controller.yaml before anything is written (no lease, no branch, no router)."""
    return build_for(common.remote(args), _workdir(args) / clone, branch=args.branch, holder=_holder(args))


def build_for(
    remote: str,
    clone: Path,
    *,
    branch: str,
    holder: str,
) -> Built:
    """The controller of one repository: its clone at `clone`, its routers' state where every command
    finds it (`common.state_dir`: $ROLLOUT_STATE_DIR, else its `stateDir`, else the default). Its forge draws on the process's one
    budget per GitHub identity, of which this process takes `1 / SHARING.members()`."""
    from controller import load, prometheus, reconcile, repo, settings
    from controller.forge import factory as forge_factory
    from controller.routers import factory as router_factory

    workspace = repo.Workspace.open(remote, clone, branch=branch)
    tree = workspace.tree()
    try:
        tree.read(load.CONFIG_FILE)
    except FileNotFoundError:
        raise common.UsageError(
            f"{redaction.redact(remote)}: {branch} has no {load.CONFIG_FILE}, so it is not a rollouts "
            "repository; nothing was done (name yours with --remote or $ROLLOUT_REMOTE)"
        ) from None
    config = load.load_config(tree)  # the rollouts are the controller's to load (MLflow down or not)
    state_path = common.state_dir(config)
    prom = config.prometheus
    metrics = prometheus.Prometheus.from_config(prom, env=os.environ) if prom is not None else None
    knobs = settings.Settings()  # one value for the routers, the forge and the reconciler

    def routers(
        name: str, cfg: spec.RouterConfig, routes: Mapping[str, str], cohorts: Mapping[str, Sequence[str]]
    ) -> base.Router:
        return router_factory.build(
            name, cfg, root=state_path, routes=dict(routes), cohorts=cohorts, env=os.environ, knobs=knobs
        )

    forge = forge_factory.build(
        config.forge, remote=remote, env=os.environ, knobs=knobs, share=SHARING.share, budgets=_budgets(knobs)
    )
    mlflow = common.prompt_registry()
    notices = notifications(knobs)
    controller = reconcile.Controller(
        workspace,
        forge,
        routers,
        metrics,
        holder=holder,
        knobs=knobs,
        prompts=mlflow,
        registry=mlflow,
        notifier=notices,
        repository=redaction.redact(remote),
    )
    return Built(controller, _acting_on(remote, tree.sha, state_path), config, state_files(config, state_path))


class _Sharing:
    """How many controllers share this process's GitHub identities: 1, or a fleet's live members once
    this process has joined one (every member serves every repository, so uses every identity)."""

    members: Callable[[], int] = staticmethod(lambda: 1)

    def share(self) -> int:
        return max(1, self.members())


SHARING = _Sharing()
_BUDGETS: dict[object, Any] = {}  # the process's GitHub budgets by identity, one registry per limits


def _budgets(knobs: settings.Settings) -> Any:
    """The process's one `forge.budget.Registry` for these limits: every repository a process serves on
    one token or App installation draws on one budget."""
    from controller.forge import budget

    if knobs.github not in _BUDGETS:
        _BUDGETS[knobs.github] = budget.Registry(limits=knobs.github)
    return _BUDGETS[knobs.github]


_NOTIFIER: list[notifier.Dispatcher] = []  # the process's one, built with its first controller


def notifications(knobs: settings.Settings) -> notifier.Dispatcher:
    """The process's one notification dispatcher (a thread and a queue per destination, shared by every
    repository a fleet member serves); its webhooks' URLs and headers are read from the environment."""
    from controller import notifier

    if not _NOTIFIER:
        _NOTIFIER.append(notifier.Dispatcher(env=os.environ, knobs=knobs.notifications))
    return _NOTIFIER[0]


def flush_notifications() -> None:
    """On the way out: the queued notifications get at most `Settings.notifications.flush` seconds."""
    if _NOTIFIER:
        _NOTIFIER.pop().close()


def _cache_dir(remote: str) -> Path:
    base_dir = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rollout"
    return base_dir / hashlib.sha1(remote.encode()).hexdigest()[:12]


def _tick_lines(tick: reconcile.Tick, said: dict[str, object] | None = None) -> list[str]:
    """What a tick did, a line per rollout. With `said` (the loop's memory of what it printed), a rollout
    whose decision, reason (its digits aside: time left, samples) and error are what was printed last,
    and that did nothing, prints nothing: `rollout run` says a waiting PR's decision once, not every tick."""
    if tick.skipped:
        line = f"skipped: {tick.skipped}"
        if said is not None and said.get("") == line:
            return []
        if said is not None:
            said[""] = line
        return [f"{tick.at:%H:%M:%S} {line}"]
    if said is not None:
        said.pop("", None)
    lines = []
    for o in tick.outcomes:
        kind = o.decision.kind.value if o.decision else "Error"
        reason = o.decision.reason if o.decision else ""
        if said is not None:
            key = (kind, re.sub(r"\d+", "#", reason), o.error)
            if not o.actions and said.get(o.rollout) == key:
                continue
            said[o.rollout] = key
        lines.append(f"{tick.at:%H:%M:%S} {o.rollout:<20} {kind:<12} {reason}")
        lines += [f"{'':9} {'':<20} -> {a}" for a in o.actions]
        if o.error:
            lines.append(f"{'':9} {'':<20} !! {o.adapter}: {o.error}")
    lines += [f"{tick.at:%H:%M:%S} !! {p}" for p in tick.problems]
    return lines


@console.coloured
def cmd_reconcile(args: argparse.Namespace, out: TextIO) -> int:
    """One tick. Unless --dry-run it takes the lease and gives it back before it exits, SIGTERM
    included (the tick in progress finishes first); a tick skipped because another controller holds
    the lease exits EXIT_SKIPPED and names it."""
    from controller import repo

    if args.dry_run:
        controller, acting_on, *_ = build_controller(args)
        return _report_tick(args, out, acting_on, controller.reconcile_once(dry_run=True))
    try:
        with repo.workdir_lock(_workdir(args), holder=_holder(args)), _finish_on_sigterm():
            controller, acting_on, *_ = build_controller(args)
            try:
                tick = controller.reconcile_once()
            finally:
                controller.release_lease()
                flush_notifications()
    except errors.LeaseHeld as exc:  # another process has this workdir: nothing was read or written
        if args.format == "json":
            out.write(json.dumps({"skipped": str(exc), "heldBy": exc.holder}, indent=2) + "\n")
        else:
            out.write(f"skipped: {exc}\n")
        return EXIT_SKIPPED
    return _report_tick(args, out, acting_on, tick)


def _report_tick(args: argparse.Namespace, out: TextIO, acting_on: str, tick: reconcile.Tick) -> int:
    from controller.dashboard import look

    if args.format == "json":
        out.write(json.dumps({"actingOn": acting_on, **look.tick_json(tick)}, indent=2) + "\n")
    else:
        out.write("\n".join([acting_on, *_tick_lines(tick)]) + "\n")
    if tick.held_by:
        return EXIT_SKIPPED
    return 1 if tick.problems or any(o.error for o in tick.outcomes) else 0


class _finish_on_sigterm:
    """While the block runs, SIGTERM lets the work in progress finish instead of killing the process,
    so the lease is given back on the way out."""

    def __enter__(self) -> None:
        self._before = signal.signal(signal.SIGTERM, lambda *_: None)

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGTERM, self._before)


@console.coloured
def cmd_run(args: argparse.Namespace, out: TextIO) -> int:
    """The loop. SIGTERM or SIGINT finishes the tick in progress, gives the lease back, and exits 0."""
    from controller import repo

    interval = _seconds("--interval", args.interval)
    try:
        with repo.workdir_lock(_workdir(args), holder=_holder(args)):
            return _run_loop(args, out, interval)
    except errors.LeaseHeld as exc:
        out.write(f"not started: {exc}\n")
        return EXIT_SKIPPED


def _loop_setup(
    args: argparse.Namespace, out: TextIO, interval: float, *, metrics: Any = None, fleet: bool = False
) -> tuple[threading.Event, telemetry.Telemetry, Any, source.Published | None]:
    """What both loops share: SIGTERM and SIGINT set `stop` (the tick in progress finishes), and the
    telemetry and the dashboard's pages, served on --metrics-port when given (the server, to shut
    down, and where the loop publishes its looks, None when no page is served; else None, None)."""
    from controller import telemetry
    from controller.dashboard import server as pages
    from controller.dashboard import source

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    tel = telemetry.Telemetry()
    tel.interval = interval
    if args.metrics_port is None:
        return stop, tel, None, None
    if _NOTIFIER:
        _NOTIFIER[0].counted = tel.count_notification
    published = source.Published(metrics=metrics)
    if fleet:
        published.fail("a fleet member's pages show no rollout yet: look at each repository with `rollout dashboard`")
    shown = args.dashboard or pages.is_loopback(args.metrics_host)  # elsewhere only when asked
    dashboard = pages.Dashboard(published, refresh=max(5, int(interval)), metrics=tel, pages=shown, cache=interval)
    server = pages.serve(dashboard, host=args.metrics_host, port=args.metrics_port)
    host = f"[{args.metrics_host}]" if ":" in args.metrics_host else args.metrics_host
    url = f"http://{host}:{server.server_address[1]}"
    also = f", dashboard on {url}/" if shown else " (the dashboard's pages: loopback only, unless --dashboard)"
    out.write(f"metrics on {url}/metrics{also}\n")
    return stop, tel, server, published if shown else None  # no page served: nothing to publish


def _run_loop(args: argparse.Namespace, out: TextIO, interval: float) -> int:
    home = build_controller(args)
    if home.config.fleet is not None:
        return _run_fleet(args, out, interval, home)
    controller, acting_on, *_ = home
    out.write(f"{acting_on}; lease holder {controller.holder}\n")
    stop, tel, server, published = _loop_setup(args, out, interval, metrics=controller.metrics)
    _NOTIFIER[0].check(home.config.notifications)  # an unset variable is said at start, not at the first event
    said: dict[str, object] = {}  # what the loop printed last, per rollout: it says a change once
    try:
        while not stop.is_set():
            _loop_tick(controller, tel, published, said, out)
            out.flush()
            stop.wait(interval)  # a signal ends the wait; the tick in progress always finishes
    finally:
        if server is not None:
            server.shutdown()
        if controller.release_lease():
            out.write("released the lease\n")
        flush_notifications()
    out.write("stopped\n")
    return 0


def _loop_tick(
    controller: reconcile.Controller,
    tel: telemetry.Telemetry,
    published: source.Published | None,
    said: dict[str, object],
    out: TextIO,
) -> None:
    """One tick of the loop: reconcile, count it, publish it to the pages (when they are served), print
    what changed. A tick that fails is printed, counted and said on the pages above the last look."""
    try:
        tick = controller.reconcile_once()
        tel.record(tick)
        if published is not None:  # the pages show this tick; they never tick themselves
            _publish(published, controller, tick, out)
        lines = _tick_lines(tick, said)
        if lines:
            out.write("\n".join(lines) + "\n")
    except errors.RolloutError as exc:
        tel.errors.labels("controller").inc()
        out.write(f"tick failed: {redaction.redact(str(exc))}\n")
        if published is not None:
            published.fail(f"the last tick failed, this look is older: {exc}")  # `fail` redacts


def _publish(published: source.Published, controller: reconcile.Controller, tick: reconcile.Tick, out: TextIO) -> None:
    """The loop's tick, with the PRs, specs and history it was read against, for the dashboard. Nothing
    here can stop the loop: an unexpected failure is said by its type only."""
    from controller.dashboard import look

    try:
        published.publish(look.after(controller, tick, history=True))
    except errors.RolloutError as exc:
        published.fail(f"could not read the tick's PRs or history: {exc}")
    except Exception as exc:  # the pages are a view: never the loop's end; the type only (no secret)
        out.write(f"could not publish the tick to the dashboard: {type(exc).__name__}\n")
        published.fail(f"could not read the tick's PRs or history: {type(exc).__name__}")


def _run_fleet(args: argparse.Namespace, out: TextIO, interval: float, home: Built) -> int:
    """`run` as a member of the fleet home's controller.yaml names (controller/cli/fleet.py)."""
    from controller.cli import fleet
    from controller.coordination import factory

    config = home.config.fleet
    assert config is not None
    coordinator = factory.build(config, identity=fleet.identity(_holder(args)), env=os.environ)
    SHARING.members = lambda: coordinator.members  # every forge's budget, home's included, takes 1/k
    out.write(f"{home.acting_on}; lease holder {fleet.holder(config)}\n")

    def build(remote: str, clone: Path, branch: str) -> Built:
        return build_for(remote, clone, branch=branch, holder=fleet.holder(config))

    stop, tel, server, _ = _loop_setup(args, out, interval, fleet=True)
    _NOTIFIER[0].check(home.config.notifications)
    try:
        fleet.run(
            home,
            workdir=_workdir(args),
            coordinator=coordinator,
            build=build,
            interval=interval,
            stop=stop,
            out=out,
            tel=tel,
            lines=_tick_lines,
        )
    finally:
        if server is not None:
            server.shutdown()
        flush_notifications()
    out.write("stopped\n")
    return 0


@console.coloured
def cmd_abort(args: argparse.Namespace, out: TextIO) -> int:
    from controller.dashboard import look

    controller, acting_on, *_ = build_controller(args)
    try:
        outcome = controller.abort(args.name, reason=args.reason)
    finally:
        flush_notifications()
    if args.format == "json":
        out.write(json.dumps({"actingOn": acting_on, **look.outcome_json(outcome)}, indent=2) + "\n")
        return 1 if outcome.error else 0
    out.write(
        "\n".join(
            [acting_on, f"{outcome.rollout}: {outcome.decision.reason if outcome.decision else ''}", *outcome.actions]
        )
        + "\n"
    )
    if outcome.error:
        out.write(f"!! {outcome.error}\n")
    return 1 if outcome.error else 0


@console.coloured
def cmd_hold(args: argparse.Namespace, out: TextIO) -> int:
    import getpass

    controller, acting_on, *_ = build_controller(args)
    try:
        outcome = controller.hold(args.name, reason=args.reason, by=args.by or getpass.getuser())
    finally:
        flush_notifications()  # the hold's pause notification, queued: sent before the process exits
    return _by_hand_report(args, out, acting_on, outcome)


@console.coloured
def cmd_retry(args: argparse.Namespace, out: TextIO) -> int:
    controller, acting_on, *_ = build_controller(args)
    return _by_hand_report(args, out, acting_on, controller.retry(args.name))


def _by_hand_report(args: argparse.Namespace, out: TextIO, acting_on: str, outcome: reconcile.Outcome) -> int:
    """What `hold` or `retry` did: the PR it opened or updated, and what else (PRs closed or labelled)."""
    from controller.dashboard import look

    if args.format == "json":
        out.write(json.dumps({"actingOn": acting_on, **look.outcome_json(outcome)}, indent=2) + "\n")
        return 0
    out.write("\n".join([acting_on, *outcome.actions]) + "\n")
    return 0


def cmd_comment(args: argparse.Namespace, out: TextIO) -> int:
    """Exit 0 done, or not a command (ignored, nothing said); 1 the command failed; 2 a malformed command
    (answered with the usage) or a bad event; 4 refused (answered with why)."""
    from controller import commands
    from controller.forge import github
    from controller.reconcile import commands as steering

    path = args.event or os.environ.get("GITHUB_EVENT_PATH")
    if not path:
        raise common.UsageError("--event (or $GITHUB_EVENT_PATH): the issue_comment event's JSON file")
    try:
        comment = commands.comment_of(json.loads(Path(path).read_text("utf-8")))
    except (OSError, ValueError) as exc:
        raise common.UsageError(f"{path}: {exc}") from exc
    if comment is None:
        out.write("ignored: not a comment on a pull request\n")
        return 0
    controller, acting_on, *_ = build_controller(args)
    if not isinstance(controller.forge, github.GithubForge):
        raise common.UsageError("PR comment commands need `forge: {type: github}` in rollouts/controller.yaml")
    if comment.repository and comment.repository.lower() != controller.forge.repository.lower():
        raise common.UsageError(
            f"the comment is on {comment.repository}, but rollouts/controller.yaml names {controller.forge.repository}: "
            "nothing was done"
        )
    try:
        steered = steering.steer(controller, controller.forge, comment)
    finally:
        flush_notifications()  # an abort's or a hold's notification, queued: sent before the process exits
    out.write(f"{acting_on}\n{steered.status.value}: {steered.said}\n")
    match steered.status:
        case steering.Status.DONE | steering.Status.IGNORED:
            return 0
        case steering.Status.USAGE:
            return 2
        case steering.Status.REFUSED:
            return EXIT_REFUSED
        case steering.Status.FAILED:
            return 1


@console.coloured
def cmd_status(args: argparse.Namespace, out: TextIO) -> int:
    from controller.dashboard import look

    interval = _seconds("--interval", args.interval)  # checked with or without --watch: a typo is said
    controller, acting_on, *_ = build_controller(args)
    if args.watch:
        return _watch(controller, acting_on, args, out, interval)
    seen = look.take(controller)
    if args.format == "json":
        out.write(json.dumps({"actingOn": acting_on, **look.tick_json(seen.tick)}, indent=2) + "\n")
    else:
        out.write("\n".join([acting_on, "", *_status_lines(seen, now=controller.clock())]) + "\n")
    return 0


def _changed_by(seen: look.Look) -> object:
    """What `status --watch` prints a new block for when it changes: main, each rollout's decision,
    live state, verdicts and errors, the open PRs; not the clock (time in step, time left, samples so
    far: the digits of a reason)."""
    rollouts = [
        (
            o.rollout,
            o.decision and (o.decision.kind, re.sub(r"\d+", "#", o.decision.reason)),
            o.live and json.dumps(o.live.to_json(), sort_keys=True),
            [(e.name, e.verdict, e.error) for e in o.evidence],
            o.error,
            o.rollback_unconfirmed,
        )
        for o in seen.tick.outcomes
    ]
    pulls = [(pr.number, pr.title, pr.approved) for pr in seen.pulls]
    return seen.tick.sha, [str(p) for p in seen.tick.problems], rollouts, pulls


def _watch(
    controller: reconcile.Controller, acting_on: str, args: argparse.Namespace, out: TextIO, interval: float
) -> int:
    """`status --watch` until Ctrl-C (or SIGTERM), then exit 0: on a terminal a live view redrawn every
    look; elsewhere a new block (a time and main's commit, then the status) only when it changed."""
    from controller.dashboard import look

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    terminal = console.terminal(out)
    live = None
    if terminal is not None and args.format == "text":
        from rich.live import Live

        live = Live(console=terminal, auto_refresh=False)
        live.start()
    else:
        out.write(acting_on + "\n")
    last: object = None
    try:
        while not stop.is_set():
            now = controller.clock()
            key: object
            try:
                seen = look.take(controller)
            except errors.RolloutError as exc:  # the remote gone for a moment, a router hung up: say so, go on
                key, block = str(exc), f"-- {now:%H:%M:%S}, could not look: {exc}"
            else:
                key = _changed_by(seen)
                if args.format == "json":
                    block = json.dumps({"actingOn": acting_on, **look.tick_json(seen.tick)}, indent=2)
                else:
                    block = "\n".join(
                        [f"-- {now:%H:%M:%S}, main at {seen.tick.sha[:10]}", *_status_lines(seen, now=now)]
                    )
            if live is not None and terminal is not None:
                live.update(terminal.render_str("\n".join([acting_on, "", block]), highlight=True), refresh=True)
            elif key != last:
                out.write(block + "\n")
                out.flush()
                last = key
            stop.wait(interval)
    finally:
        if live is not None:
            live.stop()
    return 0


def _kept(seen: look.Look, router: str) -> str:
    """What happens to the old stable after a completion: a LiteLLM proxy takes a deployment at
    weight 0 out of its model list, and Envoy's route has no cluster for it, so nothing of the old one
    is kept warm there; the file and flag routers keep it routable at 0."""
    from controller import spec

    config = seen.desired.config
    if config is not None and isinstance(config.routers.get(router), spec.LitellmRouterConfig):
        return "no longer served (LiteLLM keeps nothing warm at weight 0)"
    if config is not None and isinstance(config.routers.get(router), spec.EnvoyRouterConfig):
        return "no longer served (Envoy's route has clusters for stable and canary only)"
    return "kept warm"


def _by_cohort(e: gates.GateEvidence) -> list[tuple[str, str]]:
    """A gate's verdict in each cohort it judged (the worst of its counted rows there), in its order."""
    from controller import gates as judging

    found: dict[str, list[judging.Verdict]] = {}
    for r in e.segments:
        found.setdefault(r.cohort, []).extend([r.verdict] if r.counted else [])
    return [("everyone else" if c == judging.EVERYONE else c, str(judging.worst(vs))) for c, vs in found.items()]


def _status_lines(seen: look.Look, *, now: datetime) -> list[str]:
    """One block per rollout: step, live against desired, verdicts, timing advice, next action, PRs."""
    from controller import advice, plan, proposals, report, spec, split, traffic

    lines: list[str] = []
    for o in seen.tick.outcomes:
        loaded = seen.desired.rollout(o.rollout)
        if loaded is None:
            continue
        s = loaded.rollout.spec
        step = plan.current_step(loaded)
        phase = o.phase or plan.phase(loaded)  # a rollout whose tick failed has no phase of the tick's
        age = (
            spec.format_duration(timedelta(seconds=int((now - o.step_since).total_seconds()))) if o.step_since else "?"
        )
        if s.canary is None:
            warm = f", old stable {loaded.revisions[traffic.PREVIOUS]} {_kept(seen, s.router)}" if s.previous else ""
            where = phase.value if phase else "no canary"
            lines.append(f"{o.rollout}  {where}{warm}  rev {loaded.revisions[traffic.STABLE]}  for {age}")
        else:
            lines.append(
                f"{o.rollout}  step {step + 1}/{len(s.steps)} ({s.steps[step].describe()})  {phase}  "
                f"rev {loaded.revisions[traffic.CANARY]}  in step {age}"
            )
        lines.append(
            f"  live     {o.live.describe() if o.live else 'absent'}   (main says {plan.desired_state(loaded).describe()})"
        )
        if o.evidence:
            lines.append("  gates    " + " · ".join(f"{e.name} {e.verdict}" for e in o.evidence))
            lines += [f"           {why}" for why in sorted({e.error for e in o.evidence if e.error})]
            for e in o.evidence:
                if split.is_split(e) and e.segments and not e.error:
                    lines.append(f"           {e.name}: {e.segments[0].reason}")
                elif any(r.cohort for r in e.segments):
                    lines.append(f"           {e.name}: " + " · ".join(f"{w} {v}" for w, v in _by_cohort(e)))
        if s.canary is not None:
            timing = advice.step_advice(loaded, step=step, config=seen.desired.config)
            lines += report.timing_lines(timing, indent="  ")
        verdict = f"{o.decision.kind.value}: {o.decision.reason}" if o.decision else f"error: {o.error}"
        lines.append(f"  next     {verdict}")
        for pr in seen.pulls:
            if pr.branch.startswith(f"{proposals.BRANCH_PREFIX}{o.rollout}/"):
                flag = " [approved]" if pr.approved else ""
                lines.append(f"  PR       #{pr.number} {pr.title}{flag}")
        if o.error:
            lines.append(f"  error    {o.adapter}: {o.error}")
        if o.rollback_unconfirmed:
            lines.append(
                "  ROLLBACK NOT CONFIRMED: the router has not confirmed the canary is out; retried with backoff"
            )
        lines.append("")
    return lines + [f"!! {p}" for p in seen.tick.problems]
