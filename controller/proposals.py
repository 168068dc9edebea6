"""What a controller's pull request says and does, for each decision: the action, its branch, and a
`Proposal` value (the edited rollout file, title, body, commit message, labels, check, auto-merge).
Pure (no forge, git or router): `reconcile.pulls` carries a `Proposal` out on the forge.

Each action's text and effects live in one function here (`_advance`, `_rollback`, ...): changing
what a revert PR says means visiting `_rollback` and the comments next to it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, assert_never

from controller import aliases, edits, evidence, gates, load, plan, report, spec, traffic

BRANCH_PREFIX = "rollout/"
REVERT_CHECK = "merging records the rollback: the canary stays at 0%; the description says why"
SUPERSEDED = "Superseded: main no longer has this revision."
PAUSED_LABEL = "paused"  # put on the other open PRs of a rollout a pause gate stopped
TITLE_LIMIT = 64  # characters of a PR title: a merge commit's subject adds ` (#N)`, and stays under 72
MIN_DETAIL = 12  # characters of a title's detail worth showing; with less room it is left to the body


class Action(StrEnum):
    """What a controller's pull request does. The value is part of its branch name (see `branch`)."""

    ADVANCE = "advance"
    ROLLBACK = "rollback"
    PAUSE = "pause"
    COMPLETE = "complete"
    DECOMMISSION = "decommission"
    RETRY = "retry"  # never decided: proposed by hand (`rollout retry`)


def action_for(kind: plan.Kind) -> Action | None:
    """The pull request a decision proposes, or None when it proposes none."""
    match kind:
        case plan.Kind.ADVANCE:
            return Action.ADVANCE
        case plan.Kind.ROLLBACK:
            return Action.ROLLBACK
        case plan.Kind.PAUSE:
            return Action.PAUSE
        case plan.Kind.COMPLETE:
            return Action.COMPLETE
        case plan.Kind.DECOMMISSION:
            return Action.DECOMMISSION
        case plan.Kind.HOLD | plan.Kind.APPLY:
            return None
        case _:
            assert_never(kind)


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
class Proposal:
    """One pull request as the controller wants it: find-or-update by `branch`."""

    action: Action
    rollout: str
    revision: str  # the revision the PR is about (the canary's; the old stable's for a decommission)
    branch: str
    path: str  # the rollout file the PR changes
    text: str  # that file as merging leaves it
    title: str
    body: str
    message: str  # the commit message
    labels: tuple[str, ...]
    check: str | None  # the summary of the passing `rollout/gates` check the PR gets; None: none
    auto_merge: bool  # the bot merges it once open (`promotion: auto`)
    reason: str  # the decision's reason, for the comments on the rollout's other PRs
    also: tuple[tuple[str, str], ...] = ()  # other files merging changes, (path, text): a mesh route's manifest


def propose(
    loaded: load.LoadedRollout,
    action: Action,
    decision: plan.Decision,
    found: Sequence[gates.GateEvidence],
    *,
    text: str,
    at: datetime,
    applied: bool = True,
) -> Proposal:
    """The pull request `action` proposes for `decision`, editing `text` (the rollout file on main).
    `found` is the evidence shown; `applied` False says a rollback's router write is not confirmed."""
    c = _Context.of(loaded, decision, found, text=text, applied=applied)
    match action:
        case Action.ADVANCE:
            parts = _advance(c)
        case Action.ROLLBACK:
            parts = _rollback(c)
        case Action.PAUSE:
            parts = _pause(c)
        case Action.COMPLETE:
            parts = _complete(c)
        case Action.DECOMMISSION:
            parts = _decommission(c)
        case Action.RETRY:
            parts = _retry(c)
        case _:
            assert_never(action)
    title = parts.title
    auto = parts.auto_mergeable and loaded.rollout.spec.promotion is spec.Promotion.AUTO
    return Proposal(
        action=action,
        rollout=loaded.name,
        revision=parts.revision,
        branch=branch(loaded.name, action, parts.revision),
        path=loaded.path,
        text=parts.text,
        title=title,
        body=_body(c, action, parts, at=at),
        message=f"{title}\n\n{_plain(decision.reason, 2000)}",
        labels=("rollout", action.value) + (("auto-merge",) if auto else ()),
        check=parts.check,
        auto_merge=auto,
        reason=decision.reason,
    )


def rolled_back_in(number: int) -> str:
    """The comment on a rollout's other open PRs, closed because revert PR `number` was opened."""
    return f"Closed: the rollout was rolled back in #{number}."


def pause_comment(reason: str, pause_pr: int) -> str:
    """The sticky comment on a rollout's other open PRs while pause PR `pause_pr` is open (a pause
    gate's, or a hold by hand: `reason` says which)."""
    return (
        f"**Paused**: {report.md(reason)}\n\nThe rollout holds at its current weight: this PR is not "
        f"merged by the bot. See #{pause_pr}. Resume with `rollout retry`, stop with `rollout abort`."
    )


def retried_in(number: int) -> str:
    """The comment on an open pause PR, closed because retry PR `number`, merged, lets the rollout run again."""
    return f"Closed: the rollout runs again; retry PR #{number} was merged."


def retry_proposed(number: int) -> str:
    """The sticky comment on an open pause PR when `rollout retry` proposed retry PR `number`."""
    return (
        f"`rollout retry` proposed #{number}: this pause holds the rollout until it is merged (then this PR is "
        "closed). Someone with write access may also close this PR to lift the hold at once."
    )


def also_held(reason: str) -> str:
    """The sticky comment on an open pause PR that a hold by hand (`reason`, `held_by_hand`'s) found
    holding the rollout already: the PR is left as it is."""
    return f"**Also {report.md(reason)}.** This PR holds the rollout already; it is left as it is."


def held_by_hand(by: str, reason: str) -> str:
    """The reason of a pause by hand (`rollout hold`): who, and why if said."""
    why = one_line(reason, 500)
    return f"held by hand by @{one_line(by, 100)}" + (f": {why}" if why else "")


def one_line(text: str, limit: int = 2000) -> str:
    """Untrusted text (an abort reason; label values in a gate's reason) as one line without control
    characters: no line of a PR, a commit message or a log can then start a workflow command."""
    return " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())[:limit]


def gate_reason(e: gates.GateEvidence) -> str:
    """Why a gate has its verdict, in one line: its error, or the first segment with that verdict."""
    return one_line(_raw_reason(e))


# -- one function per action: the file it edits, its title, what merging it does -------------------


@dataclass(frozen=True)
class _Context:
    """What every action's text starts from."""

    loaded: load.LoadedRollout
    decision: plan.Decision
    found: Sequence[gates.GateEvidence]
    text: str  # the rollout file on main
    applied: bool
    canary: str
    status: dict[str, Any]  # the rollout's status as written in the file
    fresh: bool  # the status is about another revision than the canary's
    rolled: list[str]  # rolled-back revisions, but the canary's
    retried: list[str]  # retried revisions, but the canary's
    step: int  # the current step (0 for a fresh revision)
    failed: list[dict[str, Any]]  # the failed gates' evidence, as the status records it

    @classmethod
    def of(
        cls,
        loaded: load.LoadedRollout,
        decision: plan.Decision,
        found: Sequence[gates.GateEvidence],
        *,
        text: str,
        applied: bool,
    ) -> _Context:
        canary = loaded.revisions.get(traffic.CANARY, "")
        status = _status(loaded)
        fresh = status.get("revision") != canary
        return cls(
            loaded=loaded,
            decision=decision,
            found=found,
            text=text,
            applied=applied,
            canary=canary,
            status=status,
            fresh=fresh,
            rolled=[r for r in status.get("rolledBack", []) if r != canary],
            retried=[r for r in status.get("retried", []) if r != canary],
            step=0 if fresh else plan.current_step(loaded),
            failed=[_evidence_row(e) for e in found if e.verdict is gates.Verdict.FAIL],
        )

    @property
    def name(self) -> str:
        return self.loaded.name

    @property
    def spec(self) -> spec.RolloutSpec:
        return self.loaded.rollout.spec

    @property
    def common(self) -> dict[str, Any]:
        """The status fields every action but completion writes."""
        return {
            "revision": self.canary,
            "stableRevision": self.loaded.revisions.get(traffic.STABLE),
            "rolledBack": self.rolled,
            "retried": self.retried,
        }


@dataclass(frozen=True)
class _Parts:
    """One action's share of a proposal."""

    text: str  # the rollout file as merging leaves it
    revision: str
    title: str  # `_title`: short, one line, the detail in the body
    merging: tuple[str, ...]  # the lines under "What merging this does"
    after: traffic.RouteState | None  # the route after merging, for the plan table; None: no table
    check: str | None
    auto_mergeable: bool = False  # merged by the bot under `promotion: auto`


def _advance(c: _Context) -> _Parts:
    s, d = c.spec, c.decision
    to = d.to_step if d.to_step is not None else c.step + 1
    text = edits.set_status(c.text, {**c.common, "step": to, "phase": "Progressing"})
    title = _title(f"{c.name}: advance to {s.steps[to].describe()}", f"step {to + 1} of {len(s.steps)}")
    merging: list[str] = []
    after = None
    if d.to_step is not None:
        current = plan.current_step(c.loaded)
        step = s.steps[d.to_step]
        kept = "" if not plan.step_state(s, current).cohorts else " (cohorts already open keep their weight)"
        merging.append(
            f"- `status.step`: {current + 1} → {d.to_step + 1} of {len(s.steps)}: "
            f"the canary goes from {s.steps[current].describe()} to **{step.describe()}**{kept}."
        )
        if d.to_step + 1 < len(s.steps):
            merging.append(
                f"- Next: {s.steps[d.to_step + 1].describe()} once this step's time, samples and gates pass."
            )
        else:
            merging.append("- Next: the completion PR, which makes the canary the new stable.")
        after = plan.step_state(s, d.to_step)
    return _Parts(text, c.canary, title, tuple(merging), after, check=d.reason, auto_mergeable=True)


def _rollback(c: _Context) -> _Parts:
    d = c.decision
    new = {
        **c.common,
        "step": c.step,
        "phase": "RolledBack",
        "rolledBack": [*c.rolled, c.canary],
        "message": d.reason[:2000],
        "evidence": c.failed,
    }
    if not c.applied:
        merging: tuple[str, ...] = (
            "- **Not yet confirmed on the router**: the write of weight 0, shadow off failed or was not read back. "
            "The controller retries it with backoff every tick; `rollout status` shows when the router confirms it.",
        )
    else:
        merging = (
            "- The router **already** sends no traffic to the canary (weight 0, shadow off): done at once.",
            "- Merging records `status.phase: RolledBack`; this revision is not promoted again unless it changes or is retried (`rollout retry`).",
            "- Closing this PR without merging keeps the canary at 0: a closed revert PR is not an approval.",
        )
    return _Parts(
        edits.set_status(c.text, new),
        c.canary,
        _title(f"{c.name}: roll back", _failure(c)),
        merging,
        plan.rolled_back_state(c.loaded),
        check=_records("the rollback: the canary stays at 0%", d.reason),
    )


def _pause(c: _Context) -> _Parts:
    d = c.decision
    new = {**c.common, "step": c.step, "phase": "Paused", "message": d.reason[:2000], "evidence": c.failed}
    merging = (
        "- Records `status.phase: Paused`: the rollout holds at its current weight until a human decides.",
        "- To resume: `rollout retry` (opens a PR); to stop: `rollout abort`.",
    )
    return _Parts(
        edits.set_status(c.text, new),
        c.canary,
        _title(f"{c.name}: pause at step {c.step + 1}", _failure(c)),
        merging,
        None,
        check=_records("the pause: the canary holds", d.reason),
    )


def _complete(c: _Context) -> _Parts:
    s = c.spec
    promoted = edits.promote_canary(c.text)
    new = {"revision": c.canary, "stableRevision": c.canary, "step": len(s.steps) - 1, "phase": "Completed"}
    merging = (
        "- `spec.stable` becomes the canary; the old stable becomes `spec.previous`, kept warm at weight 0 "
        f"for {spec.format_duration(s.keep_previous_for)}, then a decommission PR removes it.",
        *(
            f"- Moves MLflow's {move} (compare-and-set: only from the old stable's version; back if main goes back)."
            for move in aliases.completion_moves(s)
        ),
    )
    return _Parts(
        edits.set_status(promoted, new),
        c.canary,
        _title(f"{c.name}: complete", f"{_what_changed(s.canary, s.stable, c.canary)} is the new stable"),
        merging,
        traffic.RouteState({traffic.STABLE: 100, traffic.PREVIOUS: 0}),
        check=c.decision.reason,
        auto_mergeable=True,
    )


def _what_changed(variant: spec.Variant | None, other: spec.Variant, revision: str) -> str:
    """A variant as a title names it against the other: its model when the models differ, else its prompt
    file when the prompts differ (a prompt-only change), else its revision."""
    if variant is None:
        return f"revision {revision}"
    if variant.model != other.model:
        return variant.model
    if variant.prompt and variant.prompt != other.prompt:
        pinned = spec.registry_prompt(variant.prompt)
        return f"{pinned[0]} v{pinned[1]}" if pinned else variant.prompt.rsplit("/", 1)[-1]
    return f"revision {revision}"


def _decommission(c: _Context) -> _Parts:
    s = c.spec
    previous = c.loaded.revisions.get(traffic.PREVIOUS, "")
    return _Parts(
        edits.drop_previous(c.text),
        previous,
        _title(f"{c.name}: decommission", _what_changed(s.previous, s.stable, previous)),
        ("- Removes `spec.previous`: the old stable is no longer routable.",),
        None,
        check=c.decision.reason,
        auto_mergeable=True,
    )


def _retry(c: _Context) -> _Parts:
    start = 0 if plan.rolled_back(c.loaded) or c.fresh else c.step
    new = {
        **c.common,
        "rolledBack": c.status.get("rolledBack", []),
        "retried": [*c.retried, c.canary],
        "step": start,
        "phase": "Progressing",
    }
    return _Parts(
        edits.set_status(c.text, new),
        c.canary,
        _title(f"{c.name}: retry from step {start + 1}", f"revision {c.canary}"),
        ("- Lets this revision run again from the step shown in the title. Close any open revert PR first.",),
        None,
        check=None,
    )


# -- the body, and text made safe ---------------------------------------------------------------------


def _body(c: _Context, action: Action, parts: _Parts, *, at: datetime) -> str:
    loaded, decision, s = c.loaded, c.decision, c.spec
    lines = [
        f"Rollout `{loaded.name}` on router `{s.router}`, route `{report.md(s.route)}`; "
        f"canary revision `{loaded.revisions.get(traffic.CANARY, '-')}`, stable `{loaded.revisions.get(traffic.STABLE, '-')}`.",
        "",
        f"Why: {report.md(decision.reason)}",
        "",
        "### What merging this does",
        "",
        *parts.merging,
    ]
    lines += ["", *_plan_table(loaded, parts.after)]
    if c.found:
        lines += ["", evidence.markdown(loaded.name, c.found, at=at.isoformat(timespec="seconds"))]
    meta = {
        "rollout": loaded.name,
        "action": action.value,
        "revision": loaded.revisions.get(traffic.CANARY),
        "toStep": decision.to_step,
    }
    lines += ["", f"<!-- rollout:meta {json.dumps(meta, sort_keys=True)} -->"]
    return "\n".join(lines) + "\n"


def _plan_table(loaded: load.LoadedRollout, after: traffic.RouteState | None) -> list[str]:
    """The route before and after this PR, as `rollout plan` shows it."""
    now = plan.desired_state(loaded)
    if after is None:
        return []
    return [
        "| route | weights | shadow |",
        "|---|---|---|",
        f"| main now | {report.md(now.describe())} | {now.shadow}% |",
        f"| after merge | {report.md(after.describe())} | {after.shadow}% |",
    ]


def _records(done: str, reason: str) -> str:
    """The `rollout/gates` summary of a PR that records what the controller already did: it passes,
    so a required check never keeps the record off main."""
    return f"merging records {done}; {one_line(reason)}"


def _plain(text: str, limit: int) -> str:
    """Plain text for a PR title or a commit message: one line, and no @mention (a zero-width space
    after each @ keeps GitHub from linking and notifying)."""
    return one_line(text, limit).replace("@", "@\u200b")


def _title(head: str, detail: str = "") -> str:
    """`head (detail)` as a plain title of at most TITLE_LIMIT characters: the detail is cut, or left out
    when too little of it would fit, never the head (the rollout's name and the action); the body says
    it all. A cut falls between words (`max 5.0…` would read as a number), within one only when a single
    word fills the room."""
    head, detail = _plain(head, 256), _plain(detail, 2000)
    room = TITLE_LIMIT - len(head) - len(" ()")
    if not detail or room < MIN_DETAIL:
        return head
    if len(detail) > room:
        cut = detail[: room - 1]
        if detail[room - 1] != " " and cut.rfind(" ") >= MIN_DETAIL:  # the cut falls inside a word
            cut = cut[: cut.rfind(" ")]
        detail = cut.rstrip(" ,;:") + "…"
    return f"{head} ({detail})"


def _failure(c: _Context) -> str:
    """The first failed gate, briefly (`error_rate 3.9% > 1%`), for a title; else the decision's reason."""
    first = c.decision.failed[0] if c.decision.failed else None
    if first is None:
        return c.decision.reason
    shown = next((evidence.brief(e) for e in c.found if e.name == first.gate and evidence.brief(e)), "")
    return shown or (f"{first.gate}: {first.reason}" if first.reason else f"{first.gate} failed")


def _raw_reason(e: gates.GateEvidence) -> str:
    if e.error:
        return e.error
    bad = [s for s in e.segments if s.counted and s.verdict is e.verdict]
    if not bad:
        return ""
    where = gates.where(bad[0])
    return f"{bad[0].reason}" + (f" ({where})" if where and where != "all" else "")


def _status(loaded: load.LoadedRollout) -> dict[str, Any]:
    status = loaded.rollout.status
    return status.model_dump(by_alias=True, mode="json", exclude_none=True) if status else {}


def _evidence_row(e: gates.GateEvidence) -> dict[str, Any]:
    return {
        "gate": e.name,
        "verdict": str(e.verdict),
        "reason": gate_reason(e)[:500],
        "segments": [
            {
                "segment": gates.where(s),
                "stable": s.stable.value,
                "canary": s.canary.value,
                "canarySamples": s.canary.samples,
                "verdict": str(s.verdict),
            }
            for s in e.segments
            if s.counted
        ][:20],
    }
