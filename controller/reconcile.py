"""The controller loop: observe, decide, act, verify. The only module that combines adapters.

Each tick fetches the remote, reads the desired state from `origin/<branch>`, measures every gate in
one batch, then in three passes, errors isolated per rollout: decide (read each live route, ask
`plan.decide`), write (per router, every route that changes in one batch, read back), and act on the
forge (pull requests are find-or-update by their branch, one per (rollout, action, revision)), each
rollout with its own write's result. Canary exposure grows only when such a PR is merged; it shrinks
at once.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeAlias

from controller import (
    analysis,
    edits,
    errors,
    evals,
    evidence,
    gates,
    load,
    plan,
    prometheus,
    repo,
    report,
    spec,
    split,
    traffic,
)
from controller.forge import base as forge_base
from controller.routers import base

log = logging.getLogger("rollout.reconcile")

_AUTO_MERGED = ("advance", "complete", "decommission")
RouterFactory = Callable[[str, spec.RouterConfig, Mapping[str, str]], base.Router]
BRANCH_PREFIX = "rollout/"
_REVERT_CHECK = "merging records the rollback: the canary stays at 0%; the description says why"
_HISTORY_REMEMBERED = 200_000  # (commit, rollout) step keys kept between ticks, ~100 bytes each
_CHECKS_REMEMBERED = 10_000  # (PR, head) checks a process remembers setting, so it does not set them again


class Action:
    ADVANCE = "advance"
    ROLLBACK = "rollback"
    PAUSE = "pause"
    COMPLETE = "complete"
    DECOMMISSION = "decommission"
    RETRY = "retry"


def branch(rollout: str, action: str, revision: str) -> str:
    """The head branch of a PR, and so its identity: one per (rollout, action, revision)."""
    return f"{BRANCH_PREFIX}{rollout}/{action}-{revision}"


def parse_branch(name: str) -> tuple[str, str, str] | None:
    """(rollout, action, revision) from a branch the controller made, or None."""
    if not name.startswith(BRANCH_PREFIX):
        return None
    rest = name[len(BRANCH_PREFIX) :]
    rollout, _, tail = rest.partition("/")
    action, _, revision = tail.partition("-")
    return (rollout, action, revision) if rollout and action and revision else None


@dataclass(frozen=True)
class Backoff:
    """Retries of a router write that takes exposure away (a rollback, a heal to no canary) within
    one tick: `attempts` tries, waiting `first`, then twice as long each time, at most `cap` seconds."""

    attempts: int = 4
    first: float = 0.25
    cap: float = 2.0
    sleep: Callable[[float], None] = time.sleep

    def delays(self) -> list[float]:
        return [min(self.cap, self.first * 2**i) for i in range(max(0, self.attempts - 1))]


@dataclass(frozen=True)
class Outcome:
    """What one tick did for one rollout."""

    rollout: str
    route: str = ""
    decision: plan.Decision | None = None
    live: traffic.RouteState | None = None
    actions: tuple[str, ...] = ()
    error: str | None = None
    adapter: str = ""  # which adapter failed: router, prometheus, forge, git
    pr: int | None = None
    evidence: tuple[gates.GateEvidence, ...] = ()
    step_since: datetime | None = None
    step: int | None = None
    router_attempts: int = 0  # router writes tried this tick (more than 1: it was retried with backoff)
    rollback_unconfirmed: bool = False  # the canary should be out but the router did not confirm it


@dataclass(frozen=True)
class Tick:
    at: datetime
    sha: str = ""
    outcomes: tuple[Outcome, ...] = ()
    problems: tuple[errors.Problem, ...] = ()
    skipped: str = ""  # why nothing was done (another controller holds the lease, no config)
    held_by: str = ""  # skipped because this controller holds the lease ("?" when it could not be read)
    duration: float = 0.0


@dataclass(frozen=True)
class _Decided:
    """One rollout decided, nothing written yet: what the write and act passes need."""

    loaded: load.LoadedRollout
    router: base.Router
    decision: plan.Decision
    outcome: Outcome
    mine: tuple[forge_base.PullRequest, ...]
    urgent: bool = False  # the write takes the canary out: retried with backoff, never reported done unconfirmed
    refused: errors.RouterError | None = None  # why the write is not even tried (it would create router state)

    @property
    def state(self) -> traffic.RouteState | None:
        """The route state this decision writes, if it writes one."""
        return self.decision.route if self.decision.kind in (plan.Kind.APPLY, plan.Kind.ROLLBACK) else None

    @property
    def key(self) -> tuple[str, str]:
        """(router, route): one rollout each (loading refuses a second rollout of a route)."""
        return self.loaded.rollout.spec.router, self.loaded.rollout.spec.route


@dataclass(frozen=True)
class _Written:
    """One route's write in its router's batch: attempts made, and the last error (None: confirmed)."""

    attempts: int
    error: Exception | None = None


@dataclass
class Controller:
    workspace: repo.Workspace
    forge: forge_base.Forge
    routers: RouterFactory
    metrics: prometheus.Prometheus | None = None
    holder: str = "rollout-controller"
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    lease_ttl: timedelta = timedelta(minutes=2)
    backoff: Backoff = field(default_factory=Backoff)
    _history: dict[tuple[str, str], tuple[Any, ...] | None] = field(default_factory=dict)
    _checks: dict[tuple[int, str], tuple[str, str]] = field(default_factory=dict)  # (PR, head) -> check we set
    _leased: bool = False  # this process took the lease and has not released it

    # -- one tick ------------------------------------------------------------------------------------

    def reconcile_once(self, *, dry_run: bool = False) -> Tick:
        started = self.clock()
        sha = self.workspace.fetch()
        if not dry_run:
            try:
                repo.acquire_lease(self.workspace, holder=self.holder, ttl=self.lease_ttl, now=started)
            except errors.LeaseHeld as exc:
                return Tick(at=started, sha=sha, skipped=str(exc), held_by=exc.holder or "?")
            self._leased = True
        tree = self.workspace.tree()
        desired = load.load_repo(tree)
        if desired.config is None:
            return Tick(at=started, sha=sha, problems=tuple(desired.problems), skipped="controller.yaml is invalid")
        config = desired.config
        pulls = self._pulls()
        since: dict[str, datetime | None] = {}
        for loaded in desired.rollouts:
            try:
                since[loaded.name] = self.step_since(loaded, config)
            except errors.RepoError:
                since[loaded.name] = None  # reported as an unknown start: the rollout holds
        measured = self._measure(desired.rollouts, config, at=started, since=since)
        self._measure_split(measured, desired.rollouts, config, at=started, since=since, pulls=pulls)
        routers, live = self._read_routes(desired, config)  # 1. read: one batch per router
        outcomes: list[Outcome | None] = [None] * len(desired.rollouts)
        decided: list[tuple[int, _Decided]] = []
        for n, loaded in enumerate(desired.rollouts):  # 2. decide: plan.decide on the live route
            try:
                router = routers[loaded.rollout.spec.router]
                if isinstance(router, Exception):
                    raise router
                found = measured.get(loaded.name, ())
                seen = live[loaded.rollout.spec.router][loaded.rollout.spec.route]
                d = self._decide(loaded, router, seen, pulls, found, tree=tree, since=since.get(loaded.name))
            except Exception as exc:
                outcomes[n] = _failed(loaded.name, exc)
                continue
            if dry_run:
                outcomes[n] = replace(
                    d.outcome, actions=(f"would {d.decision.kind.value.lower()}: {d.decision.reason}",)
                )
            else:
                decided.append((n, d))
        written = self._write_routes([d for _, d in decided])  # 3. write: one batch per router
        for n, d in decided:  # 4. act: the forge side, with this rollout's write
            try:
                outcomes[n] = self._act(d, config, written.get(d.key))
            except Exception as exc:
                outcomes[n] = _failed(d.loaded.name, exc)
        duration = (self.clock() - started).total_seconds()
        done = tuple(o for o in outcomes if o is not None)
        return Tick(started, sha, done, tuple(desired.problems), duration=duration)

    def release_lease(self) -> bool:
        """Give up the lease this process took, so the next controller need not wait for it to expire
        (on exit, on SIGTERM); True when it was released."""
        if not self._leased:
            return False
        self._leased = False
        return repo.release_lease(self.workspace, holder=self.holder)

    def _pulls(self) -> list[forge_base.PullRequest]:
        return self.forge.list(prefix=BRANCH_PREFIX)

    def _measure(
        self,
        rollouts: Sequence[load.LoadedRollout],
        config: spec.ControllerConfig,
        *,
        at: datetime,
        since: Mapping[str, datetime | None],
    ) -> dict[str, tuple[gates.GateEvidence, ...]]:
        """Every gate of every rollout in flight, measured over its step so far (see `window`): one
        Prometheus request per template and window bucket, however many rollouts there are."""
        live = [r for r in rollouts if r.rollout.spec.canary is not None and r.rollout.spec.analysis.gates]
        if not live:
            return {}
        if self.metrics is None:
            return {
                r.name: tuple(
                    _unmeasured(r.name, g, "controller.yaml sets no prometheus.url")
                    for g in r.rollout.spec.analysis.gates
                )
                for r in live
            }
        groups: dict[timedelta, list[analysis.Target]] = {}
        for r in live:
            started = since.get(r.name)
            w = window(r.rollout.spec.analysis.interval, at - started if started else None)
            groups.setdefault(w, []).append(analysis.target(r, config))
        out: dict[str, tuple[gates.GateEvidence, ...]] = {}
        for w, targets in sorted(groups.items()):
            out.update(analysis.evaluate(targets, config=config, metrics=self.metrics, at=at, window=w))
        return out

    def _measure_split(
        self,
        measured: dict[str, tuple[gates.GateEvidence, ...]],
        rollouts: Sequence[load.LoadedRollout],
        config: spec.ControllerConfig,
        *,
        at: datetime,
        since: Mapping[str, datetime | None],
        pulls: Sequence[forge_base.PullRequest],
    ) -> None:
        """The traffic-split check of every rollout it applies to, after its gates in `measured`: one
        Prometheus request for all of them. Not measured while a revert PR holds the canary at 0."""
        if self.metrics is None:
            return
        targets = []
        for r in rollouts:
            mine = [p for p in pulls if (parsed := parse_branch(p.branch)) and parsed[0] == r.name]
            t = None if _rollback_pending(r, mine) else split.target(r, config, since=since.get(r.name), at=at)
            if t is not None:
                targets.append(t)
        if targets:
            for name, e in analysis.evaluate_split(targets, metrics=self.metrics, at=at).items():
                measured[name] = (*measured.get(name, ()), e)

    def _read_routes(
        self, desired: load.RepoSpec, config: spec.ControllerConfig
    ) -> tuple[dict[str, base.Router | Exception], dict[str, dict[str, _Seen]]]:
        """Each router the rollouts use (or why it could not be built), and the live state of its
        routes from one read: per router, route -> what `read` answered for it, or the error that
        stopped the whole read (every route of that router gets it; `_decide` sorts them out)."""
        routers: dict[str, base.Router | Exception] = {}
        live: dict[str, dict[str, _Seen]] = {}
        for name in dict.fromkeys(r.rollout.spec.router for r in desired.rollouts):
            try:
                routers[name] = self.routers(name, config.routers[name], _route_map(desired, name))
            except Exception as exc:
                routers[name] = exc
        for name, router in routers.items():
            if not isinstance(router, Exception):
                routes = [r.rollout.spec.route for r in desired.rollouts if r.rollout.spec.router == name]
                live[name] = _read(router, routes)
        return routers, live

    def _decide(
        self,
        loaded: load.LoadedRollout,
        router: base.Router,
        seen: _Seen,
        pulls: Sequence[forge_base.PullRequest],
        found: tuple[gates.GateEvidence, ...],
        *,
        tree: load.Tree,
        since: datetime | None,
        abort: str = "",
    ) -> _Decided:
        """Decide on the live route as read (`seen`); writes nothing. Raises when the route could not
        be read (the router unreachable, or the route's state malformed) and the decision does not take
        the canary out: then there is nothing safe to do. A decision that takes it out is still written
        (a router's write leaves what is not ours as it is), except on a route the router has no state
        for at all: that write would create router state, so it is refused (`refused`), never reported
        as done."""
        live: traffic.RouteState | None = None
        unread: errors.RouterError | None = None
        if isinstance(seen, errors.RouterError):
            unread = seen  # decide anyway: lowering exposure is never refused, so a rollback is still attempted
        elif isinstance(seen, Exception):
            raise seen
        else:
            live = seen
        mine = tuple(p for p in pulls if (parsed := parse_branch(p.branch)) and parsed[0] == loaded.name)
        facts = plan.Facts(
            now=self.clock(),
            live=live,
            verdicts=tuple(
                plan.GateResult(e.gate.use, e.verdict, e.gate.on_fail, _reason(e)) for e in found if e.gate is not None
            ),
            step_since=since,
            samples=_samples([e for e in found if e.gate is not None]),
            traffic_split=next(
                (plan.GateResult(e.name, e.verdict, reason=_reason(e)) for e in found if split.is_split(e)), None
            ),
            rollback_pr_open=_rollback_pending(loaded, mine),
            abort=bool(abort),
        )
        offline = None if abort else evals.before_ramp(loaded, live=live, judged=evals.offline_status(tree, loaded))
        decision = offline or plan.decide(loaded, facts)
        if abort:
            decision = replace(decision, reason=f"aborted by hand: {abort}")
        outcome = Outcome(
            loaded.name,
            loaded.rollout.spec.route,
            decision,
            live,
            evidence=found,
            step_since=since,
            step=plan.current_step(loaded),
        )
        urgent = decision.kind is plan.Kind.ROLLBACK or (
            facts.rollback_pr_open and decision.route is not None and traffic.exposure_free(decision.route)
        )
        if unread is not None:
            if not urgent:
                raise unread
            outcome = replace(outcome, error=str(unread), adapter="router", rollback_unconfirmed=True)
        refused = None
        if urgent and live is None and unread is None:  # a rollback, or holding one: it must lower, not create
            refused = errors.RouterStateError(
                f"router {router.name!r} has no live state for route {loaded.rollout.spec.route!r} "
                f"({router.location}): a rollback there would create router state, not lower any; nothing was "
                "written. If the application reads its routes elsewhere, point stateDir in controller.yaml "
                "(or $ROLLOUT_STATE_DIR) there"
            )
        return _Decided(loaded, router, decision, outcome, mine, urgent=urgent, refused=refused)

    # -- acting ----------------------------------------------------------------------------------

    def _act(self, d: _Decided, config: spec.ControllerConfig, written: _Written | None) -> Outcome:
        """The outcome of the router write (done already, in the router's batch), then the PR. An
        `urgent` write takes the canary out (a rollback): it was retried with backoff, and a failure
        is never reported as done."""
        loaded, decision, outcome, router, mine = d.loaded, d.decision, d.outcome, d.router, d.mine
        actions: list[str] = list(self._close_superseded(loaded, mine))
        error: str | None = None
        adapter = ""
        attempts = 0
        unconfirmed = False
        if d.state is not None:
            assert written is not None, f"rollout {loaded.name}: a write was due but none was made"
            if written.error is not None and not isinstance(written.error, errors.RouterError):
                raise written.error  # not a router's refusal but a fault (a bug): reported as before
            outcome = replace(outcome, error=None, adapter="")  # the write decides; a failed read is moot
            attempts, failure = written.attempts, written.error
            if failure is None:
                actions.append(
                    f"router {router.name}: set {d.state.describe()}, read back"
                    + (f" (after {attempts} attempts)" if attempts > 1 else "")
                )
            else:
                error, adapter = str(failure), "router"  # a rollback PR is still opened: it records the intent
                unconfirmed = d.urgent
                actions.append(
                    f"router {router.name}: "
                    + (f"NOT confirmed after {attempts} attempt(s); " if attempts else "nothing written; ")
                    + ("the canary may still get traffic, retried next tick" if unconfirmed else "retried next tick")
                )
                if decision.kind is plan.Kind.APPLY:
                    return replace(
                        outcome,
                        actions=tuple(actions),
                        error=error,
                        adapter=adapter,
                        router_attempts=attempts,
                        rollback_unconfirmed=unconfirmed,
                    )
        outcome = replace(outcome, router_attempts=attempts, rollback_unconfirmed=unconfirmed)
        try:
            pr = self._pull_request(loaded, decision, outcome, mine, config, actions, applied=not unconfirmed)
        except errors.RolloutError as exc:  # the router part stands; the next tick finds or updates the PR
            return replace(outcome, actions=tuple(actions), error=str(exc), adapter=_adapter(exc))
        if pr is not None:
            actions.append(
                f"{'opened or updated' if pr.state is forge_base.PRState.OPEN else 'recorded'} #{pr.number}: {pr.title}"
            )
        return replace(outcome, actions=tuple(actions), error=error, adapter=adapter, pr=pr.number if pr else None)

    def _pull_request(
        self,
        loaded: load.LoadedRollout,
        decision: plan.Decision,
        outcome: Outcome,
        mine: Sequence[forge_base.PullRequest],
        config: spec.ControllerConfig,
        actions: list[str],
        *,
        applied: bool,
    ) -> forge_base.PullRequest | None:
        """The forge side of a decision: open or update its PR, set checks, close or label the others."""
        pr: forge_base.PullRequest | None = None
        match decision.kind:
            case plan.Kind.ROLLBACK:
                pr = self._propose(loaded, Action.ROLLBACK, decision, outcome.evidence, config, applied=applied)
                for other in mine:
                    if other.state is forge_base.PRState.OPEN and other.branch != pr.branch:
                        self.forge.close(other.number, comment=f"Closed: the rollout was rolled back in #{pr.number}.")
                        actions.append(f"closed #{other.number}")
            case plan.Kind.ADVANCE | plan.Kind.COMPLETE | plan.Kind.DECOMMISSION:
                action = {
                    plan.Kind.ADVANCE: Action.ADVANCE,
                    plan.Kind.COMPLETE: Action.COMPLETE,
                    plan.Kind.DECOMMISSION: Action.DECOMMISSION,
                }[decision.kind]
                pr = self._propose(loaded, action, decision, outcome.evidence, config)
                self._set_check(pr, forge_base.CheckState.SUCCESS, decision.reason)
                if loaded.rollout.spec.promotion is spec.Promotion.AUTO and pr.state is forge_base.PRState.OPEN:
                    pr = self.forge.merge(pr.number, message=pr.title)
                    actions.append(f"merged #{pr.number} (promotion: auto)")
            case plan.Kind.PAUSE:
                pr = self._propose(loaded, Action.PAUSE, decision, outcome.evidence, config)
                self._set_check(pr, forge_base.CheckState.SUCCESS, _records(Action.PAUSE, decision.reason))
                for other in mine:
                    if other.state is forge_base.PRState.OPEN and other.branch != pr.branch:
                        self.forge.add_labels(other.number, ("paused",))
                        self.forge.comment(other.number, _pause_comment(decision, pr.number), key="pause")
            case plan.Kind.HOLD:
                for other in mine:
                    parsed = parse_branch(other.branch)
                    if other.state is forge_base.PRState.OPEN and parsed and parsed[1] == Action.ADVANCE:
                        self._set_check(other, forge_base.CheckState.PENDING, decision.reason)
            case plan.Kind.APPLY:
                pass
        self._check_open_reverts(mine, actions)
        return pr

    def _check_open_reverts(self, mine: Sequence[forge_base.PullRequest], actions: list[str]) -> None:
        """Every open revert PR carries a passing `rollout/gates` check that says what merging records (a
        failing one would block the record behind a required check). `_propose` sets it when it opens the
        PR; a process that died in between leaves the PR without it, so each process sets it once on every
        open revert PR it has not set a check on."""
        for other in mine:
            parsed = parse_branch(other.branch)
            if other.state is not forge_base.PRState.OPEN or not parsed or parsed[1] != Action.ROLLBACK:
                continue
            if (other.number, other.head_sha) not in self._checks:
                self._set_check(other, forge_base.CheckState.SUCCESS, _REVERT_CHECK)
                actions.append(f"set the check on revert #{other.number}")

    def _set_check(self, pr: forge_base.PullRequest, state: forge_base.CheckState, summary: str) -> None:
        """The `rollout/gates` check of a PR's head commit; skipped when this process already set the same
        one there (on GitHub every call adds a status to the commit, at most 1000 per commit)."""
        key, value = (pr.number, pr.head_sha), (state.value, summary)
        if self._checks.get(key) == value:
            return
        self.forge.set_check(pr.number, state=state, summary=summary, context="rollout/gates")
        if len(self._checks) >= _CHECKS_REMEMBERED:
            self._checks.clear()
        self._checks[key] = value

    def _close_superseded(self, loaded: load.LoadedRollout, mine: Sequence[forge_base.PullRequest]) -> list[str]:
        """Open PRs about a revision main no longer has are closed, with a word on why."""
        current = set(loaded.revisions.values())
        done = []
        for pr in mine:
            parsed = parse_branch(pr.branch)
            if pr.state is forge_base.PRState.OPEN and parsed and parsed[2] not in current:
                self.forge.close(pr.number, comment="Superseded: main no longer has this revision.")
                done.append(f"closed #{pr.number} (superseded)")
        return done

    def _propose(
        self,
        loaded: load.LoadedRollout,
        action: str,
        decision: plan.Decision,
        found: Sequence[gates.GateEvidence],
        config: spec.ControllerConfig,
        *,
        applied: bool = True,
    ) -> forge_base.PullRequest:
        text = self.workspace.tree().read(loaded.path).decode("utf-8")
        new_text, revision, title = _edit(loaded, action, decision, found, text)
        title = _title(title)
        body = _body(loaded, action, decision, found, title=title, at=self.clock(), applied=applied)
        auto = loaded.rollout.spec.promotion is spec.Promotion.AUTO and action in _AUTO_MERGED
        labels = ("rollout", action) + (("auto-merge",) if auto else ())
        change = forge_base.Change(
            branch=branch(loaded.name, action, revision),
            title=title,
            body=body,
            message=f"{title}\n\n{_plain(decision.reason, 2000)}",
            files={loaded.path: new_text.encode("utf-8")},
            labels=labels,
        )
        existing = self.forge.find(change.branch)
        if existing is not None and existing.state is forge_base.PRState.MERGED and action != Action.ADVANCE:
            # Already merged: main shows it on the next fetch. Unless main already has that merge and still
            # wants this rollback: then that PR recorded an earlier rollback of the revision, before a
            # retry, and this one needs its own record.
            earlier = action == Action.ROLLBACK and self.workspace.has(existing.merge_sha)
            if not earlier:
                return existing
        pr = self.forge.propose(change, base=config.branch)
        if action == Action.ROLLBACK:
            self._set_check(pr, forge_base.CheckState.SUCCESS, _records(Action.ROLLBACK, decision.reason))
        return pr

    def _write_routes(self, decided: Sequence[_Decided]) -> dict[tuple[str, str], _Written]:
        """Every route the decisions change, one batch per router, written and read back; the result
        per (router, route). Urgent routes (taking the canary out) whose write failed retryably (the
        router unreachable, the write not confirmed) are retried with backoff, together, in the tick."""
        batches: dict[str, list[_Decided]] = {}
        out: dict[tuple[str, str], _Written] = {}
        for d in decided:
            if d.refused is not None:
                out[d.key] = _Written(0, d.refused)
            elif d.state is not None:
                batches.setdefault(d.key[0], []).append(d)
        for name, group in batches.items():
            states = {d.key[1]: d.state for d in group if d.state is not None}
            urgent = {d.key[1] for d in group if d.urgent}
            results = self._write_batch(group[0].router, states, urgent=urgent)
            out.update(((name, route), written) for route, written in results.items())
        return out

    def _write_batch(
        self, router: base.Router, states: Mapping[str, traffic.RouteState], *, urgent: set[str]
    ) -> dict[str, _Written]:
        """One router's batch: (attempts, the last error or None) per route."""
        delays = self.backoff.delays()
        results = self._apply_isolated(router, states)
        attempts = dict.fromkeys(states, 1)
        for attempt, delay in enumerate(delays, start=2):
            retry = {r: states[r] for r in sorted(urgent) if r in states and _retryable(results[r])}
            if not retry:
                break
            for route in retry:
                log.warning("router %s route %s: %s; retrying in %.2fs", router.name, route, results[route], delay)
            self.backoff.sleep(delay)
            results.update(self._apply_isolated(router, retry))
            attempts.update(dict.fromkeys(retry, attempt))
        return {
            route: _Written(attempts[route], result if isinstance(result, Exception) else None)
            for route, result in results.items()
        }

    def _apply_isolated(
        self, router: base.Router, states: Mapping[str, traffic.RouteState]
    ) -> dict[str, traffic.RouteState | Exception]:
        """`base.apply` on a batch, each route's live state or error. A router that refuses the batch
        (one broken route) must not stop the others: the batch is split in halves until the failure
        is a batch of one, so the error lands on the rollout that caused it and one broken route in a
        thousand costs about twenty writes, not a thousand. An unreachable router is no route's fault:
        every route of the batch gets its error at once, without a write per route."""
        try:
            applied = base.apply(router, states)
        except errors.RouterUnavailable as exc:
            return dict.fromkeys(states, exc)
        except Exception as exc:  # a refusal, or a bug: either way, find the route it belongs to
            if len(states) == 1:
                return dict.fromkeys(states, exc)
            log.warning(
                "router %s: a write of %d routes failed (%s); splitting the batch", router.name, len(states), exc
            )
            items = list(states.items())
            half = len(items) // 2
            return {
                **self._apply_isolated(router, dict(items[:half])),
                **self._apply_isolated(router, dict(items[half:])),
            }
        return {**applied.live, **applied.failed}

    # -- derived facts ---------------------------------------------------------------------------

    def step_since(self, loaded: load.LoadedRollout, config: spec.ControllerConfig) -> datetime | None:
        """When main first said what it says now about this rollout's step: the commit time of the
        oldest commit in the newest run of first-parent commits with the same (revision, step, phase).
        Read from git, so it survives restarts."""
        key = _step_key(loaded)
        since = None
        directory = loaded.path.rsplit("/", 1)[0]
        for sha, when in self._histories(directory)[:200]:
            cached = self._history.get((sha, loaded.path), ())
            if cached == ():
                try:
                    other = load.load_rollout(self.workspace.tree(sha), loaded.path, config)
                    cached = _step_key(other)
                except errors.SpecError:
                    cached = None
                if len(self._history) >= _HISTORY_REMEMBERED:
                    self._history.clear()  # a long `rollout run`: start over rather than grow without bound
                self._history[(sha, loaded.path)] = cached
            if cached != key:
                break
            since = when
        return since

    def _histories(self, directory: str) -> list[tuple[str, datetime]]:
        """`Workspace.history(directory)`, answered for every rollout at once by one `git log`."""
        root = directory.rsplit("/", 1)[0]
        return self.workspace.histories(root, depth=directory.count("/") + 1).get(directory, [])

    # -- the kill switch and the retry -----------------------------------------------------------

    def abort(self, name: str, *, reason: str) -> Outcome:
        """Canary to 0 and shadow off now, then the revert PR. Works whatever the gates say."""
        return self._by_hand(name, abort=_one_line(reason) or "no reason given")

    def retry(self, name: str) -> Outcome:
        """Propose a PR that lets a rolled-back or paused revision run again (a human merges it)."""
        self.workspace.fetch()
        desired = load.load_repo(self.workspace.tree())
        loaded = desired.rollout(name)
        if loaded is None or desired.config is None:
            raise errors.RolloutError(f"no valid rollout named {name!r} on {self.workspace.ref}")
        if loaded.rollout.spec.canary is None:
            raise errors.RolloutError(f"rollout {name!r} has no canary to retry")
        decision = plan.Decision(plan.Kind.HOLD, "retried by hand")
        pr = self._propose(loaded, Action.RETRY, decision, (), desired.config)
        return Outcome(name, decision=decision, actions=(f"opened or updated #{pr.number}: {pr.title}",), pr=pr.number)

    def _by_hand(self, name: str, *, abort: str) -> Outcome:
        self.workspace.fetch()
        tree = self.workspace.tree()
        desired = load.load_repo(tree)
        loaded = desired.rollout(name)
        if loaded is None or desired.config is None:
            raise errors.RolloutError(f"no valid rollout named {name!r} on {self.workspace.ref}")
        router_name = loaded.rollout.spec.router
        router = self.routers(router_name, desired.config.routers[router_name], _route_map(desired, router_name))
        since = self.step_since(loaded, desired.config)
        seen = _read(router, [loaded.rollout.spec.route])[loaded.rollout.spec.route]
        d = self._decide(loaded, router, seen, self._pulls(), (), tree=tree, since=since, abort=abort)
        return self._act(d, desired.config, self._write_routes([d]).get(d.key))


# -- pure helpers ------------------------------------------------------------------------------------


MAX_WINDOW = timedelta(days=7)


def window(interval: timedelta, in_step: timedelta | None) -> timedelta:
    """The measuring window of a rollout: its time in the current step, rounded down to a whole number
    of analysis intervals (1 to 8), and beyond eight intervals to the interval times a power of two;
    at least one interval, at most 7 days.

    Measuring from the step's start is what the sequential judge needs (its guarantee holds over every
    look within a step), and rounding down never reaches back into the previous step or revision.
    The buckets keep batching: rollouts in similar places share a window, so a tick makes at most one
    request per template per bucket (about 20 buckets from one interval to 7 days)."""
    if in_step is None or in_step <= interval:
        return interval
    reach = min(in_step, MAX_WINDOW)
    if reach < interval * 8:
        return interval * int(reach / interval)
    w = interval * 8
    while w * 2 <= reach:
        w *= 2
    return w


def _failed(rollout: str, exc: Exception) -> Outcome:
    """The outcome of a rollout whose tick raised: ours name their adapter; anything else is a bug,
    logged, and must not stop the other rollouts."""
    if isinstance(exc, errors.RolloutError):
        return Outcome(rollout, error=str(exc), adapter=_adapter(exc))
    log.error("rollout %s: unexpected error", rollout, exc_info=exc)
    return Outcome(rollout, error=f"internal error: {type(exc).__name__}: {exc}", adapter="internal")


#: A route as the decide pass got it: what `Router.read` answered, or the error that stopped the read.
_Seen: TypeAlias = base.Live | Exception


def _read(router: base.Router, routes: Sequence[str]) -> dict[str, _Seen]:
    """`router.read(routes)`, with an error that stops the whole read (the router unreachable, its
    state as a whole malformed, or a bug) given to every route: one router's fault is each of its
    rollouts' outcome, and no other router's."""
    try:
        answer: dict[str, _Seen] = dict(router.read(routes))
    except Exception as exc:
        return dict.fromkeys(routes, exc)
    missing = [route for route in routes if route not in answer]
    if missing:
        bug = errors.RouterError(f"router {router.name!r}: read answered nothing for {base.routes_text(missing)}")
        answer.update(dict.fromkeys(missing, bug))
    return answer


def _retryable(result: object) -> bool:
    return isinstance(result, errors.RouterError) and result.retryable


def _route_map(desired: load.RepoSpec, router: str) -> dict[str, str]:
    return {r.rollout.spec.route: r.name for r in desired.rollouts if r.rollout.spec.router == router}


def _adapter(exc: errors.RolloutError) -> str:
    for kind, name in (
        (errors.RouterError, "router"),
        (errors.MetricsError, "prometheus"),
        (errors.ForgeError, "forge"),
        (errors.RepoError, "git"),
    ):
        if isinstance(exc, kind):
            return name
    return "controller"


def _step_key(loaded: load.LoadedRollout) -> tuple[Any, ...]:
    status = loaded.rollout.status
    canary = loaded.revisions.get(traffic.CANARY)
    phase = status.phase.value if status is not None and status.revision == canary else "New"
    return (canary, plan.current_step(loaded), phase, loaded.revisions.get(traffic.PREVIOUS))


def _samples(found: Sequence[gates.GateEvidence]) -> int | None:
    """The canary requests behind the best-counted gate, or None when no gate counts samples."""
    counts = [
        sum(s.canary.samples for s in e.segments if s.canary.samples is not None)
        for e in found
        if any(s.canary.samples is not None for s in e.segments)
    ]
    return int(max(counts)) if counts else None


def _one_line(text: str, limit: int = 2000) -> str:
    """Untrusted text (an abort reason; label values in a gate's reason) as one line without control
    characters: no line of a PR, a commit message or a log can then start a workflow command."""
    return " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())[:limit]


def _plain(text: str, limit: int) -> str:
    """Plain text for a PR title or a commit message: one line, and no @mention (a zero-width space
    after each @ keeps GitHub from linking and notifying)."""
    return _one_line(text, limit).replace("@", "@\u200b")


def _title(text: str) -> str:
    return _plain(text, 256)


def _reason(e: gates.GateEvidence) -> str:
    return _one_line(_raw_reason(e))


def _raw_reason(e: gates.GateEvidence) -> str:
    if e.error:
        return e.error
    bad = [s for s in e.segments if s.counted and s.verdict is e.verdict]
    if not bad:
        return ""
    where = gates.segment_text(bad[0].segment)
    return f"{bad[0].reason}" + (f" ({where})" if where and where != "all" else "")


def _rollback_pending(loaded: load.LoadedRollout, mine: Sequence[forge_base.PullRequest]) -> bool:
    """A revert PR for the canary's revision is open, or was closed without merging: either way the
    rolled-back weights hold. A human who closes a revert PR has not approved the canary: only a new
    revision or `rollout retry` lets it run again."""
    revision = loaded.revisions.get(traffic.CANARY)
    if revision is None:
        return False
    same = [p for p in mine if p.branch == branch(loaded.name, Action.ROLLBACK, revision)]
    pr = max(same, key=lambda p: p.number, default=None)  # the newest: earlier ones, before a retry, are history
    if pr is None or pr.state is forge_base.PRState.MERGED:
        return False
    status = loaded.rollout.status
    retried_after = status is not None and revision in status.retried and pr.state is forge_base.PRState.CLOSED
    return not retried_after


def _unmeasured(rollout: str, gate: spec.Gate, why: str) -> gates.GateEvidence:
    return gates.GateEvidence(
        rollout=rollout,
        gate=gate,
        kind="?",
        source="?",
        query="",
        window="",
        min_samples=0,
        segments=(),
        verdict=gates.Verdict.ERROR,
        error=why,
    )


def _status(loaded: load.LoadedRollout) -> dict[str, Any]:
    status = loaded.rollout.status
    return status.model_dump(by_alias=True, mode="json", exclude_none=True) if status else {}


def _edit(
    loaded: load.LoadedRollout,
    action: str,
    decision: plan.Decision,
    found: Sequence[gates.GateEvidence],
    text: str,
) -> tuple[str, str, str]:
    """(new file text, the revision the PR is about, its title)."""
    s = loaded.rollout.spec
    name = loaded.name
    canary = loaded.revisions.get(traffic.CANARY, "")
    status = _status(loaded)
    fresh = status.get("revision") != canary
    rolled = [r for r in status.get("rolledBack", []) if r != canary]
    retried = [r for r in status.get("retried", []) if r != canary]
    common = {
        "revision": canary,
        "stableRevision": loaded.revisions.get(traffic.STABLE),
        "rolledBack": rolled,
        "retried": retried,
    }
    step = 0 if fresh else plan.current_step(loaded)
    failed = [_evidence_row(e) for e in found if e.verdict is gates.Verdict.FAIL]
    match action:
        case Action.ADVANCE:
            to = decision.to_step if decision.to_step is not None else step + 1
            new = {**common, "step": to, "phase": "Progressing"}
            title = f"{name}: advance to {s.steps[to].describe()} (step {to + 1} of {len(s.steps)})"
            return edits.set_status(text, new), canary, title
        case Action.ROLLBACK:
            new = {
                **common,
                "step": step,
                "phase": "RolledBack",
                "rolledBack": [*rolled, canary],
                "message": decision.reason[:2000],
                "evidence": failed,
            }
            first = decision.failed[0] if decision.failed else None
            why = (
                f"{first.gate} failed" + (f": {first.reason}" if first and first.reason else "")
                if first
                else decision.reason
            )
            return edits.set_status(text, new), canary, f"{name}: roll back, {_short(why)}"
        case Action.PAUSE:
            new = {**common, "step": step, "phase": "Paused", "message": decision.reason[:2000], "evidence": failed}
            gate = decision.failed[0].gate if decision.failed else "a gate"
            return edits.set_status(text, new), canary, f"{name}: pause at step {step + 1}, {gate} failed"
        case Action.COMPLETE:
            promoted = edits.promote_canary(text)
            new = {"revision": canary, "stableRevision": canary, "step": len(s.steps) - 1, "phase": "Completed"}
            model = s.canary.model if s.canary else "the canary"
            return edits.set_status(promoted, new), canary, f"{name}: complete, {model} is the new stable"
        case Action.DECOMMISSION:
            previous = loaded.revisions.get(traffic.PREVIOUS, "")
            model = s.previous.model if s.previous else "the old stable"
            return edits.drop_previous(text), previous, f"{name}: decommission the old stable {model}"
        case Action.RETRY:
            start = 0 if plan.rolled_back(loaded) or fresh else step
            new = {
                **common,
                "rolledBack": status.get("rolledBack", []),
                "retried": [*retried, canary],
                "step": start,
                "phase": "Progressing",
            }
            return edits.set_status(text, new), canary, f"{name}: retry revision {canary} from step {start + 1}"
    raise errors.RolloutError(f"unknown action {action!r}")


def _records(action: str, reason: str) -> str:
    """The `rollout/gates` summary of a PR that records what the controller already did: it passes,
    so a required check never keeps the record off main."""
    done = {Action.ROLLBACK: "the rollback: the canary stays at 0%", Action.PAUSE: "the pause: the canary holds"}
    return f"merging records {done[action]}; {_one_line(reason)}"


def _short(text: str, limit: int = 90) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _evidence_row(e: gates.GateEvidence) -> dict[str, Any]:
    return {
        "gate": e.name,
        "verdict": str(e.verdict),
        "reason": _reason(e)[:500],
        "segments": [
            {
                "segment": gates.segment_text(s.segment),
                "stable": s.stable.value,
                "canary": s.canary.value,
                "canarySamples": s.canary.samples,
                "verdict": str(s.verdict),
            }
            for s in e.segments
            if s.counted
        ][:20],
    }


def _body(
    loaded: load.LoadedRollout,
    action: str,
    decision: plan.Decision,
    found: Sequence[gates.GateEvidence],
    *,
    title: str,
    at: datetime,
    applied: bool = True,
) -> str:
    s = loaded.rollout.spec
    current = plan.current_step(loaded)
    lines = [
        f"Rollout `{loaded.name}` on router `{s.router}`, route `{report.md(s.route)}`; "
        f"canary revision `{loaded.revisions.get(traffic.CANARY, '-')}`, stable `{loaded.revisions.get(traffic.STABLE, '-')}`.",
        "",
        f"Why: {report.md(decision.reason)}",
        "",
        "### What merging this does",
        "",
    ]
    if action == Action.ADVANCE and decision.to_step is not None:
        to = s.steps[decision.to_step]
        lines.append(
            f"- `status.step`: {current + 1} → {decision.to_step + 1} of {len(s.steps)}: "
            f"the canary goes from {s.steps[current].describe()} to **{to.describe()}**."
        )
        if decision.to_step + 1 < len(s.steps):
            lines.append(
                f"- Next: {s.steps[decision.to_step + 1].describe()} once this step's time, samples and gates pass."
            )
        else:
            lines.append("- Next: the completion PR, which makes the canary the new stable.")
    elif action == Action.ROLLBACK and not applied:
        lines.append(
            "- **Not yet confirmed on the router**: the write of weight 0, shadow off failed or was not read back. "
            "The controller retries it with backoff every tick; `rollout status` shows when the router confirms it."
        )
    elif action == Action.ROLLBACK:
        lines.append("- The router **already** sends no traffic to the canary (weight 0, shadow off): done at once.")
        lines.append(
            "- Merging records `status.phase: RolledBack`; this revision is not promoted again unless it changes or is retried (`rollout retry`)."
        )
        lines.append("- Closing this PR without merging keeps the canary at 0: a closed revert PR is not an approval.")
    elif action == Action.PAUSE:
        lines.append("- Records `status.phase: Paused`: the rollout holds at its current weight until a human decides.")
        lines.append("- To resume: `rollout retry` (opens a PR); to stop: `rollout abort`.")
    elif action == Action.COMPLETE:
        lines.append(
            "- `spec.stable` becomes the canary; the old stable becomes `spec.previous`, kept warm at weight 0 "
            f"for {spec.format_duration(s.keep_previous_for)}, then a decommission PR removes it."
        )
    elif action == Action.DECOMMISSION:
        lines.append("- Removes `spec.previous`: the old stable is no longer routable.")
    elif action == Action.RETRY:
        lines.append("- Lets this revision run again from the step shown in the title. Close any open revert PR first.")
    lines += ["", *_plan_table(loaded, action, decision)]
    if found:
        lines += ["", evidence.markdown(loaded.name, found, at=at.isoformat(timespec="seconds"))]
    meta = {
        "rollout": loaded.name,
        "action": action,
        "revision": loaded.revisions.get(traffic.CANARY),
        "toStep": decision.to_step,
    }
    lines += ["", f"<!-- rollout:meta {json.dumps(meta, sort_keys=True)} -->"]
    return "\n".join(lines) + "\n"


def _plan_table(loaded: load.LoadedRollout, action: str, decision: plan.Decision) -> list[str]:
    """The route before and after this PR, as `rollout plan` shows it."""
    now = plan.desired_state(loaded)
    if action == Action.ADVANCE and decision.to_step is not None:
        step = loaded.rollout.spec.steps[decision.to_step]
        after = traffic.RouteState(
            {traffic.STABLE: 100 - step.canary_weight, traffic.CANARY: step.canary_weight}, step.shadow or 0
        )
    elif action == Action.ROLLBACK:
        after = plan.rolled_back_state(loaded)
    elif action == Action.COMPLETE:
        after = traffic.RouteState({traffic.STABLE: 100, traffic.PREVIOUS: 0})
    else:
        return []
    return [
        "| route | weights | shadow |",
        "|---|---|---|",
        f"| main now | {report.md(now.describe())} | {now.shadow}% |",
        f"| after merge | {report.md(after.describe())} | {after.shadow}% |",
    ]


def _pause_comment(decision: plan.Decision, pause_pr: int) -> str:
    return (
        f"**Paused**: {report.md(decision.reason)}\n\nA gate with `onFail: pause` failed; the rollout holds at its "
        f"current weight. See #{pause_pr}. Resume with `rollout retry`, stop with `rollout abort`."
    )
