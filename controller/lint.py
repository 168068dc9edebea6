"""Lint: advice about rollouts that are valid but risky, each with a stable code.

Pure: takes loaded rollouts, returns findings. `rollout validate` prints them beside errors.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass

from controller import advice, gates, load, promql, spec, templates, traffic

WARNING = "warning"
ERROR = "error"

# A model id is pinned when it names a date or a version; otherwise the provider may move it.
_PINNED = re.compile(r"(\d{4}-?\d{2}-?\d{2})|(@sha256:)|([:@-]v?\d+(\.\d+)*$)|(-\d{3}$)")
_FLOATING = re.compile(r"(-|:|@)latest$|^latest$")
#: Router configs whose router cannot mirror traffic (so a shadow step is R007), and how R007 names them.
_UNMIRRORED: dict[type, str] = {
    spec.UnleashRouterConfig: "an Unleash server",
}
#: Router configs whose router mirrors every request or none (so a shadow step below 100% is R007).
_MIRRORS_ALL: dict[type, str] = {
    spec.LitellmRouterConfig: "a LiteLLM proxy, which mirrors every request or none (silent_model)",
}


@dataclass(frozen=True)
class Finding:
    code: str
    severity: str
    file: str
    line: int
    column: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.code} {self.field}: {self.message}"


def floating(model: str) -> bool:
    """True for aliases such as `gpt-4o` or `claude-latest` that a provider can repoint."""
    name = model.rsplit("/", 1)[-1]
    return bool(_FLOATING.search(name)) or not _PINNED.search(name)


def _live_only(gate: spec.Gate, config: spec.ControllerConfig) -> bool:
    """The gate's template is judged only on what users see (`liveOnly`); an unknown one is not."""
    try:
        app = templates.resolve(gate.use, config).app
    except promql.QueryError:
        return False
    return app is not None and app.live_only


def lint(loaded: load.LoadedRollout, config: spec.ControllerConfig, source: bytes) -> list[Finding]:
    """Findings for one rollout; `source` is its file, parsed (with positions) only to locate a finding,
    so a clean rollout costs no second parse."""
    s = loaded.rollout.spec
    out: list[Finding] = []

    @functools.cache
    def document() -> object:
        return load.parse_yaml(loaded.path, source).data

    def add(code: str, loc: tuple[str | int, ...], message: str, severity: str = WARNING) -> None:
        line, column, found = load.locate(document(), loc)
        out.append(Finding(code, severity, loaded.path, line, column, load.field_path(found), message))

    if s.canary is not None:
        model_changed = s.canary.model != s.stable.model
        prompt_changed = loaded.prompt_digests.get(traffic.CANARY) != loaded.prompt_digests.get(traffic.STABLE)
        if model_changed and prompt_changed and not s.allow_paired_change:
            add(
                "R001",
                ("spec", "canary"),
                "the canary changes the model and the prompt at once; change one thing at a time, "
                "or set allowPairedChange: true",
            )
    for role in ("stable", "canary"):
        variant: spec.Variant | None = getattr(s, role)
        if variant is not None and floating(variant.model):
            add(
                "R002",
                ("spec", role, "model"),
                f"{variant.model!r} looks like a floating alias; pin a dated version so the provider cannot change it",
            )
    if not any(g.on_fail is spec.OnFail.ROLLBACK for g in s.analysis.gates):
        add(
            "R003",
            ("spec", "analysis", "gates"),
            "no gate has onFail: rollback; a regression would never roll back",
        )
    for i, step in enumerate(s.steps):
        if step.shadow is not None or step.cohort is not None:
            break  # shadow first, or a cohort first (internal users, a tier): the careful start R004 asks for
        if step.weight is not None and step.weight > 0:
            if step.weight > 5:
                add(
                    "R004",
                    ("spec", "steps", i, "weight"),
                    f"the first live step sends {step.weight}% of traffic with no shadow step before it; "
                    "start at 5% or less, or shadow first",
                )
            break
    if not any(step.min_samples for step in s.steps):
        add("R005", ("spec", "steps"), "no step sets minSamples; gates could pass on a handful of requests")
    if s.analysis.gates and config.prometheus is None:
        add("R006", ("spec", "analysis", "gates"), "gates need prometheus.url in controller.yaml", ERROR)
    unmirrored = _UNMIRRORED.get(type(config.routers.get(s.router)))
    mirrors_all = _MIRRORS_ALL.get(type(config.routers.get(s.router)))
    for i, step in enumerate(s.steps):
        if step.shadow and unmirrored:
            add(
                "R007",
                ("spec", "steps", i, "shadow"),
                f"router {s.router!r} is {unmirrored}, which cannot mirror traffic; use a weight step",
                ERROR,
            )
        elif step.shadow and mirrors_all and step.shadow != 100:
            add(
                "R007",
                ("spec", "steps", i, "shadow"),
                f"router {s.router!r} is {mirrors_all}: shadow {step.shadow}% cannot be carried; use shadow: 100",
                ERROR,
            )
    for i, gate in enumerate(s.analysis.gates):
        if gate.max_increase is None or (gate.max is not None or gate.min is not None):
            continue
        try:
            template = templates.resolve(gate.use, config).default
        except promql.QueryError:
            continue  # an unknown template is a validation error, reported elsewhere
        if isinstance(template, spec.RatioTemplate):
            bound = "max" if template.bad is not None else "min"
            add(
                "R009",
                ("spec", "analysis", "gates", i, "maxIncrease"),
                f"a relative limit on a rate never decides while neither variant has a bad event; pair it with "
                f"an absolute `{bound}` so a clean canary can pass (see 'How gates are judged' in the README)",
            )
    router = config.routers.get(s.router)
    for i, gate in enumerate(s.analysis.gates):
        found = _coarse(gate, config, router.type if router is not None else "", s.analysis.metrics or "")
        if found is not None:
            add("R010", ("spec", "analysis", "gates", i, "maxIncrease"), found)
        found = _between_bounds(gate, config, router.type if router is not None else "", s.analysis.metrics or "")
        if found is not None:
            add("R010", ("spec", "analysis", "gates", i, "max"), found)
    if s.cohorts and router is not None:
        for i, gate in enumerate(s.analysis.gates):
            try:
                flavour = templates.resolve(gate.use, config).flavour_for(router.type, s.analysis.metrics or "")
            except promql.QueryError:
                continue
            if not flavour.segmented:
                add(
                    "R011",
                    ("spec", "analysis", "gates", i, "use"),
                    f"gate {gate.use} reads {flavour.source_name}'s own metrics, which carry no cohort label: it judges the "
                    "route as one, so a regression one cohort sees may hide in the others' traffic; add a gate on "
                    "your application's metrics (controller.yaml gateTemplates) to judge each cohort",
                )
    if s.analysis.gates and not any(g.max is not None or g.min is not None for g in s.analysis.gates):
        for i, step in enumerate(s.steps):
            if step.cohort is not None and step.weight == 100:
                add(
                    "R012",
                    ("spec", "steps", i, "weight"),
                    f"cohort {step.cohort!r} at 100% has no stable of its own, so no relative limit can judge it "
                    "(another cohort's stable is another population), and no gate has max or min: the step would "
                    "hold for ever; give a gate an absolute bound, such as error_rate max 2%",
                    ERROR,
                )
    if s.analysis.gates and all(_live_only(g, config) for g in s.analysis.gates):
        for i, step in enumerate(s.steps):
            if step.shadow:
                add(
                    "R013",
                    ("spec", "steps", i, "shadow"),
                    f"every gate ({', '.join(g.use for g in s.analysis.gates)}) reads what users say of the answers "
                    "they see (liveOnly), and no user sees a shadow's answers: nothing could judge this step, which "
                    "would hold for ever; add a gate on the answers themselves, such as error_rate max 2%",
                    ERROR,
                )
    rate = s.analysis.expected_rate
    if rate is not None:
        for i, step in enumerate(s.steps):
            timing = advice.step_advice(loaded, rate, step=i, config=config)
            for g in timing.too_short():
                assert step.for_ is not None  # too_short() is empty without a `for`
                add(
                    "R008",
                    ("spec", "steps", i, "for"),
                    f"step {i + 1} ({step.describe()}) lasts {spec.format_duration(step.for_)}, but at "
                    f"{spec.format_rate(rate)} gate {g.gate} ({g.check}) cannot decide that soon: {g.text()} "
                    f"(assuming {g.assumes}); lengthen `for`, raise the weight, or loosen the limit",
                )
    return out


def _coarse(gate: spec.Gate, config: spec.ControllerConfig, router_type: str, metrics: str) -> str | None:
    """R010: a latency gate's maxIncrease finer than the histogram buckets it reads can resolve, where
    those buckets are known: a router's the project renders (Envoy's, LiteLLM's), vLLM's fixed ones."""
    if gate.max_increase is None:
        return None
    try:
        template = templates.resolve(gate.use, config)
    except promql.QueryError:
        return None
    flavour = template.flavour_for(router_type, metrics)
    bounds = templates.rendered_buckets(template, flavour)
    if bounds is None:
        return None
    ranges = gates.passable(bounds, gate.max_increase)
    if ranges and ranges[0][0] <= bounds[0] * 10 and ranges[-1][1] >= bounds[-1]:
        return None  # it can pass wherever a latency is at all likely
    limit = f"maxIncrease {gate.max_increase * 100:g}%"
    where = (
        "never pass"
        if not ranges
        else "pass only where the quantile lies in "
        + ", ".join(f"{a:g}..{b:g} s" for a, b in ranges[:3])
        + (", ..." if len(ranges) > 3 else "")
    )
    advice = "use maxIncrease 10% or more on the rendered buckets, or a `max` at a bucket bound"
    if flavour is templates.Flavour.VLLM:
        shown = ", ".join(f"{b:g}" for b in bounds[:14])
        advice = (
            f"vLLM's buckets are fixed in its code ({shown}, ... s): use a `max` at one of those bounds, "
            "or a maxIncrease as wide as the buckets where the quantile lies"
        )
    if flavour is templates.Flavour.LITELLM:
        advice += (
            "; LiteLLM's default buckets (1, 2, 5, 10, 30 s, ...) resolve no limit under 100%: keep the "
            "prometheus_latency_buckets `rollout render litellm` sets"
        )
    return (
        f"the {flavour} latency buckets are too coarse for {limit}: the gate can {where} "
        f"(the judge cannot tell latencies apart inside one bucket); {advice}"
    )


def _between_bounds(gate: spec.Gate, config: spec.ControllerConfig, router_type: str, metrics: str) -> str | None:
    """R010 too: a latency gate's `max` inside one of vLLM's wide fixed buckets, where a canary whose
    quantile falls in that bucket can neither pass nor fail (the judge reads latencies at bucket edges),
    or below the first bound, where no canary can pass."""
    if gate.max is None:
        return None
    try:
        template = templates.resolve(gate.use, config)
    except promql.QueryError:
        return None
    flavour = template.flavour_for(router_type, metrics)
    bounds = templates.rendered_buckets(template, flavour) if flavour is templates.Flavour.VLLM else None
    if bounds is None or any(math.isclose(gate.max, b) for b in bounds):
        return None
    if gate.max < bounds[0]:
        return (
            f"max {gate.max:g} s lies below vLLM's first bucket bound, {bounds[0]:g} s: the judge reads latencies "
            f"at bucket edges, so no canary can be shown under the limit and the gate can never pass, and its step "
            f"would hold; use a bound of vLLM's buckets, {bounds[0]:g} s or above"
        )
    lower = max(b for b in bounds if b < gate.max)
    upper = min((b for b in bounds if b > gate.max), default=math.inf)
    return (
        f"max {gate.max:g} s lies inside vLLM's bucket ({lower:g}, {upper:g}] s: a canary whose quantile falls in "
        f"it can neither pass nor fail (the judge reads latencies at bucket edges), so its step would hold; "
        f"use a bound of vLLM's buckets, {lower:g} or {upper:g}"
    )
