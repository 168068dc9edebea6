"""The vLLM flavour of the built-in gates, pure: which flavour a rollout reads (`analysis.metrics: vllm`
over the router's choice), what each vLLM template compiles to, and what the loader, lint and the
contract say about it. The same queries on a real Prometheus: tests/gates/test_vllm_gates.py."""

from __future__ import annotations

import re
from datetime import timedelta
from itertools import pairwise
from pathlib import Path

import pytest

from controller import analysis, contract, gates, judge, load, repo, spec, templates
from controller.templates import Flavour
from tests.helpers import corpus

VLLM = spec.ServerMetrics.VLLM

FLAVOUR_CASES = [
    ("file-app", "error_rate", "file", "", Flavour.APP),
    ("file-vllm", "error_rate", "file", VLLM, Flavour.VLLM),
    ("envoy-router", "error_rate", "envoy", "", Flavour.ENVOY),
    ("envoy-wins-over-vllm", "error_rate", "envoy", VLLM, Flavour.ENVOY),  # Envoy sees every request
    ("litellm-wins-over-vllm", "latency_p95", "litellm", VLLM, Flavour.LITELLM),
    ("flagd-vllm-latency", "latency_p95", "flagd", VLLM, Flavour.VLLM),
    ("no-vllm-flavour-router", "cost_per_request", "litellm", VLLM, Flavour.LITELLM),
    ("no-vllm-flavour-app", "eval_pass_rate", "envoy", VLLM, Flavour.APP),
    ("vllm-only", "ttft_p95", "flagd", VLLM, Flavour.VLLM),
    ("vllm-only-unselected", "preemptions", "file", "", Flavour.VLLM),  # load refuses it (see below)
]


@pytest.mark.parametrize(
    ("name", "router", "metrics", "want"), [c[1:] for c in FLAVOUR_CASES], ids=[c[0] for c in FLAVOUR_CASES]
)
def test_a_rollout_selecting_vllm_reads_vllm_where_a_template_has_it_and_the_router_has_none(
    name: str, router: str, metrics: str, want: Flavour
) -> None:
    assert templates.BUILTIN[name].flavour_for(router, metrics) is want


W = 'route=~"(?:chat)"'
COMPILE_CASES = [
    (
        "error_rate",
        [
            f'increase(vllm:request_success_total{{finished_reason=~"abort|error",{W}}}[10m])',
            f"increase(vllm:request_success_total{{{W}}}[10m])",
        ],
    ),
    (
        "latency_p95",
        [
            f"histogram_quantile(0.95, sum by (route, variant, le) (increase(vllm:e2e_request_latency_seconds_bucket{{{W}}}[10m])))"
        ],
    ),
    ("ttft_p95", [f"sum by (route, variant, le) (increase(vllm:time_to_first_token_seconds_bucket{{{W}}}[10m]))"]),
    (
        "preemptions",
        [
            # no `or ... * 0`: vLLM creates the counter at 0, so a missing one is no data, not zero
            f"(sum by (route, variant) (increase(vllm:num_preemptions_total{{{W}}}[10m]))) / "
            f"(sum by (route, variant) (increase(vllm:request_success_total{{{W}}}[10m])))",
        ],
    ),
    (
        "kv_cache_usage",
        [
            f"max by (route, variant) (max_over_time(vllm:kv_cache_usage_perc{{{W}}}[10m]) "
            f"or max_over_time(vllm:gpu_cache_usage_perc{{{W}}}[10m]))",
            f"sum by (route, variant) (increase(vllm:request_success_total{{{W}}}[10m]))",
        ],
    ),
]


@pytest.mark.parametrize(("name", "parts"), COMPILE_CASES, ids=[c[0] for c in COMPILE_CASES])
def test_vllm_queries_read_vllm_series_by_route_and_variant_without_segments(name: str, parts: list[str]) -> None:
    """Segments asked for are dropped (vLLM has no tenant label), and the series are read by route, as
    the scrape config labels them: no label_replace of a cluster name."""
    g = templates.group(Flavour.VLLM, ["tenant_tier"], subjects=["chat"], matchers=['tenant_tier=~"beta"'])
    assert (g.segments, g.matchers, g.by) == ((), (), ("route", "variant"))
    query = templates.compile_query(templates.BUILTIN[name], [g], window=timedelta(minutes=10))
    for part in parts:
        assert part in query
    assert "tenant_tier" not in query and "label_replace(increase" not in query
    assert not re.search(r"\bllm_", query)  # no application series


def test_the_vllm_names_are_vllms() -> None:
    """The names and fixed bucket bounds checked against vLLM's vllm/v1/metrics/loggers.py."""
    read = {
        s.selector.split("{")[0]
        for t in templates.BUILTIN.values()
        if t.vllm is not None
        for s in contract.series(t.vllm)
    }
    assert read == {
        "vllm:request_success_total",
        "vllm:e2e_request_latency_seconds_bucket",
        "vllm:time_to_first_token_seconds_bucket",
        "vllm:num_preemptions_total",
    }
    assert templates.VLLM_E2E_BUCKETS[:4] == (0.3, 0.5, 0.8, 1.0) and templates.VLLM_E2E_BUCKETS[-1] == 7680.0
    assert templates.VLLM_TTFT_BUCKETS[:3] == (0.001, 0.005, 0.01) and templates.VLLM_TTFT_BUCKETS[-1] == 2560.0
    assert [n for n, t in templates.BUILTIN.items() if t.vllm_only] == ["ttft_p95", "preemptions", "kv_cache_usage"]


PREEMPTION_CASES = [
    ("none", 0.0, 500.0, "PASS"),
    ("one", 1.0, 500.0, "FAIL"),
    ("extrapolated", 0.4, 500.0, "FAIL"),  # increase() of a counter that moved is never 0
    ("too-few-requests", 1.0, 50.0, "INCONCLUSIVE"),  # minSamples 100: not judged yet
]


@pytest.mark.parametrize(
    ("preempted", "finished", "want"), [c[1:] for c in PREEMPTION_CASES], ids=[c[0] for c in PREEMPTION_CASES]
)
def test_preemptions_max_0_fails_on_any_preemption_in_the_step(preempted: float, finished: float, want: str) -> None:
    """`preemptions` is a mean (per finished request), judged by plain comparison: `max: 0` passes a
    canary with none over the window (the step so far) and fails it on one."""
    template = templates.BUILTIN["preemptions"]
    method = analysis.method(template.default)
    gate = spec.Gate.model_validate({"use": "preemptions", "max": 0, "onFail": "rollback"})
    canary = gates.Measurement(preempted / finished, finished)
    stable = gates.Measurement(0.0, finished)
    got = gates.judge(gate, stable=stable, canary=canary, min_samples=100, method=method)
    assert got.verdict.name == want, got.reason


def test_vllm_buckets_resolve_a_limit_only_where_neighbouring_bounds_are_that_close() -> None:
    """vLLM's bounds are 20% to 400% apart: 25% passes only between 0.8-1 s, 2-2.5 s and 40-60 s on the
    latency histogram, a max at a bound is decidable anywhere."""
    assert templates.rendered_buckets(templates.BUILTIN["latency_p95"], Flavour.VLLM) == templates.VLLM_E2E_BUCKETS
    assert templates.rendered_buckets(templates.BUILTIN["ttft_p95"], Flavour.VLLM) == templates.VLLM_TTFT_BUCKETS
    steps = [b / a - 1 for bs in (templates.VLLM_E2E_BUCKETS, templates.VLLM_TTFT_BUCKETS) for a, b in pairwise(bs)]
    assert (min(steps), max(steps)) == (pytest.approx(0.2), pytest.approx(4.0))  # 1 to 5 ms
    assert gates.passable(templates.VLLM_E2E_BUCKETS, 0.10) == []
    assert gates.passable(templates.VLLM_E2E_BUCKETS, 0.25) == [(0.8, 1.0), (2.0, 2.5), (40.0, 60.0)]
    cumulative = [(0.8, 0.0), (1.0, 96.0), (1.5, 100.0), (float("inf"), 100.0)]
    lower, upper = judge.resolution(cumulative, judge.histogram_quantile(0.95, cumulative))
    assert (lower, upper) == (0.8, 1.0)


def _load(tmp_path: Path, analysis: str) -> load.RepoSpec:
    root = corpus.make_repo(tmp_path)
    (root / "rollouts/case/rollout.yaml").write_text(
        "apiVersion: rollouts/v1\nkind: Rollout\nmetadata: {name: case}\nspec:\n  router: local\n  route: chat\n"
        "  stable: {model: acme/chat-2025-01-01, prompt: prompts/v1.md}\n"
        "  canary: {model: acme/chat-2025-02-01, prompt: prompts/v1.md}\n"
        "  steps: [{weight: 5, for: 1h, minSamples: 100}, {weight: 100}]\n"
        f"  analysis:\n{analysis}"
    )
    return load.load_repo(repo.WorkTree(root), only=["rollouts/case/rollout.yaml"])


def test_a_vllm_only_gate_needs_the_rollout_to_select_vllm_metrics(tmp_path: Path) -> None:
    gates_yaml = (
        "    gates:\n      - {use: error_rate, max: 1%, onFail: rollback}\n      - {use: preemptions, max: 0}\n"
    )
    refused = _load(tmp_path / "a", gates_yaml)
    [problem] = refused.problems
    assert (problem.code, problem.field, problem.line) == ("E003", "spec.analysis.gates[1].use", 13)
    assert "reads only vLLM's own metrics: set spec.analysis.metrics: vllm" in problem.message
    assert refused.rollouts == []  # nothing half applied: the rollout is not loaded
    accepted = _load(tmp_path / "b", gates_yaml + "    metrics: vllm\n")
    assert accepted.problems == []
    [loaded] = accepted.rollouts
    assert loaded.rollout.spec.analysis.metrics is VLLM


def test_the_contract_reads_vllm_series_by_route_without_segments(tmp_path: Path) -> None:
    result = _load(
        tmp_path,
        "    segments: [tenant_tier]\n    metrics: vllm\n"
        "    gates:\n      - {use: error_rate, max: 1%, onFail: rollback}\n      - {use: ttft_p95, max: 1s}\n",
    )
    assert result.problems == [] and result.config
    [loaded] = result.rollouts
    t = contract.target(loaded, result.config)
    assert t.metrics == "vllm"
    g = contract.group_of(templates.BUILTIN["ttft_p95"], t)
    assert (g.flavour, g.segments, contract.subject(g.flavour, t)) == (Flavour.VLLM, (), "chat")
    q = contract.compile_query(templates.BUILTIN["ttft_p95"], [g], window=timedelta(minutes=10))
    assert (
        'count by (route, variant) (last_over_time(vllm:time_to_first_token_seconds_bucket{route=~"(?:chat)"}[10m]))'
        in q
    )
    assert "added by Prometheus' scrape config" in contract.labels(Flavour.VLLM)


def test_the_split_check_counts_vllms_finished_requests() -> None:
    flavour = templates.split_flavour("file", VLLM)
    assert flavour is Flavour.VLLM and templates.split_flavour("envoy", VLLM) is Flavour.ENVOY
    g = templates.group(flavour, (), subjects=["chat"])
    query = templates.compile_split_query([(g, "30m")])
    assert 'sum by (route, variant) (increase(vllm:request_success_total{route=~"(?:chat)"}[30m]))' in query


def test_doctor_says_a_vllm_target_needs_the_scrape_configs_labels() -> None:
    """A vLLM series found only without `route` (scraped without the labels) is named as such."""
    t = contract.Target("r", "chat", "file", (), (), ("stable",), metrics=VLLM)
    gate = spec.Gate.model_validate({"use": "ttft_p95", "max": "1s"})
    template = templates.BUILTIN["ttft_p95"]
    key = contract.group_of(template, t).key
    bare = {("seen:0"): [({"model_name": "acme/m"}, 1.0)]}
    check = contract.check(t, gate, template, {(key, p): rows for p, rows in bare.items()}, window=timedelta(minutes=5))
    assert check.status is contract.Status.MISSING and check.source == "vllm"
    assert "the scrape config must add `route` and `variant` to each vLLM target" in check.findings[0].detail
    nothing = contract.check(t, gate, template, {}, window=timedelta(minutes=5))
    assert "does Prometheus scrape the rollout's vLLM servers?" in nothing.findings[0].detail
