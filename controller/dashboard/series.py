"""The dashboard's plots: stable and canary side by side over a time range, per segment or cohort. Each
plotted value is the quantity a gate judges (its template's value expression, `templates.compile_values`,
over a sliding window), asked with one Prometheus range query per quantity. The dashboard server
answers `/api/rollouts/NAME/series` with `plots()`; `static/plots.js` draws it with uPlot.

The JSON `plots()` returns (every time in unix seconds):

    {"start": 1700000000, "end": 1700003600, "step": 15, "window": "5m",
     "panels": [{"metric": "error_rate", "title": "Error rate", "unit": "%",
                 "source": "application", "note": "", "query": "<the PromQL asked>",
                 "series": [{"variant": "stable", "segment": "",
                             "points": [[1700000000, 0.52], [1700000015, null], ...]},
                            {"variant": "canary", "segment": "", "points": [...]}]}],
     "errors": ["..."]}

- `step` keeps a panel at 240 points at most, and is never under 15 s (a usual scrape interval):
  `max(15, ceil((end - start) / 239))`. `start` and `end` are whole seconds; a series has one point per
  time `start + k * step` up to `end`, null where Prometheus has no value there (no traffic in the
  window, or 0/0); values have 12 significant digits (no float noise such as 0.9999999999999999).
- `window` is the rate window of every value: the rollout's `analysis.interval`, or the step when that
  is longer (so that consecutive points together see every request). A gate judges the same expression
  over the step so far; a plot's point is that expression over the window before it.
- Panels, in this order: `error_rate` (%), `latency_p95` (s), `eval_pass_rate` (%), `cost_per_request`
  ($ per answered request), `tokens_per_request` (tokens per answered request, as the gate counts them:
  a failed request spends nothing), then any other template the rollout's gates use (titled with its
  name, and in % when it is a controller.yaml ratio template). A `%` value is a percentage (the share
  times 100). A controller.yaml template of a built-in's name replaces it, as it
  does for the gate.
- `source` is whose metrics a panel reads (`application`, `Envoy`, `LiteLLM`, `vLLM`), chosen as for the
  gate (`templates.Template.flavour_for`); `note` says when that is not the rollout's router or model
  server (Envoy has no eval results: that panel reads the application's), and is '' otherwise.
- `series`: for every segment (`analysis.segments`) and, while cohorts are open, every cohort the gates
  judge, one series per variant (`stable` first), a missing variant all null. `segment` names where, as
  the evidence does: '' for the whole route, `tenant_tier=pro`, `cohort beta, tenant_tier=pro`,
  `everyone else`. A panel with no series has no data.
- `errors`: why panels are empty: no Prometheus configured, Prometheus down (asked once; the other
  panels are not asked), a query Prometheus refused. `plots()` never raises for any of them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from controller import analysis, contract, errors, gates, load, prometheus, promql, spec, templates

MAX_POINTS = 240
MIN_STEP = 15  # seconds


@dataclass(frozen=True)
class Quantity:
    """What a panel plots: a gate template, its title and unit, and the factor its values are shown in."""

    metric: str
    title: str
    unit: str
    factor: float = 1.0


PERCENT = 100.0
BUILTIN = (
    Quantity("error_rate", "Error rate", "%", PERCENT),
    Quantity("latency_p95", "p95 latency", "s"),
    Quantity("eval_pass_rate", "Eval pass rate", "%", PERCENT),
    Quantity("cost_per_request", "Cost per answered request", "$"),
    Quantity("tokens_per_request", "Tokens per answered request", "tokens"),
)
#: Other built-in templates a rollout's gates may use: plotted too, with these titles and units.
OTHERS = {
    q.metric: q
    for q in (
        Quantity("schema_valid_rate", "Valid structured outputs", "%", PERCENT),
        Quantity("feedback_negative_rate", "Negative feedback", "%", PERCENT),
        Quantity("ttft_p95", "p95 time to first token", "s"),
        Quantity("preemptions", "Preemptions per finished request", ""),
        Quantity("kv_cache_usage", "Peak KV cache usage", "%", PERCENT),
    )
}
KNOWN = {q.metric for q in BUILTIN} | set(OTHERS)


def step_of(start: datetime, end: datetime) -> int:
    """The range query's step in seconds: at most MAX_POINTS points, never under MIN_STEP."""
    span = max(0, math.floor(end.timestamp()) - math.floor(start.timestamp()))
    return max(MIN_STEP, math.ceil(span / (MAX_POINTS - 1)))


def quantities(loaded: load.LoadedRollout) -> list[Quantity]:
    """The built-in quantities, then every other template the rollout's gates use, each once."""
    out = list(BUILTIN)
    seen = {q.metric for q in out}
    for gate in loaded.rollout.spec.analysis.gates:
        if gate.use not in seen:
            seen.add(gate.use)
            out.append(OTHERS.get(gate.use, Quantity(gate.use, gate.use, "")))
    return out


def plots(
    loaded: load.LoadedRollout,
    config: spec.ControllerConfig,
    metrics: prometheus.Prometheus | None,
    *,
    start: datetime,
    end: datetime,
) -> dict[str, Any]:
    """The plots of one rollout from `start` to `end` (tz-aware), as the JSON the module docstring
    describes. Never raises for a missing or failing Prometheus: `errors` says why panels are empty."""
    first, last = math.floor(start.timestamp()), math.floor(end.timestamp())
    step = step_of(start, end)
    window = max(loaded.rollout.spec.analysis.interval, timedelta(seconds=step))
    out: dict[str, Any] = {
        "start": first,
        "end": last,
        "step": step,
        "window": spec.format_duration(window),
        "panels": [],
        "errors": [],
    }
    problems: list[str] = out["errors"]
    if last < first:
        problems.append("the range ends before it starts")
    elif metrics is None:
        problems.append("no Prometheus is configured (controller.yaml has no `prometheus`): nothing to plot")
    try:
        target: analysis.Target | None = analysis.target(loaded, config)
    except (errors.RolloutError, ValueError, IndexError) as exc:
        problems.append(f"rollout {loaded.name}: cannot tell what its gates measure: {exc}")
        target = None
    asking = metrics is not None and not problems  # False once Prometheus has not answered
    grid = range(first, last + 1, step)
    for q in quantities(loaded):
        panel: dict[str, Any] = {"metric": q.metric, "title": q.title, "unit": q.unit}
        panel |= {"source": "", "note": "", "query": "", "series": []}
        out["panels"].append(panel)
        if target is None:
            continue
        try:
            template = templates.resolve(q.metric, config)
            asked = _groups(template, target)
        except promql.QueryError as exc:
            problems.append(f"{q.title}: {exc}")
            continue
        if q.metric not in KNOWN and template.kind == "ratio":  # a controller.yaml template: a share
            q = Quantity(q.metric, q.title, "%", PERCENT)
            panel["unit"] = q.unit
        flavour = asked[0][0].flavour
        panel["source"] = flavour.source_name
        panel["note"] = _note(q, template, flavour, target)
        try:
            query = templates.compile_values(template, [g for g, _ in asked], window=window)
        except promql.QueryError as exc:
            problems.append(f"{q.title}: {exc}")
            continue
        panel["query"] = query
        if not asking or metrics is None:
            continue
        try:
            found = metrics.query_range(
                query,
                start=datetime.fromtimestamp(first, start.tzinfo),
                end=datetime.fromtimestamp(last, start.tzinfo),
                step=timedelta(seconds=step),
            )
        except errors.MetricsUnavailable as exc:
            problems.append(f"{q.title}: {exc} (the other panels were not asked)")
            asking = False
            continue
        except errors.MetricsError as exc:
            problems.append(f"{q.title}: {exc}")
            continue
        panel["series"] = _series(found, asked, contract.subject(flavour, target), grid, factor=q.factor)
    return out


Asked = Sequence[tuple[templates.Group, str]]  # each group, and the cohort it picks ('' none)


def _groups(template: templates.Template, t: analysis.Target) -> list[tuple[templates.Group, str]]:
    """The groups a gate on `template` is asked in (as `analysis` asks them): the route's, or each judged
    cohort's, on metrics that carry cohort labels."""
    g = contract.group_of(template, t)
    if not g.flavour.segmented or not t.cohorts:
        return [(g, "")]
    subjects = sorted(g.subjects)
    return [(templates.group(g.flavour, g.segments, subjects=subjects, matchers=c.matchers), c.name) for c in t.cohorts]


def _note(q: Quantity, template: templates.Template, flavour: templates.Flavour, t: analysis.Target) -> str:
    """Why a panel reads other metrics than the rollout's router's or model server's, or ''."""
    own = templates.split_flavour(t.router_type, t.metrics)  # whose requests the rollout counts
    if flavour is own:
        return ""
    return (
        f"{own.source_name} metrics have no {q.title[0].lower() + q.title[1:]}: "
        f"read from the {flavour.source_name} metrics ({template.name})"
    )


def _series(
    found: Sequence[prometheus.Series], asked: Asked, subject: str, grid: range, *, factor: float
) -> list[dict[str, Any]]:
    by_key = {g.key: (g, cohort) for g, cohort in asked}
    points: dict[tuple[str, str], dict[int, float | None]] = {}
    for s in found:
        mine = by_key.get(s.labels.get(templates.GROUP, ""))
        if mine is None:
            continue
        g, cohort = mine
        variant = s.labels.get("variant", "")
        if s.labels.get(g.subject_label, "") != subject or variant not in ("stable", "canary"):
            continue
        where = _where(cohort, tuple((seg, s.labels.get(seg, "")) for seg in g.segments))
        values = points.setdefault((where, variant), {})
        for t, v in s.points:
            values[round(t)] = None if math.isnan(v) or math.isinf(v) else float(f"{v * factor:.12g}")
    out = []
    for where in sorted({w for w, _ in points}):
        for variant in ("stable", "canary"):
            values = points.get((where, variant), {})
            out.append({"variant": variant, "segment": where, "points": [[t, values.get(t)] for t in grid]})
    return out


def _where(cohort: str, segment: gates.Segment) -> str:
    """Where a series was measured, as the evidence says it (`gates.where`); '' for the whole route."""
    text = gates.segment_text(segment) if segment else ""
    if not cohort:
        return text
    name = "everyone else" if cohort == gates.EVERYONE else f"cohort {cohort}"
    return name + (f", {text}" if text else "")
