"""The metrics contract: which series each gate template reads, with which labels, per router type, read
off the templates themselves (`controller.templates`), so the README's table and `rollout doctor` can
never say something else than the gates do. Pure: `analysis.check_contract` sends `compile_query()`
(one discovery query per template, every rollout at once) and hands the answer to `check()`.

A gate's series are fine when they exist over the window for the rollout, for every variant it has,
with the variant and segment labels; a quantile gate's buckets must also be fine enough for its
`maxIncrease` where the stable variant's quantile lies (`judge.too_coarse`).
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Protocol

from controller import gates, judge, load, plan, promql, spec, templates, traffic

#: Router types and the metrics their rollouts' built-in gates read, in the README table's order.
ROUTER_TYPES = ("file", "flagd", "envoy", "litellm")
SEEN = 5  # other subjects' label values named when a rollout's series are missing
WINDOW = timedelta(minutes=10)  # how far back `rollout doctor` (by default) and `rollout plan` look for series


class Status(StrEnum):
    """One gate's finding, from best to worst."""

    OK = "OK"
    UNCHECKED = "UNCHECKED"  # free PromQL (`kind: value`): no series to look for
    COARSE = "COARSE"  # the series are there, but the histogram cannot resolve the limit
    UNLABELLED = "UNLABELLED"
    MISSING = "MISSING"
    ERROR = "ERROR"  # the discovery query failed

    @property
    def problem(self) -> bool:
        return self not in (Status.OK, Status.UNCHECKED)


def _worst(statuses: Iterable[Status]) -> Status:
    order = list(Status)
    return max(statuses, key=order.index, default=Status.OK)


# -- what a template reads ------------------------------------------------------------------------


@dataclass(frozen=True)
class Series:
    """One selector a gate reads. `optional`: a counter of events that may not have happened yet (Envoy
    creates its 5xx series at the first 5xx): no series counts as zero, so its absence is no problem."""

    role: str  # bad, good, total, buckets, sum, count, requests
    selector: str
    optional: bool = False


def series(t: spec.GateTemplate) -> tuple[Series, ...]:
    """The series one flavour of a template reads, in the order its query uses them."""
    match t:
        case spec.RatioTemplate():
            role = "good" if t.good is not None else "bad"
            return (Series(role, t.numerator, optional=True), Series("total", t.total))
        case spec.QuantileTemplate():
            return (Series("buckets", t.buckets),)
        case spec.MeanTemplate():
            out = (Series("sum", t.sum), Series("count", t.count))
            return out + ((Series("requests", t.requests),) if t.requests is not None else ())
        case spec.ValueTemplate():
            return ()


def labels(flavour: templates.Flavour) -> str:
    """The labels a flavour's series carry, in words: the README table's last row."""
    if flavour.by_rollout:
        return f"`{flavour.cluster_label}` = `<rollout>_stable` or `<rollout>_canary`; `le` on buckets"
    if flavour is templates.Flavour.VLLM:
        return "`route` = `spec.route`, `variant` = `stable` or `canary`, added by Prometheus' scrape config; `le` on buckets"
    return "`route` = `spec.route`, `variant` = `stable` or `canary`, the rollout's `analysis.segments` and its cohorts' attributes; `le` on buckets"


def _cell(t: spec.GateTemplate) -> str:
    """One flavour's cell of the README table (a `|` in a selector escaped, as a table cell needs)."""
    return _words(t).replace("|", "\\|")


def _words(t: spec.GateTemplate) -> str:
    names = {s.role: f"`{s.selector}`" for s in series(t)}
    match t:
        case spec.RatioTemplate():
            return f"{names['good' if t.good is not None else 'bad']} / {names['total']}"
        case spec.QuantileTemplate():
            scaled = f", x {t.scale:g} to seconds" if t.scale != 1.0 else ""
            return f"{names['buckets']} (p{t.quantile * 100:g}{scaled})"
        case spec.MeanTemplate():
            cell = f"{names['sum']} / {names['count']}"
            return cell + (f"; every request: {names['requests']}" if "requests" in names else "")
        case spec.ValueTemplate():
            return f"free PromQL: {t.description}" if t.description else "free PromQL"


def readme_table() -> str:
    """The README's metrics-contract table, from `templates.BUILTIN` (a test holds the README to it)."""
    head = (
        "| gate | kind | application metrics (`file`, `flagd`, and where no other column says) | `envoy` | `litellm` "
        "| `analysis.metrics: vllm` (where the router's column names none) |"
    )
    lines = [head, "|---|---|---|---|---|---|"]
    for name, template in templates.BUILTIN.items():
        cells = [_cell(template.app) if template.app is not None else "none: vLLM only"]
        for router in ("envoy", "litellm"):
            flavour = template.flavour_for(router)
            if template.vllm_only:
                cells.append("none: vLLM only")
            else:
                cells.append("the application's" if flavour is templates.Flavour.APP else _cell(template.of(flavour)))
        vllm = template.flavour_for("", spec.ServerMetrics.VLLM)
        cells.append(_cell(template.of(vllm)) if vllm is templates.Flavour.VLLM else "the router's or application's")
        lines.append(f"| `{name}` | {template.kind} | {' | '.join(cells)} |")
    flavours = (templates.Flavour.APP, templates.Flavour.ENVOY, templates.Flavour.LITELLM, templates.Flavour.VLLM)
    lines.append(f"| labels | | {' | '.join(labels(f) for f in flavours)} |")
    return "\n".join(lines) + "\n"


# -- one discovery query per template -------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """What the contract check needs to know about one rollout."""

    rollout: str
    route: str
    router_type: str
    gates: tuple[spec.Gate, ...]
    segments: tuple[str, ...]
    variants: tuple[str, ...]  # whose series must exist: stable, and the canary while there is one
    metrics: str = ""  # `analysis.metrics`: the model server whose metrics the gates read ('' none)


def target(loaded: load.LoadedRollout, config: spec.ControllerConfig) -> Target:
    s = loaded.rollout.spec
    router = config.routers.get(s.router)
    variants = (traffic.STABLE,) if s.canary is None or plan.rolled_back(loaded) else (traffic.STABLE, traffic.CANARY)
    return Target(
        rollout=loaded.name,
        route=s.route,
        router_type=router.type if router is not None else "",
        gates=tuple(s.analysis.gates),
        segments=tuple(dict.fromkeys([*s.analysis.segments, *(c.key for c in s.cohorts)])),
        variants=variants,
        metrics=s.analysis.metrics or "",
    )


class Subject(Protocol):
    """Whose series a template is asked for: this module's Target, and the gates' (analysis.Target)."""

    @property
    def rollout(self) -> str: ...
    @property
    def route(self) -> str: ...
    @property
    def router_type(self) -> str: ...
    @property
    def segments(self) -> tuple[str, ...]: ...
    @property
    def metrics(self) -> str: ...


def group_of(template: templates.Template, t: Subject) -> templates.Group:
    """The group a rollout's gate on `template` is asked in (as `analysis` asks it); QueryError for a
    segment label that cannot be one."""
    flavour = template.flavour_for(t.router_type, t.metrics)
    return templates.group(flavour, t.segments, subjects=[subject(flavour, t)])


def subject(flavour: templates.Flavour, t: Subject) -> str:
    return t.rollout if flavour.by_rollout else t.route


def compile_query(template: templates.Template, groups: Sequence[templates.Group], *, window: timedelta) -> str:
    """One PromQL expression saying, for every group, which series of each selector exist over the window
    and with which labels (`present`), which subjects other series of it name (`seen`, when a rollout's
    are missing) and, for histograms, each `le` bucket's increase (`buckets`). '' when the template has
    no selector to look for (free PromQL)."""
    w = spec.format_duration(window)
    parts = []
    for g in sorted(groups, key=lambda g: g.key):
        mine = templates.subject_matchers(g)
        own = (g.flavour.cluster_label,) if g.flavour.by_rollout else ("route", "variant", *g.segments)
        everyone = g.flavour.cluster_label if g.flavour.by_rollout else "route"
        for i, s in enumerate(series(template.of(g.flavour))):
            selector = promql.with_matchers(s.selector, mine)
            asks = {
                "present": _count(f"last_over_time({selector}[{w}])", own),
                "seen": f"topk({SEEN}, {_count(f'last_over_time({s.selector}[{w}])', (everyone,))})",
            }
            if s.role == "buckets":
                le = (*own[:2], "le")
                asks["buckets"] = f"sum by ({', '.join(le)}) (increase({selector}[{w}]))"
            for part, expr in asks.items():
                parts.append(promql.tag(promql.tag(expr, templates.PART, f"{part}:{i}"), templates.GROUP, g.key))
    return " or ".join(parts)


def _count(expr: str, by: Sequence[str]) -> str:
    return f"count by ({', '.join(promql.label(b) for b in by)}) ({expr})"


Rows = Sequence[tuple[Mapping[str, str], float]]  # labels without our tags, value


def read(
    samples: Iterable[tuple[Mapping[str, str], float]],
) -> dict[tuple[str, str], list[tuple[dict[str, str], float]]]:
    """A discovery answer as (group key, part) -> rows, our tags taken off the labels."""
    out: dict[tuple[str, str], list[tuple[dict[str, str], float]]] = defaultdict(list)
    for found, value in samples:
        rest = {k: v for k, v in found.items() if k not in (templates.PART, templates.GROUP)}
        out[(found.get(templates.GROUP, ""), found.get(templates.PART, ""))].append((rest, value))
    return dict(out)


# -- judging one gate ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """What was found for one selector of a gate."""

    role: str
    selector: str
    status: Status
    detail: str


@dataclass(frozen=True)
class GateCheck:
    """The contract check of one gate of one rollout."""

    rollout: str
    gate: str
    kind: str
    source: str  # the flavour: app, envoy, litellm, vllm
    status: Status
    findings: tuple[Finding, ...]
    buckets: tuple[float, ...] | None = None  # a quantile gate's finite bounds, in seconds
    resolution: str = ""  # a quantile gate: whether its maxIncrease can pass on those buckets

    @property
    def problems(self) -> list[str]:
        """One line per problem, for `rollout plan`."""
        out = [f"{f.selector}: {f.detail}" for f in self.findings if f.status.problem]
        return out + ([self.resolution] if self.status is Status.COARSE else [])


def unchecked(t: Target, gate: spec.Gate, *, status: Status, why: str, kind: str = "", source: str = "") -> GateCheck:
    return GateCheck(t.rollout, gate.use, kind, source, status, (Finding("", gate.use, status, why),))


def check(
    t: Target,
    gate: spec.Gate,
    template: templates.Template,
    answer: Mapping[tuple[str, str], Sequence[tuple[Mapping[str, str], float]]],
    *,
    window: timedelta,
) -> GateCheck:
    """One gate of one rollout against the discovery answer of its template."""
    g = group_of(template, t)
    t_of = template.of(g.flavour)
    found = series(t_of)
    if not found:
        why = "free PromQL (kind: value): no series to look for"
        return unchecked(t, gate, status=Status.UNCHECKED, why=why, kind=template.kind, source=str(g.flavour))
    me = subject(g.flavour, t)
    findings = []
    bounds: tuple[float, ...] | None = None
    resolution = ""
    for i, s in enumerate(found):
        mine = [(lbl, n) for lbl, n in answer.get((g.key, f"present:{i}"), ()) if _subject_of(g, lbl) == me]
        findings.append(_finding(s, g, t, mine, answer.get((g.key, f"seen:{i}"), ()), window))
        if s.role == "buckets" and isinstance(t_of, spec.QuantileTemplate) and findings[-1].status is Status.OK:
            rows = [(lbl, n) for lbl, n in answer.get((g.key, f"buckets:{i}"), ()) if _subject_of(g, lbl) == me]
            finding, bounds, resolution = _buckets(s, g, rows, gate, t_of)
            findings[-1] = finding
    status = _worst(f.status for f in findings)
    if status is Status.OK and resolution.endswith(judge.CANNOT_PASS):
        status = Status.COARSE
    return GateCheck(t.rollout, gate.use, template.kind, str(g.flavour), status, tuple(findings), bounds, resolution)


def _subject_of(g: templates.Group, found: Mapping[str, str]) -> str:
    if g.flavour.by_rollout:
        return found.get(g.flavour.cluster_label, "").rpartition("_")[0]
    return found.get("route", "")


def _variant_of(g: templates.Group, found: Mapping[str, str]) -> str | None:
    if g.flavour.by_rollout:
        return found.get(g.flavour.cluster_label, "").rpartition("_")[2]
    return found.get("variant")


def _finding(s: Series, g: templates.Group, t: Target, mine: Rows, seen: Rows, window: timedelta) -> Finding:
    w = spec.format_duration(window)
    who = f'{g.flavour.cluster_label}="{t.rollout}_<variant>"' if g.flavour.by_rollout else f'route="{t.route}"'
    if not mine:
        if s.optional:
            return Finding(s.role, s.selector, Status.OK, "none yet (counted as 0 until the first one)")
        return Finding(
            s.role, s.selector, Status.MISSING, f"no series with {who} in the last {w}; {_elsewhere(g, seen)}"
        )
    problems = []
    unlabelled = sum(n for lbl, n in mine if _variant_of(g, lbl) is None)
    if unlabelled:
        problems.append(f"{unlabelled:g} series without the `variant` label")
    values = sorted({v for lbl, _ in mine if (v := _variant_of(g, lbl)) is not None})
    wanted = t.variants if not s.optional else ()
    absent = [v for v in wanted if v not in values]
    if absent:
        label = g.flavour.cluster_label if g.flavour.by_rollout else "variant"
        saw = ", ".join(values) or "none"
        line = f"no {label} {' or '.join(absent)} (values seen: {saw})"
        if absent == [traffic.CANARY]:
            line += "; the canary's series appear with its first request"
        problems.append(line)
    for seg in g.segments:
        lacking = sorted({_variant_of(g, lbl) or "?" for lbl, _ in mine if seg not in lbl})
        if lacking:
            problems.append(f"series without the segment label `{seg}` (variant {', '.join(lacking)})")
    if problems:
        return Finding(s.role, s.selector, Status.UNLABELLED, "; ".join(problems))
    return Finding(s.role, s.selector, Status.OK, f"variants {', '.join(values)}")


def _elsewhere(g: templates.Group, seen: Rows) -> str:
    """Where the selector's other series are, so a user can tell a missing metric from a mislabelled one."""
    label = g.flavour.cluster_label if g.flavour.by_rollout else "route"
    vllm = g.flavour is templates.Flavour.VLLM
    if not seen:
        if vllm:
            return "no series of it at all: does Prometheus scrape the rollout's vLLM servers?"
        return "no series of it at all: does the application (or router) export it, and does Prometheus scrape it?"
    values = sorted(lbl[label] for lbl, _ in seen if label in lbl)
    bare = [lbl for lbl, _ in seen if label not in lbl]
    said = [f"{label} values seen: {', '.join(values)}"] if values else []
    unlabelled = f"series without the `{label}` label exist"
    if vllm:
        unlabelled += " (vLLM labels none: the scrape config must add `route` and `variant` to each vLLM target)"
    return "; ".join(said + ([unlabelled] if bare else []))


def _buckets(
    s: Series, g: templates.Group, rows: Rows, gate: spec.Gate, t: spec.QuantileTemplate
) -> tuple[Finding, tuple[float, ...] | None, str]:
    """The histogram's layout over the window: its `le` bounds (scaled to seconds) and whether the
    gate's `maxIncrease` can pass where stable's quantile lies (or anywhere, with no traffic yet)."""
    per: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for lbl, n in rows:
        try:
            le = float(lbl.get("le", ""))
        except ValueError:
            continue
        if math.isnan(le):
            continue
        per[_variant_of(g, lbl) or ""].append((le if math.isinf(le) else le * t.scale, n))
    without = sorted(v for v, b in per.items() if all(not math.isinf(le) for le, _ in b))
    if without or not per:
        detail = f'no `le="+Inf"` bucket (variant {", ".join(without) or "any"}): not a Prometheus histogram'
        return Finding(s.role, s.selector, Status.UNLABELLED, detail), None, ""
    stable = sorted(per.get(traffic.STABLE) or next(iter(per.values())))
    bounds = tuple(le for le, _ in stable if not math.isinf(le))
    finding = Finding(s.role, s.selector, Status.OK, f"variants {', '.join(sorted(per))}; {len(bounds)} buckets")
    if gate.max_increase is None:
        return finding, bounds, ""
    try:
        return finding, bounds, passes(bounds, gate.max_increase, stable, quantile=t.quantile)
    except ValueError as exc:  # two exporters' `le="0.1"` and `le="0.10"`, a count that falls: no one histogram
        return Finding(s.role, s.selector, Status.UNLABELLED, f"buckets that are not one histogram: {exc}"), None, ""


def layout(bounds: Sequence[float]) -> str:
    """A histogram's finite bounds in words: all of them when few, else their range and spacing."""
    if len(bounds) <= 20:
        return f"{len(bounds)} buckets (s): {' '.join(f'{b:g}' for b in bounds)} +Inf"
    steps = [b / a - 1 for a, b in itertools.pairwise(bounds) if a > 0]
    spacing = f", {min(steps):.1%} to {max(steps):.1%} apart" if steps else ""
    return f"{len(bounds)} buckets from {bounds[0]:g}s to {bounds[-1]:g}s{spacing}, then +Inf"


def passes(
    bounds: Sequence[float], max_increase: float, stable: Sequence[tuple[float, float]], *, quantile: float
) -> str:
    """Whether a `maxIncrease` on a quantile can pass on these bucket bounds: where stable's quantile lies
    when it has samples (`judge.too_coarse` when that bucket is wider than the limit), else anywhere."""
    limit = f"maxIncrease {max_increase * 100:g}%"
    if stable and stable[-1][1] > 0:
        at = judge.histogram_quantile(quantile, stable)
        lower, upper = judge.resolution(list(stable), at)
        if lower <= 0 or math.isinf(upper) or upper / lower - 1 > max_increase + 1e-9:
            return judge.too_coarse(at, lower, upper, max_increase)
        return f"at {at:.3g}s the buckets are {upper / lower - 1:+.1%} apart: {limit} can pass"
    ranges = gates.passable(bounds, max_increase)
    if not ranges:
        return f"no two neighbouring buckets are within {limit} of each other: {judge.CANNOT_PASS}"
    where = ", ".join(f"{a:g}..{b:g}s" for a, b in ranges[:3]) + (", ..." if len(ranges) > 3 else "")
    return f"no traffic yet; {limit} can pass where the quantile lies in {where}"
