"""The `rollout` command: parses arguments, builds adapters, prints, and sets exit codes.

This is the only module that reads the environment or prints. Exit codes: 0 success, 1 a check
failed (invalid spec, drift asked about, gate failed), 2 usage error, 3 `reconcile` skipped its tick
because another controller holds the lease (the output names it).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple, TextIO, TypeVar

from pydantic import BaseModel

from controller import (
    __version__,
    advice,
    analysis,
    cutpoints,
    errors,
    evidence,
    gates,
    lint,
    load,
    plan,
    prometheus,
    reconcile,
    render,
    repo,
    report,
    review,
    settings,
    spec,
    split,
    traffic,
)
from controller.forge import base as forge_base
from controller.forge import factory as forge_factory
from controller.forge import local as forge_local
from controller.routers import base
from controller.routers import factory as router_factory

RouterT = TypeVar("RouterT", spec.EnvoyRouterConfig, spec.LitellmRouterConfig)

SCHEMAS: dict[str, type[BaseModel]] = {
    "rollout.schema.json": spec.Rollout,
    "controller.schema.json": spec.ControllerConfig,
}


class UsageError(Exception):
    """Bad arguments: exit code 2."""


# -- adapters ------------------------------------------------------------------------------------


STATE_ENV = settings.STATE_ENV
REMOTE_ENV = settings.REMOTE_ENV
KILL_ENV = "ROLLOUT_TEST_KILL_AT"  # tests only: see `arm_kill_point`
EXIT_SKIPPED = 3  # `reconcile` skipped its tick: another controller holds the lease


def state_dir(config: spec.ControllerConfig) -> Path:
    """Where the routers' relative paths resolve, the same for every command and every working
    directory: $ROLLOUT_STATE_DIR, else controller.yaml's `stateDir`, else $XDG_STATE_HOME/rollout
    (~/.local/state/rollout)."""
    try:
        return settings.state_dir(config, env=os.environ, home=Path.home())
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


# -- validate ------------------------------------------------------------------------------------


def find_root(path: Path) -> Path:
    """The repository root above `path`: the directory holding rollouts/controller.yaml."""
    start = path.resolve()
    for candidate in [start, *start.parents]:
        if os.path.lexists(candidate / load.CONFIG_FILE):  # a FIFO or a dangling link too: loading says what is wrong
            return candidate
    raise UsageError(f"no {load.CONFIG_FILE} found in {path} or above it")


def _selected(root: Path, path: Path) -> list[str] | None:
    """Which rollout files a PATH argument asks about; None means all of them."""
    rel = path.resolve().relative_to(root).as_posix()
    if rel in (".", load.ROLLOUTS_DIR):
        return None
    if rel == load.CONFIG_FILE:
        return []
    if path.is_dir():
        return [f"{rel}/{load.ROLLOUT_FILE}"]
    return [rel]


def cmd_validate(args: argparse.Namespace, out: TextIO) -> int:
    paths = [Path(p) for p in args.paths] or [Path(load.ROLLOUTS_DIR)]
    findings: list[dict[str, Any]] = []
    for path in paths:
        if not path.exists():
            raise UsageError(f"{path}: no such file or directory")
        root = find_root(path if path.is_dir() else path.parent)
        tree = repo.WorkTree(root)
        only = _selected(root, path)
        result = load.load_repo(tree, only=only)
        findings += [_problem_json(p, root) for p in result.problems]
        if result.config is not None:
            for loaded in result.rollouts:
                source = tree.read(loaded.path)
                findings += [_finding_json(f, root) for f in lint.lint(loaded, result.config, source)]
    findings = list({json.dumps(f, sort_keys=True): f for f in findings}.values())
    out.write(report.findings(findings, args.format))
    failed = any(f["severity"] == lint.ERROR for f in findings)
    if args.strict:
        failed = failed or bool(findings)
    return 1 if failed else 0


def _display(root: Path, file: str) -> str:
    full = root / file
    try:
        return os.path.relpath(full)
    except ValueError:
        return str(full)


def _problem_json(p: errors.Problem, root: Path) -> dict[str, Any]:
    return {
        "file": _display(root, p.file),
        "line": p.line,
        "column": p.column,
        "field": p.field,
        "code": p.code,
        "severity": lint.ERROR,
        "message": p.message,
    }


def _finding_json(f: lint.Finding, root: Path) -> dict[str, Any]:
    return {
        "file": _display(root, f.file),
        "line": f.line,
        "column": f.column,
        "field": f.field,
        "code": f.code,
        "severity": f.severity,
        "message": f.message,
    }


# -- schema --------------------------------------------------------------------------------------


def render_schemas() -> dict[str, str]:
    return {name: json.dumps(spec.json_schema(model), indent=2) + "\n" for name, model in SCHEMAS.items()}


def cmd_schema(args: argparse.Namespace, out: TextIO) -> int:
    target = Path(args.out)
    stale = []
    for name, text in render_schemas().items():
        path = target / name
        if args.check:
            if not path.is_file() or path.read_text("utf-8") != text:
                stale.append(str(path))
            continue
        target.mkdir(parents=True, exist_ok=True)
        path.write_text(text, "utf-8")
        print(f"wrote {path}", file=out)
    if stale:
        print("out of date (run `rollout schema`): " + ", ".join(stale), file=out)
        return 1
    return 0


# -- plan ----------------------------------------------------------------------------------------


def open_tree(repo_arg: str, ref: str | None) -> tuple[load.Tree, Path, str]:
    """(tree, local root for relative router paths, a label for the source)."""
    local = Path(repo_arg)
    if local.exists():
        root = find_root(local)
        if ref is None:
            return repo.WorkTree(root), root, str(root)
        tree = repo.GitTree.open(root, ref)
        return tree, root, f"{root}@{ref} ({tree.sha[:10]})"
    clone = repo.clone_bare(repo_arg, Path(tempfile.mkdtemp(prefix="rollout-plan-")))
    tree = repo.GitTree.open(clone, ref or "HEAD")
    return tree, Path.cwd(), f"{repo_arg}@{ref or 'HEAD'} ({tree.sha[:10]})"


def cmd_plan(args: argparse.Namespace, out: TextIO) -> int:
    tree, root, source = open_tree(args.repo, args.ref)
    result = load.load_repo(tree)
    if result.config is None:
        out.write(report.findings([_problem_json(p, root) for p in result.problems], "text"))
        return 1
    live: dict[str, dict[str, base.Live] | errors.RolloutError] = {}  # router -> its routes, one read
    state = state_dir(result.config)
    source += f"; router state in {state}"
    for name in dict.fromkeys(r.rollout.spec.router for r in result.rollouts):
        try:
            router = router_factory.build(
                name, result.config.routers[name], root=state, routes=load.route_rollouts(result, name), env=os.environ
            )
            live[name] = router.read([r.rollout.spec.route for r in result.rollouts if r.rollout.spec.router == name])
        except errors.RolloutError as exc:
            live[name] = exc
    diffs: list[plan.RouteDiff] = []
    failures: list[tuple[str, str]] = []
    for loaded in result.rollouts:
        routes = live[loaded.rollout.spec.router]
        seen = routes if isinstance(routes, errors.RolloutError) else routes.get(loaded.rollout.spec.route)
        if isinstance(seen, errors.RolloutError):
            failures.append((loaded.name, str(seen)))
            continue
        diffs.append(plan.diff(loaded, seen, config=result.config))
    out.write(
        report.plan_report(
            source=source,
            diffs=diffs,
            failures=failures,
            problems=[_problem_json(p, root) for p in result.problems],
            fmt=args.format,
        )
    )
    if args.detailed_exitcode and any(d.drift for d in diffs):
        return 2 if not (failures or result.problems) else 1
    return 1 if failures or result.problems else 0


# -- demo ----------------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace, out: TextIO) -> int:
    from controller import demo

    checkout = Path(args.examples).resolve()
    if not (checkout / load.CONFIG_FILE).is_file():
        raise UsageError(f"run the demo from the project checkout (no rollouts/ in {checkout})")
    try:
        result = demo.run(args.scenario, checkout=checkout, out=out, live_view=out.isatty() and not args.plain)
    except RuntimeError as exc:
        raise UsageError(str(exc)) from exc
    if args.scenario == "good":
        ok = result.completed
        out.write(f"\n{'completed' if ok else 'did not complete'}: {len(result.merged)} pull requests merged\n")
    else:
        ok = result.rolled_back and not result.promoted_after_rollback
        seconds = result.rollback_seconds
        out.write(
            f"\n{'rolled back' if ok else 'not rolled back'}"
            + (
                f": the live canary weight was 0 again {seconds:.1f}s after it began to misbehave\n"
                if seconds
                else "\n"
            )
        )
    return 0 if ok else 1


# -- gates ---------------------------------------------------------------------------------------


def parse_time(value: str) -> datetime:
    """`now`, unix seconds, or ISO 8601 (UTC when no offset is given)."""
    if value == "now":
        return datetime.now(UTC)
    try:
        return datetime.fromtimestamp(float(value), UTC)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise UsageError(f"--at {value!r}: expected now, unix seconds or an ISO 8601 time") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class NamedRollout(NamedTuple):
    tree: load.Tree
    root: Path
    config: spec.ControllerConfig
    loaded: load.LoadedRollout


def named_rollout(args: argparse.Namespace, out: TextIO) -> NamedRollout | None:
    """The valid rollout `args.name` in `args.repo`, with the tree and config it was read with; None
    (after writing why) when the controller config is unusable."""
    tree, root, _source = open_tree(args.repo, None)
    result = load.load_repo(tree)
    if result.config is None:
        out.write(report.findings([_problem_json(p, root) for p in result.problems], "text"))
        return None
    loaded = result.rollout(args.name)
    if loaded is None:
        raise UsageError(f"no valid rollout named {args.name!r} (try `rollout validate`)")
    return NamedRollout(tree, root, result.config, loaded)


def cmd_gates(args: argparse.Namespace, out: TextIO) -> int:
    named = named_rollout(args, out)
    if named is None:
        return 1
    config, loaded = named.config, named.loaded
    prom = config.prometheus
    if prom is None:
        raise UsageError("controller.yaml sets no prometheus.url")
    at = parse_time(args.at)
    step = loaded.rollout.spec.steps[plan.current_step(loaded)]
    if args.window:
        try:
            window = spec.parse_duration(args.window)
        except ValueError as exc:
            raise UsageError(f"--window {args.window!r}: {exc}") from exc
    else:
        window = step.for_ or loaded.rollout.spec.analysis.interval
    rows = measure_gates(loaded, config, prom, at=at, window=window, traffic_split=True)
    render = {"json": evidence.json_text, "markdown": evidence.markdown}.get(args.format, evidence.text)
    out.write(render(loaded.name, rows, at=at.isoformat(timespec="seconds")))
    holding = gates.deciding(rows)
    return 0 if holding and gates.worst(holding) is gates.Verdict.PASS else 1


def measure_gates(
    loaded: load.LoadedRollout,
    config: spec.ControllerConfig,
    prom: spec.PrometheusConfig,
    *,
    at: datetime,
    window: timedelta,
    traffic_split: bool = False,
) -> tuple[gates.GateEvidence, ...]:
    """Every gate of one rollout, measured in Prometheus (one query per template); with `traffic_split`,
    then the traffic-split check over the same window, where it applies (one query more)."""
    token = os.environ.get(prom.bearer_token_env) if prom.bearer_token_env else None
    metrics = prometheus.Prometheus(prom.url, timeout=prom.timeout, token=token)
    try:
        found = analysis.evaluate(
            [analysis.target(loaded, config)], config=config, metrics=metrics, at=at, window=window
        )
        rows = tuple(found[loaded.name])
        check = split.target(loaded, config, since=None, at=at, window=window) if traffic_split else None
        if check is not None:
            rows += (analysis.evaluate_split([check], metrics=metrics, at=at)[loaded.name],)
    finally:
        metrics.close()
    return rows


def add_gates_parser(sub: Any) -> None:
    g = sub.add_parser("gates", help="measure a rollout's gates now: stable and canary side by side")
    g.add_argument("name", metavar="NAME", help="the rollout")
    g.add_argument("--at", default="now", help="evaluate at this time: now, unix seconds or ISO 8601")
    g.add_argument("--window", default=None, help="measurement window (default: the step's `for`, else the interval)")
    g.add_argument("--format", choices=("text", "markdown", "json"), default="text")
    g.add_argument("--repo", default=".", help="a path in a rollouts repository")
    g.set_defaults(func=cmd_gates)


# -- check ---------------------------------------------------------------------------------------


def cmd_check(args: argparse.Namespace, out: TextIO) -> int:
    """What merging a PR does (its head: the working tree or --head, against --base), and the gates of
    every promotion, measured with the base's gates and Prometheus. 0 mergeable, 1 not."""
    root = find_root(Path(args.repo))
    before = load.load_repo(repo.GitTree.open(root, args.base))
    after = load.load_repo(repo.GitTree.open(root, args.head) if args.head else repo.WorkTree(root))
    at = parse_time(args.at)
    found = review.changes(before, after)
    measured: dict[str, tuple[gates.GateEvidence, ...] | str] = {}
    for change in found:
        if change.measure is None:
            continue
        config = before.config
        if config is None or config.prometheus is None:
            measured[change.name] = f"{load.CONFIG_FILE} on the base sets no prometheus.url: no gate can be measured"
            continue
        loaded = change.measure
        if args.window:
            window = _window(args.window)
        else:  # the controller's shortest window for this step: its `for`, at least one analysis interval
            step = loaded.rollout.spec.steps[plan.current_step(loaded)]
            window = reconcile.window(loaded.rollout.spec.analysis.interval, step.for_)
        measured[change.name] = measure_gates(
            loaded, config, config.prometheus, at=at, window=window, traffic_split=True
        )
    # a problem main already has is not this PR's: it must not block a revert's record
    known = {(p.file, p.code, p.field, p.message) for p in before.problems}
    introduced = [p for p in after.problems if (p.file, p.code, p.field, p.message) not in known]
    result = review.judge(found, measured, unreadable=introduced)
    render = {"json": review.json_text, "markdown": review.markdown}.get(args.format, review.text)
    out.write(render(result, at=at.isoformat(timespec="seconds")))
    return 0 if result.mergeable else 1


def _window(value: str) -> timedelta:
    try:
        return spec.parse_duration(value)
    except ValueError as exc:
        raise UsageError(f"--window {value!r}: {exc}") from exc


def add_check_parser(sub: Any) -> None:
    c = sub.add_parser(
        "check", help="what merging a PR does to each rollout; a promotion needs passing gates (the PR's check)"
    )
    c.add_argument("--base", required=True, help="the git ref the PR merges into (in CI: the merge commit's HEAD^1)")
    c.add_argument("--head", default=None, help="the git ref of the PR's result (default: the working tree)")
    c.add_argument("--at", default="now", help="measure gates at this time: now, unix seconds or ISO 8601")
    c.add_argument("--window", default=None, help="gate window (default: the step's `for`, at least the interval)")
    c.add_argument("--format", choices=("text", "markdown", "json"), default="text")
    c.add_argument("--repo", default=".", help="a path in a rollouts repository")
    c.set_defaults(func=cmd_check)


# -- render --------------------------------------------------------------------------------------


def _render_target(
    args: argparse.Namespace, out: TextIO, kind: type[RouterT], label: str
) -> tuple[load.RepoSpec, str, RouterT] | None:
    """The valid repository and the router of type `kind` that `rollout render` was asked for; None
    (after printing the problems) when the repository is invalid."""
    root = find_root(Path(args.repo))
    result = load.load_repo(repo.WorkTree(root))
    if result.config is None or result.problems:
        out.write(report.findings([_problem_json(p, root) for p in result.problems], "text"))
        return None
    found = {n: c for n, c in result.config.routers.items() if isinstance(c, kind)}
    what = label.split(" ", 1)[1]
    if args.router is None and len(found) != 1:
        raise UsageError(f"name the {what} router to render, one of: {', '.join(sorted(found)) or '(none)'}")
    name = args.router or next(iter(found))
    if name not in found:
        raise UsageError(f"{name!r} is not {label} router in {load.CONFIG_FILE}; {what} routers: {sorted(found)}")
    return result, name, found[name]


def _emit(args: argparse.Namespace, out: TextIO, text: str) -> int:
    """Rendered configuration goes to `--out FILE` or to standard output."""
    if args.out:
        Path(args.out).write_text(text, "utf-8")
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        out.write(text)
    return 0


def cmd_render_envoy(args: argparse.Namespace, out: TextIO) -> int:
    target = _render_target(args, out, spec.EnvoyRouterConfig, "an Envoy")
    if target is None:
        return 1
    result, name, config = target
    assert result.config is not None  # _render_target returns only valid repositories
    rendered = render.envoy_bootstrap(
        result, name, config, state=state_dir(result.config), split_header=args.split_header
    )
    for path, what in rendered.wrote:
        print(f"wrote {path} ({what})", file=sys.stderr)
    return _emit(args, out, rendered.text)


def add_render_parser(sub: Any) -> None:
    r = sub.add_parser("render", help="generate router configuration from the rollouts")
    rsub = r.add_subparsers(dest="target", required=True, metavar="TARGET")
    re = rsub.add_parser("envoy", help="the Envoy bootstrap for every rollout on an Envoy router")
    re.add_argument("router", nargs="?", default=None, metavar="ROUTER", help="an Envoy router (default: the only one)")
    re.add_argument("--repo", default=".", help="a path in a rollouts repository")
    re.add_argument("--out", default=None, help="write to FILE instead of stdout")
    re.add_argument(
        "--split-header", default=None, help="let this request header pick the split bucket 0-99 (tests only)"
    )
    re.set_defaults(func=cmd_render_envoy)
    add_render_litellm_parser(rsub)


# -- render litellm ------------------------------------------------------------------------------


def cmd_render_litellm(args: argparse.Namespace, out: TextIO) -> int:
    target = _render_target(args, out, spec.LitellmRouterConfig, "a LiteLLM")
    if target is None:
        return 1  # the problems are printed, among them a proxyConfig whose routing strategy ignores weights
    result, name, proxy = target
    assert result.config is not None  # _render_target returns only valid repositories
    try:
        rendered = render.litellm_config(result, name, proxy, state=state_dir(result.config), weights=args.weights)
    except errors.RouterError as exc:
        out.write(f"{exc}\n")
        return 1
    return _emit(args, out, rendered.text)


def add_render_litellm_parser(render_sub: Any) -> None:
    rl = render_sub.add_parser("litellm", help="the LiteLLM model_list for every rollout on a LiteLLM router")
    rl.add_argument(
        "router", nargs="?", default=None, metavar="ROUTER", help="a LiteLLM router (default: the only one)"
    )
    rl.add_argument("--repo", default=".", help="a path in a rollouts repository")
    rl.add_argument("--out", default=None, help="write to FILE instead of stdout")
    rl.add_argument("--weights", action="store_true", help="render the callback's weights file instead")
    rl.set_defaults(func=cmd_render_litellm)


# -- the controller: reconcile, run, abort, retry, status, pr ------------------------------------


def _remote(args: argparse.Namespace) -> str:
    """The GitOps repository a controller command acts on: --remote, else $ROLLOUT_REMOTE. Never the
    current checkout's origin: in a clone of this tool that is the tool's own upstream. A local path
    is made absolute, so the same repository is named the same way from any directory."""
    remote: str | None = args.remote or os.environ.get(REMOTE_ENV)
    if not remote:
        raise UsageError(
            f"name the GitOps repository to act on: --remote URL|PATH, or set ${REMOTE_ENV} "
            "(it is never guessed from the current checkout)"
        )
    local = Path(remote).expanduser()
    return str(local.resolve()) if local.exists() else remote


def _acting_on(remote: str, sha: str, state: Path) -> str:
    """The line every controller command starts with: which remote, at which commit, and which router
    state it acts on."""
    return f"remote {repo.redact(remote)} (main at {sha[:10]}); router state in {state}"


class Built(NamedTuple):
    controller: reconcile.Controller
    acting_on: str  # which remote, at which commit, and which router state: `_acting_on`


def _workdir(args: argparse.Namespace) -> Path:
    """The controller's workdir: --workdir, else a directory under ~/.cache/rollout named after the remote."""
    return Path(args.workdir).absolute() if args.workdir else _cache_dir(_remote(args))


def default_holder(workdir: Path) -> str:
    """A controller's name in the lease: its host and a hash of its workdir. The same for every process
    on that host and workdir, so a restarted controller takes back at once the lease its predecessor
    left (killed, or stopped before it could release it); `repo.workdir_lock` keeps a second process
    off the same workdir."""
    digest = hashlib.sha1(str(workdir.resolve()).encode()).hexdigest()[:8]
    return f"{socket.gethostname()}-{digest}"


def _holder(args: argparse.Namespace) -> str:
    holder: str = getattr(args, "holder", None) or default_holder(_workdir(args))
    if not repo.valid_holder(holder):
        raise UsageError(f"--holder {holder!r}: a name without spaces or '=' (it is written into the lease)")
    return holder


def build_controller(args: argparse.Namespace) -> Built:
    """The controller for the remote the user named; refuses one whose branch holds no
    rollouts/controller.yaml before anything is written (no lease, no branch, no router)."""
    remote = _remote(args)
    workdir = _workdir(args)
    workspace = repo.Workspace.open(remote, workdir / "clone", branch=args.branch)
    tree = workspace.tree()
    try:
        tree.read(load.CONFIG_FILE)
    except FileNotFoundError:
        raise UsageError(
            f"{repo.redact(remote)}: {args.branch} has no {load.CONFIG_FILE}, so it is not a rollouts "
            "repository; nothing was done (name yours with --remote or $ROLLOUT_REMOTE)"
        ) from None
    desired = load.load_repo(tree)
    if desired.config is None:
        raise errors.SpecError(desired.problems)
    config = desired.config
    state = state_dir(config)
    metrics = None
    if config.prometheus is not None:
        p = config.prometheus
        token = os.environ.get(p.bearer_token_env) if p.bearer_token_env else None
        metrics = prometheus.Prometheus(p.url, timeout=p.timeout, token=token)

    def routers(name: str, cfg: spec.RouterConfig, routes: Mapping[str, str]) -> base.Router:
        return router_factory.build(name, cfg, root=state, routes=dict(routes), env=os.environ)

    holder = _holder(args)
    controller = reconcile.Controller(
        workspace, forge_factory.build(config.forge, remote=remote, env=os.environ), routers, metrics, holder=holder
    )
    return Built(controller, _acting_on(remote, tree.sha, state))


def _cache_dir(remote: str) -> Path:
    base_dir = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rollout"
    return base_dir / hashlib.sha1(remote.encode()).hexdigest()[:12]


def _tick_lines(tick: reconcile.Tick) -> list[str]:
    if tick.skipped:
        return [f"{tick.at:%H:%M:%S} skipped: {tick.skipped}"]
    lines = []
    for o in tick.outcomes:
        kind = o.decision.kind.value if o.decision else "Error"
        reason = o.decision.reason if o.decision else ""
        lines.append(f"{tick.at:%H:%M:%S} {o.rollout:<20} {kind:<12} {reason}")
        lines += [f"{'':9} {'':<20} -> {a}" for a in o.actions]
        if o.error:
            lines.append(f"{'':9} {'':<20} !! {o.adapter}: {o.error}")
    lines += [f"{tick.at:%H:%M:%S} !! {p}" for p in tick.problems]
    return lines


def _tick_json(tick: reconcile.Tick) -> dict[str, Any]:
    return {
        "at": tick.at.isoformat(),
        "sha": tick.sha,
        "skipped": tick.skipped,
        "heldBy": tick.held_by or None,
        "problems": [str(p) for p in tick.problems],
        "rollouts": [
            {
                "rollout": o.rollout,
                "decision": o.decision.kind.value if o.decision else None,
                "reason": o.decision.reason if o.decision else None,
                "live": o.live.to_json() if o.live else None,
                "actions": list(o.actions),
                "error": o.error,
                "pr": o.pr,
                "routerAttempts": o.router_attempts,
                "rollbackUnconfirmed": o.rollback_unconfirmed,
            }
            for o in tick.outcomes
        ],
    }


def cmd_reconcile(args: argparse.Namespace, out: TextIO) -> int:
    """One tick. Unless --dry-run it takes the lease and gives it back before it exits, SIGTERM
    included (the tick in progress finishes first); a tick skipped because another controller holds
    the lease exits EXIT_SKIPPED and names it."""
    if args.dry_run:
        controller, acting_on = build_controller(args)
        return _report_tick(args, out, acting_on, controller.reconcile_once(dry_run=True))
    try:
        with repo.workdir_lock(_workdir(args), holder=_holder(args)), _finish_on_sigterm():
            controller, acting_on = build_controller(args)
            try:
                tick = controller.reconcile_once()
            finally:
                controller.release_lease()
    except errors.LeaseHeld as exc:  # another process has this workdir: nothing was read or written
        if args.format == "json":
            out.write(json.dumps({"skipped": str(exc), "heldBy": exc.holder}, indent=2) + "\n")
        else:
            out.write(f"skipped: {exc}\n")
        return EXIT_SKIPPED
    return _report_tick(args, out, acting_on, tick)


def _report_tick(args: argparse.Namespace, out: TextIO, acting_on: str, tick: reconcile.Tick) -> int:
    if args.format == "json":
        out.write(json.dumps({"actingOn": acting_on, **_tick_json(tick)}, indent=2) + "\n")
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


def cmd_run(args: argparse.Namespace, out: TextIO) -> int:
    """The loop. SIGTERM or SIGINT finishes the tick in progress, gives the lease back, and exits 0."""
    interval = spec.parse_duration(args.interval).total_seconds()
    try:
        with repo.workdir_lock(_workdir(args), holder=_holder(args)):
            return _run_loop(args, out, interval)
    except errors.LeaseHeld as exc:
        out.write(f"not started: {exc}\n")
        return EXIT_SKIPPED


def _run_loop(args: argparse.Namespace, out: TextIO, interval: float) -> int:
    controller, acting_on = build_controller(args)
    out.write(f"{acting_on}; lease holder {controller.holder}\n")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    from controller import telemetry

    tel = telemetry.Telemetry()
    tel.interval = interval
    server = tel.serve(args.metrics_port) if args.metrics_port is not None else None
    if server is not None:
        out.write(f"metrics on http://127.0.0.1:{server.server_address[1]}/metrics\n")
    try:
        while not stop.is_set():
            try:
                tick = controller.reconcile_once()
                tel.record(tick)
                out.write("\n".join(_tick_lines(tick)) + "\n")
            except errors.RolloutError as exc:
                tel.errors.labels("controller").inc()
                out.write(f"tick failed: {exc}\n")
            out.flush()
            stop.wait(interval)  # a signal ends the wait; the tick in progress always finishes
    finally:
        if server is not None:
            server.shutdown()
        if controller.release_lease():
            out.write("released the lease\n")
    out.write("stopped\n")
    return 0


def cmd_abort(args: argparse.Namespace, out: TextIO) -> int:
    controller, acting_on = build_controller(args)
    outcome = controller.abort(args.name, reason=args.reason)
    out.write(
        "\n".join(
            [acting_on, f"{outcome.rollout}: {outcome.decision.reason if outcome.decision else ''}", *outcome.actions]
        )
        + "\n"
    )
    if outcome.error:
        out.write(f"!! {outcome.error}\n")
    return 1 if outcome.error else 0


def cmd_retry(args: argparse.Namespace, out: TextIO) -> int:
    controller, acting_on = build_controller(args)
    outcome = controller.retry(args.name)
    out.write("\n".join([acting_on, *outcome.actions]) + "\n")
    return 0


def cmd_status(args: argparse.Namespace, out: TextIO) -> int:
    controller, acting_on = build_controller(args)
    tick = controller.reconcile_once(dry_run=True)
    pulls = controller.forge.list(prefix=reconcile.BRANCH_PREFIX, state=forge_base.PRState.OPEN)
    desired = load.load_repo(controller.workspace.tree())
    if args.format == "json":
        out.write(json.dumps({"actingOn": acting_on, **_tick_json(tick)}, indent=2) + "\n")
        return 0
    out.write(acting_on + "\n\n")
    now = controller.clock()
    for o in tick.outcomes:
        loaded = desired.rollout(o.rollout)
        if loaded is None:
            continue
        s = loaded.rollout.spec
        step = plan.current_step(loaded)
        phase = plan.diff(loaded, o.live).phase
        age = (
            spec.format_duration(timedelta(seconds=int((now - o.step_since).total_seconds()))) if o.step_since else "?"
        )
        if s.canary is None:
            warm = f", old stable {loaded.revisions[traffic.PREVIOUS]} kept warm" if s.previous else ""
            out.write(f"{o.rollout}  steady{warm}  rev {loaded.revisions[traffic.STABLE]}  for {age}\n")
        else:
            out.write(
                f"{o.rollout}  step {step + 1}/{len(s.steps)} ({s.steps[step].describe()})  {phase}  "
                f"rev {loaded.revisions[traffic.CANARY]}  in step {age}\n"
            )
        out.write(
            f"  live     {o.live.describe() if o.live else 'absent'}   (main says {plan.desired_state(loaded).describe()})\n"
        )
        if o.evidence:
            out.write("  gates    " + " · ".join(f"{e.name} {e.verdict}" for e in o.evidence) + "\n")
            for why in sorted({e.error for e in o.evidence if e.error}):
                out.write(f"           {why}\n")
            for e in o.evidence:
                if split.is_split(e) and e.segments and not e.error:
                    out.write(f"           {e.name}: {e.segments[0].reason}\n")
        if s.canary is not None:
            timing = advice.step_advice(loaded, step=step, config=desired.config)
            out.write("\n".join(report.timing_lines(timing, indent="  ")) + "\n")
        verdict = f"{o.decision.kind.value}: {o.decision.reason}" if o.decision else f"error: {o.error}"
        out.write(f"  next     {verdict}\n")
        for pr in pulls:
            if pr.branch.startswith(f"{reconcile.BRANCH_PREFIX}{o.rollout}/"):
                flag = " [approved]" if pr.approved else ""
                out.write(f"  PR       #{pr.number} {pr.title}{flag}\n")
        if o.error:
            out.write(f"  error    {o.adapter}: {o.error}\n")
        if o.rollback_unconfirmed:
            out.write(
                "  ROLLBACK NOT CONFIRMED: the router has not confirmed the canary is out; retried with backoff\n"
            )
        out.write("\n")
    for p in tick.problems:
        out.write(f"!! {p}\n")
    return 0


def _local_forge(args: argparse.Namespace) -> forge_local.LocalForge:
    """The local forge of the remote the user named; refused unless its main holds controller.yaml."""
    remote = _remote(args)
    if not Path(remote).exists():
        raise UsageError("`rollout pr` works on the local forge: give --remote PATH")
    try:
        repo.GitTree.open(remote, "refs/heads/main").read(load.CONFIG_FILE)
    except (FileNotFoundError, errors.RepoError):
        raise UsageError(
            f"{remote}: its main has no {load.CONFIG_FILE}, so it is not a rollouts repository; nothing was done"
        ) from None
    return forge_local.LocalForge(Path(remote))


def cmd_pr(args: argparse.Namespace, out: TextIO) -> int:
    forge = _local_forge(args)
    match args.pr_command:
        case "list":
            state = None if args.all else forge_base.PRState.OPEN
            pulls = forge.list(prefix="", state=state)
            if not pulls:
                out.write("no pull requests\n" if args.all else "no open pull requests\n")
            for pr in pulls:
                flags = ",".join(pr.labels)
                approved = "approved" if pr.approved else ""
                out.write(f"#{pr.number:<4} {pr.state.value:<7} {approved:<9} {pr.title}  [{flags}]\n")
        case "show":
            pr = forge.get(args.number)
            out.write(f"#{pr.number} {pr.title}\n{pr.state.value}, {pr.branch} -> {pr.base}, head {pr.head_sha[:10]}")
            out.write(f"{', approved' if pr.approved else ''}; labels: {', '.join(pr.labels) or '-'}\n\n{pr.body}\n")
            for context, check in forge.checks(args.number).items():
                out.write(f"check {context}: {check['state']}: {check['summary']}\n")
            for key, body in forge.comments(args.number).items():
                out.write(f"\ncomment ({key}):\n{body}\n")
        case "approve":
            pr = forge.approve(args.number, by=args.by)
            out.write(f"approved #{pr.number} as {args.by} in {forge.remote}\n")
        case "merge":
            pr = forge.get(args.number)
            if not pr.approved and not args.force:
                raise UsageError(f"#{pr.number} is not approved (approve it first, or --force)")
            pr = forge.merge(args.number, message=pr.title)
            out.write(f"merged #{pr.number} as {pr.merge_sha[:10]} in {forge.remote}\n")
        case "close":
            pr = forge.close(args.number, comment=args.comment)
            out.write(f"closed #{pr.number} in {forge.remote}\n")
    return 0


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


def add_controller_parsers(sub: Any) -> None:
    r = sub.add_parser("reconcile", help="one tick: observe, decide, act, verify")
    r.add_argument("--once", action="store_true", help="run one tick and exit (the default)")
    r.add_argument("--dry-run", action="store_true", help="decide and report; change nothing")
    r.add_argument("--format", choices=("text", "json"), default="text")
    _controller_args(r, lease=True)
    r.set_defaults(func=cmd_reconcile)

    run = sub.add_parser("run", help="reconcile every --interval until SIGTERM; serves /metrics and /healthz")
    run.add_argument("--interval", default="10s")
    run.add_argument("--metrics-port", type=int, default=None, help="serve /metrics and /healthz on this port")
    _controller_args(run, lease=True)
    run.set_defaults(func=cmd_run)

    a = sub.add_parser("abort", help="the kill switch: canary to 0 now, then a revert PR")
    a.add_argument("name", metavar="NAME")
    a.add_argument("--reason", required=True)
    _controller_args(a)
    a.set_defaults(func=cmd_abort)

    rt = sub.add_parser("retry", help="propose a PR that lets a rolled-back or paused revision run again")
    rt.add_argument("name", metavar="NAME")
    _controller_args(rt)
    rt.set_defaults(func=cmd_retry)

    st = sub.add_parser("status", help="every rollout: step, weights, verdicts, open PRs, time in step")
    st.add_argument("--format", choices=("text", "json"), default="text")
    _controller_args(st)
    st.set_defaults(func=cmd_status)

    pr = sub.add_parser("pr", help="the local forge's pull requests")
    pr_sub = pr.add_subparsers(dest="pr_command", required=True, metavar="ACTION")
    ls = pr_sub.add_parser("list", help="open pull requests (--all for every one)")
    ls.add_argument("--all", action="store_true")
    show = pr_sub.add_parser("show", help="one pull request: body, checks, comments")
    approve = pr_sub.add_parser("approve", help="approve as a reviewer")
    approve.add_argument("--by", default=os.environ.get("USER", "reviewer"))
    merge = pr_sub.add_parser("merge", help="merge (a real merge commit naming the PR)")
    merge.add_argument("--force", action="store_true", help="merge without an approval")
    close = pr_sub.add_parser("close", help="close without merging")
    close.add_argument("--comment", default="")
    for p in (show, approve, merge, close):
        p.add_argument("number", type=int, metavar="N")
    for p in (ls, show, approve, merge, close):
        p.add_argument("--remote", default=None, help="the local remote, a path (default: $ROLLOUT_REMOTE)")
    pr.set_defaults(func=cmd_pr)


# -- eval ----------------------------------------------------------------------------------------


def cmd_eval(args: argparse.Namespace, out: TextIO) -> int:
    from controller import evalrun, evals, llm

    named = named_rollout(args, out)
    if named is None:
        return 1
    tree, root, loaded = named.tree, named.root, named.loaded
    if args.check:  # the golden set only: no endpoint, no requests
        golden = evals.load_set(tree, loaded.name)
        out.write(
            f"{loaded.name}: {len(golden.cases)} golden cases in {len(golden.files)} file(s), set {golden.digest}\n"
        )
        return 0
    endpoint = args.endpoint or os.environ.get("ROLLOUT_EVAL_ENDPOINT")
    if not endpoint:
        raise UsageError("give --endpoint URL (an OpenAI-compatible base URL) or set ROLLOUT_EVAL_ENDPOINT")
    if not endpoint.startswith(("http://", "https://")):
        raise UsageError(f"--endpoint {endpoint!r}: expected an http:// or https:// base URL")
    if args.concurrency < 1 or args.timeout <= 0 or args.retries < 0:
        raise UsageError("--concurrency must be at least 1, --timeout above 0 and --retries at least 0")
    if args.record and (args.variant != "both" or loaded.rollout.spec.canary is None or args.serve):
        raise UsageError("--record needs a canary and --variant both")
    if args.variant == "both" and loaded.rollout.spec.canary is None and not args.serve:
        out.write(f"rollout {loaded.name} has no canary: nothing to compare (use --variant stable)\n")
        return 0
    golden = evals.load_set(tree, loaded.name)
    gate = loaded.rollout.spec.offline_eval
    if args.reuse_recorded and args.variant == "both" and (reused := evals.recorded(tree, loaded, golden)):
        judgement = evals.offline_judgement(reused, gate) if gate is not None else None
        out.write(evals.render(reused, args.format, judgement=judgement, recorded=True))
        return 0 if evals.exit_ok(reused, judgement) else 1
    client = llm.Client(
        endpoint, api_key=os.environ.get(args.api_key_env) or None, timeout=args.timeout, retries=args.retries
    )
    try:
        if args.serve:
            try:
                interval = spec.parse_duration(args.interval).total_seconds()
            except ValueError as exc:
                raise UsageError(f"--interval {args.interval!r}: {exc}") from exc
            evalrun.serve(
                tree,
                loaded,
                golden,
                client,
                port=args.port,
                interval=interval,
                concurrency=args.concurrency,
                rounds=args.rounds,
                on_ready=lambda port: print(
                    f"serving eval metrics on http://127.0.0.1:{port}/metrics", file=sys.stderr
                ),
            )
            return 0
        with _eval_progress() as progress:
            found = evalrun.run(
                tree, loaded, golden, client, variant=args.variant, concurrency=args.concurrency, progress=progress
            )
    finally:
        client.close()
    judgement = evals.offline_judgement(found, gate) if gate is not None and len(found.variants) == 2 else None
    out.write(evals.render(found, args.format, judgement=judgement))
    if args.record:
        path = root / evals.result_path(loaded.name, loaded.revisions["canary"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(evals.render(found, "json", judgement=judgement), "utf-8")
        print(f"wrote {_display(root, evals.result_path(loaded.name, loaded.revisions['canary']))}", file=sys.stderr)
    return 0 if evals.exit_ok(found, judgement) else 1


class _eval_progress:
    """A rich progress bar on stderr when stderr is a terminal; otherwise nothing."""

    def __enter__(self) -> Callable[[int, int], None] | None:
        if not sys.stderr.isatty():
            self._bar = None
            return None
        from rich.console import Console
        from rich.progress import Progress

        self._bar = Progress(console=Console(stderr=True), transient=True)
        self._bar.start()
        task = self._bar.add_task("eval", total=None)
        bar = self._bar

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        return update

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


def add_eval_parser(sub: Any) -> None:
    e = sub.add_parser("eval", help="run a rollout's golden set against an endpoint: stable and canary side by side")
    e.add_argument("name", metavar="NAME", help="the rollout")
    e.add_argument("--variant", choices=("stable", "canary", "both"), default="both")
    e.add_argument("--endpoint", default=None, help="an OpenAI-compatible base URL (default: $ROLLOUT_EVAL_ENDPOINT)")
    e.add_argument("--format", choices=("text", "markdown", "json"), default="text")
    e.add_argument("--api-key-env", default="OPENAI_API_KEY", help="the variable holding the API key")
    e.add_argument("--concurrency", type=int, default=4, help="requests in flight at once")
    e.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    e.add_argument("--retries", type=int, default=3, help="retries on timeouts, 429 and 5xx")
    e.add_argument("--check", action="store_true", help="only load and check the golden set; call nothing")
    e.add_argument("--record", action="store_true", help="write the report to evals/results/<canary revision>.json")
    e.add_argument(
        "--reuse-recorded", action="store_true", help="show the recorded result for this canary instead, if current"
    )
    e.add_argument("--serve", action="store_true", help="evaluate continuously; counters on /metrics")
    e.add_argument("--port", type=int, default=9464, help="with --serve: the /metrics port on 127.0.0.1")
    e.add_argument("--interval", default="5m", help="with --serve: time between rounds")
    e.add_argument("--rounds", type=int, default=None, help="with --serve: stop after N rounds")
    e.add_argument("--repo", default=".", help="a path in a rollouts repository")
    e.set_defaults(func=cmd_eval)


# -- main ----------------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rollout", description="GitOps rollouts for LLM model and prompt changes.")
    p.add_argument("--version", action="version", version=f"rollout {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    v = sub.add_parser("validate", help="check rollout specs and controller.yaml, with lint")
    v.add_argument("paths", nargs="*", metavar="PATH", help="files or directories (default: rollouts)")
    v.add_argument("--format", choices=("text", "json", "github"), default="text")
    v.add_argument("--strict", action="store_true", help="fail on warnings too")
    v.set_defaults(func=cmd_validate)

    s = sub.add_parser("schema", help="write the JSON Schemas of the spec files")
    s.add_argument("--out", default="schemas", help="directory (default: schemas)")
    s.add_argument("--check", action="store_true", help="only check that the files are up to date")
    s.set_defaults(func=cmd_schema)

    pl = sub.add_parser("plan", help="show desired against live for every rollout; changes nothing")
    pl.add_argument("--repo", default=".", help="a path in a rollouts repository, or a git URL")
    pl.add_argument("--ref", default=None, help="a git ref to read (default: the working tree)")
    pl.add_argument("--format", choices=("text", "markdown", "json"), default="text")
    pl.add_argument("--detailed-exitcode", action="store_true", help="exit 2 when any route drifted")
    pl.set_defaults(func=cmd_plan)

    d = sub.add_parser("demo", help="a real rollout, closed loop, on Envoy, Prometheus and stand-in models")
    d.add_argument("--scenario", choices=("good", "regression", "latency", "errors"), default="good")
    d.add_argument("--examples", default=".", help="the project checkout (default: .)")
    d.add_argument("--plain", action="store_true", help="plain lines instead of the live view")
    d.set_defaults(func=cmd_demo)

    add_gates_parser(sub)
    add_check_parser(sub)
    add_render_parser(sub)
    add_controller_parsers(sub)
    add_eval_parser(sub)
    return p


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    args = parser().parse_args(argv)
    func: Callable[[argparse.Namespace, TextIO], int] = args.func
    try:
        arm_kill_point(os.environ.get(KILL_ENV))
        return func(args, out)
    except UsageError as exc:
        print(f"rollout: {exc}", file=sys.stderr)
        return 2
    except errors.SpecError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except errors.RolloutError as exc:
        print(f"rollout {args.command}: {exc}", file=sys.stderr)
        return 1
    finally:
        cutpoints.arm(None)


def arm_kill_point(name: str | None) -> None:
    """Tests only: with `ROLLOUT_TEST_KILL_AT=NAME` (a point of `controller.cutpoints`), the process
    SIGKILLs itself the first time it reaches that point, leaving what a real death leaves (half-written
    files, a held lease, a branch without its PR, child processes) for the restart to deal with
    (`tests/faults/test_real_kill.py`). Unset, nothing is armed; an unknown name is a usage error, so a
    typo never passes for a test that survived. It says on stderr that it is armed."""
    if not name:
        return
    if name not in cutpoints.POINTS:
        raise UsageError(f"${KILL_ENV}={name!r}: not a cut point; one of {', '.join(cutpoints.POINTS)}")
    print(f"rollout: ${KILL_ENV} is set: this process kills itself at {name}", file=sys.stderr)

    def kill(reached: str) -> None:
        if reached == name:
            print(f"rollout: killed at {name}", file=sys.stderr, flush=True)
            sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGKILL)

    cutpoints.arm(kill)
