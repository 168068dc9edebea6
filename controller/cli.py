"""The `rollout` command: parses arguments, builds adapters, prints, and sets exit codes.

This is the only module that reads the environment or prints. Exit codes: 0 success, 1 a check
failed (invalid spec, drift asked about, gate failed), 2 usage error.
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
from typing import Any, TextIO

from pydantic import BaseModel

from controller import (
    __version__,
    analysis,
    errors,
    evidence,
    gates,
    lint,
    load,
    plan,
    prometheus,
    reconcile,
    repo,
    report,
    spec,
)
from controller.forge import base as forge_base
from controller.forge import local as forge_local
from controller.routers import base, envoy, flagd
from controller.routers import file as file_router

SCHEMAS: dict[str, type[BaseModel]] = {
    "rollout.schema.json": spec.Rollout,
    "controller.schema.json": spec.ControllerConfig,
}


class UsageError(Exception):
    """Bad arguments: exit code 2."""


# -- adapters ------------------------------------------------------------------------------------


def build_router(
    name: str, config: spec.RouterConfig, *, root: Path, routes: dict[str, str] | None = None
) -> base.Router:
    """One router from its config. Unknown types cannot reach here: the config is validated.

    `routes` maps each route on this router to its rollout's name (Envoy names clusters and
    runtime keys after the rollout); `route_rollouts()` builds it from the loaded repo.
    """
    match config:
        case spec.FileRouter():
            return file_router.FileRouter(name, root / config.path)
        case spec.EnvoyRouter():
            return envoy.EnvoyRouter(name, config.admin, routes=routes or {}, runtime_prefix=config.runtime_prefix)
        case spec.FlagdRouter():
            return flagd.FlagdRouter(name, root / config.path)
        case spec.LitellmRouter():
            raise errors.RouterError(f"router {name!r}: type {config.type!r} is not implemented yet")


def route_rollouts(result: load.RepoSpec, router: str) -> dict[str, str]:
    """route -> rollout name, for every rollout on `router`."""
    return {r.rollout.spec.route: r.name for r in result.rollouts if r.rollout.spec.router == router}


# -- validate ------------------------------------------------------------------------------------


def find_root(path: Path) -> Path:
    """The repository root above `path`: the directory holding rollouts/controller.yaml."""
    start = path.resolve()
    for candidate in [start, *start.parents]:
        if (candidate / load.CONFIG_FILE).is_file():
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
                doc = load.parse_yaml(loaded.path, tree.read(loaded.path))
                findings += [_finding_json(f, root) for f in lint.lint(loaded, result.config, doc.data)]
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
    routers: dict[str, base.Router] = {}
    diffs: list[plan.RouteDiff] = []
    failures: list[tuple[str, str]] = []
    for loaded in result.rollouts:
        name = loaded.rollout.spec.router
        try:
            if name not in routers:
                routers[name] = build_router(
                    name, result.config.routers[name], root=root, routes=route_rollouts(result, name)
                )
            live = routers[name].read(loaded.rollout.spec.route)
        except errors.RolloutError as exc:
            failures.append((loaded.name, str(exc)))
            continue
        diffs.append(plan.diff(loaded, live))
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

    examples = Path(args.examples)
    if not (examples / load.CONFIG_FILE).is_file():
        raise UsageError(f"no {load.CONFIG_FILE} in {examples}: run the demo from the project checkout")
    made = demo.build(examples)
    out.write(f"Demo repository: {made.clone} (remote {made.remote})\n\n$ rollout validate\n")
    code = cmd_validate(argparse.Namespace(paths=[str(made.clone / "rollouts")], format="text", strict=False), out)
    if code:
        return code
    plan_args = argparse.Namespace(repo=str(made.clone), ref="main", format="text", detailed_exitcode=False)
    out.write("\n$ rollout plan --ref main        # nothing is live yet: every route is absent\n")
    cmd_plan(plan_args, out)
    loaded = load.load_repo(repo.GitTree.open(made.clone, "main"))
    assert loaded.config is not None  # validated above
    for one in loaded.rollouts:
        s = one.rollout.spec
        base.apply(
            build_router(s.router, loaded.config.routers[s.router], root=made.clone), s.route, plan.desired_state(one)
        )
    out.write("\n$ rollout plan --ref main        # after applying the desired state: in sync\n")
    cmd_plan(plan_args, out)
    victim = next(one for one in loaded.rollouts if one.rollout.spec.canary is not None)
    state = demo.touch_by_hand(made.clone, victim)
    out.write(f"\n# by hand: {victim.name} set to {state.describe()} on the live router\n")
    out.write("$ rollout plan --ref main --format markdown   # the drift, as a PR comment shows it\n")
    cmd_plan(argparse.Namespace(**{**vars(plan_args), "format": "markdown"}), out)
    out.write(f"\nLook around: cd {made.clone} && git log --oneline && cat .rollout/*.json\n")
    return 0


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


def cmd_gates(args: argparse.Namespace, out: TextIO) -> int:
    tree, root, _source = open_tree(args.repo, None)
    result = load.load_repo(tree)
    if result.config is None:
        out.write(report.findings([_problem_json(p, root) for p in result.problems], "text"))
        return 1
    loaded = result.rollout(args.name)
    if loaded is None:
        raise UsageError(f"no valid rollout named {args.name!r} (try `rollout validate`)")
    prom = result.config.prometheus
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
    token = os.environ.get(prom.bearer_token_env) if prom.bearer_token_env else None
    metrics = prometheus.Prometheus(prom.url, timeout=prom.timeout, token=token)
    try:
        found = analysis.evaluate(
            [analysis.target(loaded, result.config)], config=result.config, metrics=metrics, at=at, window=window
        )
    finally:
        metrics.close()
    rows = found[loaded.name]
    render = {"json": evidence.json_text, "markdown": evidence.markdown}.get(args.format, evidence.text)
    out.write(render(loaded.name, rows, at=at.isoformat(timespec="seconds")))
    return 0 if rows and gates.worst(e.verdict for e in rows) is gates.Verdict.PASS else 1


def add_gates_parser(sub: Any) -> None:
    g = sub.add_parser("gates", help="measure a rollout's gates now: stable and canary side by side")
    g.add_argument("name", metavar="NAME", help="the rollout")
    g.add_argument("--at", default="now", help="evaluate at this time: now, unix seconds or ISO 8601")
    g.add_argument("--window", default=None, help="measurement window (default: the step's `for`, else the interval)")
    g.add_argument("--format", choices=("text", "markdown", "json"), default="text")
    g.add_argument("--repo", default=".", help="a path in a rollouts repository")
    g.set_defaults(func=cmd_gates)


# -- render --------------------------------------------------------------------------------------


def cmd_render_envoy(args: argparse.Namespace, out: TextIO) -> int:
    root = find_root(Path(args.repo))
    result = load.load_repo(repo.WorkTree(root))
    if result.config is None or result.problems:
        out.write(report.findings([_problem_json(p, root) for p in result.problems], "text"))
        return 1
    envoys = {n: c for n, c in result.config.routers.items() if isinstance(c, spec.EnvoyRouter)}
    if args.router is None and len(envoys) != 1:
        raise UsageError(f"name the Envoy router to render, one of: {', '.join(sorted(envoys)) or '(none)'}")
    name = args.router or next(iter(envoys))
    if name not in envoys:
        raise UsageError(f"{name!r} is not an Envoy router in {load.CONFIG_FILE}; Envoy routers: {sorted(envoys)}")
    config = envoys[name]
    rollouts = [
        (
            r.name,
            r.rollout.spec.route,
            {
                role: v.model
                for role, v in ((base.STABLE, r.rollout.spec.stable), (base.CANARY, r.rollout.spec.canary))
                if v
            },
        )
        for r in result.rollouts
        if r.rollout.spec.router == name
    ]
    document = envoy.bootstrap(
        envoy.route_specs(rollouts, upstreams=config.upstreams),
        admin=config.admin,
        listen=config.listen,
        runtime_prefix=config.runtime_prefix,
        split_header=args.split_header,
    )
    text = f"# Envoy bootstrap for router {name!r}, rendered by `rollout render envoy`; do not edit.\n"
    text += envoy.to_yaml(document)
    if args.out:
        Path(args.out).write_text(text, "utf-8")
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        out.write(text)
    return 0


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


# -- the controller: reconcile, run, abort, retry, status, pr ------------------------------------


def _default_remote() -> str:
    remote = os.environ.get("ROLLOUT_REMOTE") or repo.origin_of(Path.cwd())
    if not remote:
        raise UsageError("no --remote given, $ROLLOUT_REMOTE unset, and no git repository here")
    return remote


def build_forge(config: spec.ForgeConfig, *, remote: str) -> forge_base.Forge:
    match config:
        case spec.LocalForge():
            path = Path(remote)
            if not path.exists():
                raise UsageError(f"forge type local needs a local remote (a path), not {remote!r}")
            return forge_local.LocalForge(path)
        case spec.GithubForge():
            from controller.forge import github

            return github.GithubForge.from_config(config, env=os.environ)


def build_controller(args: argparse.Namespace) -> reconcile.Controller:
    remote = args.remote or _default_remote()
    workdir = Path(args.workdir) if args.workdir else _cache_dir(remote)
    workspace = repo.Workspace.open(remote, workdir / "clone", branch=args.branch)
    desired = load.load_repo(workspace.tree())
    if desired.config is None:
        raise errors.SpecError(desired.problems)
    config = desired.config
    state = Path(args.state_dir) if args.state_dir else workdir
    metrics = None
    if config.prometheus is not None:
        p = config.prometheus
        token = os.environ.get(p.bearer_token_env) if p.bearer_token_env else None
        metrics = prometheus.Prometheus(p.url, timeout=p.timeout, token=token)

    def routers(name: str, cfg: spec.RouterConfig, routes: Mapping[str, str]) -> base.Router:
        return build_router(name, cfg, root=state, routes=dict(routes))

    holder = args.holder or f"{socket.gethostname()}-{os.getpid()}"
    return reconcile.Controller(workspace, build_forge(config.forge, remote=remote), routers, metrics, holder=holder)


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
    controller = build_controller(args)
    tick = controller.reconcile_once(dry_run=args.dry_run)
    if args.format == "json":
        out.write(json.dumps(_tick_json(tick), indent=2) + "\n")
    else:
        out.write("\n".join(_tick_lines(tick)) + "\n")
    return 1 if tick.problems or any(o.error for o in tick.outcomes) else 0


def cmd_run(args: argparse.Namespace, out: TextIO) -> int:
    interval = spec.parse_duration(args.interval).total_seconds()
    controller = build_controller(args)
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
    out.write("stopped\n")
    return 0


def cmd_abort(args: argparse.Namespace, out: TextIO) -> int:
    outcome = build_controller(args).abort(args.name, reason=args.reason)
    out.write(
        "\n".join([f"{outcome.rollout}: {outcome.decision.reason if outcome.decision else ''}", *outcome.actions])
        + "\n"
    )
    if outcome.error:
        out.write(f"!! {outcome.error}\n")
    return 1 if outcome.error else 0


def cmd_retry(args: argparse.Namespace, out: TextIO) -> int:
    outcome = build_controller(args).retry(args.name)
    out.write("\n".join(outcome.actions) + "\n")
    return 0


def cmd_status(args: argparse.Namespace, out: TextIO) -> int:
    controller = build_controller(args)
    tick = controller.reconcile_once(dry_run=True)
    pulls = controller.forge.list(prefix=reconcile.BRANCH_PREFIX, state=forge_base.PRState.OPEN)
    desired = load.load_repo(controller.workspace.tree())
    if args.format == "json":
        out.write(json.dumps(_tick_json(tick), indent=2) + "\n")
        return 0
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
            warm = f", old stable {loaded.revisions[base.PREVIOUS]} kept warm" if s.previous else ""
            out.write(f"{o.rollout}  steady{warm}  rev {loaded.revisions[base.STABLE]}  for {age}\n")
        else:
            out.write(
                f"{o.rollout}  step {step + 1}/{len(s.steps)} ({s.steps[step].describe()})  {phase}  "
                f"rev {loaded.revisions[base.CANARY]}  in step {age}\n"
            )
        out.write(
            f"  live     {o.live.describe() if o.live else 'absent'}   (main says {plan.desired_state(loaded).describe()})\n"
        )
        if o.evidence:
            out.write("  gates    " + " · ".join(f"{e.gate.use} {e.verdict}" for e in o.evidence) + "\n")
            for why in sorted({e.error for e in o.evidence if e.error}):
                out.write(f"           {why}\n")
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
    remote = args.remote or _default_remote()
    if not Path(remote).exists():
        raise UsageError("`rollout pr` works on the local forge: give --remote PATH")
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
            out.write(f"approved #{pr.number} as {args.by}\n")
        case "merge":
            pr = forge.get(args.number)
            if not pr.approved and not args.force:
                raise UsageError(f"#{pr.number} is not approved (approve it first, or --force)")
            pr = forge.merge(args.number, message=pr.title)
            out.write(f"merged #{pr.number} as {pr.merge_sha[:10]}\n")
        case "close":
            pr = forge.close(args.number, comment=args.comment)
            out.write(f"closed #{pr.number}\n")
    return 0


def _controller_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--remote", default=None, help="the GitOps repository (URL or path; default $ROLLOUT_REMOTE or origin)"
    )
    p.add_argument(
        "--workdir", default=None, help="where the controller keeps its clone (default: ~/.cache/rollout/...)"
    )
    p.add_argument("--state-dir", default=None, help="where file routers' paths are relative to (default: the workdir)")
    p.add_argument("--branch", default="main", help="the branch that holds the desired state")
    p.add_argument("--holder", default=None, help="this controller's name in the lease (default: host-pid)")


def add_controller_parsers(sub: Any) -> None:
    r = sub.add_parser("reconcile", help="one tick: observe, decide, act, verify")
    r.add_argument("--once", action="store_true", help="run one tick and exit (the default)")
    r.add_argument("--dry-run", action="store_true", help="decide and report; change nothing")
    r.add_argument("--format", choices=("text", "json"), default="text")
    _controller_args(r)
    r.set_defaults(func=cmd_reconcile)

    run = sub.add_parser("run", help="reconcile every --interval until SIGTERM; serves /metrics and /healthz")
    run.add_argument("--interval", default="10s")
    run.add_argument("--metrics-port", type=int, default=None, help="serve /metrics and /healthz on this port")
    _controller_args(run)
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
        p.add_argument("--remote", default=None, help="the local remote (a path; default $ROLLOUT_REMOTE or origin)")
    pr.set_defaults(func=cmd_pr)


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

    d = sub.add_parser("demo", help="run the examples end to end in a throwaway repository")
    d.add_argument("--examples", default=".", help="the project checkout holding rollouts/ (default: .)")
    d.set_defaults(func=cmd_demo)

    add_gates_parser(sub)
    add_render_parser(sub)
    add_controller_parsers(sub)
    return p


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    args = parser().parse_args(argv)
    func: Callable[[argparse.Namespace, TextIO], int] = args.func
    try:
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
