"""`rollout render envoy|litellm|istio|gateway-api`: router configuration generated from the rollouts
(`controller.render` does the work), written to standard output or to --out, or (the mesh routes) into the
repository's manifests directory."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

from controller.cli import common

if TYPE_CHECKING:
    from controller import load, spec

RouterT = TypeVar(
    "RouterT",
    "spec.EnvoyRouterConfig",
    "spec.LitellmRouterConfig",
    "spec.IstioRouterConfig",
    "spec.GatewayApiRouterConfig",
)


def add_parser(sub: Any) -> None:
    r = sub.add_parser(
        "render",
        help="generate router configuration from the rollouts",
        epilog=common.example("rollout render envoy edge --out envoy.yaml"),
    )
    rsub = r.add_subparsers(dest="target", required=True, metavar="TARGET")
    re = rsub.add_parser(
        "envoy",
        help="the Envoy bootstrap for every rollout on an Envoy router",
        epilog=common.example("rollout render envoy edge --out envoy.yaml"),
    )
    re.add_argument("router", nargs="?", default=None, metavar="ROUTER", help="an Envoy router (default: the only one)")
    re.add_argument("--repo", default=".", help="a path in a rollouts repository")
    re.add_argument("--out", default=None, help="write to FILE (default: standard output)")
    re.add_argument(
        "--split-header",
        default=None,
        help="let this request header pick the split bucket 0-99, for tests (default: none, a random split)",
    )
    re.set_defaults(func=cmd_render_envoy)

    rl = rsub.add_parser(
        "litellm",
        help="the LiteLLM model_list for every rollout on a LiteLLM router",
        epilog=common.example("rollout render litellm --weights --out weights.json"),
    )
    rl.add_argument(
        "router", nargs="?", default=None, metavar="ROUTER", help="a LiteLLM router (default: the only one)"
    )
    rl.add_argument("--repo", default=".", help="a path in a rollouts repository")
    rl.add_argument(
        "--out",
        default=None,
        help="write to FILE (default: standard output); an existing proxy config keeps every key the render does not own",
    )
    rl.add_argument("--weights", action="store_true", help="render the callback's weights file instead")
    rl.set_defaults(func=cmd_render_litellm)

    for kind, what in (("istio", "VirtualService"), ("gateway-api", "HTTPRoute")):
        rm = rsub.add_parser(
            kind,
            help=f"write each route's {what} on a {kind} router into the router's manifests directory",
            epilog=common.example(f"rollout render {kind} --check"),
        )
        rm.add_argument(
            "router", nargs="?", default=None, metavar="ROUTER", help=f"a {kind} router (default: the only one)"
        )
        rm.add_argument("--repo", default=".", help="a path in a rollouts repository")
        rm.add_argument(
            "--check", action="store_true", help="write nothing; fail when a manifest is missing or out of date"
        )
        rm.set_defaults(func=cmd_render_mesh, kind=kind)


def _render_target(
    args: argparse.Namespace, out: TextIO, kind: type[RouterT], label: str
) -> tuple[load.RepoSpec, str, RouterT] | None:
    """The valid repository and the router of type `kind` that `rollout render` was asked for; None
    (after printing the problems) when the repository is invalid."""
    from controller import load, report, worktree

    root = common.find_root(Path(args.repo))
    result = load.load_repo(worktree.WorkTree(root), prompts=common.prompt_registry())
    if result.config is None or result.problems:
        out.write(report.findings([common.problem_json(p, root) for p in result.problems], "text"))
        return None
    found = {n: c for n, c in result.config.routers.items() if isinstance(c, kind)}
    what = label.split(" ", 1)[1]
    if args.router is None and len(found) != 1:
        raise common.UsageError(f"name the {what} router to render, one of: {', '.join(sorted(found)) or '(none)'}")
    name = args.router or next(iter(found))
    if name not in found:
        raise common.UsageError(
            f"{name!r} is not {label} router in {load.CONFIG_FILE}; {what} routers: {sorted(found)}"
        )
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
    from controller import render, spec

    target = _render_target(args, out, spec.EnvoyRouterConfig, "an Envoy")
    if target is None:
        return 1
    result, name, config = target
    assert result.config is not None  # _render_target returns only valid repositories
    rendered = render.envoy_bootstrap(
        result, name, config, state=common.state_dir(result.config), split_header=args.split_header
    )
    for path, what in rendered.wrote:
        kept = what.removeprefix("kept: ")
        print(f"{'kept' if kept != what else 'wrote'} {path} ({kept})", file=sys.stderr)
    return _emit(args, out, rendered.text)


def cmd_render_litellm(args: argparse.Namespace, out: TextIO) -> int:
    from controller import errors, load, render, report, spec

    target = _render_target(args, out, spec.LitellmRouterConfig, "a LiteLLM")
    if target is None:
        return 1  # the problems are printed, among them a proxyConfig whose routing strategy ignores weights
    result, name, proxy = target
    into = None
    try:
        if args.out and not args.weights and Path(args.out).exists():
            # an existing proxy config: replace what the render owns, keep the rest (the master key...)
            into = load.parse_yaml(args.out, Path(args.out).read_bytes())
        rendered = render.litellm_config(result, name, proxy, weights=args.weights, into=into)
    except errors.SpecError as exc:
        out.write(report.findings([common.problem_json(p, Path.cwd()) for p in exc.problems], "text"))
        return 1
    except (errors.RouterError, OSError) as exc:
        out.write(f"{exc}\n")
        return 1
    return _emit(args, out, rendered.text)


def cmd_render_mesh(args: argparse.Namespace, out: TextIO) -> int:
    """Each route's manifest written into the repository (`manifests`), or, with --check, compared with it.
    A split the router cannot express exactly is refused, naming the route, and nothing is written."""
    from controller import errors, render, spec

    target: tuple[load.RepoSpec, str, spec.IstioRouterConfig | spec.GatewayApiRouterConfig] | None
    if args.kind == "istio":
        target = _render_target(args, out, spec.IstioRouterConfig, "an Istio")
    else:
        target = _render_target(args, out, spec.GatewayApiRouterConfig, "a gateway-api")
    if target is None:
        return 1
    result, name, config = target
    root = common.find_root(Path(args.repo))
    try:
        manifests = render.mesh_manifests(result, name, config)
    except errors.RouterError as exc:
        out.write(f"{exc}\n")
        return 1
    stale = []
    for m in manifests:
        path = root / m.path
        if path.is_file() and path.read_text("utf-8") == m.text:
            continue
        stale.append(m.path)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(m.text, "utf-8")
            print(f"wrote {m.path}", file=out)
    if args.check and stale:
        print(f"out of date (run `rollout render {args.kind} {name}`): " + ", ".join(stale), file=out)
        return 1
    if not stale:
        print(f"{len(manifests)} manifest(s) of router {name!r} up to date", file=out)
    return 0
