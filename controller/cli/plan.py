"""`rollout plan`: desired against live for every rollout, read from the routers; changes nothing."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TextIO

from controller.cli import common, console

if TYPE_CHECKING:
    from controller import load, report, spec


def add_parser(sub: Any) -> None:
    pl = sub.add_parser(
        "plan",
        help="show desired against live for every rollout; changes nothing",
        epilog=common.example("rollout plan --ref origin/main --format markdown"),
    )
    pl.add_argument("--repo", default=".", help="a path in a rollouts repository, or a git URL")
    pl.add_argument("--ref", default=None, help="a git ref to read (default: the working tree)")
    pl.add_argument("--format", choices=("text", "markdown", "json"), default="text", help="markdown: for a PR comment")
    pl.add_argument("--detailed-exitcode", action="store_true", help="exit 2 when any route drifted")
    pl.set_defaults(func=cmd_plan)


@console.coloured
def cmd_plan(args: argparse.Namespace, out: TextIO) -> int:
    from controller import errors, load, plan, report
    from controller.routers import base
    from controller.routers import factory as router_factory

    tree, root, source = common.open_tree(args.repo, args.ref)
    result = load.load_repo(tree, prompts=common.prompt_registry())
    if result.config is None:
        out.write(report.findings([common.problem_json(p, root) for p in result.problems], "text"))
        return 1
    live: dict[str, dict[str, base.Live] | errors.RolloutError] = {}  # router -> its routes, one read
    state = common.state_dir(result.config)
    source += f"; router state in {state}"
    for name in dict.fromkeys(r.rollout.spec.router for r in result.rollouts):
        try:
            router = router_factory.build(
                name,
                result.config.routers[name],
                root=state,
                routes=load.route_rollouts(result, name),
                cohorts=load.rollout_cohorts(result, name),
                env=os.environ,
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
    metrics = _metrics_contract(result.config, result.rollouts)
    out.write(
        report.plan_report(
            source=source,
            diffs=diffs,
            failures=failures,
            problems=[common.problem_json(p, root) for p in result.problems],
            fmt=args.format,
            metrics=metrics,
        )
    )
    if args.detailed_exitcode and any(d.drift for d in diffs):
        return 2 if not (failures or result.problems) else 1
    return 1 if failures or result.problems else 0


def _metrics_contract(config: spec.ControllerConfig, rollouts: Sequence[load.LoadedRollout]) -> report.MetricsCheck:
    """`rollout doctor`'s check for every rollout with a canary and gates, in one batch (a request per
    template), when Prometheus is configured. Prometheus not answering is a warning, and costs at most
    `Timeouts.plan_metrics`: plan must stay quick where Prometheus is out of reach (a laptop, a CI runner)."""
    from controller import analysis, contract, errors, prometheus, report, settings

    targets = [t for t in (contract.target(r, config) for r in rollouts) if t.gates and len(t.variants) > 1]
    if config.prometheus is None or not targets:
        return report.MetricsCheck()
    bound = timedelta(seconds=settings.Settings().timeouts.plan_metrics)
    metrics = prometheus.Prometheus.from_config(
        config.prometheus, env=os.environ, timeout=min(bound, config.prometheus.timeout)
    )
    try:
        checks = analysis.check_contract(
            targets, config=config, metrics=metrics, at=datetime.now(UTC), window=contract.WINDOW
        )
    except errors.MetricsUnavailable as exc:
        return report.MetricsCheck(error=str(exc))
    finally:
        metrics.close()
    return report.MetricsCheck(checks)
