"""What `rollout status` and the dashboard show, read once: a tick (a dry run for `status` and
`dashboard`, the loop's own under `rollout run`), the bot's open PRs, the specs on main and, for the
dashboard, each rollout file's history on main. Also the tick's `--format json` shape both print."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from controller import errors, load, proposals, reconcile, redaction, repo, spec
from controller.forge import base as forge_base

HISTORY = 50  # commits of a rollout's files the timeline shows


@dataclass(frozen=True)
class Look:
    """A tick and what it is read against: the bot's open PRs, the specs on main, and (when asked) each
    rollout's commits on main, newest first."""

    tick: reconcile.Tick
    pulls: list[forge_base.PullRequest]
    desired: load.RepoSpec
    history: Mapping[str, list[repo.Commit]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()  # what the look could not read (the forge down, a history), redacted

    def pulls_of(self, rollout: str) -> list[forge_base.PullRequest]:
        """The bot's open PRs of one rollout (their branches name it)."""
        return [pr for pr in self.pulls if pr.branch.startswith(f"{proposals.BRANCH_PREFIX}{rollout}/")]


def take(controller: reconcile.Controller, *, history: bool = False) -> Look:
    """A dry-run tick (nothing written, nothing moved) and what it is read against."""
    return after(controller, controller.reconcile_once(dry_run=True), history=history)


def after(controller: reconcile.Controller, tick: reconcile.Tick, *, history: bool = False) -> Look:
    """The look of a tick already run (the loop's): the open PRs and specs read now, the history at the
    tick's commit. With `history` (the dashboard), a forge or a history that cannot be read is a note
    (no PRs, no timeline), not a failure: the tick itself is still worth showing."""
    notes: list[str] = []
    try:
        pulls = controller.forge.list(prefix=proposals.BRANCH_PREFIX, state=forge_base.PRState.OPEN)
    except errors.ForgeError as exc:
        if not history:
            raise
        pulls = []
        notes.append(f"no pull requests shown: the forge could not be read: {redaction.redact(str(exc))}")
    desired = load.load_repo(controller.workspace.tree(tick.sha or None), prompts=controller.prompts)
    commits: dict[str, list[repo.Commit]] = {}
    if history:
        for loaded in desired.rollouts:
            try:
                commits[loaded.name] = controller.workspace.log(*files(loaded), ref=tick.sha or None, limit=HISTORY)
            except errors.RepoError as exc:
                notes.append(f"no timeline for {loaded.name}: {redaction.redact(str(exc))}")
    return Look(tick, pulls, desired, commits, tuple(notes))


def files(loaded: load.LoadedRollout) -> list[str]:
    """The files of a rollout in the repository, whose commits are its timeline: its rollout file and
    its prompt files (a `prompts:/` prompt lives in the registry, not here)."""
    prompts = sorted({p for p in loaded.prompts.values() if not p.startswith(spec.PROMPT_REGISTRY)})
    return [loaded.path, *(p for p in prompts if p != loaded.path)]


def tick_json(tick: reconcile.Tick) -> dict[str, Any]:
    """A tick in `--format json`: stable keys."""
    return {
        "at": tick.at.isoformat(),
        "sha": tick.sha,
        "skipped": tick.skipped,
        "heldBy": tick.held_by or None,
        "problems": [str(p) for p in tick.problems],
        "rollouts": [outcome_json(o) for o in tick.outcomes],
    }


def outcome_json(o: reconcile.Outcome) -> dict[str, Any]:
    """One rollout's outcome in `--format json`: a tick's, an abort's or a retry's."""
    return {
        "rollout": o.rollout,
        "step": o.step,
        "stepNumber": None if o.step is None else o.step + 1,
        "phase": o.phase.value if o.phase else None,
        "decision": o.decision.kind.value if o.decision else None,
        "reason": o.decision.reason if o.decision else None,
        "live": o.live.to_json() if o.live else None,
        "actions": list(o.actions),
        "error": error_text(o) or None,
        "pr": o.pr,
        "routerAttempts": o.router_attempts,
        "rollbackUnconfirmed": o.rollback_unconfirmed,
    }


def error_text(o: reconcile.Outcome) -> str:
    """The outcome's error as every page and JSON shows it: any URL's user:password@ taken out (an
    adapter's error quotes the URL it could not reach)."""
    return redaction.redact(o.error) if o.error else ""


def step_age(o: reconcile.Outcome, now: datetime) -> float | None:
    """Seconds the rollout has been in its step, or None when unknown."""
    return None if o.step_since is None else max(0.0, (now - o.step_since).total_seconds())
