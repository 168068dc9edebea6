"""The dashboard's plots (`controller.dashboard.series`) from a real Prometheus holding a known history
(tests/helpers/plot_history.py): each plotted point is the value written, at its time, for stable and
canary, per segment and cohort, from the metrics the gate reads; the step bound; and a missing or
unreachable Prometheus gives empty panels and an error, never an exception."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller import prometheus, spec
from controller.dashboard import series
from tests.helpers import gate_history, net, plot_history
from tests.helpers.plot_history import CHANGE, FIRST, NOW, WINDOW, plot_prom  # noqa: F401

START = datetime.fromtimestamp(NOW - 4 * 3600, UTC)  # an hour before the history begins
END = datetime.fromtimestamp(NOW, UTC)


@pytest.fixture(scope="module")
def metrics(plot_prom: Any) -> Iterator[prometheus.Prometheus]:  # noqa: F811
    client = prometheus.Prometheus(plot_prom.url, timeout=timedelta(seconds=30))
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="module")
def answers(metrics: prometheus.Prometheus) -> dict[str, dict[str, Any]]:
    """Each rollout's plots over the whole history, asked once."""
    out = {}
    for name in ("r-app", "r-seg", "r-envoy", "r-cohort", "r-litellm", "r-vllm"):
        out[name] = series.plots(plot_history.rollout(name), plot_history.CONFIG, metrics, start=START, end=END)
    return out


def panel(answer: dict[str, Any], metric: str) -> dict[str, Any]:
    [found] = [p for p in answer["panels"] if p["metric"] == metric]
    return found


def points(p: dict[str, Any], variant: str, segment: str = "") -> list[tuple[int, float | None]]:
    [s] = [s for s in p["series"] if s["variant"] == variant and s["segment"] == segment]
    return [(t, v) for t, v in s["points"]]


def settled(pts: list[tuple[int, float | None]]) -> tuple[list[float | None], list[float | None]]:
    """The values whose whole window lies before CHANGE, and after it (a sample's margin either side)."""
    before = [v for t, v in pts if FIRST + WINDOW + 60 < t < CHANGE - 60]
    after = [v for t, v in pts if t - WINDOW > CHANGE + 60]
    return before, after


@pytest.mark.parametrize(("metric", "variant"), sorted(plot_history.EXPECTED), ids="-".join)
def test_every_plotted_point_is_the_value_written(
    answers: dict[str, dict[str, Any]], metric: str, variant: str
) -> None:
    answer = answers["r-app"]
    assert answer["errors"] == []
    want_before, want_after = plot_history.EXPECTED[(metric, variant)]
    before, after = settled(points(panel(answer, metric), variant))
    assert len(before) > 50 and len(after) > 50
    assert before == pytest.approx([want_before] * len(before), rel=1e-6)
    assert after == pytest.approx([want_after] * len(after), rel=1e-6)


def test_points_are_on_the_step_grid_and_null_before_the_history(answers: dict[str, dict[str, Any]]) -> None:
    answer = answers["r-app"]
    step = answer["step"]
    assert (answer["start"], answer["end"], step) == (NOW - 4 * 3600, NOW, 61)  # 4 h in at most 240 points
    assert answer["window"] == "5m"
    for p in answer["panels"]:
        assert p["series"], p["metric"]
        for s in p["series"]:
            times = [t for t, _ in s["points"]]
            assert times == list(range(answer["start"], answer["end"] + 1, step))
            assert all(v is None for t, v in s["points"] if t < FIRST), "no value before the history"
            assert all(v is not None for t, v in s["points"] if t > FIRST + WINDOW + 60)


def test_panels_say_their_title_unit_source_and_query(answers: dict[str, dict[str, Any]]) -> None:
    found = [(p["metric"], p["title"], p["unit"], p["source"], p["note"]) for p in answers["r-app"]["panels"]]
    assert found == [
        ("error_rate", "Error rate", "%", "application", ""),
        ("latency_p95", "p95 latency", "s", "application", ""),
        ("eval_pass_rate", "Eval pass rate", "%", "application", ""),
        ("cost_per_request", "Cost per answered request", "$", "application", ""),
        ("tokens_per_request", "Tokens per answered request", "tokens", "application", ""),
    ]
    latency = panel(answers["r-app"], "latency_p95")
    assert latency["query"].startswith("label_replace((histogram_quantile(0.95, sum by (route, variant, le) (")
    assert "[5m]" in latency["query"] and 'route=~"(?:plots-app)"' in latency["query"]


def test_segments_split_the_series(answers: dict[str, dict[str, Any]]) -> None:
    evals = panel(answers["r-seg"], "eval_pass_rate")
    assert [(s["segment"], s["variant"]) for s in evals["series"]] == [
        (f"tenant_tier={plot_history.HOSTILE}", "stable"),  # a label's value as it is: the page shows it as text
        (f"tenant_tier={plot_history.HOSTILE}", "canary"),
        ("tenant_tier=free", "stable"),
        ("tenant_tier=free", "canary"),
        ("tenant_tier=pro", "stable"),
        ("tenant_tier=pro", "canary"),
    ]
    for tier, by in plot_history.SEGMENTED.items():
        for variant, want in by.items():
            before, after = settled(points(evals, variant, f"tenant_tier={tier}"))
            assert before + after == pytest.approx([want] * (len(before) + len(after)), rel=1e-6)
    # no other quantity was written for this route: those panels have no data, and that is no error
    assert [p["metric"] for p in answers["r-seg"]["panels"] if not p["series"]] == [
        "error_rate",
        "latency_p95",
        "cost_per_request",
        "tokens_per_request",
    ]
    assert answers["r-seg"]["errors"] == []


def test_cohorts_split_the_series_as_the_gates_judge_them(answers: dict[str, dict[str, Any]]) -> None:
    evals = panel(answers["r-cohort"], "eval_pass_rate")
    last = {(s["segment"], s["variant"]): s["points"][-1][1] for s in evals["series"]}
    # gate_history.cohort_history(): internal users only on the canary, beta's canary worse, the rest better
    assert last == pytest.approx(
        {
            ("cohort beta", "stable"): 90.0,
            ("cohort beta", "canary"): 70.0,
            ("cohort internal", "stable"): None,  # a cohort at 100% has no stable of its own
            ("cohort internal", "canary"): 93.0,
            ("everyone else", "stable"): 90.0,
            ("everyone else", "canary"): 93.0,
        }
    )


def test_envoy_s_own_metrics_and_a_note_where_envoy_has_none(answers: dict[str, dict[str, Any]]) -> None:
    answer = answers["r-envoy"]
    errors = panel(answer, "error_rate")
    assert (errors["source"], errors["note"]) == ("Envoy", "")
    assert "envoy_cluster_upstream_rq_total" in errors["query"]
    for variant, want in plot_history.ENVOY.items():
        before, after = settled(points(errors, variant))
        assert before + after == pytest.approx([want] * (len(before) + len(after)), abs=1e-9)
    evals = panel(answer, "eval_pass_rate")
    assert evals["source"] == "application" and evals["series"] == []
    assert evals["note"] == "Envoy metrics have no eval pass rate: read from the application metrics (eval_pass_rate)"
    assert answer["errors"] == []


@pytest.mark.parametrize(("rollout", "metric", "variant"), sorted(plot_history.FLAVOURED), ids="-".join)
def test_litellm_and_vllm_rollouts_plot_their_own_metrics(
    answers: dict[str, dict[str, Any]], rollout: str, metric: str, variant: str
) -> None:
    p = panel(answers[rollout], metric)
    assert p["source"] == {"r-litellm": "LiteLLM", "r-vllm": "vLLM"}[rollout] and p["note"] == ""
    before, after = settled(points(p, variant))
    want = plot_history.FLAVOURED[(rollout, metric, variant)]
    assert len(before) > 50 and before + after == pytest.approx([want] * (len(before) + len(after)), rel=1e-6)


def test_vllm_has_no_cost_the_panel_says_where_it_reads_it(answers: dict[str, dict[str, Any]]) -> None:
    cost = panel(answers["r-vllm"], "cost_per_request")
    assert (cost["source"], cost["series"]) == ("application", [])
    assert cost["note"] == (
        "vLLM metrics have no cost per answered request: read from the application metrics (cost_per_request)"
    )


def test_a_gate_on_another_template_gets_its_panel(metrics: prometheus.Prometheus) -> None:
    loaded = plot_history.rollout("r-app")
    data = loaded.rollout.model_dump(by_alias=True, exclude_none=True, mode="json")
    data["spec"]["analysis"]["gates"].append({"use": "schema_valid_rate", "min": "90%"})
    loaded = type(loaded)(loaded.path, spec.Rollout.model_validate(data), loaded.revisions, {})
    answer = series.plots(loaded, plot_history.CONFIG, metrics, start=END - timedelta(hours=1), end=END)
    assert [p["metric"] for p in answer["panels"]][-1] == "schema_valid_rate"
    assert panel(answer, "schema_valid_rate")["unit"] == "%"


def test_a_controller_yaml_ratio_template_is_plotted_in_percent(metrics: prometheus.Prometheus) -> None:
    """A template of the user's own: the gate's share of the application's requests that failed, as %."""
    config = spec.ControllerConfig.model_validate(
        {
            **plot_history.CONFIG.model_dump(by_alias=True, exclude_none=True, mode="json"),
            "gateTemplates": {
                "failures": {
                    "kind": "ratio",
                    "bad": 'llm_requests_total{outcome="error"}',
                    "total": "llm_requests_total",
                }
            },
        }
    )
    loaded = plot_history.rollout("r-app")
    data = loaded.rollout.model_dump(by_alias=True, exclude_none=True, mode="json")
    data["spec"]["analysis"]["gates"].append({"use": "failures", "max": "10%"})
    loaded = type(loaded)(loaded.path, spec.Rollout.model_validate(data), loaded.revisions, {})
    answer = series.plots(loaded, config, metrics, start=START, end=END)
    failures = panel(answer, "failures")
    assert (failures["title"], failures["unit"]) == ("failures", "%")
    assert settled(points(failures, "canary")) == settled(points(panel(answer, "error_rate"), "canary"))


@pytest.mark.parametrize(
    ("span", "step"),
    [(0, 15), (60, 15), (239 * 15, 15), (239 * 15 + 1, 16), (3600, 16), (86400, 362), (7 * 86400, 2531)],
    ids=["empty", "a-minute", "just-15s", "just-over", "an-hour", "a-day", "a-week"],
)
def test_the_step_keeps_a_plot_under_240_points(span: int, step: int) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert series.step_of(start, start + timedelta(seconds=span)) == step
    assert len(range(0, span + 1, step)) <= series.MAX_POINTS


def test_the_answer_is_json_and_bounded(answers: dict[str, dict[str, Any]]) -> None:
    for answer in answers.values():
        assert json.loads(json.dumps(answer, allow_nan=False)) == answer
        assert all(len(s["points"]) <= series.MAX_POINTS for p in answer["panels"] for s in p["series"])


def test_no_prometheus_configured_is_an_error_and_empty_panels() -> None:
    answer = series.plots(plot_history.rollout("r-app"), plot_history.CONFIG, None, start=START, end=END)
    assert answer["errors"] == ["no Prometheus is configured (controller.yaml has no `prometheus`): nothing to plot"]
    assert [p["series"] for p in answer["panels"]] == [[]] * 5
    assert all(p["query"] for p in answer["panels"]), "the queries are still shown"


def test_a_prometheus_that_is_down_is_asked_once_and_said(tmp_path: Any) -> None:
    counting = gate_history.Counting()
    down = prometheus.Prometheus(
        f"http://ops:pw-SECRET@127.0.0.1:{net.free_port()}", session=counting.session(), timeout=timedelta(seconds=2)
    )
    answer = series.plots(plot_history.rollout("r-app"), plot_history.CONFIG, down, start=START, end=END)
    [error] = answer["errors"]
    assert error.startswith("Error rate: Prometheus at http://127.0.0.1:") and "ConnectionError" in error
    assert error.endswith("(the other panels were not asked)") and "SECRET" not in json.dumps(answer)
    assert [p["series"] for p in answer["panels"]] == [[]] * 5


def test_a_query_prometheus_refuses_is_that_panel_s_error(metrics: prometheus.Prometheus) -> None:
    config = spec.ControllerConfig.model_validate(
        {
            **plot_history.CONFIG.model_dump(by_alias=True, exclude_none=True, mode="json"),
            "gateTemplates": {
                "latency_p95": {"kind": "value", "query": "sum by ({{by}}) (rate(x{{{match}}}[{{window}}])) / on() ("},
            },
        }
    )
    answer = series.plots(plot_history.rollout("r-app"), config, metrics, start=START, end=END)
    [error] = answer["errors"]
    assert error.startswith("p95 latency: Prometheus at ") and "range query failed: HTTP 400, bad_data" in error
    assert panel(answer, "latency_p95")["series"] == [] and panel(answer, "error_rate")["series"]


def test_a_range_that_ends_before_it_starts_is_an_error(metrics: prometheus.Prometheus) -> None:
    answer = series.plots(plot_history.rollout("r-app"), plot_history.CONFIG, metrics, start=END, end=START)
    assert answer["errors"] == ["the range ends before it starts"]
    assert all(p["series"] == [] for p in answer["panels"])
