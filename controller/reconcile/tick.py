"""One tick of the controller: observe -> decide -> write -> act, and the two commands by hand
(`abort`, `retry`). Thin: each pass is a module of this package (`observe`, `writes`, `pulls`); the
decision is `plan.decide`'s, and what a pull request says is `proposals`'.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from controller import (
    coordination,
    errors,
    evals,
    gates,
    load,
    notify,
    plan,
    prometheus,
    proposals,
    redaction,
    repo,
    settings,
    spec,
    split,
    traffic,
)
from controller.forge import base as forge_base
from controller.reconcile import aliases, observe, pulls, writes
from controller.routers import base

log = logging.getLogger("rollout.reconcile")


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
    step: int | None = None  # the 0-based index, as `status.step`; people read step + 1
    phase: spec.Phase | None = None  # `plan.phase`, this tick's rollback or pending revert included
    router_attempts: int = 0  # router writes tried this tick (more than 1: it was retried with backoff)
    rollback_unconfirmed: bool = False  # the canary should be out but the router did not confirm it
    revision: str = ""  # the canary's revision (the one a rollback, a pause or a promotion is about)
    steps: int | None = None  # how many steps the rollout has
    pull: forge_base.PullRequest | None = None  # the PR this tick carried out, as the forge returned it
    news: str = ""  # what this tick did to `pull`: `_news` ("opened", "updated", "recorded"), "" nothing


@dataclass(frozen=True)
class Tick:
    """What one tick did: each rollout's outcome, or why it did nothing."""

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
    decision: plan.Decision
    outcome: Outcome
    mine: tuple[forge_base.PullRequest, ...]
    write: writes.Write


@dataclass
class Controller:
    """The reconciler of one rollouts repository: `reconcile_once` is a tick; `abort` and `retry` are
    the commands by hand. It holds what a process remembers between ticks (step starts, checks set)."""

    workspace: repo.Workspace
    forge: forge_base.Forge
    routers: observe.RouterFactory
    metrics: prometheus.Prometheus | None = None
    holder: str = "rollout-controller"
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    knobs: settings.Settings = field(default_factory=settings.Settings)  # lease TTL, write backoff, memory
    sleep: Callable[[float], None] = time.sleep  # between the tries of a write that takes the canary out
    shards: coordination.Shards = field(default_factory=lambda: coordination.Shards(spec.HOME_REPOSITORY))
    prompts: load.PromptRegistry | None = None  # reads `prompts:/NAME/VERSION` prompts (MLflow's Prompt Registry)
    registry: aliases.Registry | None = None  # moves the MLflow aliases a rollout names (`spec.aliases`)
    notifier: notify.Sink = field(default_factory=notify.Nowhere)  # where rollbacks, pauses, ... are posted
    repository: str = ""  # how notifications name this repository (a GitHub forge's owner/name wins)
    steps: observe.StepHistory = field(init=False)  # when each rollout's step began, remembered between ticks
    pull_requests: pulls.Pulls = field(init=False)  # the forge pass, and the checks this process set
    notified: notify.Sent = field(init=False)  # the events told, so a repeated decision is told once
    _leased: bool = False  # this process took the lease and has not released it

    def __post_init__(self) -> None:
        memory = self.knobs.memory
        self.steps = observe.StepHistory(self.workspace, limit=memory.step_histories, prompts=self.prompts)
        self.pull_requests = pulls.Pulls(
            self.forge, self.workspace, self.clock, remember=memory.checks, refresh=self.knobs.pr_refresh
        )
        self.notified = notify.Sent(memory.notifications)

    def reconcile_once(self, *, dry_run: bool = False) -> Tick:
        started = self.clock()
        sha = self.workspace.fetch()
        if not dry_run:
            try:
                repo.acquire_lease(self.workspace, holder=self.holder, ttl=self.knobs.lease_ttl, now=started)
            except errors.LeaseHeld as exc:
                return Tick(at=started, sha=sha, skipped=str(exc), held_by=exc.holder or "?")
            self._leased = True
        tree = self.workspace.tree()
        desired = load.load_repo(tree, prompts=self.prompts, degraded=True)
        if desired.config is None:
            return Tick(at=started, sha=sha, problems=tuple(desired.problems), skipped="controller.yaml is invalid")
        config = desired.config
        mine = [r for r in desired.rollouts if self.shards.mine(r.name)]  # the rest are other controllers'
        try:
            prs = self.pull_requests.ours(mine)
            forge_down: errors.ForgeError | None = None
        except errors.ForgeError as exc:  # a rollback's router write never waits for the forge
            prs, forge_down = [], exc
        since: dict[str, datetime | None] = {}
        begun: dict[str, datetime | None] = {}
        for loaded in mine:
            try:
                since[loaded.name] = self.steps.since(loaded, config)
                begun[loaded.name] = self.steps.revision_since(loaded, config)
            except errors.RepoError:
                since[loaded.name] = None  # reported as an unknown start: the rollout holds
        measured = observe.measure(mine, config, metrics=self.metrics, at=started, since=since, begun=begun)
        observe.measure_split(measured, mine, config, metrics=self.metrics, at=started, since=since, pulls=prs)
        routers, live = observe.read_routes(desired, config, self.routers, mine)  # 1. read: one batch per router
        outcomes: list[Outcome | None] = [None] * len(mine)
        decided: list[tuple[int, _Decided]] = []
        for n, loaded in enumerate(mine):  # 2. decide: plan.decide on the live route
            try:
                router = routers[loaded.rollout.spec.router]
                if isinstance(router, Exception):
                    raise router
                found = measured.get(loaded.name, ())
                seen = live[loaded.rollout.spec.router][loaded.rollout.spec.route]
                d = self._decide(loaded, router, seen, prs, found, tree=tree, since=since.get(loaded.name))
            except Exception as exc:
                outcomes[n] = _failed(loaded.name, exc)
                continue
            if dry_run:
                outcomes[n] = replace(
                    d.outcome, actions=(f"would {d.decision.kind.value.lower()}: {d.decision.reason}",)
                )
            else:
                decided.append((n, d))
        decided = self._fenced(decided, outcomes)
        if forge_down is not None:  # without the PRs, only what takes the canary out is sure to be right
            decided = self._lowering_only(decided, outcomes, forge_down)
        written = self._write([d.write for _, d in decided])  # 3. write
        owned = self.shards.confirm([d.loaded.name for _, d in decided])  # the forge waits for no lost shard
        for n, d in decided:  # 4. act: the forge side, with this rollout's write
            try:
                if forge_down is not None:
                    outcomes[n] = self._held_back(d, written.get(d.write.key), _forge_down(forge_down), "forge")
                    continue
                if d.loaded.name not in owned or not self.shards.fresh():  # the pass can outlast the deadline
                    outcomes[n] = self._lost(d, written.get(d.write.key), "opened no pull request")
                    continue
                if d.decision.kind is plan.Kind.DECOMMISSION:
                    d = self._aliases_first(d, config)
                outcomes[n] = self._moved(d.loaded, config, self._act(d, config, written.get(d.write.key)))
            except Exception as exc:
                outcomes[n] = _failed(d.loaded.name, exc)
        done = tuple(o for o in outcomes if o is not None)
        if not dry_run:
            self._notify(config, done, at=started)
        duration = (self.clock() - started).total_seconds()
        return Tick(started, sha, done, tuple(desired.problems), duration=duration)

    def _notify(
        self, config: spec.ControllerConfig, done: Sequence[Outcome], *, at: datetime, by_hand: bool = False
    ) -> None:
        """Hand each outcome's event (`notify.action_of`), told once (`notified`), to the notifier, which
        posts it later on a thread of its own: the tick never waits for a webhook, and nothing here fails it."""
        if not config.notifications:
            return
        repository = config.forge.repository if isinstance(config.forge, spec.GithubForgeConfig) else self.repository
        for o in done:
            try:
                event = _event(o, repository=repository, at=at, by_hand=by_hand)
                if (
                    event is None
                    or not notify.wanted(config.notifications, event)
                    or not self.notified.first(event.key)
                ):
                    continue
                self.notifier.post(config.notifications, event)
            except Exception as exc:  # a bug in telling must not stop the tick
                log.error("rollout %s: its notification could not be queued", o.rollout, exc_info=exc)

    def _moved(self, loaded: load.LoadedRollout, config: spec.ControllerConfig, outcome: Outcome) -> Outcome:
        """`outcome` after the alias pass: the aliases the rollout names follow main's stable, after the
        router's write is confirmed (an outcome with an error moves none); one left where it is is an error."""
        if not loaded.rollout.spec.aliases or outcome.error or self.registry is None or config.mlflow is None:
            return outcome
        moved = aliases.safe_move(loaded, config.mlflow, self.registry)
        if moved.held:
            return replace(
                outcome, actions=outcome.actions + moved.actions, error="; ".join(moved.held), adapter="registry"
            )
        return replace(outcome, actions=outcome.actions + moved.actions)

    def _aliases_first(self, d: _Decided, config: spec.ControllerConfig) -> _Decided:
        """A decommission removes the old stable, and with it the version an alias may still be moved from:
        it holds while an alias this rollout should move has not been moved (the alias pass of this tick
        moves it, when MLflow answers), or cannot be read."""
        if not d.loaded.rollout.spec.aliases or self.registry is None or config.mlflow is None:
            return d
        why = aliases.unmoved(d.loaded, config.mlflow, self.registry)
        if not why:
            return d
        decision = plan.Decision(
            plan.Kind.HOLD, f"completed: the old stable stays until the aliases follow main: {why}"
        )
        return replace(d, decision=decision, outcome=replace(d.outcome, decision=decision))

    def release_lease(self) -> bool:
        """Give up the lease this process took, so the next controller need not wait for it to expire
        (on exit, on SIGTERM); True when it was released."""
        if not self._leased:
            return False
        self._leased = False
        return repo.release_lease(self.workspace, holder=self.holder)

    # -- ownership: what a controller of a fleet may still do ----------------------------------------

    def _fenced(
        self, decided: list[tuple[int, _Decided]], outcomes: list[Outcome | None]
    ) -> list[tuple[int, _Decided]]:
        """Layers 1 and 2 of the fencing (docs/sharding.md), in one read before the write pass. A write
        that takes the canary out goes unfenced, whoever owns the shard: it never waits for ownership
        and no router's fence refuses it. Any other write needs its shard proven ours, and carries its
        fence; a rollout whose shard is not proven writes nothing and opens no PR."""
        lowering = {
            d.loaded.name for _, d in decided if d.write.state is not None and traffic.exposure_free(d.write.state)
        }
        owned = self.shards.confirm([d.loaded.name for _, d in decided if d.loaded.name not in lowering])
        kept: list[tuple[int, _Decided]] = []
        for n, d in decided:
            if d.loaded.name in lowering:
                kept.append((n, d))  # unfenced, never refused; `owned` is asked again before the PR
            elif d.loaded.name in owned:
                kept.append((n, replace(d, write=replace(d.write, fence=self.shards.fence(d.loaded.name)))))
            else:
                outcomes[n] = self._lost(d, None, "wrote nothing")
        return kept

    def _lost(self, d: _Decided, written: writes.Written | None, what: str) -> Outcome:
        """The outcome of a rollout whose shard this controller could not prove its own: what it did
        (a rollback's write only), and that its new owner carries on."""
        shard = self.shards.shard(d.loaded.name)
        error = f"shard {shard} is not proven this controller's any more: it {what}; its owner carries on"
        return self._held_back(d, written, error, "coordination")

    def _held_back(self, d: _Decided, written: writes.Written | None, error: str, adapter: str) -> Outcome:
        """The outcome of a rollout that wrote at most what takes its canary out and did nothing else."""
        actions = []
        if written is not None and d.write.state is not None:
            done = "set" if written.error is None else "NOT confirmed:"
            actions.append(f"router {d.write.router.name}: {done} {d.write.state.describe()}")
        return replace(d.outcome, actions=tuple(actions), error=error, adapter=adapter)

    def _lowering_only(
        self, decided: list[tuple[int, _Decided]], outcomes: list[Outcome | None], down: errors.ForgeError
    ) -> list[tuple[int, _Decided]]:
        """The forge could not be read: the open PRs (a revert waiting, a pause) are unknown, so a write
        that would raise exposure might undo one. Only writes that take the canary out go through."""
        kept: list[tuple[int, _Decided]] = []
        for n, d in decided:
            if d.write.state is None or traffic.exposure_free(d.write.state):
                kept.append((n, d))
            else:
                outcomes[n] = self._held_back(d, None, _forge_down(down), "forge")
        return kept

    # -- the kill switch and the retry -----------------------------------------------------------

    def _write(self, batch: Sequence[writes.Write]) -> dict[tuple[str, str], writes.Written]:
        return writes.write_routes(batch, backoff=self.knobs.writes, sleep=self.sleep)

    def abort(self, name: str, *, reason: str) -> Outcome:
        """Canary to 0 and shadow off now, then the revert PR. Works whatever the gates say."""
        return self._by_hand(name, abort=proposals.one_line(reason) or "no reason given")

    def retry(self, name: str) -> Outcome:
        """Propose a PR that lets a rolled-back or paused revision run again (a human merges it); an open
        pause PR of the revision (a hold not merged yet) holds until then, and the tick closes it once the
        retry is merged (or a human closes it)."""
        loaded, config = self._one(name, "retry")
        decision = plan.Decision(plan.Kind.HOLD, "retried by hand")
        return self._propose_by_hand(loaded, config, proposals.Action.RETRY, decision)

    def hold(self, name: str, *, reason: str, by: str) -> Outcome:
        """A pause by hand: the pause PR (`status.phase: Paused`, "held by hand by @by: reason"). While it
        is open or merged the rollout advances no further; its weights stay as they are (nothing is
        written to the router). `retry` lets it run again."""
        loaded, config = self._one(name, "hold")
        if plan.rolled_back(loaded):
            raise errors.RolloutError(f"rollout {name!r} is rolled back: there is nothing to hold")
        mine = observe.mine(self.pull_requests.ours([loaded]), name)
        if observe.rollback_pending(loaded, mine):
            raise errors.RolloutError(
                f"rollout {name!r} is rolled back already (its revert PR is pending): nothing to hold"
            )
        if (pause := observe.open_pause(loaded, mine)) is not None:
            return self._held_already(loaded, pause, proposals.held_by_hand(by, reason))
        for lifted, retried in observe.lifted_pauses(loaded, mine):  # closed first: this hold needs its own PR
            self.forge.close(lifted.number, comment=proposals.retried_in(retried.number))
        decision = plan.Decision(plan.Kind.PAUSE, proposals.held_by_hand(by, reason))
        outcome = self._propose_by_hand(loaded, config, proposals.Action.PAUSE, decision)
        self._notify(config, [outcome], at=self.clock(), by_hand=True)  # told as a pause, `byHand: true`
        return outcome

    def _held_already(self, loaded: load.LoadedRollout, pause: forge_base.PullRequest, reason: str) -> Outcome:
        """A hold while a pause PR already holds the rollout (a pause gate's, or an earlier hold): that PR
        is left as it is (its reason and evidence are its own) and the hold's reason is commented on it."""
        self.forge.comment(pause.number, proposals.also_held(reason), key="hold")
        decision = plan.Decision(plan.Kind.PAUSE, reason)
        done = (f"#{pause.number} holds the rollout already: commented the hold on it",)
        return Outcome(loaded.name, loaded.rollout.spec.route, decision, actions=done, pr=pause.number)

    def _one(self, name: str, what: str) -> tuple[load.LoadedRollout, spec.ControllerConfig]:
        """The rollout `name` on main, fetched now, with a canary to `what`."""
        self.workspace.fetch()
        desired = load.load_repo(self.workspace.tree(), prompts=self.prompts)
        loaded = desired.rollout(name)
        if loaded is None or desired.config is None:
            raise errors.RolloutError(f"no valid rollout named {name!r} on {self.workspace.ref}")
        if loaded.rollout.spec.canary is None:
            raise errors.RolloutError(f"rollout {name!r} has no canary to {what}")
        return loaded, desired.config

    def _propose_by_hand(
        self,
        loaded: load.LoadedRollout,
        config: spec.ControllerConfig,
        action: proposals.Action,
        decision: plan.Decision,
    ) -> Outcome:
        mine = observe.mine(self.pull_requests.ours([loaded]), loaded.name)
        proposal = self.pull_requests.proposal(loaded, action, decision, ())
        actions: list[str] = []
        pr = self.pull_requests.carry_out(proposal, mine, base=config.branch, actions=actions)
        done = (f"opened or updated #{pr.number}: {pr.title}", *actions)
        return Outcome(
            loaded.name,
            loaded.rollout.spec.route,
            decision,
            actions=done,
            pr=pr.number,
            step=plan.current_step(loaded),
            revision=loaded.revisions.get(traffic.CANARY, ""),
            steps=len(loaded.rollout.spec.steps),
            pull=pr,
            news=_news(pr, mine),
        )

    def _by_hand(self, name: str, *, abort: str) -> Outcome:
        self.workspace.fetch()
        tree = self.workspace.tree()
        desired = load.load_repo(tree, prompts=self.prompts, degraded=True)
        loaded = desired.rollout(name)
        if loaded is None or desired.config is None:
            raise errors.RolloutError(f"no valid rollout named {name!r} on {self.workspace.ref}")
        router_name = loaded.rollout.spec.router
        router = self.routers(
            router_name,
            desired.config.routers[router_name],
            load.route_rollouts(desired, router_name),
            load.rollout_cohorts(desired, router_name),
        )
        since = self.steps.since(loaded, desired.config)
        seen = observe.read(router, [loaded.rollout.spec.route])[loaded.rollout.spec.route]
        d = self._decide(
            loaded, router, seen, self.pull_requests.ours([loaded]), (), tree=tree, since=since, abort=abort
        )
        outcome = self._act(d, desired.config, self._write([d.write]).get(d.write.key))
        self._notify(desired.config, [outcome], at=self.clock(), by_hand=True)
        return outcome

    # -- the decide and act passes ---------------------------------------------------------------

    def _decide(
        self,
        loaded: load.LoadedRollout,
        router: base.Router,
        seen: observe.Seen,
        prs: Sequence[forge_base.PullRequest],
        found: tuple[gates.GateEvidence, ...],
        *,
        tree: load.Tree,
        since: datetime | None,
        abort: str = "",
    ) -> _Decided:
        """Decide on the live route as read (`seen`); writes nothing. Raises when the route could not
        be read (the router unreachable, or the route's state malformed) and the decision does not take
        the canary out: then there is nothing safe to do; except that weights which are no valid split
        (`RouterSplitError`) are overwritten by an APPLY of main's state. A decision that takes it out is still written
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
        mine = observe.mine(prs, loaded.name)
        facts = plan.Facts(
            now=self.clock(),
            live=live,
            verdicts=tuple(
                plan.GateResult(e.gate.use, e.verdict, e.gate.on_fail, proposals.gate_reason(e), e.undecidable)
                for e in found
                if e.gate is not None
            ),
            step_since=since,
            samples=_samples([e for e in found if e.gate is not None], cohort=_exposed(loaded)),
            traffic_split=next(
                (
                    plan.GateResult(e.name, e.verdict, reason=proposals.gate_reason(e))
                    for e in found
                    if split.is_split(e)
                ),
                None,
            ),
            rollback_pr_open=observe.rollback_pending(loaded, mine),
            pause_pr_open=observe.pause_pending(loaded, mine),
            abort=bool(abort),
        )
        offline = None if abort else evals.before_ramp(loaded, live=live, judged=evals.offline_status(tree, loaded))
        decision = offline or plan.decide(loaded, facts)
        if loaded.unread:
            decision = _unread(loaded, decision, live)
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
            phase=plan.phase(loaded, rolling_back=facts.rollback_pr_open or decision.kind is plan.Kind.ROLLBACK),
            revision=loaded.revisions.get(traffic.CANARY, ""),
            steps=len(loaded.rollout.spec.steps),
        )
        urgent = decision.kind is plan.Kind.ROLLBACK or (
            facts.rollback_pr_open and decision.route is not None and traffic.exposure_free(decision.route)
        )
        if unread is not None:
            if urgent:
                outcome = replace(outcome, error=str(unread), adapter="router", rollback_unconfirmed=True)
            elif isinstance(unread, errors.RouterSplitError) and decision.kind is plan.Kind.APPLY:
                # Every APPLY is main's state or lower, so writing it over weights that are no split
                # raises exposure only as far as a merged commit says: the invariant holds.
                decision = replace(decision, reason=f"{decision.reason}, over a live split that was not valid")
                outcome = replace(outcome, decision=decision)
            else:
                raise unread
        refused = None
        if urgent and live is None and unread is None:  # a rollback, or holding one: it must lower, not create
            refused = errors.RouterStateError(
                f"router {router.name!r} has no live state for route {loaded.rollout.spec.route!r} "
                f"({router.location}): a rollback there would create router state, not lower any; nothing was "
                "written. If the application reads its routes elsewhere, point stateDir in controller.yaml "
                "(or $ROLLOUT_STATE_DIR) there"
            )
        write = writes.Write(
            loaded.rollout.spec.router,
            router,
            loaded.rollout.spec.route,
            decision.route if decision.kind in (plan.Kind.APPLY, plan.Kind.ROLLBACK) else None,
            urgent=urgent,
            refused=refused,
        )
        return _Decided(loaded, decision, outcome, mine, write)

    def _act(self, d: _Decided, config: spec.ControllerConfig, written: writes.Written | None) -> Outcome:
        """The outcome of the router write (done already, in the router's batch), then the PR. An
        `urgent` write takes the canary out (a rollback): it was retried with backoff, and a failure
        is never reported as done."""
        loaded, decision, outcome, w = d.loaded, d.decision, d.outcome, d.write
        actions: list[str] = list(self.pull_requests.close_superseded(loaded, d.mine))
        error: str | None = None
        adapter = ""
        attempts = 0
        unconfirmed = False
        if w.state is not None:
            assert written is not None, f"rollout {loaded.name}: a write was due but none was made"
            if written.error is not None and not isinstance(written.error, errors.RouterError):
                raise written.error  # not a router's refusal but a fault (a bug): reported as before
            outcome = replace(outcome, error=None, adapter="")  # the write decides; a failed read is moot
            attempts, failure = written.attempts, written.error
            if failure is None:
                actions.append(
                    f"router {w.router.name}: set {w.state.describe()}, read back"
                    + (f" (after {attempts} attempts)" if attempts > 1 else "")
                )
            else:
                error, adapter = str(failure), "router"  # a rollback PR is still opened: it records the intent
                unconfirmed = w.urgent
                actions.append(
                    f"router {w.router.name}: "
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
            pr = self.pull_requests.act(
                loaded, decision, outcome.evidence, d.mine, base=config.branch, actions=actions, applied=not unconfirmed
            )
        except errors.RolloutError as exc:  # the router part stands; the next tick finds or updates the PR
            return replace(outcome, actions=tuple(actions), error=str(exc), adapter=_adapter(exc))
        said = _news(pr, d.mine) if pr is not None else ""
        if pr is not None and said:
            actions.append(f"{said} #{pr.number}: {pr.title}")
        return replace(
            outcome,
            actions=tuple(actions),
            error=error,
            adapter=adapter,
            pr=pr.number if pr else None,
            pull=pr,
            news=said,
        )


def _event(o: Outcome, *, repository: str, at: datetime, by_hand: bool) -> notify.Event | None:
    """The event one outcome makes, or None (`notify.action_of`)."""
    if o.decision is None:
        return None
    pr = None if o.pull is None else notify.PullLink(o.pull.number, o.pull.url, o.pull.state.value)
    action = notify.action_of(o.decision.kind, pr=pr, news=o.news)
    if action is None:
        return None
    to = o.decision.to_step if action is notify.Action.PROMOTION else o.step
    return notify.Event(
        action,
        o.rollout,
        o.revision,
        o.decision.reason,
        repository,
        at,
        evidence=notify.summarise(o.evidence),
        pr=pr,
        step=None if to is None else to + 1,
        steps=o.steps,
        by_hand=by_hand,
        error=redaction.redact(o.error) if o.error else None,
    )


def _unread(loaded: load.LoadedRollout, decision: plan.Decision, live: traffic.RouteState | None) -> plan.Decision:
    """The decision for a rollout some of whose `prompts:/` prompts MLflow could not be reached for
    (`loaded.unread`): `plan.lowering_only`, naming the server (`MLflow could not be reached: prompt
    'prompts:/x/8' could not be read from URL: why`, for each unread one)."""
    why = "MLflow could not be reached: " + "; ".join(redaction.redact(w) for w in loaded.unread.values())
    return plan.lowering_only(decision, live, why)


def _failed(rollout: str, exc: Exception) -> Outcome:
    """The outcome of a rollout whose tick raised: ours name their adapter; anything else is a bug,
    logged, and must not stop the other rollouts."""
    if isinstance(exc, errors.RolloutError):
        return Outcome(rollout, error=str(exc), adapter=_adapter(exc))
    log.error("rollout %s: unexpected error", rollout, exc_info=exc)
    return Outcome(rollout, error=f"internal error: {type(exc).__name__}: {exc}", adapter="internal")


def _news(pr: forge_base.PullRequest, before: Sequence[forge_base.PullRequest]) -> str:
    """What a tick did to its PR, in a word, or "" when it is as the tick found it (a refreshed body, such
    as new evidence, is no news): the loop logs a PR when it opens or changes, not on every tick."""
    was = next((p for p in before if p.number == pr.number), None)
    if was is None:
        return "opened" if pr.state is forge_base.PRState.OPEN else "recorded"
    if (was.state, was.head_sha, was.title) == (pr.state, pr.head_sha, pr.title):
        return ""
    return "updated" if pr.state is forge_base.PRState.OPEN else "recorded"


def _adapter(exc: errors.RolloutError) -> str:
    for kind, name in (
        (errors.RouterError, "router"),
        (errors.MetricsError, "prometheus"),
        (errors.ForgeError, "forge"),
        (errors.RepoError, "git"),
        (errors.CoordinationError, "coordination"),
    ):
        if isinstance(exc, kind):
            return name
    return "controller"


def _samples(found: Sequence[gates.GateEvidence], *, cohort: str) -> int | None:
    """The canary requests behind the best-counted gate in the cohort the step exposes (where cohorts are
    judged apart: that cohort's rows only, never a gate's that sees no cohort), or None when no gate
    counts samples there."""

    apart = any(s.cohort for e in found for s in e.segments)  # a gate on Envoy's own metrics sees no cohort

    def mine(e: gates.GateEvidence) -> list[float]:
        rows = [s for s in e.segments if s.canary.samples is not None and (s.cohort == cohort or not apart)]
        return [s.canary.samples for s in rows if s.canary.samples is not None]

    counts = [sum(mine(e)) for e in found if mine(e)]
    return int(max(counts)) if counts else None


def _exposed(loaded: load.LoadedRollout) -> str:
    """The cohort the current step exposes, as gate rows name it: its own, or everyone else."""
    return loaded.rollout.spec.steps[plan.current_step(loaded)].cohort or gates.EVERYONE


def _forge_down(exc: errors.ForgeError) -> str:
    return (
        f"the forge could not be read ({redaction.redact(str(exc))}): only what takes the canary out was "
        "written, and no pull request was opened; the next tick tries again"
    )
