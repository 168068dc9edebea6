"""The observe pass of a tick: every gate measured in one batch, every route read (one read per
router, errors isolated per route), and when each rollout's step began (from git, remembered between
ticks within a bound). Reads only; the tick decides on what this finds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeAlias

from controller import analysis, errors, gates, load, plan, prometheus, proposals, repo, settings, spec, split, traffic
from controller.forge import base as forge_base
from controller.routers import base

#: (router name, its config, route -> rollout name, rollout -> its cohorts' names) -> the router.
RouterFactory = Callable[[str, spec.RouterConfig, Mapping[str, str], Mapping[str, Sequence[str]]], base.Router]

#: A route as the decide pass got it: what `Router.read` answered, or the error that stopped the read.
Seen: TypeAlias = base.Live | Exception


# -- gates ----------------------------------------------------------------------------------------


def measure(
    rollouts: Sequence[load.LoadedRollout],
    config: spec.ControllerConfig,
    *,
    metrics: prometheus.Prometheus | None,
    at: datetime,
    since: Mapping[str, datetime | None],
    begun: Mapping[str, datetime | None] | None = None,
) -> dict[str, tuple[gates.GateEvidence, ...]]:
    """Every gate of every rollout in flight, measured over its step so far, never before its canary's
    life began (`begun`; see `analysis.window`): one Prometheus request per template and window bucket,
    however many rollouts there are."""
    live = [r for r in rollouts if r.rollout.spec.canary is not None and r.rollout.spec.analysis.gates]
    if not live:
        return {}
    if metrics is None:
        return {
            r.name: tuple(
                gates.GateEvidence.unmeasured(r.name, g, "controller.yaml sets no prometheus.url")
                for g in r.rollout.spec.analysis.gates
            )
            for r in live
        }
    groups: dict[timedelta, list[analysis.Target]] = {}
    for r in live:
        started, life = since.get(r.name), (begun or {}).get(r.name)
        w = analysis.window(
            r.rollout.spec.analysis.interval, at - started if started else None, at - life if life else None
        )
        groups.setdefault(w, []).append(analysis.target(r, config))
    out: dict[str, tuple[gates.GateEvidence, ...]] = {}
    for w, targets in sorted(groups.items()):
        out.update(analysis.evaluate(targets, config=config, metrics=metrics, at=at, window=w))
    return out


def measure_split(
    measured: dict[str, tuple[gates.GateEvidence, ...]],
    rollouts: Sequence[load.LoadedRollout],
    config: spec.ControllerConfig,
    *,
    metrics: prometheus.Prometheus | None,
    at: datetime,
    since: Mapping[str, datetime | None],
    pulls: Sequence[forge_base.PullRequest],
) -> None:
    """The traffic-split check of every rollout it applies to, after its gates in `measured`: one
    Prometheus request for all of them. Not measured while a revert PR holds the canary at 0."""
    if metrics is None:
        return
    targets = []
    for r in rollouts:
        t = (
            None
            if rollback_pending(r, mine(pulls, r.name))
            else split.target(r, config, since=since.get(r.name), at=at)
        )
        if t is not None:
            targets.append(t)
    if targets:
        for name, e in analysis.evaluate_split(targets, metrics=metrics, at=at).items():
            measured[name] = (*measured.get(name, ()), e)


# -- routes ---------------------------------------------------------------------------------------


def read_routes(
    desired: load.RepoSpec,
    config: spec.ControllerConfig,
    factory: RouterFactory,
    rollouts: Sequence[load.LoadedRollout] | None = None,
) -> tuple[dict[str, base.Router | Exception], dict[str, dict[str, Seen]]]:
    """Each router `rollouts` use (or why it could not be built), and the live state of their
    routes from one read: per router, route -> what `read` answered for it, or the error that
    stopped the whole read (every route of that router gets it; the decide pass sorts them out).
    `rollouts` defaults to every rollout; a router is built knowing all of the repository's routes."""
    chosen = desired.rollouts if rollouts is None else rollouts
    routers: dict[str, base.Router | Exception] = {}
    live: dict[str, dict[str, Seen]] = {}
    for name in dict.fromkeys(r.rollout.spec.router for r in chosen):
        try:
            routers[name] = factory(
                name, config.routers[name], load.route_rollouts(desired, name), load.rollout_cohorts(desired, name)
            )
        except Exception as exc:
            routers[name] = exc
    for name, router in routers.items():
        if not isinstance(router, Exception):
            routes = [r.rollout.spec.route for r in chosen if r.rollout.spec.router == name]
            live[name] = read(router, routes)
    return routers, live


def read(router: base.Router, routes: Sequence[str]) -> dict[str, Seen]:
    """`router.read(routes)`, with an error that stops the whole read (the router unreachable, its
    state as a whole malformed, or a bug) given to every route: one router's fault is each of its
    rollouts' outcome, and no other router's."""
    try:
        answer: dict[str, Seen] = dict(router.read(routes))
    except Exception as exc:
        return dict.fromkeys(routes, exc)
    missing = [route for route in routes if route not in answer]
    if missing:
        bug = errors.RouterError(f"router {router.name!r}: read answered nothing for {base.routes_text(missing)}")
        answer.update(dict.fromkeys(missing, bug))
    return answer


# -- pull requests --------------------------------------------------------------------------------


def mine(pulls: Sequence[forge_base.PullRequest], rollout: str) -> tuple[forge_base.PullRequest, ...]:
    """The controller's pull requests about one rollout."""
    return tuple(p for p in pulls if (parsed := proposals.parse_branch(p.branch)) and parsed[0] == rollout)


def rollback_pending(loaded: load.LoadedRollout, mine: Sequence[forge_base.PullRequest]) -> bool:
    """A revert PR for the canary's revision is open, or was closed without merging: either way the
    rolled-back weights hold. A human who closes a revert PR has not approved the canary: only a new
    revision or `rollout retry` lets it run again."""
    revision = loaded.revisions.get(traffic.CANARY)
    if revision is None:
        return False
    same = [p for p in mine if p.branch == proposals.branch(loaded.name, proposals.Action.ROLLBACK, revision)]
    pr = max(same, key=lambda p: p.number, default=None)  # the newest: earlier ones, before a retry, are history
    if pr is None or pr.state is forge_base.PRState.MERGED:
        return False
    status = loaded.rollout.status
    retried_after = status is not None and revision in status.retried and pr.state is forge_base.PRState.CLOSED
    return not retried_after


def pause_pending(loaded: load.LoadedRollout, mine: Sequence[forge_base.PullRequest]) -> bool:
    """A pause PR for the canary's revision is open (a pause gate's, or `rollout hold`'s): the rollout
    holds where it is, as it does once main says Paused; until a retry PR proposed after it is merged
    (`lifted_pauses`)."""
    return open_pause(loaded, mine) is not None


def open_pause(loaded: load.LoadedRollout, mine: Sequence[forge_base.PullRequest]) -> forge_base.PullRequest | None:
    """The open pause PR of the canary's revision that holds the rollout (`pause_pending`), or None."""
    revision = loaded.revisions.get(traffic.CANARY)
    if revision is None:
        return None
    branch = proposals.branch(loaded.name, proposals.Action.PAUSE, revision)
    lifted = {p.number for p, _ in lifted_pauses(loaded, mine)}
    found = [p for p in mine if p.branch == branch and p.state is forge_base.PRState.OPEN and p.number not in lifted]
    return found[0] if found else None


def lifted_pauses(
    loaded: load.LoadedRollout, mine: Sequence[forge_base.PullRequest]
) -> list[tuple[forge_base.PullRequest, forge_base.PullRequest]]:
    """The open pause PRs of the canary's revision a retry lifted, each with that retry PR: merged, main
    saying so (the revision among `status.retried`), and proposed after the pause PR (a higher number: a
    retry merged before a hold does not lift it). `Pulls.ours` adds such a retry PR to `mine`."""
    revision = loaded.revisions.get(traffic.CANARY)
    status = loaded.rollout.status
    if revision is None or status is None or revision not in status.retried:
        return []
    pause = proposals.branch(loaded.name, proposals.Action.PAUSE, revision)
    retry = proposals.branch(loaded.name, proposals.Action.RETRY, revision)
    merged = [p for p in mine if p.branch == retry and p.state is forge_base.PRState.MERGED]
    newest = max(merged, key=lambda p: p.number, default=None)
    if newest is None:
        return []
    return [
        (p, newest)
        for p in mine
        if p.branch == pause and p.state is forge_base.PRState.OPEN and p.number < newest.number
    ]


# -- the step history -----------------------------------------------------------------------------


@dataclass
class StepHistory:
    """When main first said what it says now about each rollout's step, read from git (so it survives
    restarts) and remembered between ticks: at most `limit` (commit, rollout) entries
    (`settings.Memory.step_histories`)."""

    workspace: repo.Workspace
    limit: int = settings.Memory.step_histories
    prompts: load.PromptRegistry | None = None  # for past commits' `prompts:/` prompts (each version read once)
    _keys: dict[tuple[str, str], tuple[tuple[Any, ...], tuple[Any, ...]] | None] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self._keys)

    def since(self, loaded: load.LoadedRollout, config: spec.ControllerConfig) -> datetime | None:
        """When the current step began: the commit time of the oldest commit in the newest run of
        first-parent commits with the same (revision, step, phase) as main now."""
        return self._since(loaded, config, 0)

    def revision_since(self, loaded: load.LoadedRollout, config: spec.ControllerConfig) -> datetime | None:
        """When the canary's current life began: its revision first on main, or its last rollback or retry
        (the same run of commits with the same revision and the same rolled-back and retried lists)."""
        return self._since(loaded, config, 1)

    def _since(self, loaded: load.LoadedRollout, config: spec.ControllerConfig, which: int) -> datetime | None:
        key = _keys(loaded)[which]
        since = None
        directory = loaded.path.rsplit("/", 1)[0]
        for sha, when in self._histories(directory)[:200]:
            cached = self._keys.get((sha, loaded.path), ())
            if cached == ():
                tree = self.workspace.tree(sha)
                try:
                    past = load.load_rollout(tree, loaded.path, config, prompts=self.prompts, degraded=True)
                    cached, unread = _keys(past), bool(past.unread)
                except errors.SpecError:
                    cached, unread = None, False
                if len(self._keys) >= self.limit:
                    self._keys.clear()  # a long `rollout run`: start over rather than grow without bound
                if not unread:  # MLflow could not be reached: asked again once it answers
                    self._keys[(sha, loaded.path)] = cached
            if cached is None or cached[which] != key:
                break
            since = when
        return since

    def _histories(self, directory: str) -> list[tuple[str, datetime]]:
        """(sha, commit time) of the first-parent commits that touched `directory`, newest first, answered
        for every rollout at once by one `git log` (`Workspace.histories`)."""
        root = directory.rsplit("/", 1)[0]
        return self.workspace.histories(root, depth=directory.count("/") + 1).get(directory, [])


def _keys(loaded: load.LoadedRollout) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """(the step's key, the canary's life's key): what stays the same while a step, or a canary's life
    (from its revision's arrival, or its last rollback or retry), goes on."""
    status = loaded.rollout.status
    canary = loaded.revisions.get(traffic.CANARY)
    phase = status.phase.value if status is not None and status.revision == canary else "New"
    step = (canary, plan.current_step(loaded), phase, loaded.revisions.get(traffic.PREVIOUS))
    life = (canary, tuple(status.rolled_back) if status else (), tuple(status.retried) if status else ())
    return step, life
