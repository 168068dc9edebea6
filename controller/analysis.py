"""Evaluate every rollout's gates with one Prometheus query per template, then judge them.

Called by the CLI (`rollout gates`) and the reconciler. The only module here that does I/O, and only
through the injected `prometheus.Prometheus`; query building (`templates`) and judging (`gates`, with
the statistics of `judge`) are pure. A template whose query fails makes its gates ERROR; the other
templates still count. The judge's guarantees hold when `window` covers the step so far: its counts
must be the step's, not a sliding window's. `window()` is the one rule for it, used by the reconciler,
`rollout gates` and `rollout check`.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import NamedTuple

from controller import contract, errors, gates, judge, load, plan, prometheus, promql, spec, split, templates, traffic

MAX_WINDOW = timedelta(days=7)


def window(interval: timedelta, in_step: timedelta | None, in_life: timedelta | None = None) -> timedelta:
    """The measuring window of a rollout: its time in the current step, rounded down to a whole number
    of analysis intervals (1 to 8), and beyond eight intervals to the interval times a power of two; at
    least one interval, at most 7 days; and never longer than the canary's life so far (`in_life`: since
    its revision came to main, or its last rollback or retry), rounded down to a power of two seconds.

    Measuring from the step's start is what the sequential judge needs (its guarantee holds over every
    look within a step); a step younger than one interval is measured over one, reaching back into the
    same canary's previous step. Never further: the metrics name a variant (`canary`), not its
    revision, so a window reaching back past the canary's life would judge a new canary on the requests
    its predecessor answered (a rolled-back one's failures), or a retried one on its traffic from before
    the rollback. The buckets keep batching: rollouts in similar places share a window, so a tick makes
    at most one request per template per bucket (about 20 buckets from one interval to 7 days, and a
    few for canaries younger than their window)."""
    w = _step_window(interval, in_step)
    if in_life is not None and in_life < w:
        seconds = max(1, int(in_life.total_seconds()))
        return timedelta(seconds=2 ** (seconds.bit_length() - 1))
    return w


def _step_window(interval: timedelta, in_step: timedelta | None) -> timedelta:
    if in_step is None or in_step <= interval:
        return interval
    reach = min(in_step, MAX_WINDOW)
    if reach < interval * 8:
        return interval * int(reach / interval)
    w = interval * 8
    while w * 2 <= reach:
        w *= 2
    return w


@dataclass(frozen=True)
class Target:
    """What the gates of one rollout need to know about it (a `contract.Subject`, as the contract's own
    Target is)."""

    rollout: str
    route: str
    router_type: str
    gates: tuple[spec.Gate, ...]
    segments: tuple[str, ...]
    min_samples: int
    cohorts: tuple[templates.CohortQuery, ...] = ()  # judged one by one; () judges the route as one
    users_see_canary: bool = True  # False in a shadow step: no user sees a canary answer (`live_only` gates)
    metrics: str = ""  # `analysis.metrics`: the model server whose metrics the gates read ('' none)


def target(loaded: load.LoadedRollout, config: spec.ControllerConfig) -> Target:
    """The contract's view of the rollout (`contract.target`), with its current step's minimum samples
    and the cohorts its step has open (`judged`)."""
    known = contract.target(loaded, config)
    step = loaded.rollout.spec.steps[plan.current_step(loaded)]
    desired = plan.desired_state(loaded)
    cohorts = judged(desired) if len(known.variants) > 1 else ()
    return Target(
        known.rollout,
        known.route,
        known.router_type,
        known.gates,
        tuple(loaded.rollout.spec.analysis.segments),  # the contract's also has the cohorts' labels, to check
        step.min_samples or 0,
        cohorts,
        users_see_canary=desired.weight(traffic.CANARY) > 0 or any(c.canary > 0 for c in desired.cohorts),
        metrics=known.metrics,
    )


def judged(state: traffic.RouteState) -> tuple[templates.CohortQuery, ...]:
    """The cohorts a route's gates judge one by one: each cohort the state has open, in its order, and
    everyone else while everyone's canary weight is above 0; () when no cohort is open (the route is
    judged as one, as before cohorts). A cohort at 100% has no stable traffic of its own: only its
    gates' absolute bounds judge it (`at_full`)."""
    if not state.cohorts:
        return ()
    out: list[templates.CohortQuery] = []
    before: list[tuple[str, tuple[str, ...]]] = []
    for c in state.cohorts:
        matchers = templates.cohort_matchers(c.key, c.values, before=before)
        out.append(templates.CohortQuery(c.name, matchers, at_full=c.canary >= 100))
        before.append((c.key, c.values))
    if state.weight(traffic.CANARY) > 0:
        out.append(templates.CohortQuery(gates.EVERYONE, templates.cohort_matchers("", (), before=before)))
    return tuple(out)


Key = tuple[str, str, str, tuple[str, ...]]  # group, subject, variant, segment values


@dataclass(frozen=True)
class _Answer:
    query: str
    rows: Mapping[Key, Mapping[str, float]]  # key -> part -> value
    duplicates: frozenset[Key]
    error: str | None
    buckets: Mapping[Key, Mapping[float, float]] = field(default_factory=dict)  # key -> le -> count
    index: Mapping[tuple[str, str], Sequence[Key]] = field(default_factory=dict)  # (group, subject) -> keys


def evaluate(
    targets: Sequence[Target],
    *,
    config: spec.ControllerConfig,
    metrics: prometheus.Prometheus,
    at: datetime,
    window: timedelta,
) -> dict[str, tuple[gates.GateEvidence, ...]]:
    """rollout name -> evidence per gate, in the spec's order. One request per distinct template."""
    plans, members, refused = _templates_asked(targets, config)

    answers = {
        name: _ask(template, members[name], metrics=metrics, at=at, window=window) for name, template in plans.items()
    }
    window_text = spec.format_duration(window)
    out: dict[str, tuple[gates.GateEvidence, ...]] = {}
    for t in targets:
        evidence = []
        for gate in t.gates:
            if (t.rollout, gate.use) in refused:
                why = refused[(t.rollout, gate.use)]
                evidence.append(
                    gates.GateEvidence.unmeasured(t.rollout, gate, why, window=window_text, min_samples=t.min_samples)
                )
                continue
            template = plans[gate.use]
            g = contract.group_of(template, t)
            answer = answers[gate.use]
            common = {"kind": template.kind, "source": str(g.flavour), "query": answer.query, "window": window_text}
            if answer.error is not None:
                evidence.append(
                    gates.GateEvidence.unmeasured(t.rollout, gate, answer.error, min_samples=t.min_samples, **common)
                )
                continue
            t_of = template.of(g.flavour)
            judged_rows = _judge(gate, answer, t, g, method(t_of), scale=_scale(t_of))
            if judged_rows is not None and t_of.live_only and not t.users_see_canary:
                judged_rows = _unseen(judged_rows)
            if judged_rows is None:
                error = f"gate {gate.use}: the query returned several series for one variant and segment"
                evidence.append(
                    gates.GateEvidence.unmeasured(t.rollout, gate, error, min_samples=t.min_samples, **common)
                )
                continue
            evidence.append(
                gates.GateEvidence(
                    rollout=t.rollout,
                    gate=gate,
                    kind=template.kind,
                    source=str(g.flavour),
                    query=answer.query,
                    window=window_text,
                    min_samples=t.min_samples,
                    segments=judged_rows.rows,
                    verdict=judged_rows.verdict,
                    undecidable=judged_rows.undecidable,
                )
            )
        out[t.rollout] = tuple(evidence)
    return out


class _Judged(NamedTuple):
    rows: tuple[gates.SegmentEvidence, ...]
    verdict: gates.Verdict
    undecidable: bool = False  # no cohort it judges can decide it (`gates.GateEvidence.undecidable`)


def _judge(
    gate: spec.Gate,
    answer: _Answer,
    t: Target,
    g: templates.Group,
    how: gates.Method,
    *,
    scale: float,
) -> _Judged | None:
    """A gate's rows and verdict from its template's answer: the route as one or, with cohorts open (on
    metrics that carry their labels), each cohort on its own, the worst verdict winning and the gate's
    alpha shared among them. None when the answer has several series for one variant and segment."""
    subject = contract.subject(g.flavour, t)
    cohorts = _cohorts(t, g.flavour)
    if not cohorts:
        measured, dup = _measured(answer, g, subject, scale=scale)
        return None if dup else _Judged(*gates.judge_segments(gate, measured, min_samples=t.min_samples, method=how))
    rows: list[gates.SegmentEvidence] = []
    verdicts = []
    for c in cohorts:
        mine = templates.group(g.flavour, g.segments, subjects=[subject], matchers=c.matchers)
        measured, dup = _measured(answer, mine, subject, scale=scale)
        if dup:
            return None
        judged_gate = gate
        if c.at_full:  # no stable of its own, and another cohort's is another population: bounds only
            judged_gate = gate.model_copy(update={"max_drop": None, "max_increase": None})
            if judged_gate.max is None and judged_gate.min is None:
                rows += _unjudged_at_full(c.name, measured)
                continue
            measured = {seg: {"canary": by.get("canary", gates.NO_DATA)} for seg, by in measured.items()}
        found, verdict = gates.judge_segments(
            judged_gate, measured, min_samples=t.min_samples, method=how, cohort=c.name, alpha_share=1 / len(cohorts)
        )
        if c.at_full and gates.compares(gate):
            note = "; at 100% the cohort has no stable of its own: only max and min are judged"
            found = tuple(replace(r, reason=r.reason + note) for r in found)
        rows += found
        verdicts.append(verdict)
    return _Judged(tuple(rows), gates.worst(verdicts), undecidable=not verdicts)


def _unseen(judged_rows: _Judged) -> _Judged:
    """A `live_only` gate in a step where no user sees a canary answer (shadow): nobody can rate the
    canary's answers, so the gate holds nothing there (`undecidable`); its rows still show stable."""
    why = "not judged: no user sees the canary's answers in a shadow step, so none can rate them"
    rows = tuple(replace(r, verdict=gates.Verdict.INCONCLUSIVE, reason=why) for r in judged_rows.rows)
    return _Judged(rows, gates.Verdict.INCONCLUSIVE, undecidable=True)


def _unjudged_at_full(
    cohort: str, measured: Mapping[gates.Segment, Mapping[str, gates.Measurement]]
) -> list[gates.SegmentEvidence]:
    """A gate with only relative limits, in a cohort at 100%: nothing to compare the canary with there. Its
    rows still show the canary's measurement (its samples count towards the step's minSamples)."""
    why = (
        "not judged: at 100% the cohort has no stable of its own (another cohort's stable is another population), "
        "and this gate has only relative limits; give it max or min to judge the cohort"
    )
    return [
        gates.SegmentEvidence(
            segment, gates.NO_DATA, by.get("canary", gates.NO_DATA), gates.Verdict.INCONCLUSIVE, why, False, (), cohort
        )
        for segment, by in (sorted(measured.items()) or [((), {})])
    ]


def _cohorts(t: Target | contract.Target, flavour: templates.Flavour) -> tuple[templates.CohortQuery, ...]:
    """The cohorts a target's gate judges apart: none on Envoy's, LiteLLM's or vLLM's own metrics, which
    carry no cohort label (lint R011 says so), nor for the contract check, which looks at whole routes."""
    if not flavour.segmented or not isinstance(t, Target):
        return ()
    return t.cohorts


def _groups(template: templates.Template, t: Target | contract.Target) -> list[templates.Group]:
    """Every group a target's gate on `template` is asked in: the route's, or each judged cohort's."""
    g = contract.group_of(template, t)
    cohorts = _cohorts(t, g.flavour)
    if not cohorts:
        return [g]
    subjects = sorted(g.subjects)
    return [templates.group(g.flavour, g.segments, subjects=subjects, matchers=c.matchers) for c in cohorts]


def method(t: spec.GateTemplate) -> gates.Method:
    """How `gates` judges a template's measurements."""
    match t:
        case spec.RatioTemplate():
            return gates.Method("ratio", counts_good=t.good is not None)
        case spec.QuantileTemplate():
            return gates.Method("quantile", quantile=t.quantile)
        case spec.MeanTemplate():
            return gates.MEAN
        case spec.ValueTemplate():
            return gates.VALUE


def _scale(t: spec.GateTemplate) -> float:
    return t.scale if isinstance(t, spec.QuantileTemplate) else 1.0


GroupKey = tuple[templates.Flavour, tuple[str, ...], tuple[str, ...]]  # flavour, segments, cohort matchers
Members = dict[str, dict[GroupKey, set[str]]]  # template -> group -> subjects


def _templates_asked(
    targets: Sequence[Target] | Sequence[contract.Target], config: spec.ControllerConfig
) -> tuple[dict[str, templates.Template], Members, dict[tuple[str, str], str]]:
    """The templates the targets' gates use, the groups (flavour and segment labels) each is asked for
    with their subjects, and (rollout, template) -> why a gate's group cannot be queried."""
    plans: dict[str, templates.Template] = {}
    members: Members = defaultdict(lambda: defaultdict(set))
    refused: dict[tuple[str, str], str] = {}
    for t in targets:
        for gate in t.gates:
            try:
                template = templates.resolve(gate.use, config)
                asked = _groups(template, t)
            except promql.QueryError as exc:
                refused[(t.rollout, gate.use)] = f"rollout {t.rollout}, gate {gate.use}: {exc}"
                continue
            plans[gate.use] = template
            for g in asked:
                members[gate.use][(g.flavour, g.segments, g.matchers)] |= set(g.subjects)
    return plans, members, refused


def _subject(g: templates.Group, t: Target) -> str:
    return contract.subject(g.flavour, t)


def _ask(
    template: templates.Template,
    members: Mapping[GroupKey, set[str]],
    *,
    metrics: prometheus.Prometheus,
    at: datetime,
    window: timedelta,
) -> _Answer:
    groups = [templates.group(f, segs, subjects=sorted(subs), matchers=m) for (f, segs, m), subs in members.items()]
    by_key = {g.key: g for g in groups}
    try:
        query = templates.compile_query(template, groups, window=window)
    except promql.QueryError as exc:
        return _Answer("", {}, frozenset(), f"gate template {template.name!r}: {exc}")
    try:
        samples = metrics.query(query, at=at)
    except errors.MetricsError as exc:
        return _Answer(query, {}, frozenset(), str(exc))
    rows: dict[Key, dict[str, float]] = defaultdict(dict)
    buckets: dict[Key, dict[float, float]] = defaultdict(dict)
    dups: set[Key] = set()
    for s in samples:
        g = by_key.get(s.labels.get(templates.GROUP, ""))
        part = s.labels.get(templates.PART, "")
        if g is None or part not in ("value", "samples", "buckets", "requests", *templates.BLOCK_PARTS):
            continue
        key = (
            g.key,
            s.labels.get(g.subject_label, ""),
            s.labels.get("variant", ""),
            tuple(s.labels.get(seg, "") for seg in g.segments),
        )
        if part == "buckets":
            le = _le(s.labels.get("le", ""))
            if le is None or math.isnan(s.value):
                continue
            if le in buckets[key]:
                dups.add(key)
            buckets[key][le] = s.value
            continue
        if part in rows[key]:
            dups.add(key)
        rows[key][part] = s.value
    index: dict[tuple[str, str], list[Key]] = defaultdict(list)
    for key in rows:
        index[(key[0], key[1])].append(key)
    return _Answer(query, rows, frozenset(dups), None, buckets, index)


def _le(text: str) -> float | None:
    try:
        return float(text)  # "+Inf" parses as inf
    except ValueError:
        return None


def _measured(
    answer: _Answer, g: templates.Group, subject: str, *, scale: float = 1.0
) -> tuple[dict[gates.Segment, dict[str, gates.Measurement]], bool]:
    out: dict[gates.Segment, dict[str, gates.Measurement]] = defaultdict(dict)
    dup = False
    for key in answer.index.get((g.key, subject), ()):
        parts = answer.rows[key]
        variant, values = key[2], key[3]
        if variant not in ("stable", "canary"):
            continue
        dup = dup or key in answer.duplicates
        segment = tuple(zip(g.segments, values, strict=True))
        buckets = tuple(sorted((le * scale, count) for le, count in answer.buckets.get(key, {}).items()))
        value, samples = _number(parts.get("value")), _number(parts.get("samples"))
        requests = _number(parts.get("requests"))
        out[segment][variant] = gates.Measurement(value, samples, buckets, _blocks(parts), requests)
    return out, dup


def _blocks(parts: Mapping[str, float]) -> judge.Blocks | None:
    """A ratio's per-block sums, when Prometheus answered every one (a block too short for the scrape
    interval has no answer: the judge then takes the events as independent)."""
    sums = [_number(parts.get(name)) for name in templates.BLOCK_PARTS]
    if any(v is None for v in sums):
        return None
    return judge.Blocks(float(templates.BLOCKS), *(float(v) for v in sums if v is not None))


def _number(v: float | None) -> float | None:
    return None if v is None or math.isnan(v) or math.isinf(v) else v


# -- the metrics contract -------------------------------------------------------------------------


def check_contract(
    targets: Sequence[contract.Target],
    *,
    config: spec.ControllerConfig,
    metrics: prometheus.Prometheus,
    at: datetime,
    window: timedelta,
) -> dict[str, tuple[contract.GateCheck, ...]]:
    """rollout name -> the contract check of each gate (`controller.contract`), in the spec's order. One
    request per template that has series to look for. A Prometheus that does not answer raises
    `errors.MetricsUnavailable` at its first request (so it costs one timeout); a query it refuses makes
    that template's gates ERROR."""
    plans, members, refused = _templates_asked(targets, config)
    answers: dict[str, Mapping[tuple[str, str], Sequence[tuple[Mapping[str, str], float]]] | str] = {}
    for name, template in plans.items():
        try:
            groups = [
                templates.group(f, segs, subjects=sorted(subs), matchers=m)
                for (f, segs, m), subs in members[name].items()
            ]
            query = contract.compile_query(template, groups, window=window)
            found = metrics.query(query, at=at) if query else []
            answers[name] = contract.read((s.labels, s.value) for s in found)
        except errors.MetricsUnavailable:
            raise
        except (promql.QueryError, errors.MetricsError) as exc:
            answers[name] = str(exc)
    out: dict[str, tuple[contract.GateCheck, ...]] = {}
    for t in targets:
        checks = []
        for gate in t.gates:
            answer = refused.get((t.rollout, gate.use)) or answers[gate.use]
            if isinstance(answer, str):
                checks.append(contract.unchecked(t, gate, status=contract.Status.ERROR, why=answer))
            else:
                checks.append(contract.check(t, gate, plans[gate.use], answer, window=window))
        out[t.rollout] = tuple(checks)
    return out


# -- the traffic-split check ------------------------------------------------------------------------


def evaluate_split(
    targets: Sequence[split.Target], *, metrics: prometheus.Prometheus, at: datetime
) -> dict[str, gates.GateEvidence]:
    """rollout name -> the traffic-split check's evidence. One request for every target with a look,
    however many: their request counts grouped by flavour and window (see `controller.split`)."""
    members: dict[tuple[templates.Flavour, str], set[str]] = defaultdict(set)
    for t in targets:
        if t.look is not None:
            flavour = templates.split_flavour(t.router_type, t.metrics)
            members[(flavour, t.look.promql_window)].add(_split_subject(flavour, t))
    query, error = "", None
    rows: dict[tuple[str, str, str], float] = {}  # (group, subject, variant) -> requests
    dups: set[tuple[str, str]] = set()
    if members:
        groups = [(templates.group(f, (), subjects=sorted(subs)), w) for (f, w), subs in members.items()]
        try:
            query = templates.compile_split_query(groups)
            samples = metrics.query(query, at=at)
        except (promql.QueryError, errors.MetricsError) as exc:
            error = f"traffic-split check: {exc}"
            samples = []
        by_key = {templates.split_group_key(g.flavour, w): g for g, w in groups}
        for sample in samples:
            tag = sample.labels.get(templates.GROUP, "")
            g = by_key.get(tag)
            if g is None or math.isnan(sample.value):
                continue
            key = (tag, sample.labels.get(g.subject_label, ""), sample.labels.get("variant", ""))
            if key in rows:
                dups.add(key[:2])
            rows[key] = sample.value
    out = {}
    for t in targets:
        flavour = templates.split_flavour(t.router_type, t.metrics)
        source = str(flavour)
        if t.look is None:
            out[t.rollout] = split.evidence(t, source=source)
            continue
        group = templates.split_group_key(flavour, t.look.promql_window)
        subject = _split_subject(flavour, t)
        if error is not None:
            out[t.rollout] = split.evidence(t, source=source, query=query, error=error)
        elif (group, subject) in dups:
            why = "traffic-split check: the query returned several series for one variant"
            out[t.rollout] = split.evidence(t, source=source, query=query, error=why)
        else:
            counts = {v: rows[(group, subject, v)] for v in ("stable", "canary") if (group, subject, v) in rows}
            out[t.rollout] = split.evidence(t, source=source, query=query, counts=counts or None)
    return out


def _split_subject(flavour: templates.Flavour, t: split.Target) -> str:
    return t.rollout if flavour.by_rollout else t.route
