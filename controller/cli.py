"""The `rollout` command: parses arguments, builds adapters, prints, and sets exit codes.

This is the only module that reads the environment or prints. Exit codes: 0 success, 1 a check
failed (invalid spec, drift asked about, gate failed), 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from pydantic import BaseModel

from controller import __version__, analysis, errors, evidence, gates, lint, load, plan, prometheus, repo, report, spec
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
        diffs.append(plan.diff(loaded, live, config=result.config))
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
