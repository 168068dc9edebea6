"""`rollout gates` (a rollout's gates measured now, stable and canary side by side) and `rollout check`
(what merging a PR does to each rollout: a PR's check, with the gates of every promotion)."""

from __future__ import annotations

import argparse
import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from controller.cli import common, console

if TYPE_CHECKING:
    from controller import gates, load, review, spec


def add_parser(sub: Any) -> None:
    g = sub.add_parser(
        "gates",
        help="measure a rollout's gates now: stable and canary side by side",
        epilog=common.example("rollout gates support-bot --window 30m"),
    )
    g.add_argument("name", metavar="NAME", help="the rollout")
    g.add_argument("--at", default="now", help="evaluate at this time: now, unix seconds or ISO 8601")
    g.add_argument(
        "--window",
        default=None,
        help="measurement window (default: the controller's: the time in the step, from this clone's "
        "origin/main history, else the step's `for`)",
    )
    g.add_argument("--format", choices=("text", "markdown", "json"), default="text", help="how to print the table")
    g.add_argument("--repo", default=".", help="a path in a rollouts repository")
    g.set_defaults(func=cmd_gates)

    c = sub.add_parser(
        "check",
        help="what merging a PR does to each rollout; a promotion needs passing gates (the PR's check)",
        epilog=common.example("rollout check --base origin/main --format markdown"),
    )
    c.add_argument("--base", required=True, help="the git ref the PR merges into (in CI: the merge commit's HEAD^1)")
    c.add_argument("--head", default=None, help="the git ref of the PR's result (default: the working tree)")
    c.add_argument("--at", default="now", help="measure gates at this time: now, unix seconds or ISO 8601")
    c.add_argument(
        "--window", default=None, help="gate window (default: the controller's window at the end of the step's `for`)"
    )
    c.add_argument("--format", choices=("text", "markdown", "json"), default="text", help="markdown: for the PR")
    c.add_argument("--repo", default=".", help="a path in a rollouts repository")
    c.set_defaults(func=cmd_check)


@console.coloured
def cmd_gates(args: argparse.Namespace, out: TextIO) -> int:
    from controller import analysis, evidence, gates, plan

    named = common.named_rollout(args, out)
    if named is None:
        return 1
    config, loaded = named.config, named.loaded
    prom = config.prometheus
    if prom is None:
        raise common.UsageError("controller.yaml sets no prometheus.url")
    at = common.parse_time(args.at)
    step = loaded.rollout.spec.steps[plan.current_step(loaded)]
    since, life = step_since(named.root, loaded, config)
    in_step = at - since if since is not None and since <= at else step.for_
    in_life = at - life if life is not None and life <= at else None
    interval = loaded.rollout.spec.analysis.interval
    window = _window(args.window) if args.window else analysis.window(interval, in_step, in_life)
    rows = measure_gates(loaded, config, prom, at=at, window=window, since=since, traffic_split=True)
    render = {"json": evidence.json_text, "markdown": evidence.markdown}.get(args.format, evidence.text)
    if args.format == "text":  # which step was measured is whatever this checkout says
        out.write(f"Rollout {loaded.name} as read from {named.source}\n")
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
    since: datetime | None = None,
    traffic_split: bool = False,
) -> tuple[gates.GateEvidence, ...]:
    """Every gate of one rollout, measured in Prometheus (one query per template); with `traffic_split`,
    then the traffic-split check over the same window, where it applies (one query more), counting
    requests from `since` (the step's start) when it is known."""
    from controller import analysis, prometheus, split

    metrics = prometheus.Prometheus.from_config(prom, env=os.environ)
    try:
        found = analysis.evaluate(
            [analysis.target(loaded, config)], config=config, metrics=metrics, at=at, window=window
        )
        rows = tuple(found[loaded.name])
        check = split.target(loaded, config, since=since, at=at, window=window) if traffic_split else None
        if check is not None:
            rows += (analysis.evaluate_split([check], metrics=metrics, at=at)[loaded.name],)
    finally:
        metrics.close()
    return rows


def step_since(
    root: Path, loaded: load.LoadedRollout, config: spec.ControllerConfig
) -> tuple[datetime | None, datetime | None]:
    """When the rollout's current step began, and its canary's life (`StepHistory.revision_since`), read
    as the controller reads them: from the first-parent history of `origin/main` in the clone around
    `root` (as last fetched). None outside a clone, or when its main says something else about the
    rollout than the working tree (then the step's `for` stands in)."""
    from controller import errors, repo
    from controller.reconcile import observe

    workspace = repo.Workspace.of_checkout(root)
    if workspace is None:
        return None, None
    try:
        history = observe.StepHistory(workspace)
        return history.since(loaded, config), history.revision_since(loaded, config)
    except errors.RepoError:
        return None, None


@console.coloured
def cmd_check(args: argparse.Namespace, out: TextIO) -> int:
    """What merging a PR does (its head: the working tree or --head, against --base), and the gates of
    every promotion, measured with the base's gates and Prometheus. 0 mergeable, 1 not."""
    from controller import review

    local = Path(args.repo)
    if common.bare(local) and args.head is None:
        raise common.UsageError(f"{local} is a bare repository, with no working tree: name the head with --head")
    root = local if common.bare(local) else common.find_root(local)
    at = common.parse_time(args.at)
    result = check(root, base=args.base, head=args.head, at=at, window=_window(args.window) if args.window else None)
    render = {"json": review.json_text, "markdown": review.markdown}.get(args.format, review.text)
    out.write(render(result, at=at.isoformat(timespec="seconds")))
    return 0 if result.mergeable else 1


def check(root: Path, *, base: str, head: str | None, at: datetime, window: timedelta | None = None) -> review.Review:
    """A pull request's check (`rollout check`, and `rollout pr merge` on the local forge): what merging
    `head` (None: the working tree at `root`) into `base` does to each rollout, with every promotion's
    gates measured with the base's gates and Prometheus, over `window` or the controller's window when the
    step's `for` has run."""
    from controller import analysis, load, plan, repo, review, worktree

    before = load.load_repo(repo.GitTree.open(root, base), prompts=common.prompt_registry())
    after = load.load_repo(
        repo.GitTree.open(root, head) if head else worktree.WorkTree(root), prompts=common.prompt_registry()
    )
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
        if window is None:  # the controller's window when the step's `for` has run (analysis.window)
            step = loaded.rollout.spec.steps[plan.current_step(loaded)]
            window_of = analysis.window(loaded.rollout.spec.analysis.interval, step.for_)
        else:
            window_of = window
        measured[change.name] = measure_gates(
            loaded, config, config.prometheus, at=at, window=window_of, traffic_split=True
        )
    # a problem main already has is not this PR's: it must not block a revert's record
    known = {(p.file, p.code, p.field, p.message) for p in before.problems}
    introduced = [p for p in after.problems if (p.file, p.code, p.field, p.message) not in known]
    return review.judge(found, measured, unreadable=introduced)


def _window(value: str) -> timedelta:
    """A --window argument."""
    from controller import spec

    try:
        return spec.parse_duration(value)
    except ValueError as exc:
        raise common.UsageError(f"--window {value!r}: {exc}") from exc
