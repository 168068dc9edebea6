"""Render gate evidence as text, as a markdown table for pull request bodies, and as JSON.

Pure string building; the CLI prints what these return and PR bodies embed `markdown()`. Every
user-supplied string (names, segment values, queries, errors) is escaped in markdown. Beside the
values, each threshold shows the judge's estimate and confidence bounds (`check_text`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from controller import gates, report


def _num(v: float | None) -> str:
    return "no data" if v is None else f"{v:.4g}"


def _count(v: float | None) -> str:
    return "?" if v is None else f"{v:.0f}"


def _stat(v: float | None, unit: str) -> str:
    if v is None or math.isnan(v):
        return "n/a"
    if math.isinf(v):
        return "+inf" if v > 0 else "-inf"
    match unit:
        case "pts":
            return f"{v * 100:+.2f} pts"
        case "rel":
            return f"{v * 100:+.1f}%"
        case "rate":
            return f"{v * 100:.2f}%"
        case "s":
            return f"{v:.3g}s"
        case _:
            return f"{v:.4g}"


def check_text(c: gates.Check) -> str:
    """One threshold as the judge saw it: `maxDrop +2.10 pts [+0.40 pts, +3.80 pts] / +3.00 pts`.
    The estimate, then the confidence bounds (FAIL reads one, PASS the other), then the limit."""
    bounds = "" if c.lower is None and c.upper is None else f" [{_stat(c.lower, c.unit)}, {_stat(c.upper, c.unit)}]"
    resolution = "" if c.resolution is None else f" (buckets {_stat(c.resolution, c.unit)} wide)"
    return f"{c.name} {_stat(c.estimate, c.unit)}{bounds} / {_stat(c.limit, c.unit)}{resolution}"


def _brief_stat(v: float, unit: str) -> str:
    match unit:
        case "pts":
            return f"{v * 100:.3g} pts"
        case "rel":
            return f"{v * 100:+.3g}%"
        case "rate":
            return f"{v * 100:.3g}%"
        case "s":
            return f"{v * 1000:.3g}ms" if v < 1 else f"{v:.3g}s"
        case _:
            return f"{v:.4g}"


def brief(e: gates.GateEvidence) -> str:
    """A failed gate in a few words, for a PR title: `error_rate 3.9% > 1%`, `latency_p95 +25% > +10%`,
    `eval_pass_rate down 5 pts > 3 pts`; "" when no failed check carries an estimate."""
    for s in e.segments:
        if not s.counted or s.verdict is not gates.Verdict.FAIL:
            continue
        for c in s.checks:
            if c.verdict is not gates.Verdict.FAIL or c.estimate is None or not math.isfinite(c.estimate):
                continue
            value, limit = _brief_stat(c.estimate, c.unit), _brief_stat(c.limit, c.unit)
            where = "" if not (s.segment or s.cohort) else f" ({gates.where(s)})"
            match c.name:
                case "max" | "maxIncrease":
                    said = f"{value} > {limit}"
                case "min":
                    said = f"{value} < {limit}"
                case "maxDrop":
                    said = f"down {value} > {limit}"
                case _:
                    said = f"{c.name} {value}, limit {limit}"
            return f"{e.name} {said}{where}"
    return ""


def _checks(s: gates.SegmentEvidence) -> str:
    return "; ".join(check_text(c) for c in s.checks) or "-"


def _check_json(c: gates.Check) -> dict[str, Any]:
    def num(v: float | None) -> float | str | None:
        return None if v is None or math.isnan(v) else (("+inf" if v > 0 else "-inf") if math.isinf(v) else v)

    return {
        "check": c.name,
        "verdict": str(c.verdict),
        "estimate": num(c.estimate),
        "lower": num(c.lower),
        "upper": num(c.upper),
        "limit": c.limit,
        "unit": c.unit,
        **({} if c.resolution is None else {"resolution": num(c.resolution)}),
    }


def thresholds(e: gates.GateEvidence) -> str:
    """A gate's bounds in words: `maxDrop 2 pts`, `max 0.01`, `canary share 10%`."""
    out = []
    for k, v in e.thresholds.items():
        if k == "maxDrop":
            out.append(f"maxDrop {v * 100:g} pts")
        elif k == "maxIncrease":
            out.append(f"maxIncrease {v * 100:g}%")
        elif k == "share":
            out.append(f"canary share {v * 100:g}%")
        else:
            out.append(f"{k} {v:g}")
    return ", ".join(out)


def to_json(rollout: str, evidence: Sequence[gates.GateEvidence], *, at: str) -> dict[str, Any]:
    return {
        "rollout": rollout,
        "at": at,
        "verdict": str(gates.worst(gates.deciding(evidence))) if evidence else None,
        "gates": [
            {
                "gate": e.name,
                "kind": e.kind,
                "source": e.source,
                "onFail": e.on_fail,
                "thresholds": e.thresholds,
                "minSamples": e.min_samples,
                "window": e.window,
                "verdict": str(e.verdict),
                "error": e.error,
                "query": e.query,
                "segments": [
                    {
                        "segment": dict(s.segment),
                        **({"cohort": s.cohort} if s.cohort else {}),
                        "stable": {"value": s.stable.value, "samples": s.stable.samples},
                        "canary": {"value": s.canary.value, "samples": s.canary.samples},
                        "verdict": str(s.verdict),
                        "checks": [_check_json(c) for c in s.checks],
                        "counted": s.counted,
                        "reason": s.reason,
                    }
                    for s in e.segments
                ],
            }
            for e in evidence
        ],
    }


def json_text(rollout: str, evidence: Sequence[gates.GateEvidence], *, at: str) -> str:
    return json.dumps(to_json(rollout, evidence, at=at), indent=2) + "\n"


def text(rollout: str, evidence: Sequence[gates.GateEvidence], *, at: str) -> str:
    lines = [f"Gates for {rollout} at {at}", ""]
    header = f"  {'segment':<24} {'stable':>10} {'n':>7} {'canary':>10} {'n':>7}  verdict       judge (estimate [bounds] / limit); reason"
    for e in evidence:
        lines.append(
            f"{e.name} ({e.kind}, {e.source}; {thresholds(e)}; minSamples {e.min_samples}; "
            f"window {e.window}; onFail {e.on_fail}): {e.verdict}"
        )
        if e.error:
            lines.append(f"  error: {e.error}")
        if e.segments:
            lines.append(header)
        for s in e.segments:
            mark = "" if s.counted else " (not counted)"
            lines.append(
                f"  {gates.where(s):<24} {_num(s.stable.value):>10} {_count(s.stable.samples):>7} "
                f"{_num(s.canary.value):>10} {_count(s.canary.samples):>7}  {s.verdict!s:<12}  {_checks(s)}; {s.reason}{mark}"
            )
        lines.append("")
    verdict = gates.worst(gates.deciding(evidence)) if evidence else "no gates"
    lines.append(f"{len(evidence)} gate(s): {verdict}")
    return "\n".join(lines) + "\n"


TABLE_HEADER = (
    "gate",
    "segment",
    "stable",
    "n",
    "canary",
    "n",
    "thresholds",
    "estimate [bounds] / limit",
    "verdict",
    "reason",
)
_NUMBERS = frozenset({2, 3, 4, 5})  # the columns of figures we format ourselves: never escaped
VERDICT_COLUMN = TABLE_HEADER.index("verdict")


def table(evidence: Sequence[gates.GateEvidence]) -> list[tuple[str, ...]]:
    """The evidence table a PR body shows, a row per gate and segment (or per unmeasured gate), as plain
    unescaped text under `TABLE_HEADER`: `markdown` escapes it for a PR, the dashboard for HTML."""
    rows: list[tuple[str, ...]] = []
    for e in evidence:
        if e.error or not e.segments:
            rows.append((e.name, "-", "-", "-", "-", "-", thresholds(e), "-", str(e.verdict), e.error or "no data"))
        for s in e.segments:
            counted = "" if s.counted else " (not counted)"
            rows.append(
                (
                    e.name,
                    gates.where(s),
                    _num(s.stable.value),
                    _count(s.stable.samples),
                    _num(s.canary.value),
                    _count(s.canary.samples),
                    thresholds(e),
                    _checks(s),
                    str(s.verdict),
                    s.reason + counted,
                )
            )
    return rows


def _markdown_row(row: tuple[str, ...]) -> str:
    cells = [f"**{c}**" if i == VERDICT_COLUMN else c if i in _NUMBERS else report.md(c) for i, c in enumerate(row)]
    return "| " + " | ".join(cells) + " |"


def markdown(rollout: str, evidence: Sequence[gates.GateEvidence], *, at: str) -> str:
    verdict = gates.worst(gates.deciding(evidence)) if evidence else "no gates"
    lines = [
        f"### Gates for {report.md(rollout)}: **{verdict}**",
        "",
        f"Evaluated at {report.md(at)}.",
        "",
        "| " + " | ".join(TABLE_HEADER) + " |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [_markdown_row(row) for row in table(evidence)]
    lines += ["", "<details><summary>Queries</summary>", ""]
    for e in evidence:
        query = e.query.replace("`", "'") or "(none)"
        lines += [
            f"**{report.md(e.name)}** ({report.md(e.kind)}, {report.md(e.source)}, window {report.md(e.window)}, minSamples {e.min_samples}): gate verdict **{e.verdict}**",
            "",
            "```promql",
            query,
            "```",
            "",
        ]
    lines.append("</details>")
    return "\n".join(lines) + "\n"
