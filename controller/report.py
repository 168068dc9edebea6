"""Render findings and plans as text, markdown, JSON or GitHub workflow commands.

Pure string building; the CLI prints what these return. Markdown output is what PR comments show,
so every user-supplied string in it is escaped.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from controller import advice, contract, errors, hints, load, plan, spec, traffic


def findings(items: Sequence[dict[str, Any]], fmt: str) -> str:
    if fmt == "json":
        return (
            json.dumps({"valid": not any(f["severity"] == "error" for f in items), "findings": list(items)}, indent=2)
            + "\n"
        )
    if fmt == "github":
        return "".join(_github(f) + "\n" for f in items)
    lines = [_text(f) for f in items]
    errors = sum(f["severity"] == "error" for f in items)
    warnings = len(items) - errors
    lines.append(f"{errors} error(s), {warnings} warning(s)" if items else "valid: no problems found")
    return "\n".join(lines) + "\n"


def _text(f: dict[str, Any], *, excerpt: bool = True) -> str:
    where = f["file"] + (f":{f['line']}" if f["line"] else "") + (f":{f['column']}" if f["column"] else "")
    what = f"{f['field']}: {f['message']}" if f["field"] else f["message"]
    line = errors.printable(f"{where}: {f['severity']} {f['code']} {what}")
    return line + _excerpt(f) if excerpt else line


def _excerpt(f: dict[str, Any]) -> str:
    """The offending line under a finding that carries it, with a caret under its column."""
    if not f.get("source"):
        return ""
    text, column = hints.window(f["source"], max(f["column"], 1))
    shown = errors.printable(text)
    pad = len(errors.printable(text[: column - 1]))  # an escaped character is as wide as its escape
    number = str(f["line"])
    return f"\n  {number} | {shown}\n  {' ' * len(number)} | {' ' * pad}^"


def _github_escape(value: str, *, property: bool = False) -> str:
    """GitHub workflow command escaping, so a message can never start a command of its own."""
    value = value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if property:
        value = value.replace(":", "%3A").replace(",", "%2C")
    return value


def _github(f: dict[str, Any]) -> str:
    props = [f"file={_github_escape(f['file'], property=True)}"]
    if f["line"]:
        props.append(f"line={f['line']}")
    if f["column"]:
        props.append(f"col={f['column']}")
    props.append(f"title={_github_escape(f['code'], property=True)}")
    what = f"{f['field']}: {f['message']}" if f["field"] else f["message"]
    return f"::{f['severity']} {','.join(props)}::{_github_escape(what)}"


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+!|~@])")


def md(value: object) -> str:
    """Escape a value for a markdown table cell: no links, no HTML, no @mentions, no table breaks."""
    text = str(value).replace("\r", " ").replace("\n", " ")
    return _MD_SPECIAL.sub(r"\\\1", text)


_MD_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")  # a backslash before ASCII punctuation (CommonMark)
_TABLE_RULE = re.compile(r"^:?-+:?$")


def unfold_details(markdown: str) -> str:
    """`<details><summary>X</summary>` as a bold line X, and no `</details>`: what a terminal shows of
    a PR body's folded sections."""
    text = re.sub(r"<details>\s*<summary>(.*?)</summary>", r"**\1**", markdown)
    return re.sub(r"<details>|</details>", "", text)


def markdown_text(markdown: str) -> str:
    """A PR body (GitHub markdown, its values escaped by `md`) as plain text: escapes and HTML entities
    undone, tables aligned, bold and heading marks dropped, code blocks indented."""
    lines: list[str] = []
    table: list[list[str]] = []
    fenced = False
    for line in unfold_details(markdown).splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif fenced:
            lines.append(f"    {line}")
        elif line.startswith("|"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            if not all(_TABLE_RULE.match(c) for c in cells):
                table.append([_plain(c) for c in cells])
        else:
            lines += _aligned(table)
            table = []
            lines.append(_plain(re.sub(r"^#+ ", "", line)))
    return "\n".join([*lines, *_aligned(table)]).rstrip() + "\n"


def _plain(text: str) -> str:
    return _MD_ESCAPE.sub(r"\1", html.unescape(text.replace("**", "")))


def _aligned(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows if i < len(row)) for i in range(max(map(len, rows), default=0))]
    return ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]


def _split(state: traffic.RouteState | None) -> str:
    return (
        "absent"
        if state is None
        else ", ".join(f"{n} {w}%" for n, w in sorted(state.weights.items(), key=lambda kv: (kv[0] != "stable", kv[0])))
    )


def _shadow(state: traffic.RouteState | None) -> str:
    return "-" if state is None else f"{state.shadow}%"


def _cohort_rows(live: traffic.RouteState | None, desired: traffic.RouteState) -> list[tuple[str, str, str]]:
    """(cohort, live, desired) for each cohort open in either state, desired's first: a cohort not open
    routes as everyone does."""
    names = [c.name for c in desired.cohorts] + [
        c.name for c in (live.cohorts if live else ()) if not desired.cohort(c.name)
    ]

    def text(state: traffic.RouteState | None, name: str) -> str:
        if state is None:
            return "-"
        c = state.cohort(name)
        return f"canary {c.canary}% ({c.key}={'|'.join(c.values)})" if c else "as everyone"

    return [(name, text(live, name), text(desired, name)) for name in names]


def _with_cohorts(state: traffic.RouteState | None) -> str:
    cohorts = cohorts_cell(state)
    return _split(state) + (f"; cohorts {cohorts}" if cohorts else "")


def cohorts_cell(state: traffic.RouteState | None) -> str:
    """A state's open cohorts in a few words, for a table cell: `internal 100%, beta 25%`, or ''."""
    return ", ".join(f"{c.name} {c.canary}%" for c in state.cohorts) if state else ""


@dataclass(frozen=True)
class MetricsCheck:
    """`rollout plan`'s metrics-contract check: each checked rollout's gates, or why Prometheus could not say."""

    checks: Mapping[str, Sequence[contract.GateCheck]] = field(default_factory=dict)
    error: str | None = None

    def lines(self, rollout: str) -> list[str]:
        """One line per gate with a problem: its status and what is wrong."""
        return [
            f"{c.gate} {c.status.value}: {'; '.join(c.problems)}"
            for c in self.checks.get(rollout, ())
            if c.status.problem
        ]


def plan_report(
    *,
    source: str,
    diffs: Sequence[plan.RouteDiff],
    failures: Sequence[tuple[str, str]],
    problems: Sequence[dict[str, Any]],
    fmt: str,
    metrics: MetricsCheck | None = None,
) -> str:
    metrics = metrics or MetricsCheck()
    if fmt == "json":
        return (
            json.dumps(
                {
                    "source": source,
                    "rollouts": [_diff_json(d, metrics) for d in diffs],
                    "unreachable": [{"rollout": n, "error": e} for n, e in failures],
                    "problems": list(problems),
                    "metricsError": metrics.error,
                },
                indent=2,
            )
            + "\n"
        )
    if fmt == "markdown":
        return _plan_markdown(source, diffs, failures, problems, metrics)
    return _plan_text(source, diffs, failures, problems, metrics)


def _diff_json(d: plan.RouteDiff, metrics: MetricsCheck) -> dict[str, Any]:
    return {
        "rollout": d.name,
        "router": d.router,
        "route": d.route,
        "step": d.step,
        "stepNumber": d.step + 1,
        "steps": d.steps,
        "phase": d.phase.value if d.phase else None,
        "create": d.live is None,
        "revisions": d.revisions,
        "desired": d.desired.to_json(),
        "live": d.live.to_json() if d.live else None,
        "drift": d.drift,
        "action": d.action,
        "timing": _timing_json(d.timing),
        "metrics": [
            {"gate": c.gate, "status": c.status.value, "problems": c.problems} for c in metrics.checks.get(d.name, ())
        ],
    }


# -- time to a decision (sample-size advice for the current step) ---------------------------------------


def _seconds(t: timedelta | None) -> int | None:
    return None if t is None else int(t.total_seconds())


def _timing_json(t: advice.StepAdvice | None) -> dict[str, Any] | None:
    if t is None:
        return None
    return {
        "step": t.step,
        "stepFor": _seconds(t.step_for),
        "requestsPerSecond": t.rate,
        "note": t.note or None,
        "caveat": t.caveat or None,
        "gates": [
            {
                "gate": g.gate,
                "check": g.check,
                "passAfter": _seconds(g.pass_after),
                "failAfter": _seconds(g.fail_after),
                "exact": g.exact,
                "applies": g.applies,
                "assumes": g.assumes,
                "decidesWithinFor": None if t.step_for is None or not g.applies else g.decides_within(t.step_for),
            }
            for g in t.gates
        ],
    }


def timing_lines(t: advice.StepAdvice | None, *, indent: str = "    ") -> list[str]:
    """The time-to-a-decision advice as `rollout plan` and `rollout status` print it."""
    return [indent + line[4:] for line in _timing_text(t)]


def _timing_text(t: advice.StepAdvice | None) -> list[str]:
    if t is None:
        return []
    if t.note:
        return [f"    decide   {t.note}"]
    head = f"    decide   at {spec.format_rate(t.rate or 0)}, step {t.step + 1} ({t.step_text})"
    head += f" for {spec.format_duration(t.step_for)}:" if t.step_for else ":"
    lines = [head]
    short = set(t.too_short())
    for g in t.gates:
        mark = "  (longer than the step's `for`)" if g in short else ""
        lines.append(f"             {g.gate} {g.check}: {g.text()}{mark}")
    if t.caveat:
        lines.append(f"             ({t.caveat})")
    return lines


def _timing_markdown(diffs: Sequence[plan.RouteDiff]) -> list[str]:
    rows = [(d, g) for d in diffs if d.timing for g in d.timing.gates]
    if not rows:
        return []
    lines = [
        "",
        "**Time to a decision** (current step, at `analysis.expectedRate`)",
        "",
        "| rollout | step | gate | check | pass / fail after | assumes |",
        "|---|---|---|---|---|---|",
    ]
    for d, g in rows:
        t = d.timing
        assert t is not None
        short = " **(longer than `for`)**" if g in t.too_short() else ""
        lines.append(
            f"| {md(d.name)} | {t.step + 1} ({md(t.step_text)}) | {md(g.gate)} | {md(g.check)} "
            f"| {md(g.text())}{short} | {md(g.assumes)} |"
        )
    caveats = sorted({f"{d.name}: {d.timing.caveat}" for d in diffs if d.timing and d.timing.caveat})
    if caveats:
        lines += ["", *(f"- {md(c)}" for c in caveats)]
    return lines


def _plan_text(
    source: str,
    diffs: Sequence[plan.RouteDiff],
    failures: Sequence[tuple[str, str]],
    problems: Sequence[dict[str, Any]],
    metrics: MetricsCheck,
) -> str:
    lines = [f"Plan for {source}", ""]
    for d in diffs:
        rev = d.revisions.get("canary") or d.revisions.get("stable", "")
        lines.append(f"{_mark(d)} {d.name}  router {d.router}, route {d.route}  {_where(d)}  rev {rev}")
        lines.append(f"    weights  live: {_split(d.live):<28} desired: {_split(d.desired)}")
        lines.append(f"    shadow   live: {_shadow(d.live):<28} desired: {_shadow(d.desired)}")
        for name, live, desired in _cohort_rows(d.live, d.desired):
            lines.append(f"    cohort {name}")
            lines.append(f"             live: {live:<28} desired: {desired}")
        lines.append(f"    drift    {'yes' if d.drift else 'no'}")
        lines.append(f"    next     {d.action}")
        lines += _timing_text(d.timing)
        lines += [errors.printable(f"    metrics  {m}") for m in metrics.lines(d.name)]
        lines.append("")
    for name, error in failures:
        lines += [f"! {name}  router unreachable or unreadable: {error}", ""]
    if metrics.error:
        lines += [errors.printable(f"! metrics contract not checked: {metrics.error}"), ""]
    for p in problems:
        lines.append(f"! {_text(p)}")
    lines.append(summary(diffs, failures, problems))
    return "\n".join(lines) + "\n"


def _mark(d: plan.RouteDiff) -> str:
    """`+` the route is created, `~` changed, `=` in sync (as Terraform marks a plan)."""
    return "+" if d.live is None else "~" if d.drift else "="


def _where(d: plan.RouteDiff) -> str:
    """Where a rollout is, in the schema's phases with steps numbered from 1."""
    if d.phase is None:
        return "no canary"
    if d.phase is spec.Phase.COMPLETED:
        return d.phase.value
    return f"step {d.step + 1}/{d.steps}  {d.phase.value}"


def summary(
    diffs: Sequence[plan.RouteDiff], failures: Sequence[tuple[str, str]], problems: Sequence[dict[str, Any]]
) -> str:
    """Every rollout counted once: `3 rollouts: 1 to change, 1 to create (+), 1 in sync`, then those not
    planned (a router unreachable, a file invalid)."""
    create = sum(d.live is None for d in diffs)
    change = sum(d.drift for d in diffs) - create
    invalid = len({p["file"] for p in problems if not p["file"].endswith(load.CONFIG_FILE)})
    total = len(diffs) + len(failures) + invalid
    parts = [f"{change} to change", f"{create} to create (+)", f"{len(diffs) - change - create} in sync"]
    parts += [f"{len(failures)} unreachable"] if failures else []
    parts += [f"{invalid} invalid (not planned)"] if invalid else []
    head = f"{total} rollout{'s' if total != 1 else ''}: " + ", ".join(parts)
    others = len(problems) - sum(not p["file"].endswith(load.CONFIG_FILE) for p in problems)
    return head + (f"; {others} problem(s) in {load.CONFIG_FILE}" if others else "")


def _step_cell(d: plan.RouteDiff) -> str:
    return "-" if d.phase in (None, spec.Phase.COMPLETED) else f"{d.step + 1}/{d.steps}"


def _plan_markdown(
    source: str,
    diffs: Sequence[plan.RouteDiff],
    failures: Sequence[tuple[str, str]],
    problems: Sequence[dict[str, Any]],
    metrics: MetricsCheck,
) -> str:
    lines = [
        f"### Rollout plan for `{source.replace('`', '')}`",
        "",
        "| rollout | route | step | phase | live | desired | shadow (live → desired) | drift | next |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for d in diffs:
        lines.append(
            f"| {_mark(d)} {md(d.name)} | {md(d.router)}/{md(d.route)} | {_step_cell(d)} | {d.phase or 'no canary'} "
            f"| {md(_with_cohorts(d.live))} | {md(_with_cohorts(d.desired))} | {_shadow(d.live)} → {_shadow(d.desired)} "
            f"| {'**yes**' if d.drift else 'no'} | {md(d.action)} |"
        )
    lines += ["", md(summary(diffs, failures, problems))]
    lines += _timing_markdown(diffs)
    found = [(d.name, m) for d in diffs for m in metrics.lines(d.name)]
    if found or metrics.error:
        lines += ["", "**Metrics contract** (`rollout doctor NAME` says more)", ""]
        lines += [f"- {md(n)}: {md(m)}" for n, m in found]
        lines += [f"- not checked: {md(metrics.error)}"] if metrics.error else []
    if failures:
        lines += ["", "**Unreachable routers**", ""]
        lines += [f"- {md(n)}: {md(e)}" for n, e in failures]
    if problems:
        lines += ["", "**Invalid files** (skipped; the other rollouts are planned)", ""]
        lines += [f"- {md(_text(p, excerpt=False))}" for p in problems]
    return "\n".join(lines) + "\n"
