"""Gate templates: the built-in ones, and compiling a template into one batched PromQL query.

Pure. `controller.analysis` calls `compile_query()` once per template per evaluation, for all
rollouts at once, and reads the answer back with `read()`.

Metric conventions
------------------
Application metrics (any router) carry the labels `route` (the rollout's `spec.route`), `variant`
(`stable` or `canary`) and the rollout's segment labels (e.g. `tenant_tier`):

- `llm_requests_total{outcome="ok"|"error"}`: one per request (error_rate, the sample count)
- `llm_request_duration_seconds_bucket`: a histogram of request latency (latency_p95)
- `llm_eval_results_total{result="pass"|"fail"}`: online eval verdicts (eval_pass_rate)
- `llm_schema_checks_total{result="valid"|"invalid"}`: structured-output checks (schema_valid_rate)
- `llm_feedback_total{value="up"|"down"}`: users' thumbs up and down (feedback_negative_rate)
- `llm_cost_usd_total`, `llm_tokens_total`: spend and tokens (cost_per_request, tokens_per_request,
  per answered request: over `llm_requests_total{outcome="ok"}`, with `llm_requests_total` as every
  request, so that the gate can hold a canary that answers a smaller share)

Envoy's own metrics (used for rollouts on an `envoy` router, where a template has an Envoy flavour)
carry `envoy_cluster_name` = `spec.cluster_name(rollout, variant)`; the query splits it back into
`rollout` and `variant` with `label_replace(..., "(.+)_([a-z]+)")`. Envoy metrics have no segments.
LiteLLM's metrics (rollouts on a `litellm` router) work the same way by `model_id`, the deployment
id, which is `spec.cluster_name(rollout, variant)` too (names checked against LiteLLM 1.106.2's
/metrics): `litellm_deployment_total_requests_total`, `litellm_deployment_failure_responses_total`,
`litellm_request_total_latency_metric_bucket` (seconds), `litellm_total_tokens_metric_total` and
`litellm_spend_metric_total` (USD). Their per-request templates are means over
`litellm_deployment_success_responses_total` (answered requests).

vLLM's metrics (rollouts with `analysis.metrics: vllm`, where a template has a vLLM flavour and no
flavour for the rollout's router; the vLLM-only templates need it) carry vLLM's `model_name` and `engine`, and the labels
`route` and `variant` that Prometheus' scrape config adds to each vLLM target, so they are read by
route as application metrics are, without segments or cohorts (vLLM knows no tenant). Names, types
and labels checked against vllm-project/vllm's vllm/v1/metrics/loggers.py (PrometheusStatLogger) and
vllm/v1/engine/__init__.py (FINISH_REASON_STRINGS):
`vllm:request_success_total{finished_reason="stop"|"length"|"abort"|"error"|"repetition"}` (a counter
of finished requests; `error` and `repetition` are newer, `error` since late 2025 and mainly for a KV
transfer that failed to load (vllm-project/vllm#26813), failures were `abort` before, so the error rate
counts both; `abort` also counts a request its client gave up on, where vLLM records it),
`vllm:e2e_request_latency_seconds_bucket` and `vllm:time_to_first_token_seconds_bucket` (histograms
with the fixed bounds `VLLM_E2E_BUCKETS`, `VLLM_TTFT_BUCKETS`), `vllm:num_preemptions_total` (a
counter, created at 0 at start) and the gauge `vllm:kv_cache_usage_perc` (0 to 1; named
`vllm:gpu_cache_usage_perc` before vLLM 0.9, which exports both until the old one goes).

Batching: every template compiles to ONE query returning, for every rollout, variant and segment,
a `value` series and a `samples` series (tagged with the label `rollouts_part`), plus for quantile
templates one `buckets` series per histogram bucket (its `le` label kept) for the judge, for ratio
templates the per-block sums of `blocks()` (`BLOCK_PARTS`, bursts) and for mean templates with
`requests` a `requests` series, one group per
(flavour, segment labels) tagged with `rollouts_group`, joined with `or`. A ratio's numerator
series may not exist yet (Envoy creates the 5xx series at the first 5xx): `or total * 0` makes that
a measured zero, while a missing `total` stays "no data"; a template whose numerator's counter exists
from the server's start (`Template.numerator_from_start`: preemptions) has no such `or`, so its missing
counter is "no data" too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from controller import promql, spec

PART = "rollouts_part"
GROUP = "rollouts_group"
RESERVED_LABELS = frozenset({PART, GROUP, "le"})


class Flavour(StrEnum):
    APP = "app"  # application metrics labelled route, variant and segments
    ENVOY = "envoy"  # Envoy's envoy_cluster_* metrics, by cluster name
    LITELLM = "litellm"  # LiteLLM's litellm_* metrics, by model_id (the deployment id)
    VLLM = "vllm"  # vLLM's vllm:* metrics, labelled route and variant by Prometheus' scrape config

    @property
    def by_rollout(self) -> bool:
        """True when the metrics name the rollout's variants by one label (`cluster_label`), not route."""
        return self in (Flavour.ENVOY, Flavour.LITELLM)

    @property
    def segmented(self) -> bool:
        """True when the metrics carry the requests' own labels (segments, cohort attributes): only the
        application's do; a router or a model server knows no tenant."""
        return self is Flavour.APP

    @property
    def source_name(self) -> str:
        return {Flavour.ENVOY: "Envoy", Flavour.LITELLM: "LiteLLM", Flavour.VLLM: "vLLM"}.get(self, "application")

    @property
    def cluster_label(self) -> str:
        return {Flavour.ENVOY: "envoy_cluster_name", Flavour.LITELLM: "model_id"}.get(self, "")


@dataclass(frozen=True)
class Template:
    """A gate template's flavours: the application's (`app`, None for a vLLM-only template) and the
    router's or model server's own metrics, where it has them. Every flavour is of one kind."""

    name: str
    app: spec.GateTemplate | None
    envoy: spec.GateTemplate | None = None
    litellm: spec.GateTemplate | None = None
    vllm: spec.GateTemplate | None = None
    #: The numerator's counter (a ratio's events, a mean's quantity) exists from its server's start, as
    #: vLLM creates vllm:num_preemptions_total at 0: a missing one is a fault (dropped by relabeling, a
    #: server that does not export it) and "no data", never a measured 0. Without it (the default) a
    #: missing numerator counts as 0, for counters created at their first event (Envoy's 5xx).
    numerator_from_start: bool = False

    @property
    def kind(self) -> str:
        return self.default.kind

    @property
    def default(self) -> spec.GateTemplate:
        """The application's flavour, or the only one a vLLM-only template has."""
        out = self.app or self.vllm
        assert out is not None, f"template {self.name} has no flavour"
        return out

    @property
    def vllm_only(self) -> bool:
        """Only vLLM's metrics answer it: a rollout must set `analysis.metrics: vllm` to use it."""
        return self.app is None

    def flavour_for(self, router_type: str, metrics: str = "") -> Flavour:
        """The one rule: the router's metrics where the template has a flavour for them, else the model
        server's when the rollout selects them (`analysis.metrics`) and the template has a flavour for
        them, else the application's. The router comes first because it sees every request: vLLM counts
        only the requests that reached its engine and finished, so a request refused at the HTTP layer,
        or a server that crashed and exports nothing, is missing from both sides of vLLM's error_rate,
        and a failing canary would hold where the router's 5xx roll it back. A vLLM-only template is
        always vLLM's (load refuses it without `metrics: vllm`)."""
        if router_type == "envoy" and self.envoy is not None:
            return Flavour.ENVOY
        if router_type == "litellm" and self.litellm is not None:
            return Flavour.LITELLM
        if self.vllm is not None and (metrics == spec.ServerMetrics.VLLM or self.app is None):
            return Flavour.VLLM
        return Flavour.APP

    def of(self, flavour: Flavour) -> spec.GateTemplate:
        found = {Flavour.ENVOY: self.envoy, Flavour.LITELLM: self.litellm, Flavour.VLLM: self.vllm}.get(flavour)
        return found or self.default


def _latency_buckets_ms() -> tuple[int, ...]:
    """The latency histogram bounds the project renders, in milliseconds: 1, 2 and 5 ms, then from 10 ms
    to 5 minutes about 40 to a decade, each with two significant digits (10, 11, ..., 20, 21, 22, 24, ...).

    Two digits, because Envoy keeps its histograms in circllhist bins of two significant digits and
    exports, for a bound, the samples in the bins entirely below it: a bound between two bin edges
    counts as the edge below it, so only two-digit bounds are what their label says. About 40 to a
    decade, because a quantile gate can only tell apart latencies a bucket apart (the judge reads its
    bounds at bucket edges): 4-10% here (10% just above 1, 10 and 100 times a power of ten, where two
    digits allow no finer), so a `maxIncrease` of 10% can pass at most latencies and 20% at all."""
    ladder = {1, 2, 5}
    for i in range(round(40 * math.log10(300_000 / 10)) + 1):
        value = 10 * 10 ** (i / 40)
        digits = math.floor(math.log10(value)) - 1
        ladder.add(int(round(value / 10**digits) * 10**digits))
    return tuple(sorted(ladder))


#: Latency bounds in milliseconds: what `rollout render envoy` configures Envoy with.
LATENCY_BUCKETS_MS = _latency_buckets_ms()
#: The same in seconds: what `rollout render litellm` sets as LiteLLM's `prometheus_latency_buckets`.
LATENCY_BUCKETS = tuple(ms / 1000 for ms in LATENCY_BUCKETS_MS)
#: LiteLLM 1.106.2's default latency buckets (seconds), 2-3x apart from 1 s to 30 s: no latency gate
#: with a maxIncrease under 100% can pass on them there.
LITELLM_DEFAULT_LATENCY_BUCKETS = (
    *(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0),
    *(10.0, 30.0, 60.0, 120.0, 300.0, 420.0, 600.0),
)


#: vLLM's fixed histogram bounds (seconds), from vllm/v1/metrics/loggers.py: `request_latency_buckets`
#: of vllm:e2e_request_latency_seconds, and vllm:time_to_first_token_seconds' buckets. 20% to 400%
#: apart: a quantile gate on them decides a `maxIncrease` only where neighbouring bounds are that
#: close, and a `max` best at a bound.
VLLM_E2E_BUCKETS = (
    *(0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0),
    *(40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0),
)
VLLM_TTFT_BUCKETS = (
    *(0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0),
    *(2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0),
)


def rendered_buckets(template: Template, flavour: Flavour) -> tuple[float, ...] | None:
    """The histogram bounds (seconds) a built-in latency template reads where they are known: where the
    project renders the router's configuration (Envoy's, LiteLLM's), and vLLM's fixed ones; None where
    the application or the user chooses them."""
    if flavour is Flavour.VLLM:
        return {"latency_p95": VLLM_E2E_BUCKETS, "ttft_p95": VLLM_TTFT_BUCKETS}.get(template.name)
    if template.name != "latency_p95" or flavour is Flavour.APP:
        return None
    return LATENCY_BUCKETS


_ENVOY_ERRORS = spec.RatioTemplate(
    kind="ratio",
    description="Share of upstream requests answered 5xx, from Envoy.",
    bad='envoy_cluster_upstream_rq_xx{envoy_response_code_class="5"}',
    total="envoy_cluster_upstream_rq_total",
)
_ENVOY_LATENCY = spec.QuantileTemplate(
    kind="quantile",
    description="95th percentile upstream request time, from Envoy (milliseconds, scaled to seconds).",
    buckets="envoy_cluster_upstream_rq_time_bucket",
    quantile=0.95,
    scale=0.001,
)


_LITELLM_REQUESTS = "litellm_deployment_total_requests_total"
_LITELLM_ANSWERED = "litellm_deployment_success_responses_total"
_ANSWERED = 'llm_requests_total{outcome="ok"}'
_REQUESTS = "llm_requests_total"
_LITELLM_ERRORS = spec.RatioTemplate(
    kind="ratio",
    description="Share of requests that failed at the deployment, from LiteLLM.",
    bad="litellm_deployment_failure_responses_total",
    total=_LITELLM_REQUESTS,
)
_LITELLM_LATENCY = spec.QuantileTemplate(
    kind="quantile",
    description="95th percentile end-to-end request latency through LiteLLM, in seconds.",
    buckets="litellm_request_total_latency_metric_bucket",
    quantile=0.95,
)


_VLLM_FINISHED = "vllm:request_success_total"
_VLLM_ERRORS = spec.RatioTemplate(
    kind="ratio",
    description="Share of finished requests that vLLM aborted or failed (finished_reason abort or error; abort "
    "also counts clients that gave up, where vLLM records them: compare with stable).",
    bad='vllm:request_success_total{finished_reason=~"abort|error"}',
    total=_VLLM_FINISHED,
)
_VLLM_LATENCY = spec.QuantileTemplate(
    kind="quantile",
    description="95th percentile end-to-end request latency in vLLM, in seconds.",
    buckets="vllm:e2e_request_latency_seconds_bucket",
    quantile=0.95,
)
_VLLM_TTFT = spec.QuantileTemplate(
    kind="quantile",
    description="95th percentile time to first token in vLLM, in seconds.",
    buckets="vllm:time_to_first_token_seconds_bucket",
    quantile=0.95,
)
#: Preemptions per finished request, a mean: one request can be preempted many times, so it is no share
#: of the requests (a ratio's statistics would not hold). vLLM preempts a running request when its KV
#: cache is out of memory; with `max: 0` the gate fails a canary that preempted once in the step (the
#: window is the step's), and holds until it has finished minSamples requests. vLLM creates the counter at
#: 0 at start, so a missing one (dropped by relabeling) is "no data", not zero (`numerator_from_start`).
_VLLM_PREEMPTIONS = spec.MeanTemplate(
    kind="mean",
    description="vLLM preemptions (KV cache out of memory) per finished request; max: 0 allows none.",
    sum="vllm:num_preemptions_total",
    count=_VLLM_FINISHED,
)
#: The peak KV cache usage over the step (0 to 1), from either name of the gauge; its samples are the
#: finished requests, so that minSamples means what it means for the other gates.
_VLLM_KV_CACHE = spec.ValueTemplate(
    kind="value",
    description="Peak vLLM KV cache usage over the step, 0 to 1 (vllm:kv_cache_usage_perc, or "
    "vllm:gpu_cache_usage_perc before vLLM 0.9).",
    query="max by ({{by}}) (max_over_time(vllm:kv_cache_usage_perc{{{match}}}[{{window}}]) "
    "or max_over_time(vllm:gpu_cache_usage_perc{{{match}}}[{{window}}]))",
    samples="sum by ({{by}}) (increase(vllm:request_success_total{{{match}}}[{{window}}]))",
)


def _per_answer(quantity: str, answered: str, requests: str, what: str, source: str = "") -> spec.MeanTemplate:
    """A quantity per answered request. Not per request: a failed request spends nothing, so counting
    it would make a failing canary look cheap. `requests` counts every request, so that the gate
    refuses to pass a canary answering a smaller share than stable (error_rate is the gate that fails it)."""
    return spec.MeanTemplate(
        kind="mean",
        description=f"{what} per answered request{source}.",
        sum=quantity,
        count=answered,
        requests=requests,
    )


BUILTIN: Mapping[str, Template] = {
    "error_rate": Template(
        "error_rate",
        spec.RatioTemplate(
            kind="ratio",
            description="Share of requests that failed.",
            bad='llm_requests_total{outcome="error"}',
            total="llm_requests_total",
        ),
        _ENVOY_ERRORS,
        _LITELLM_ERRORS,
        _VLLM_ERRORS,
    ),
    "latency_p95": Template(
        "latency_p95",
        spec.QuantileTemplate(
            kind="quantile",
            description="95th percentile request latency in seconds.",
            buckets="llm_request_duration_seconds_bucket",
            quantile=0.95,
        ),
        _ENVOY_LATENCY,
        _LITELLM_LATENCY,
        _VLLM_LATENCY,
    ),
    "eval_pass_rate": Template(
        "eval_pass_rate",
        spec.RatioTemplate(
            kind="ratio",
            description="Share of online evals that passed.",
            good='llm_eval_results_total{result="pass"}',
            total="llm_eval_results_total",
        ),
    ),
    "schema_valid_rate": Template(
        "schema_valid_rate",
        spec.RatioTemplate(
            kind="ratio",
            description="Share of structured outputs that were valid.",
            good='llm_schema_checks_total{result="valid"}',
            total="llm_schema_checks_total",
        ),
    ),
    "feedback_negative_rate": Template(
        "feedback_negative_rate",
        spec.RatioTemplate(
            kind="ratio",
            description="Share of users' feedback that was negative (thumbs down).",
            live_only=True,  # users rate only the answers they see: a shadow's go unrated
            bad='llm_feedback_total{value="down"}',
            total="llm_feedback_total",
        ),
    ),
    "cost_per_request": Template(
        "cost_per_request",
        _per_answer("llm_cost_usd_total", _ANSWERED, _REQUESTS, "Spend in USD"),
        litellm=_per_answer(
            "litellm_spend_metric_total", _LITELLM_ANSWERED, _LITELLM_REQUESTS, "Spend in USD", ", from LiteLLM"
        ),
    ),
    "tokens_per_request": Template(
        "tokens_per_request",
        _per_answer("llm_tokens_total", _ANSWERED, _REQUESTS, "Tokens"),
        litellm=_per_answer(
            "litellm_total_tokens_metric_total", _LITELLM_ANSWERED, _LITELLM_REQUESTS, "Tokens", ", from LiteLLM"
        ),
    ),
    "ttft_p95": Template("ttft_p95", None, vllm=_VLLM_TTFT),
    "preemptions": Template("preemptions", None, vllm=_VLLM_PREEMPTIONS, numerator_from_start=True),
    "kv_cache_usage": Template("kv_cache_usage", None, vllm=_VLLM_KV_CACHE),
}


def resolve(name: str, config: spec.ControllerConfig) -> Template:
    """A template by name: the user's from controller.yaml wins over a built-in of the same name."""
    if name in config.gate_templates:
        return Template(name, config.gate_templates[name])
    if name in BUILTIN:
        return BUILTIN[name]
    raise promql.QueryError(f"unknown gate template {name!r}")


# -- compiling one batched query -------------------------------------------------------------------


@dataclass(frozen=True)
class Group:
    """Subjects judged with the same flavour and segment labels: one sub-query of a template's query.

    Subjects are routes (app flavour) or rollout names (Envoy and LiteLLM flavours)."""

    flavour: Flavour
    segments: tuple[str, ...]
    subjects: frozenset[str]
    matchers: tuple[str, ...] = ()  # PromQL matchers picking a cohort's requests (app flavour only)

    @property
    def key(self) -> str:
        cohort = f"|{','.join(self.matchers)}" if self.matchers else ""
        return f"{self.flavour}:{','.join(self.segments)}{cohort}"

    @property
    def subject_label(self) -> str:
        return "rollout" if self.flavour.by_rollout else "route"

    @property
    def by(self) -> tuple[str, ...]:
        return (self.subject_label, "variant", *self.segments)


def group(flavour: Flavour, segments: Sequence[str], *, subjects: Sequence[str], matchers: Sequence[str] = ()) -> Group:
    if not flavour.segmented:
        segments, matchers = (), ()  # Envoy's, LiteLLM's and vLLM's metrics carry no segment or cohort labels
    for s in segments:
        promql.label(s)
        if s in RESERVED_LABELS or s in ("route", "variant", "rollout"):
            raise promql.QueryError(f"segment label {s!r} is reserved")
    return Group(flavour, tuple(segments), frozenset(subjects), tuple(matchers))


@dataclass(frozen=True)
class CohortQuery:
    """One cohort the gates judge on its own: its name (`gates.EVERYONE` for the requests in no cohort),
    the matchers picking its requests, and whether it is at 100% (no stable of its own: only absolute
    bounds judge it)."""

    name: str
    matchers: tuple[str, ...]
    at_full: bool = False


def cohort_matchers(
    key: str, values: Sequence[str], *, before: Sequence[tuple[str, Sequence[str]]] = ()
) -> tuple[str, ...]:
    """The matchers picking a cohort's requests by their metric label `key`: one of `values`, and none of
    the cohorts `before` it (a request belongs to the first cohort it matches). With `key` '' (everyone
    else): only the negations. A series without the label is in no cohort, as a request without the
    attribute is."""
    if key in RESERVED_LABELS or key in ("route", "variant", "rollout"):
        raise promql.QueryError(f"cohort label {key!r} is reserved")
    out = [promql.matcher(k, "!~", promql.one_of(vs)) for k, vs in before]
    if key:
        out.append(promql.matcher(key, "=~", promql.one_of(values)))
    return tuple(out)


#: The parts of a ratio template's answer that sum its counts over time blocks (see `judge.Blocks`), in
#: the order of `judge.Blocks`' fields after `count` (always `BLOCKS`: a block without traffic adds
#: nothing to any sum, so the judge needs no count of the blocks that had some).
BLOCK_PARTS = ("block_events", "block_total", "events_sq", "cross", "total_sq")
BLOCKS = 64  # time blocks a ratio gate's burstiness is measured over
MIN_BLOCK = timedelta(minutes=5)  # several scrapes a block at any usual scrape interval (Prometheus' default: 1m)


def blocks(window: timedelta) -> tuple[timedelta, timedelta]:
    """`(length, span)` of the time blocks a ratio gate's counts are split into, to see whether events
    come in bursts: the last 64 blocks before the look, each a 64th of the window and at least 5
    minutes (whole seconds). A short window's blocks reach back before it, into the traffic before the
    step: how bursty a provider's failures are is known from the first look."""
    length = max(MIN_BLOCK, timedelta(seconds=math.ceil(window.total_seconds() / BLOCKS)))
    return length, length * BLOCKS


def compile_query(template: Template, groups: Sequence[Group], *, window: timedelta) -> str:
    """One PromQL expression answering `template` for every group, subject, variant and segment."""
    _askable(template, groups, window)
    parts = []
    for g in sorted(groups, key=lambda g: g.key):
        t = template.of(g.flavour)
        value, samples = _parts(t, g, spec.format_duration(window), strict=template.numerator_from_start)
        both = f"{promql.tag(value, PART, 'value')} or {promql.tag(samples, PART, 'samples')}"
        if isinstance(t, spec.QuantileTemplate):
            both += f" or {promql.tag(_buckets(t, g, spec.format_duration(window)), PART, 'buckets')}"
        if isinstance(t, spec.MeanTemplate) and t.requests is not None:
            requests = _sum(_increase(t.requests, g, spec.format_duration(window)), g.by)
            both += f" or {promql.tag(requests, PART, 'requests')}"
        if isinstance(t, spec.RatioTemplate):
            sums = _block_sums(t, g, window)
            both += "".join(f" or {promql.tag(sums[name], PART, name)}" for name in BLOCK_PARTS)
        parts.append(promql.tag(f"({both})", GROUP, g.key))
    return " or ".join(parts)


def _askable(template: Template, groups: Sequence[Group], window: timedelta) -> None:
    if not groups:
        raise promql.QueryError(f"template {template.name!r}: nothing to evaluate")
    if window.total_seconds() < 1:
        raise promql.QueryError("the window must be at least 1s")


def compile_values(template: Template, groups: Sequence[Group], *, window: timedelta) -> str:
    """One PromQL expression of only the value a gate on `template` judges (`compile_query`'s `value`
    part), for every group, subject, variant and segment, each group's series tagged `rollouts_group`:
    what the dashboard plots over time with a range query, `window` then being a sliding one."""
    _askable(template, groups, window)
    parts = []
    for g in sorted(groups, key=lambda g: g.key):
        value, _ = _parts(template.of(g.flavour), g, spec.format_duration(window), strict=template.numerator_from_start)
        parts.append(promql.tag(f"({value})", GROUP, g.key))
    return " or ".join(parts)


def _block_sums(t: spec.RatioTemplate, g: Group, window: timedelta) -> dict[str, str]:
    """A ratio's counts per time block, summed over the blocks (see `blocks`): one subquery per sum, each
    block the increase over its length, stepped by it (Prometheus aligns the steps to whole blocks)."""
    length, span = (spec.format_duration(d) for d in blocks(window))
    total = _sum(_increase(t.total, g, length), g.by)
    events = f"({_sum(_increase(t.numerator, g, length), g.by)} or ({total}) * 0)"
    over = f"[{span}:{length}]"
    return {
        "block_events": f"sum_over_time({events}{over})",
        "block_total": f"sum_over_time(({total}){over})",
        "events_sq": f"sum_over_time(({events} ^ 2){over})",
        "cross": f"sum_over_time(({events} * ({total})){over})",
        "total_sq": f"sum_over_time((({total}) ^ 2){over})",
    }


def subject_matchers(g: Group) -> list[str]:
    """The matchers picking the group's series: its subjects', and its cohort's."""
    if g.flavour.by_rollout:
        pattern = f"{promql.one_of(g.subjects)}_(?:stable|canary)"
        return [promql.matcher(g.flavour.cluster_label, "=~", pattern)]
    return [promql.matcher("route", "=~", promql.one_of(g.subjects)), *g.matchers]


def _increase(selector: str, g: Group, window: str, *, extra: Sequence[str] = ()) -> str:
    expr = f"increase({promql.with_matchers(selector, [*subject_matchers(g), *extra])}[{window}])"
    if g.flavour.by_rollout:
        for target, ref in (("rollout", "$1"), ("variant", "$2")):
            expr = (
                f"label_replace({expr}, {promql.string(target)}, {promql.string(ref)}, "
                f"{promql.string(g.flavour.cluster_label)}, {promql.string('(.+)_([a-z]+)')})"
            )
    return expr


def _sum(expr: str, by: Sequence[str]) -> str:
    return f"sum by ({', '.join(promql.label(b) for b in by)}) ({expr})"


def _buckets(t: spec.QuantileTemplate, g: Group, window: str) -> str:
    """Every bucket's increase per variant and segment (labelled `le`, unscaled): what the judge reads."""
    return _sum(_increase(t.buckets, g, window), (*g.by, "le"))


def _quotient(numerator: str, denominator: str, g: Group, window: str, *, strict: bool) -> tuple[str, str]:
    """(value, samples) of a counter over a counter: a numerator without series counts as 0, unless
    `strict` (its counter exists from the start, so its absence is "no data")."""
    total = _sum(_increase(denominator, g, window), g.by)
    part = _sum(_increase(numerator, g, window), g.by)
    if strict:
        return f"({part}) / ({total})", total
    return f"(({part}) or ({total}) * 0) / ({total})", total


def _parts(t: spec.GateTemplate, g: Group, window: str, *, strict: bool = False) -> tuple[str, str]:
    """(value, samples) expressions for one group (`strict`: see `Template.numerator_from_start`)."""
    match t:
        case spec.RatioTemplate():
            return _quotient(t.numerator, t.total, g, window, strict=strict)
        case spec.MeanTemplate():
            return _quotient(t.sum, t.count, g, window, strict=strict)
        case spec.QuantileTemplate():
            buckets = _sum(_increase(t.buckets, g, window), (*g.by, "le"))
            value = f"histogram_quantile({t.quantile!r}, {buckets})"
            if t.scale != 1.0:
                value = f"({value}) * {t.scale!r}"
            samples = _sum(_increase(t.buckets, g, window, extra=[promql.matcher("le", "=", "+Inf")]), g.by)
            return value, samples
        case spec.ValueTemplate():
            values = {
                "window": window,
                "by": ", ".join(g.by),
                "match": ", ".join(subject_matchers(g)),
            }
            value = promql.fill(t.query, values)
            # without a samples query the count is unknown: an absent series says so
            samples = promql.fill(t.samples, values) if t.samples else "vector(0) unless vector(0)"
            return f"({value})", f"({samples})"


# -- the traffic-split check's request counts -------------------------------------------------------

SPLIT_REQUESTS = BUILTIN["error_rate"]  # its `total` counts every request, by variant, in every flavour


def split_flavour(router_type: str, metrics: str = "") -> Flavour:
    """Which request series the split check reads for a rollout on this router: vLLM's, Envoy's,
    LiteLLM's or the application's, as the built-in ratio gates do."""
    return SPLIT_REQUESTS.flavour_for(router_type, metrics)


def compile_split_query(groups: Sequence[tuple[Group, str]]) -> str:
    """One PromQL expression counting each variant's requests for every (group, window): the split
    check's subjects grouped by flavour and by the window back to their origin (a PromQL duration).
    Each group's series are tagged `rollouts_group` = `<flavour>@<window>`; no segments."""
    if not groups:
        raise promql.QueryError("the traffic-split check: nothing to evaluate")
    parts = []
    for g, window in sorted(groups, key=lambda gw: (gw[0].key, gw[1])):
        t = SPLIT_REQUESTS.of(g.flavour)
        assert isinstance(t, spec.RatioTemplate)
        counts = _sum(_increase(t.total, g, window), g.by)
        parts.append(promql.tag(counts, GROUP, split_group_key(g.flavour, window)))
    return " or ".join(parts)


def split_group_key(flavour: Flavour, window: str) -> str:
    return f"{flavour}@{window}"
