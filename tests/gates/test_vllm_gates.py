"""The vLLM flavour of the built-in gates on a real Prometheus, over backfilled vLLM-shaped history: the
vllm:* series with vLLM's `model_name` and `engine`, its histogram bounds, and the `route` and
`variant` labels a scrape config adds. A canary that preempts (its KV cache full) or whose time to
first token is slow fails the gate made for it; a good one passes every gate. The pure side:
tests/gates/test_vllm_templates.py."""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml

from controller import analysis, contract, evidence, prometheus, spec, templates
from controller.demo import model_server
from controller.gates import Verdict as V
from tests.helpers import gate_history, prom

pytestmark = pytest.mark.slow

NOW = gate_history.NOW
MINUTES = 120
PER_MINUTE = 60  # finished requests a minute, per variant
GOOD_TTFT = {0.1: 0.2, 0.25: 0.7, 0.5: 0.97, 0.75: 0.99, 1.0: 1.0}  # cumulative shares at vLLM's bounds
SLOW_TTFT = {0.5: 0.1, 0.75: 0.3, 1.0: 0.5, 2.5: 0.97, 5.0: 1.0}  # p95 between 1 and 2.5 s
E2E = {0.8: 0.1, 1.0: 0.2, 1.5: 0.5, 2.0: 0.8, 2.5: 0.9, 5.0: 0.99, 10.0: 1.0}


@dataclass(frozen=True)
class Server:
    """One variant's vLLM server, as its metrics show it."""

    slow: bool = False  # time to first token: SLOW_TTFT, else GOOD_TTFT
    preemptions_per_minute: float = 0.0
    kv_cache: float = 0.45
    old_gauge: bool = False  # a vLLM before 0.9: vllm:gpu_cache_usage_perc only
    variant_label: bool = True  # the scrape config adds `variant`
    aborts: float = 0.002  # the share of finished requests that finished `abort`
    preemption_counter: bool = True  # False: vllm:num_preemptions_total dropped (by relabeling, say)


GOOD = Server()
SERVERS = {
    ("good", "stable"): GOOD,
    ("good", "canary"): GOOD,
    ("preempting", "stable"): GOOD,
    ("preempting", "canary"): Server(preemptions_per_minute=0.1, kv_cache=0.98),
    ("slow", "stable"): GOOD,
    ("slow", "canary"): Server(slow=True),
    ("old", "stable"): Server(old_gauge=True),
    ("old", "canary"): Server(old_gauge=True, kv_cache=0.97),
    ("bare", "stable"): Server(variant_label=False),
    ("aborting", "stable"): Server(aborts=0.03),  # its users press stop, or their clients time out
    ("aborting", "canary"): Server(aborts=0.03),  # as often with the canary: a good canary
    ("uncounted", "stable"): GOOD,
    ("uncounted", "canary"): Server(preemption_counter=False),
}


def _histogram(name: str, labels: str, shares: Mapping[float, float], bounds: tuple[float, ...], n: float) -> list[str]:
    out, share = [], 0.0
    for le in bounds:
        share = shares.get(le, share)
        out.append((f'{name}_bucket{{{labels},le="{le:g}"}}', n * share))
    out.append((f'{name}_bucket{{{labels},le="+Inf"}}', n))
    return [f"{key} {value:g}" for key, value in out]


def _history() -> str:
    series: dict[str, list[str]] = {}
    for (route, variant), server in SERVERS.items():
        labels = f'engine="0",model_name="acme/{route}-{variant}",route="{route}"'
        if server.variant_label:
            labels += f',variant="{variant}"'
        for minute in range(MINUTES, -1, -1):
            ts = NOW - minute * 60
            n = (MINUTES - minute) * PER_MINUTE
            samples = [
                f'vllm:request_success_total{{{labels},finished_reason="stop"}} {n * (0.902 - server.aborts):g}',
                f'vllm:request_success_total{{{labels},finished_reason="length"}} {n * 0.098:g}',
                f'vllm:request_success_total{{{labels},finished_reason="abort"}} {n * server.aborts:g}',
                f'vllm:request_success_total{{{labels},finished_reason="error"}} 0',
                *_histogram(
                    "vllm:time_to_first_token_seconds",
                    labels,
                    SLOW_TTFT if server.slow else GOOD_TTFT,
                    templates.VLLM_TTFT_BUCKETS,
                    n,
                ),
                *_histogram("vllm:e2e_request_latency_seconds", labels, E2E, templates.VLLM_E2E_BUCKETS, n),
                f"vllm:gpu_cache_usage_perc{{{labels}}} {server.kv_cache:g}",
            ]
            if not server.old_gauge:
                samples.append(f"vllm:kv_cache_usage_perc{{{labels}}} {server.kv_cache:g}")
            if server.preemption_counter:
                preempted = (MINUTES - minute) * server.preemptions_per_minute
                samples.append(f"vllm:num_preemptions_total{{{labels}}} {preempted:g}")
            for sample in samples:
                key, value = sample.rsplit(" ", 1)
                series.setdefault(key, []).append(f"{key} {value} {ts}")
    lines = [line for key in sorted(series) for line in series[key]]
    return "\n".join(lines) + "\n# EOF\n"


@pytest.fixture(scope="module")
def metrics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[prometheus.Prometheus]:
    work = tmp_path_factory.mktemp("prometheus-vllm")
    with prom.backfilled(work, _history()) as server:
        client = prometheus.Prometheus(server.url, timeout=timedelta(seconds=30))
        try:
            yield client
        finally:
            client.close()


CONFIG = spec.ControllerConfig.model_validate(
    {
        "apiVersion": "rollouts/v1",
        "kind": "ControllerConfig",
        "routers": {"local": {"type": "file"}},
        "prometheus": {"url": "http://127.0.0.1:9090"},
    }
)
GATES = tuple(
    spec.Gate.model_validate(g)
    for g in (
        {"use": "error_rate", "max": "1%", "onFail": "rollback"},
        {"use": "latency_p95", "max": "10s"},
        {"use": "ttft_p95", "max": "1s", "onFail": "rollback"},
        {"use": "preemptions", "max": 0, "onFail": "rollback"},
        {"use": "kv_cache_usage", "max": "90%"},
    )
)
NAMES = [g.use for g in GATES]
CASES = [
    ("good", {}),
    ("preempting", {"preemptions": V.FAIL, "kv_cache_usage": V.FAIL}),
    ("slow", {"ttft_p95": V.FAIL}),
    ("old", {"kv_cache_usage": V.FAIL}),  # read from vllm:gpu_cache_usage_perc
    # vLLM creates vllm:num_preemptions_total at 0 at start: without it the canary's preemptions are
    # unknown, and `max: 0` holds rather than passes
    ("uncounted", {"preemptions": V.INCONCLUSIVE}),
]


def _target(route: str) -> analysis.Target:
    return analysis.Target(
        rollout=f"r-{route}",
        route=route,
        router_type="file",
        gates=GATES,
        segments=("tenant_tier",),  # asked for, and dropped: vLLM's series have no tenant
        min_samples=100,
        metrics="vllm",
    )


@pytest.mark.parametrize(("route", "fails"), CASES, ids=[c[0] for c in CASES])
def test_a_vllm_canary_fails_only_the_gate_made_for_its_fault(
    metrics: prometheus.Prometheus, route: str, fails: dict[str, V]
) -> None:
    target = _target(route)
    found = analysis.evaluate([target], config=CONFIG, metrics=metrics, at=gate_history.AT, window=timedelta(hours=1))
    rows = found[target.rollout]
    assert [r.error for r in rows] == [None] * len(GATES)
    text = evidence.text(target.rollout, rows, at="test")
    assert {name: row.verdict for name, row in zip(NAMES, rows, strict=True)} == {
        name: fails.get(name, V.PASS) for name in NAMES
    }, text
    assert all(row.source == "vllm" for row in rows), text


def test_the_canarys_preemptions_per_request_and_peak_kv_cache_are_measured(metrics: prometheus.Prometheus) -> None:
    found = analysis.evaluate(
        [_target("preempting")], config=CONFIG, metrics=metrics, at=gate_history.AT, window=timedelta(hours=1)
    )
    rows = dict(zip(NAMES, found["r-preempting"], strict=True))
    [preempt] = rows["preemptions"].segments
    assert preempt.canary.value == pytest.approx(0.1 / PER_MINUTE, rel=0.05) and preempt.stable.value == 0
    [kv] = rows["kv_cache_usage"].segments
    assert (kv.canary.value, kv.stable.value) == (pytest.approx(0.98), pytest.approx(0.45))
    assert kv.canary.samples == pytest.approx(PER_MINUTE * 60, rel=0.05)


def test_a_canary_without_the_preemption_counter_is_no_data_not_zero(metrics: prometheus.Prometheus) -> None:
    """Dropped counter: the canary's preemptions are no data (its finished requests still counted), so
    `max: 0` holds the step instead of passing it; stable's counter, there at 0, is measured."""
    found = analysis.evaluate(
        [_target("uncounted")], config=CONFIG, metrics=metrics, at=gate_history.AT, window=timedelta(hours=1)
    )
    row = dict(zip(NAMES, found["r-uncounted"], strict=True))["preemptions"]
    [segment] = row.segments
    assert row.verdict is V.INCONCLUSIVE and segment.canary.value is None and segment.stable.value == 0
    assert segment.canary.samples == pytest.approx(PER_MINUTE * 60, rel=0.05)


def _readme_vllm_gate(use: str) -> spec.Gate:
    """A gate of the README's vLLM example (the first yaml block under "## vLLM-served models")."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text("utf-8")
    section = readme.split("\n## vLLM-served models\n", 1)[1]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    [found] = [g for g in yaml.safe_load(block)["spec"]["analysis"]["gates"] if g["use"] == use]
    return spec.Gate.model_validate(found)


def test_the_readmes_vllm_error_gate_passes_a_canary_whose_users_abort_as_stables_do(
    metrics: prometheus.Prometheus,
) -> None:
    """vLLM counts a request its client gave up on (a user pressing stop, a client timeout) as
    `finished_reason="abort"`, which the vLLM error_rate counts: a fixed `max` fails a good canary whose
    users abort 3% of their requests, as stable's do; the README's gate compares with stable and passes it."""
    readme = _readme_vllm_gate("error_rate")
    assert readme.max_increase is not None and readme.on_fail == "rollback"
    fixed = spec.Gate.model_validate({"use": "error_rate", "max": "1%", "onFail": "rollback"})
    target = dataclasses.replace(_target("aborting"), gates=(readme, fixed))
    found = analysis.evaluate([target], config=CONFIG, metrics=metrics, at=gate_history.AT, window=timedelta(hours=1))
    rows = found[target.rollout]
    text = evidence.text(target.rollout, rows, at="test")
    assert [r.verdict for r in rows] == [V.PASS, V.FAIL], text
    [segment] = rows[0].segments
    assert segment.canary.value == pytest.approx(0.03) and segment.stable.value == pytest.approx(0.03)


def test_doctor_finds_the_scraped_labels_or_says_they_are_missing(metrics: prometheus.Prometheus) -> None:
    """`rollout doctor` reads vLLM's series by route and variant: OK where the scrape config adds them,
    UNLABELLED where a target was scraped without `variant`; kv_cache_usage (free PromQL) is UNCHECKED."""
    targets = [
        contract.Target(
            rollout=f"r-{route}",
            route=route,
            router_type="file",
            gates=GATES,
            segments=(),
            variants=variants,
            metrics="vllm",
        )
        for route, variants in (("good", ("stable", "canary")), ("bare", ("stable",)))
    ]
    found = analysis.check_contract(
        targets, config=CONFIG, metrics=metrics, at=gate_history.AT, window=timedelta(minutes=10)
    )
    good = {c.gate: c.status for c in found["r-good"]}
    assert good == {n: contract.Status.OK for n in NAMES[:4]} | {"kv_cache_usage": contract.Status.UNCHECKED}
    assert all(c.source == "vllm" for c in found["r-good"])
    bare = {c.gate: c for c in found["r-bare"]}
    assert bare["ttft_p95"].status is contract.Status.UNLABELLED
    assert "without the `variant` label" in bare["ttft_p95"].findings[0].detail


# -- live: stand-in vLLM servers scraped with the README's labels ---------------------------------------

LIVE = {  # route -> the canary's behaviour; stable answers in 20 ms
    "good": model_server.Behaviour(latency=0.02, jitter=0.0),
    "preempting": model_server.Behaviour(latency=0.02, jitter=0.0, preemption_rate=0.05, kv_cache=0.95),
    "slow": model_server.Behaviour(latency=1.5, jitter=0.0),  # first token after 1.5 s: vLLM's (1, 2.5] bucket
}
LIVE_REQUESTS = {"canary": 220, "stable": 50}  # the canary's above the quantile gates' 200 samples
LIVE_GATES = tuple(
    spec.Gate.model_validate(g)
    for g in (
        {"use": "error_rate", "max": "2%", "onFail": "rollback"},
        {"use": "ttft_p95", "max": "1s", "onFail": "rollback"},
        {"use": "preemptions", "max": 0, "onFail": "rollback"},
    )
)


def test_live_stand_in_vllm_servers_scraped_with_route_and_variant(tmp_path: Path) -> None:
    """The README's setup end to end: each variant a vLLM server (the demo's stand-in with vLLM metrics,
    labelled `model_name` and `engine` only), Prometheus adding `route` and `variant` to each target,
    and the gates judging what it scraped: the preempting and the slow canary fail their gate, the good
    one passes."""
    stable = model_server.Behaviour(latency=0.02, jitter=0.0)
    with contextlib.ExitStack() as stack:
        servers: dict[tuple[str, str], model_server.Running] = {}
        for route, canary in LIVE.items():
            for variant, behaviour in (("stable", stable), ("canary", canary)):
                model = model_server.Model(
                    variant=variant,
                    route=route,
                    model=f"acme/{route}-{variant}",
                    behaviour=behaviour,
                    vllm_metrics=True,
                )
                servers[(route, variant)] = stack.enter_context(model_server.serving(model))
        server = stack.enter_context(prom.prom_server(tmp_path, data_dir=tmp_path / "data"))
        server.set_target_groups(
            [
                ([s.address], {"__metrics_path__": "/metrics", "route": route, "variant": variant})
                for (route, variant), s in servers.items()
            ]
        )
        client = prometheus.Prometheus(server.url, timeout=timedelta(seconds=30))
        stack.callback(client.close)
        created = 'count(vllm:request_success_total{finished_reason="stop"} == 0) == 6'  # before any request
        prom.prom_poll("Prometheus to scrape every server", lambda: client.query(created, at=datetime.now(UTC)) or None)
        with contextlib.ExitStack() as pools:  # a few requests at a time per server: its listen backlog is small
            sent = []
            for (_, variant), s in servers.items():
                slow = LIVE[s.model.route].latency > 1 and variant == "canary"
                pool = pools.enter_context(concurrent.futures.ThreadPoolExecutor(max_workers=24 if slow else 4))
                sent += [pool.submit(_chat, s.url) for _ in range(LIVE_REQUESTS[variant])]
            assert [f.result() for f in sent] == [200] * len(sent)
        total = sum(LIVE_REQUESTS[variant] for _, variant in servers)
        scraped = f'sum(vllm:request_success_total{{variant=~"stable|canary"}}) == {total}'
        prom.prom_poll(
            "Prometheus to scrape every request", lambda: client.query(scraped, at=datetime.now(UTC)) or None
        )
        at = datetime.now(UTC)
        targets = [
            analysis.Target(
                rollout=f"r-{route}",
                route=route,
                router_type="file",
                gates=LIVE_GATES,
                segments=(),
                min_samples=100,
                metrics="vllm",
            )
            for route in LIVE
        ]
        found = analysis.evaluate(targets, config=CONFIG, metrics=client, at=at, window=timedelta(minutes=5))
    verdicts = {t.route: [row.verdict for row in found[t.rollout]] for t in targets}
    text = "\n".join(evidence.text(t.rollout, found[t.rollout], at="test") for t in targets)
    assert verdicts == {
        "good": [V.PASS, V.PASS, V.PASS],
        "preempting": [V.PASS, V.PASS, V.FAIL],
        "slow": [V.PASS, V.FAIL, V.PASS],
    }, text


def _chat(url: str) -> int:
    body = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30).status_code
