"""The dashboard's pages and their JSON, from a `source.Snapshot`: pure string building, every value
escaped by default (`h`, `tag`: only markup built here is ever left unescaped). Rollout names, reasons,
PR titles and commit subjects come from the repository and the forge: attacker-controlled text."""

from __future__ import annotations

import html
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from controller import advice, evidence, gates, load, plan, reconcile, repo, report, spec, traffic
from controller.dashboard import look, source
from controller.forge import base as forge_base


class Html(str):
    """Markup built here, already escaped: `h` never escapes it again."""


def h(value: object) -> Html:
    """`value` as HTML text: escaped (quotes included), unless it is markup built here."""
    return value if isinstance(value, Html) else Html(html.escape(str(value), quote=True))


def join(parts: Iterable[object]) -> Html:
    return Html("".join(h(p) for p in parts))


def tag(element: str, *children: object, **attrs: object) -> Html:
    """`<element attrs>children</element>`, children and attribute values escaped; `class_` is `class`, an
    attribute whose value is None or False is left out, `data_src` is `data-src`."""
    return Html(f"<{element}{_attrs(attrs)}>{join(children)}</{element}>")


def void(element: str, **attrs: object) -> Html:
    return Html(f"<{element}{_attrs(attrs)}>")


def _attrs(attrs: dict[str, object]) -> str:
    return "".join(
        f' {k.rstrip("_").replace("_", "-")}="{h(v)}"' for k, v in attrs.items() if v is not None and v is not False
    )


def rollout_path(name: str) -> str:
    return "/rollouts/" + urllib.parse.quote(name, safe="")


@dataclass(frozen=True)
class Row:
    """One rollout at a glance, as the overview and the JSON show it."""

    outcome: reconcile.Outcome
    loaded: load.LoadedRollout | None
    pulls: list[forge_base.PullRequest]
    phase: str
    step: str  # "2/3 (10%)", or "" without a canary
    live: str
    desired: str
    in_step: float | None  # seconds
    next: str  # the decision's kind, or "Error"
    why: str
    error: str  # the outcome's error, redacted (`look.error_text`)

    @property
    def name(self) -> str:
        return self.outcome.rollout


def rows(seen: look.Look, *, now: datetime) -> list[Row]:
    """A row per rollout of the tick, in its order, as `rollout status` reads them."""
    found = []
    for o in seen.tick.outcomes:
        loaded = seen.desired.rollout(o.rollout)
        phase = o.phase or (plan.phase(loaded) if loaded else None)
        step = desired = ""
        if loaded is not None:
            s = loaded.rollout.spec
            desired = plan.desired_state(loaded).describe()
            if s.canary is not None:
                index = o.step if o.step is not None else plan.current_step(loaded)
                step = f"{index + 1}/{len(s.steps)} ({s.steps[index].describe()})" if index < len(s.steps) else ""
        found.append(
            Row(
                outcome=o,
                loaded=loaded,
                pulls=seen.pulls_of(o.rollout),
                phase=phase.value if phase else ("no canary" if loaded else "?"),
                step=step,
                live=o.live.describe() if o.live else "absent",
                desired=desired,
                in_step=look.step_age(o, now),
                next=o.decision.kind.value if o.decision else "Error",
                why=o.decision.reason if o.decision else look.error_text(o),
                error=look.error_text(o),
            )
        )
    return found


def duration(seconds: float | None) -> str:
    return "?" if seconds is None else spec.format_duration(timedelta(seconds=int(seconds)))


# -- JSON ----------------------------------------------------------------------------------------------


def _pull_json(pr: forge_base.PullRequest) -> dict[str, Any]:
    return {"number": pr.number, "title": pr.title, "url": pr.url or None, "approved": pr.approved}


def _row_json(row: Row) -> dict[str, Any]:
    return {
        **look.outcome_json(row.outcome),
        "steps": len(row.loaded.rollout.spec.steps) if row.loaded else None,
        "stepText": row.step or None,
        "liveText": row.live,
        "desiredText": row.desired or None,
        "stepSince": row.outcome.step_since.isoformat() if row.outcome.step_since else None,
        "secondsInStep": row.in_step,
        "pulls": [_pull_json(pr) for pr in row.pulls],
    }


def overview_json(snap: source.Snapshot, *, now: datetime) -> dict[str, Any]:
    """`/api/rollouts.json`: the tick as `rollout status --format json` prints it, each rollout with
    its step, weights, time in step and open PRs; `error` when there is no look."""
    if snap.look is None:
        return {"lookedAt": snap.at.isoformat(), "error": snap.error, "rollouts": []}
    by_name = {r.name: r for r in rows(snap.look, now=now)}
    tick = look.tick_json(snap.look.tick)
    tick["rollouts"] = [_row_json(by_name[o.rollout]) for o in snap.look.tick.outcomes]
    return {"lookedAt": snap.at.isoformat(), "error": snap.error or None, "notes": list(snap.look.notes), **tick}


def rollout_json(snap: source.Snapshot, name: str, *, now: datetime) -> dict[str, Any] | None:
    """`/api/rollouts/NAME.json`: one rollout's row, the evidence of its last decision (as `rollout gates
    --format json`), its steps and its timeline; None when the look has no such rollout."""
    row = _row(snap, name, now=now)
    if row is None or snap.look is None:
        return None
    tick = snap.look.tick
    return {
        "lookedAt": snap.at.isoformat(),
        "error": snap.error or None,
        "sha": tick.sha,
        **_row_json(row),
        "evidence": evidence.to_json(name, row.outcome.evidence, at=tick.at.isoformat(timespec="seconds")),
        "plan": [s.describe() for s in row.loaded.rollout.spec.steps] if row.loaded else [],
        "timeline": [
            {"sha": c.sha, "author": c.author, "at": c.when.isoformat(), "subject": c.subject, "merge": c.merge}
            for c in snap.look.history.get(name, [])
        ],
    }


def _row(snap: source.Snapshot, name: str, *, now: datetime) -> Row | None:
    if snap.look is None:
        return None
    return next((r for r in rows(snap.look, now=now) if r.name == name), None)


# -- HTML ----------------------------------------------------------------------------------------------

PLOT_ASSETS = (
    void("link", rel="stylesheet", href="/static/uplot.min.css"),
    Html('<script src="/static/uplot.iife.min.js" defer></script>'),
    Html('<script src="/static/plots.js" defer></script>'),
)


def page(title: str, body: Sequence[object], *, refresh: int, head: Sequence[Html] = ()) -> str:
    """A whole page: our stylesheet only (no inline style or script: the CSP allows neither)."""
    return "<!doctype html>\n" + tag(
        "html",
        tag(
            "head",
            void("meta", charset="utf-8"),
            void("meta", name="viewport", content="width=device-width, initial-scale=1"),
            void("meta", http_equiv="refresh", content=str(refresh)) if refresh > 0 else "",
            tag("title", title),
            void("link", rel="icon", href="/static/favicon.svg", type="image/svg+xml"),
            void("link", rel="stylesheet", href="/static/dashboard.css"),
            *head,
        ),
        tag("body", tag("header", tag("a", "Rollouts", href="/", class_="home")), tag("main", *body)),
        lang="en",
    )


def _looked(snap: source.Snapshot) -> Html:
    """When the look was taken, at which commit of main, and why it is not newer."""
    parts: list[object] = [f"looked at {snap.at:%Y-%m-%d %H:%M:%S} UTC"]
    if snap.look is not None and snap.look.tick.sha:
        parts.append(f", main at {snap.look.tick.sha[:10]}")
    out = [tag("p", *parts, class_="looked")]
    if snap.error:
        out.append(tag("p", snap.error, class_="error", role="alert"))
    if snap.look is not None:
        out += [tag("p", note, class_="error") for note in snap.look.notes]
        if snap.look.tick.skipped:
            out.append(tag("p", f"skipped: {snap.look.tick.skipped}", class_="error"))
        out += [tag("p", str(p), class_="error") for p in snap.look.tick.problems]
    return join(out)


def _pull_link(pr: forge_base.PullRequest) -> Html:
    text = f"#{pr.number} {pr.title}" + (" [approved]" if pr.approved else "")
    if pr.url.startswith(("https://", "http://")):  # a forge's link; never a javascript: or data: one
        return tag("a", text, href=pr.url, class_="pr", rel="noopener noreferrer")
    return tag("span", text, class_="pr")


def _verdict(value: str) -> Html:
    return tag("span", value, class_=f"verdict verdict-{value.lower()}")


def _kind(row: Row) -> Html:
    return tag("span", row.next, class_=f"kind kind-{row.next.lower()}")


def overview(snap: source.Snapshot, *, now: datetime, refresh: int) -> str:
    """`/`: every rollout at a glance."""
    body: list[object] = [tag("h1", "Rollouts"), _looked(snap)]
    found = rows(snap.look, now=now) if snap.look is not None else []
    if snap.look is not None and not found:
        body.append(tag("p", "No rollouts on main."))
    if found:
        head = tag(
            "tr", *(tag("th", c) for c in ("rollout", "phase", "step", "live", "desired", "in step", "next", "PRs"))
        )
        body.append(
            tag("table", tag("thead", head), tag("tbody", *(_overview_row(r) for r in found)), class_="rollouts")
        )
    return page("Rollouts", body, refresh=refresh)


def _overview_row(row: Row) -> Html:
    error = tag("div", f"{row.outcome.adapter or 'error'}: {row.error}", class_="error") if row.error else ""
    return tag(
        "tr",
        tag("td", tag("a", row.name, href=rollout_path(row.name), class_="rollout")),
        tag("td", row.phase, class_="phase"),
        tag("td", row.step or "-", class_="step"),
        tag("td", row.live, class_="live"),
        tag("td", row.desired or "-", class_="desired"),
        tag("td", duration(row.in_step), class_="age"),
        tag("td", _kind(row), tag("div", row.why, class_="why"), error, class_="next"),
        tag("td", *([tag("div", _pull_link(pr)) for pr in row.pulls] or [h("-")]), class_="pulls"),
        id=f"rollout-{row.name}",
    )


def rollout(snap: source.Snapshot, name: str, *, now: datetime, refresh: int) -> str | None:
    """`/rollouts/NAME`: one rollout: where it is, the evidence of its last decision (the PR's table),
    the plots, its steps, and its timeline from git; None when the look has no such rollout."""
    row = _row(snap, name, now=now)
    if row is None or snap.look is None:
        return None
    o = row.outcome
    facts = [
        ("phase", row.phase),
        ("step", row.step or "-"),
        ("live", row.live),
        ("desired", row.desired or "-"),
        ("in step", duration(row.in_step)),
        ("next", _kind(row)),
        ("why", row.why or "-"),
        ("PRs", join(tag("div", _pull_link(pr)) for pr in row.pulls) if row.pulls else "-"),
    ]
    if row.loaded is not None and row.loaded.rollout.spec.canary is not None and row.step:
        index = o.step if o.step is not None else plan.current_step(row.loaded)
        timing = advice.step_advice(row.loaded, step=index, config=snap.look.desired.config)
        lines = [line.strip() for line in report.timing_lines(timing, indent="")]
        if lines:  # what `rollout status` says of the time a decision needs, without its `decide` label
            facts.append(("decide", join(tag("div", line.removeprefix("decide").strip()) for line in lines)))
    if row.error:
        facts.append(("error", tag("span", f"{o.adapter or 'error'}: {row.error}", class_="error")))
    if o.rollback_unconfirmed:
        facts.append(
            ("rollback", tag("span", "NOT CONFIRMED: the router has not confirmed the canary is out", class_="error"))
        )
    body: list[object] = [
        tag("h1", name),
        _looked(snap),
        tag("dl", *(join([tag("dt", k), tag("dd", v, class_=k.replace(" ", "-"))]) for k, v in facts), class_="facts"),
        tag("h2", "Gates"),
        gate_table(o.evidence, at=snap.look.tick.at),
        tag("section", id="plots", data_src=f"{rollout_path(name).replace('/rollouts/', '/api/rollouts/', 1)}/series"),
    ]
    if row.loaded is not None:
        body += [tag("h2", "Steps"), _steps(row.loaded, o)]
    body += [tag("h2", "Timeline"), _timeline(snap.look.history.get(name, []))]
    return page(f"{name} - rollout", body, refresh=refresh, head=PLOT_ASSETS)


def gate_table(found: Sequence[gates.GateEvidence], *, at: datetime) -> Html:
    """The evidence table the PR body shows (`evidence.table`), as HTML."""
    if not found:
        return tag("p", "No gate was evaluated in the last decision.", class_="no-gates")
    verdict = gates.worst(gates.deciding(found))
    head = tag("tr", *(tag("th", c) for c in evidence.TABLE_HEADER))
    body = [
        tag(
            "tr",
            *(tag("td", _verdict(c) if i == evidence.VERDICT_COLUMN else c) for i, c in enumerate(cells)),
        )
        for cells in evidence.table(found)
    ]
    return join(
        [
            tag(
                "p", "Evaluated at ", at.isoformat(timespec="seconds"), ": ", _verdict(str(verdict)), class_="evaluated"
            ),
            tag("table", tag("thead", head), tag("tbody", *body), class_="gates"),
        ]
    )


def _steps(loaded: load.LoadedRollout, o: reconcile.Outcome) -> Html:
    s = loaded.rollout.spec
    if s.canary is None:
        return tag("p", f"No canary: stable is {loaded.revisions[traffic.STABLE]}.")
    current = o.step if o.step is not None else plan.current_step(loaded)
    items = []
    for i, step in enumerate(s.steps):
        wait = f", for {spec.format_duration(step.for_)}" if step.for_ else ""
        mark = "done" if i < current else "current" if i == current else "next"
        items.append(tag("li", f"{i + 1}. {step.describe()}{wait}", class_=f"step-{mark}"))
    return tag("ol", *items, class_="steps")


def _timeline(commits: Sequence[repo.Commit]) -> Html:
    if not commits:
        return tag("p", "No history read.")
    head = tag("tr", *(tag("th", c) for c in ("when", "who", "what", "commit")))
    body = [
        tag(
            "tr",
            tag("td", f"{c.when:%Y-%m-%d %H:%M} UTC"),
            tag("td", c.author),
            tag("td", ("merged: " if c.merge else "") + c.subject),
            tag("td", tag("code", c.sha[:10])),
            class_="merge" if c.merge else None,
        )
        for c in commits
    ]
    return tag("table", tag("thead", head), tag("tbody", *body), class_="timeline")


def message(title: str, text: str) -> str:
    """A page that only says something: not found, not allowed."""
    return page(title, [tag("h1", title), tag("p", text)], refresh=0)
