"""Notifications, the pure part: which event a rollout's decision makes (a rollback, a pause, a promotion
PR waiting for review, a completion), the memory that says each one once, and the two bodies posted (the
generic JSON payload, version 1, and a Slack incoming-webhook message). The reconciler makes the events;
`controller.notifier` posts them on a thread of its own.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, assert_never

from controller import evidence, gates, plan, proposals, spec

VERSION = 1  # of the generic payload (schemas/notification.schema.json); a breaking change is a new version
EVIDENCE_LIMIT = 20  # gates in one notification
REASON_LIMIT = 1000  # characters of a reason
SLACK_SECTION = 2900  # characters of a Slack section's text (Slack allows 3000)

Action = spec.NotificationEvent


@dataclass(frozen=True)
class GateLine:
    """One gate in a notification: its verdict and where it was decided (the first counted segment with
    the gate's verdict), stable and canary side by side, and its bounds."""

    gate: str
    verdict: str
    segment: str | None
    stable: float | None
    canary: float | None
    bound: str
    reason: str


@dataclass(frozen=True)
class PullLink:
    number: int
    url: str
    state: str  # open, merged, closed


@dataclass(frozen=True)
class Event:
    """One thing to tell people about one rollout."""

    action: Action
    rollout: str
    revision: str
    reason: str
    repository: str
    at: datetime
    evidence: tuple[GateLine, ...] = ()
    pr: PullLink | None = None
    step: int | None = None  # 1-based, as people read it
    steps: int | None = None
    by_hand: bool = False  # `rollout abort`, `rollout hold`
    error: str | None = None  # what went wrong while acting (a router that did not confirm the rollback)

    @property
    def key(self) -> tuple[str, str, str, str, int | None]:
        """What makes two events one: a tick repeats a decision while a gate stays failed or a PR stays open."""
        return (self.repository, self.rollout, self.revision, self.action.value, self.pr.number if self.pr else None)


def action_of(kind: plan.Kind, *, pr: PullLink | None, news: str) -> Action | None:
    """The event a decision makes, or None. A rollback is news by itself (the router was written this
    tick); a pause, a promotion and a completion are news when this tick opened their PR
    (`news` "opened", or "recorded" when it was merged at once), so a PR waiting for days is told once,
    even by a `rollout reconcile` run from cron. A PR only "updated" (moved to main's new head, as the
    GitHub forge does after every merge to main) is no news: a fresh process would tell it again after
    every merge. A promotion the bot merged itself (`promotion: auto`) waits for nobody: not told."""
    told = pr is not None and news in ("opened", "recorded")
    match kind:
        case plan.Kind.ROLLBACK:
            return Action.ROLLBACK
        case plan.Kind.PAUSE:
            return Action.PAUSE if told else None
        case plan.Kind.ADVANCE:
            return Action.PROMOTION if told and pr is not None and pr.state == "open" else None
        case plan.Kind.COMPLETE:
            return Action.COMPLETION if told else None
        case plan.Kind.HOLD | plan.Kind.APPLY | plan.Kind.DECOMMISSION:
            return None
        case _:
            assert_never(kind)


def summarise(found: Sequence[gates.GateEvidence]) -> tuple[GateLine, ...]:
    """The evidence of a decision, a line per gate (at most EVIDENCE_LIMIT)."""
    lines = []
    for e in found[:EVIDENCE_LIMIT]:
        rows = [s for s in e.segments if s.counted and s.verdict is e.verdict] or list(e.segments[:1])
        row = rows[0] if rows else None
        lines.append(
            GateLine(
                gate=e.name,
                verdict=str(e.verdict),
                segment=gates.where(row) if row is not None else None,
                stable=_finite(row.stable.value) if row is not None else None,
                canary=_finite(row.canary.value) if row is not None else None,
                bound=evidence.thresholds(e),
                reason=proposals.gate_reason(e)[:REASON_LIMIT],
            )
        )
    return tuple(lines)


def _finite(v: float | None) -> float | None:
    return v if v is not None and math.isfinite(v) else None


class Sent:
    """The events already told, bounded (the oldest forgotten first). A process that restarts forgets:
    a rollback decided again, or a PR changed again, after a restart is told again, once."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._keys: OrderedDict[tuple[object, ...], None] = OrderedDict()

    def first(self, key: tuple[object, ...]) -> bool:
        """True the first time `key` is seen (and remembers it)."""
        if key in self._keys:
            self._keys.move_to_end(key)
            return False
        self._keys[key] = None
        while len(self._keys) > self.limit:
            self._keys.popitem(last=False)
        return True

    def __len__(self) -> int:
        return len(self._keys)


class Sink(Protocol):
    """Where events go: posts them to `destinations` later, on a thread of its own. Never blocks and
    never raises."""

    def post(self, destinations: Sequence[spec.NotificationConfig], event: Event) -> None: ...


class Nowhere:
    """The sink of a controller told to notify nobody (the default; `--dry-run`)."""

    def post(self, destinations: Sequence[spec.NotificationConfig], event: Event) -> None:
        return None


def wanted(destinations: Sequence[spec.NotificationConfig], event: Event) -> list[spec.NotificationConfig]:
    """The destinations that asked for this event (`on:`)."""
    return [d for d in destinations if event.action in d.on]


# -- the bodies --------------------------------------------------------------------------------------


def title(event: Event) -> str:
    """What happened, in a line (plain text: escape it for Slack)."""
    pr = f"#{event.pr.number}" if event.pr else ""
    match event.action:
        case Action.ROLLBACK:
            if event.error:  # the router's write is not confirmed: not "rolled back" yet
                head = f"{event.rollout} rollback" + (" by hand" if event.by_hand else "")
                head += " NOT confirmed: the canary may still get traffic"
            else:
                head = f"{event.rollout} rolled back" + (" by hand" if event.by_hand else "")
            return head + (f" (revert PR {pr})" if pr else "")
        case Action.PAUSE:
            at = f" at step {event.step}" if event.step is not None else ""
            return f"{event.rollout} paused{at}" + (f" (PR {pr})" if pr else "")
        case Action.PROMOTION:
            to = f" to step {event.step}" if event.step is not None else ""
            return f"{event.rollout}: promotion{to} waiting for review (PR {pr})"
        case Action.COMPLETION:
            waits = "merged" if event.pr and event.pr.state == "merged" else "waiting for review"
            return f"{event.rollout}: completion {waits} (PR {pr}): the canary becomes the new stable"
        case _:
            assert_never(event.action)


def payload(event: Event) -> dict[str, Any]:
    """The generic webhook's JSON body, version 1 (schemas/notification.schema.json; README: Notifications)."""
    return {
        "version": VERSION,
        "action": event.action.value,
        "rollout": event.rollout,
        "revision": event.revision,
        "repository": event.repository,
        "at": event.at.isoformat(),
        "summary": title(event),
        "reason": proposals.one_line(event.reason, REASON_LIMIT),
        "byHand": event.by_hand,
        "step": event.step,
        "steps": event.steps,
        "error": proposals.one_line(event.error, REASON_LIMIT) if event.error else None,
        "evidence": [
            {
                "gate": g.gate,
                "verdict": g.verdict,
                "segment": g.segment,
                "stable": g.stable,
                "canary": g.canary,
                "bound": g.bound,
                "reason": g.reason,
            }
            for g in event.evidence
        ],
        "pr": None if event.pr is None else {"number": event.pr.number, "url": event.pr.url, "state": event.pr.state},
    }


_ICON = {
    Action.ROLLBACK: ":rotating_light:",
    Action.PAUSE: ":double_vertical_bar:",
    Action.PROMOTION: ":eyes:",
    Action.COMPLETION: ":white_check_mark:",
}


def slack_escape(text: str) -> str:
    """Text as Slack's mrkdwn shows it literally: `&`, `<` and `>` escaped, as Slack asks (a `<!channel>`
    or `<https://x|click>` in a rollout's reason is then text, not a mention or a link), on one line."""
    return proposals.one_line(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _number(v: float | None) -> str:
    return "no data" if v is None else f"{v:.4g}"


def _link(pr: PullLink) -> str:
    """A PR as Slack shows it: a link when its URL is a web address, else `PR #N`."""
    url = pr.url
    if url.startswith(("https://", "http://")) and not any(c in url for c in "<>|& \n"):
        return f"<{url}|PR #{pr.number}>"
    return f"PR #{pr.number}"


def slack(event: Event) -> dict[str, Any]:
    """A Slack incoming-webhook message: `text` (the fallback a notification shows) and Block Kit
    `blocks`. Every value from a rollout file, a gate or a reason is escaped (`slack_escape`)."""
    head = f"{_ICON[event.action]} *{slack_escape(title(event))}*"
    lines = [head]
    if event.reason:
        lines.append(slack_escape(event.reason[:REASON_LIMIT]))
    if event.error:
        lines.append(f":warning: {slack_escape(event.error[:REASON_LIMIT])}")
    if event.pr is not None:
        lines.append(_link(event.pr))
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": _cut("\n".join(lines))}}]
    if event.evidence:
        rows = [
            f"• {slack_escape(g.gate)} *{g.verdict}*"
            + (f" ({slack_escape(g.segment)})" if g.segment and g.segment != "all" else "")
            + f": stable {_number(g.stable)}, canary {_number(g.canary)}"
            + (f"; bound {slack_escape(g.bound)}" if g.bound else "")
            for g in event.evidence
        ]
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _cut("\n".join(rows))}})
    where = [f"revision {slack_escape(event.revision)}"] if event.revision else []
    if event.step is not None and event.steps is not None:
        where.append(f"step {event.step} of {event.steps}")
    if event.repository:
        where.append(slack_escape(event.repository))
    if where:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _cut(" · ".join(where))}]})
    return {
        "text": _cut(f"{slack_escape(title(event))}: {slack_escape(event.reason[:REASON_LIMIT])}"),
        "blocks": blocks,
    }


def _cut(text: str) -> str:
    """`text` within a Slack section's limit, never cut inside an escape (`&amp;`)."""
    if len(text) <= SLACK_SECTION:
        return text
    cut = text[: SLACK_SECTION - 1]
    amp = cut.rfind("&")
    if amp >= 0 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + "…"
