"""`rollout plan`: desired against live for every rollout, read from the routers; changes nothing."""

from __future__ import annotations

import argparse
import os
from typing import Any, TextIO

from controller import errors, load, plan, report
from controller.cli import common
from controller.routers import base
from controller.routers import factory as router_factory


def add_parser(sub: Any) -> None:
    pl = sub.add_parser("plan", help="show desired against live for every rollout; changes nothing")
    pl.add_argument("--repo", default=".", help="a path in a rollouts repository, or a git URL")
    pl.add_argument("--ref", default=None, help="a git ref to read (default: the working tree)")
    pl.add_argument("--format", choices=("text", "markdown", "json"), default="text")
    pl.add_argument("--detailed-exitcode", action="store_true", help="exit 2 when any route drifted")
    pl.set_defaults(func=cmd_plan)


def cmd_plan(args: argparse.Namespace, out: TextIO) -> int:
    tree, root, source = common.open_tree(args.repo, args.ref)
    result = load.load_repo(tree)
    if result.config is None:
        out.write(report.findings([common.problem_json(p, root) for p in result.problems], "text"))
        return 1
    live: dict[str, dict[str, base.Live] | errors.RolloutError] = {}  # router -> its routes, one read
    state = common.state_dir(result.config)
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
            problems=[common.problem_json(p, root) for p in result.problems],
            fmt=args.format,
        )
    )
    if args.detailed_exitcode and any(d.drift for d in diffs):
        return 2 if not (failures or result.problems) else 1
    return 1 if failures or result.problems else 0
