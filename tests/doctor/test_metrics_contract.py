"""The metrics contract's pure logic (`controller.contract`), table-driven: which series each template
reads, what an answer means for a gate, whether a latency limit can pass on a bucket layout, and the
README's table held to the templates."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from controller import contract, judge, spec, templates

ROOT = Path(__file__).resolve().parents[2]
HOUR = timedelta(hours=1)


def test_the_readme_table_is_the_templates() -> None:
    """Change a built-in template and this fails until README.md's Metrics contract table says the same."""
    assert contract.readme_table() in (ROOT / "README.md").read_text()


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        (
            spec.RatioTemplate(kind="ratio", bad='x_total{code="5"}', total="x_total"),
            [("bad", 'x_total{code="5"}', True), ("total", "x_total", False)],
        ),
        (
            spec.RatioTemplate(kind="ratio", good="ok_total", total="all_total"),
            [("good", "ok_total", True), ("total", "all_total", False)],
        ),
        (spec.QuantileTemplate(kind="quantile", buckets="lat_bucket"), [("buckets", "lat_bucket", False)]),
        (
            spec.MeanTemplate(kind="mean", sum="usd_total", count="ok_total", requests="all_total"),
            [("sum", "usd_total", False), ("count", "ok_total", False), ("requests", "all_total", False)],
        ),
        (
            spec.MeanTemplate(kind="mean", sum="s_total", count="c_total"),
            [("sum", "s_total", False), ("count", "c_total", False)],
        ),
        (spec.ValueTemplate(kind="value", query="vector(1)"), []),
    ],
    ids=["ratio-bad", "ratio-good", "quantile", "mean-requests", "mean", "value"],
)
def test_series_of_each_kind(template: spec.GateTemplate, expected: list[tuple[str, str, bool]]) -> None:
    assert [(s.role, s.selector, s.optional) for s in contract.series(template)] == expected


def _target(router: str = "file", *, segments: tuple[str, ...] = (), canary: bool = True) -> contract.Target:
    gate = spec.Gate.model_validate({"use": "error_rate", "max": "1%"})
    return contract.Target("bot", "chat", router, (gate,), segments, ("stable", "canary") if canary else ("stable",))


def _app(variant: str | None, **more: str) -> dict[str, str]:
    return {"route": "chat", **({"variant": variant} if variant else {}), **more}


def _envoy(variant: str) -> dict[str, str]:
    return {"envoy_cluster_name": f"bot_{variant}"}


# present rows of the total (part 1) and the errors (part 0), seen rows of the total, -> status, detail
CASES = [
    ("both", "file", (), [_app("stable"), _app("canary")], [], [], "OK", "variants canary, stable"),
    ("no-errors-yet", "file", (), [_app("stable"), _app("canary")], None, [], "OK", "variants canary, stable"),
    (
        "missing-elsewhere",
        "file",
        (),
        [],
        [],
        [{"route": "support"}, {}],
        "MISSING",
        'no series with route="chat" in the last 1h; route values seen: support; series without the `route` label exist',
    ),
    (
        "missing-everywhere",
        "file",
        (),
        [],
        [],
        [],
        "MISSING",
        "no series of it at all: does the application (or router) export it",
    ),
    ("no-variant", "file", (), [_app(None)], [], [], "UNLABELLED", "2 series without the `variant` label"),
    (
        "other-values",
        "flagd",
        (),
        [_app("blue"), _app("green")],
        [],
        [],
        "UNLABELLED",
        "no variant stable or canary (values seen: blue, green)",
    ),
    (
        "no-canary-yet",
        "file",
        (),
        [_app("stable")],
        [],
        [],
        "UNLABELLED",
        "no variant canary (values seen: stable); the canary's series appear with its first request",
    ),
    (
        "segment-missing",
        "file",
        ("tier",),
        [_app("stable", tier="pro"), _app("canary")],
        [],
        [],
        "UNLABELLED",
        "series without the segment label `tier` (variant canary)",
    ),
    ("envoy-both", "envoy", ("tier",), [_envoy("stable"), _envoy("canary")], [], [], "OK", "variants canary, stable"),
    (
        "envoy-no-canary",
        "envoy",
        (),
        [_envoy("stable")],
        [],
        [],
        "UNLABELLED",
        "no envoy_cluster_name canary (values seen: stable)",
    ),
]


@pytest.mark.parametrize(
    ("router", "segments", "totals", "errors", "seen", "status", "detail"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_a_ratio_gate_against_an_answer(
    router: str,
    segments: tuple[str, ...],
    totals: list[dict[str, str]],
    errors: list[dict[str, str]] | None,
    seen: list[dict[str, str]],
    status: str,
    detail: str,
) -> None:
    t = _target(router, segments=segments)
    template = templates.BUILTIN["error_rate"]
    key = contract.group_of(template, t).key
    answer = {
        (key, "present:1"): [(labels, 2.0) for labels in totals],
        (key, "present:0"): [(labels, 1.0) for labels in errors or []],
        (key, "seen:1"): [(labels, 3.0) for labels in seen],
    }
    found = contract.check(t, t.gates[0], template, answer, window=HOUR)
    assert found.status.value == status
    total = found.findings[1]
    assert total.role == "total" and detail in total.detail
    assert found.findings[0].status is contract.Status.OK  # the errors' series may be absent: 0 so far


def test_a_rollout_without_a_canary_needs_stable_only() -> None:
    t = _target(canary=False)
    template = templates.BUILTIN["error_rate"]
    key = contract.group_of(template, t).key
    found = contract.check(t, t.gates[0], template, {(key, "present:1"): [(_app("stable"), 1.0)]}, window=HOUR)
    assert found.status is contract.Status.OK


def test_another_rollouts_series_do_not_count() -> None:
    t = _target("envoy")
    template = templates.BUILTIN["error_rate"]
    key = contract.group_of(template, t).key
    other = [({"envoy_cluster_name": f"bot-2_{v}"}, 1.0) for v in ("stable", "canary")]
    found = contract.check(t, t.gates[0], template, {(key, "present:1"): other}, window=HOUR)
    assert found.status is contract.Status.MISSING


def test_a_free_promql_gate_is_unchecked() -> None:
    config = spec.ControllerConfig.model_validate(
        {
            "apiVersion": "rollouts/v1",
            "kind": "ControllerConfig",
            "routers": {"r": {"type": "file"}},
            "gateTemplates": {"mine": {"kind": "value", "query": "vector(1)"}},
        }
    )
    template = templates.resolve("mine", config)
    t = _target()
    found = contract.check(t, t.gates[0], template, {}, window=HOUR)
    assert found.status is contract.Status.UNCHECKED and not found.status.problem
    assert contract.compile_query(template, [contract.group_of(template, t)], window=HOUR) == ""


LITELLM = templates.LITELLM_DEFAULT_LATENCY_BUCKETS
FINE = tuple(round(0.05 * 1.05**k, 6) for k in range(80))


def _stable_at(bounds: tuple[float, ...], share_below: dict[float, float]) -> list[tuple[float, float]]:
    """Cumulative counts of 1000 latencies: `share_below[le]` of them at or below le (step-wise)."""
    out, share = [], 0.0
    for le in bounds:
        share = share_below.get(le, share)
        out.append((le, 1000 * share))
    return [*out, (float("inf"), 1000.0)]


@pytest.mark.parametrize(
    ("bounds", "limit", "stable", "says"),
    [
        (
            LITELLM,
            0.1,
            [],
            f"no two neighbouring buckets are within maxIncrease 10% of each other: {judge.CANNOT_PASS}",
        ),
        (LITELLM, 1.5, [], "no traffic yet; maxIncrease 150% can pass where the quantile lies in 0.005..10s, 30..600s"),
        (templates.LATENCY_BUCKETS, 0.1, [], "no traffic yet; maxIncrease 10% can pass where the quantile lies in"),
        (
            LITELLM,
            0.1,
            _stable_at(LITELLM, {0.5: 0.1, 1.0: 0.5, 2.0: 0.99}),
            "at 1.92s the buckets are 1s apart (1s .. 2s, +100.0%), wider than the limit +10.0%: " + judge.CANNOT_PASS,
        ),
        (
            FINE,
            0.1,
            _stable_at(FINE, {FINE[40]: 0.5, FINE[50]: 0.99}),
            "the buckets are +5.0% apart: maxIncrease 10% can pass",
        ),
        (FINE, 0.04, _stable_at(FINE, {FINE[40]: 0.5, FINE[50]: 0.99}), judge.CANNOT_PASS),
    ],
    ids=["litellm-10%", "litellm-150%", "rendered-10%", "litellm-at-1.9s", "fine-10%", "fine-4%"],
)
def test_whether_a_latency_limit_can_pass(
    bounds: tuple[float, ...], limit: float, stable: list[tuple[float, float]], says: str
) -> None:
    assert says in contract.passes(bounds, limit, stable, quantile=0.95)


@pytest.mark.parametrize(
    ("bounds", "says"),
    [
        ((0.5, 1.0, 2.0), "3 buckets (s): 0.5 1 2 +Inf"),
        (FINE, "80 buckets from 0.05s to 2.36007s, 5.0% to 5.0% apart, then +Inf"),
    ],
    ids=["few", "many"],
)
def test_bucket_layout_in_words(bounds: tuple[float, ...], says: str) -> None:
    assert contract.layout(bounds) == says


def test_one_query_per_template_names_every_subject_and_part() -> None:
    template = templates.BUILTIN["latency_p95"]
    groups = [
        templates.group(templates.Flavour.APP, ("tier",), subjects=["a", "b"]),
        templates.group(templates.Flavour.ENVOY, (), subjects=["r-1"]),
    ]
    query = contract.compile_query(template, groups, window=timedelta(minutes=10))
    assert query.count('llm_request_duration_seconds_bucket{route=~"(?:a|b)"}') == 2  # present, buckets
    assert 'envoy_cluster_name=~"(?:r-1)_(?:stable|canary)"' in query
    assert "count by (route, variant, tier)" in query and "sum by (route, variant, le)" in query
    assert "sum by (envoy_cluster_name, le)" in query and "[10m]" in query
    for part in ("present:0", "seen:0", "buckets:0"):
        assert f'"{part}"' in query


@pytest.mark.parametrize(
    ("les", "status"),
    [(("0.1", "0.10", "+Inf"), "UNLABELLED"), (("NaN", "0.5", "+Inf"), "COARSE")],  # NaN is left out: 0.5, +Inf
    ids=["two-exporters-one-bound", "nan-bound"],
)
def test_buckets_that_are_not_one_histogram_are_a_finding_not_a_crash(les: tuple[str, ...], status: str) -> None:
    """Two exporters writing `le="0.1"` and `le="0.10"` (one bound twice), or `le="NaN"`: plan runs on every
    PR, so the check says what it found instead of raising."""
    gate = spec.Gate.model_validate({"use": "latency_p95", "maxIncrease": "10%"})
    t = contract.Target("bot", "chat", "file", (gate,), (), ("stable", "canary"))
    template = templates.BUILTIN["latency_p95"]
    key = contract.group_of(template, t).key
    rows = [({**_app(v), "le": le}, float(n)) for v in ("stable", "canary") for n, le in enumerate(les, 1)]
    answer = {(key, "present:0"): [(_app(v), 1.0) for v in ("stable", "canary")], (key, "buckets:0"): rows}
    found = contract.check(t, gate, template, answer, window=HOUR)
    assert found.status.value == status, found
