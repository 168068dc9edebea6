"""Safe PromQL: escaping, selector validation, placeholders, and compiled queries; checked against a
real Prometheus where it matters (a hostile label value cannot change the query)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from controller import errors, prometheus, promql, spec, templates
from tests.helpers import gate_history

STRING_CASES = [
    ("plain", "support-chat", '"support-chat"'),
    ("quote", 'a"b', '"a\\"b"'),
    ("backslash", "a\\b", '"a\\\\b"'),
    ("newline", "a\nb", '"a\\nb"'),
    ("control", "a\x00b", '"a\\x00b"'),
    ("injection", 'x"} or vector(1) #', '"x\\"} or vector(1) #"'),
]


@pytest.mark.parametrize(("value", "want"), [c[1:] for c in STRING_CASES], ids=[c[0] for c in STRING_CASES])
def test_string_literal(value: str, want: str) -> None:
    assert promql.string(value) == want


SELECTOR_CASES = [
    ("bare", "up", True),
    ("matchers", 'llm_requests_total{outcome="error", tier!~"a|b"}', True),
    ("escaped-quote", 'm{a="x\\"y"}', True),
    ("empty-braces", "m{}", True),
    ("binary-op", 'm{a="b"} or vector(1)', False),
    ("range", "m[5m]", False),
    ("function", "rate(m[5m])", False),
    ("unterminated", 'm{a="b}', False),
]


@pytest.mark.parametrize(("selector", "ok"), [c[1:] for c in SELECTOR_CASES], ids=[c[0] for c in SELECTOR_CASES])
def test_selector_validation(selector: str, ok: bool) -> None:
    if ok:
        out = promql.with_matchers(selector, [promql.matcher("route", "=", "r")])
        assert out.endswith('route="r"}')
    else:
        with pytest.raises(promql.QueryError):
            promql.with_matchers(selector, [promql.matcher("route", "=", "r")])


def test_config_refuses_a_query_in_a_selector() -> None:
    with pytest.raises(ValueError, match="good"):
        spec.RatioTemplate.model_validate({"kind": "ratio", "good": 'm{a="b"} or vector(1)', "total": "m"})
    with pytest.raises(ValueError, match="exactly one"):
        spec.RatioTemplate.model_validate({"kind": "ratio", "good": "a", "bad": "b", "total": "m"})


def test_unknown_placeholder_is_an_error() -> None:
    with pytest.raises(promql.QueryError, match="route"):
        promql.fill("sum(x{route={{route}}})", {"window": "5m"})


def test_label_names_are_validated() -> None:
    with pytest.raises(promql.QueryError):
        templates.group(templates.Flavour.APP, ["tier) or vector(1) #"], subjects=["r"])
    with pytest.raises(promql.QueryError):
        templates.group(templates.Flavour.APP, [templates.PART], subjects=["r"])


def test_builtins_match_the_names_the_loader_knows() -> None:
    assert set(templates.BUILTIN) == set(spec.BUILTIN_GATES)


def test_one_query_for_all_groups() -> None:
    groups = [
        templates.group(templates.Flavour.APP, [], subjects=["a", "b"]),
        templates.group(templates.Flavour.APP, ["tier"], subjects=["c"]),
        templates.group(templates.Flavour.ENVOY, ["tier"], subjects=["d"]),
    ]
    q = templates.compile_query(templates.BUILTIN["error_rate"], groups, window=timedelta(minutes=5))
    assert q.count("rollouts_group") == 3
    assert "envoy_cluster_upstream_rq_xx" in q and "llm_requests_total" in q
    assert 'route=~"(?:a|b)"' in q


HOSTILE = [
    ("quote-brace", 'x"} or vector(1) or m{a="'),
    ("backslash-quote", 'x\\"} or vector(1) #'),
    ("newline", 'x"}\nor vector(1)'),
]


@pytest.mark.parametrize("value", [c[1] for c in HOSTILE], ids=[c[0] for c in HOSTILE])
def test_hostile_values_do_not_change_the_query(metrics: prometheus.Prometheus, value: str) -> None:
    """With the value escaped, the query asks for a route of that name, finds none, and says so."""
    expr = f"sum(llm_eval_results_total{{{promql.matcher('route', '=', value)}}})"
    assert metrics.query(expr, at=gate_history.AT) == []
    regex = f"sum(llm_eval_results_total{{{promql.matcher('route', '=~', promql.one_of([value]))}}})"
    assert metrics.query(regex, at=gate_history.AT) == []


def test_a_weird_route_name_matches_exactly_itself(metrics: prometheus.Prometheus) -> None:
    for op, value in (("=", gate_history.WEIRD_ROUTE), ("=~", promql.one_of([gate_history.WEIRD_ROUTE]))):
        expr = f"count(llm_eval_results_total{{{promql.matcher('route', op, value)}}})"
        [sample] = metrics.query(expr, at=gate_history.AT)
        assert sample.value == 4  # pass and fail, stable and canary


def test_prometheus_error_is_a_metrics_error(metrics: prometheus.Prometheus) -> None:
    with pytest.raises(errors.MetricsError, match="bad_data"):
        metrics.query("sum(", at=gate_history.AT)


@pytest.mark.parametrize(
    ("window", "length", "span"),
    [
        (timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=320)),
        (timedelta(hours=1), timedelta(minutes=5), timedelta(minutes=320)),
        (timedelta(hours=8), timedelta(minutes=7, seconds=30), timedelta(hours=8)),
        (timedelta(days=7), timedelta(minutes=157, seconds=30), timedelta(days=7)),
    ],
)
def test_blocks_are_64_of_a_64th_of_the_window_at_least_five_minutes(
    window: timedelta, length: timedelta, span: timedelta
) -> None:
    assert templates.blocks(window) == (length, span)


def test_only_ratio_templates_ask_for_blocks() -> None:
    g = templates.group(templates.Flavour.APP, (), subjects=["r"])
    ratio = templates.compile_query(templates.BUILTIN["error_rate"], [g], window=timedelta(hours=1))
    assert all(f'"{templates.PART}", "{name}"' in ratio for name in templates.BLOCK_PARTS)
    assert "[5h20m:5m]" in ratio and "increase(llm_requests_total{" in ratio
    for name in ("latency_p95", "cost_per_request"):
        query = templates.compile_query(templates.BUILTIN[name], [g], window=timedelta(hours=1))
        assert "sum_over_time" not in query
