"""The stand-in model server over real HTTP (in-process and as `python -m`): answers, live
behaviour changes, and the exact metric and label names the built-in gate templates read."""

from __future__ import annotations

import dataclasses
import json
import re
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import exposition
from prometheus_client import parser as prom_parser

from controller import demo, templates
from controller.demo import model_server as ms
from tests.helpers import prom

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"eval_pass": 0.85}, None),
        ({"error_rate": 1, "latency": 0}, None),
        ({"tokens": 10, "exact": False}, None),
        ({"eval_pas": 0.5}, "unknown behaviour field(s): eval_pas"),
        ({"error_rate": 1.5}, "error_rate must be between 0 and 1"),
        ({"latency": -1}, "latency must be a number >= 0"),
        ({"latency": "fast"}, "latency must be a number >= 0"),
        ({"tokens": 1.5}, "tokens must be a whole number >= 0"),
        ({"exact": 1}, "exact must be true or false"),
    ],
    ids=[
        "eval",
        "int-for-float",
        "int-and-bool",
        "unknown",
        "rate-above-1",
        "negative",
        "string",
        "float-tokens",
        "int-for-bool",
    ],
)
def test_behaviour_replace(changes: Mapping[str, Any], problem: str | None) -> None:
    if problem is None:
        b = ms.Behaviour().replace(changes)
        for name, value in changes.items():
            assert getattr(b, name) == value
    else:
        with pytest.raises(ms.BehaviourError, match=problem.replace("(", r"\(").replace(")", r"\)")):
            ms.Behaviour().replace(changes)


@pytest.mark.parametrize(
    ("error_rate", "eval_pass", "json_valid", "expect"),
    [
        (0.0, 0.9, 1.0, {"error": 0, "pass": 180, "valid": 200}),
        (0.1, 0.9, 1.0, {"error": 20, "pass": 162, "valid": 180}),
        (0.0, 0.85, 0.5, {"error": 0, "pass": 170, "valid": 100}),
        (1.0, 0.9, 1.0, {"error": 200, "pass": 0, "valid": 0}),
    ],
    ids=["healthy", "ten-percent-5xx", "eval-drop-half-json", "all-5xx"],
)
def test_exact_rates_per_segment(
    error_rate: float, eval_pass: float, json_valid: float, expect: dict[str, int]
) -> None:
    behaviour = ms.Behaviour(latency=0, jitter=0, error_rate=error_rate, eval_pass=eval_pass, json_valid=json_valid)
    model = ms.Model(variant="canary", route="r", model="m", behaviour=behaviour, segments=["a", "b"])
    errors = valid = 0
    for segment in ("a", "b"):
        for _ in range(100):
            answer, _delay = model.answer({"messages": []}, segment=segment)
            errors += answer.status >= 500
            valid += answer.status == 200 and _valid(answer)
    assert errors == expect["error"]
    assert valid == expect["valid"]
    passes = sum(_sample(model, "llm_eval_results_total", result="pass", tenant_tier=s) for s in ("a", "b"))
    assert passes == expect["pass"]
    assert _sample(model, "llm_requests_total", outcome="error") == expect["error"]


def _valid(answer: ms.Answer) -> bool:
    try:
        json.loads(answer.body["choices"][0]["message"]["content"])
    except json.JSONDecodeError:
        return False
    return True


def _samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [
        (s.name, dict(s.labels), s.value)
        for family in prom_parser.text_string_to_metric_families(text)
        for s in family.samples
    ]


def _sample(model: ms.Model, name: str, **labels: str) -> float:
    text = exposition.generate_latest(model.metrics.registry).decode()
    return sum(v for n, ls, v in _samples(text) if n == name and all(ls.get(k) == x for k, x in labels.items()))


@pytest.fixture
def server() -> Iterator[ms.Running]:
    behaviour = ms.Behaviour(latency=0, jitter=0, eval_pass=0.5, tokens=100, cost_per_1k=0.01)
    model = ms.Model(variant="canary", route="support-chat", model="demo/canary", behaviour=behaviour, segments=["pro"])
    with ms.serving(model) as running:
        yield running


def chat(url: str, *, tier: str | None = "pro") -> httpx.Response:
    headers = {ms.SEGMENT_HEADER: tier} if tier else {}
    body = {"model": "demo/canary", "messages": [{"role": "user", "content": "hello"}]}
    return httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=10)


def test_answers_like_openai_and_names_its_variant(server: ms.Running) -> None:
    response = chat(server.url)
    assert response.status_code == 200
    assert response.headers[ms.VARIANT_HEADER] == "canary"
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert body["usage"]["completion_tokens"] == 100
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + 100
    assert httpx.get(f"{server.url}/healthz", timeout=5).json()["variant"] == "canary"
    assert httpx.get(f"{server.url}/v1/models", timeout=5).json()["data"][0]["id"] == "demo/canary"


def test_metrics_carry_the_names_and_labels_the_templates_read(server: ms.Running) -> None:
    for _ in range(4):
        chat(server.url)
    chat(server.url, tier=None)
    text = httpx.get(f"{server.url}/metrics", timeout=5).text
    samples = _samples(text)
    names = {n for n, _, _ in samples}
    # every application metric a built-in template names is exported
    wanted = {
        name
        for t in templates.BUILTIN.values()
        if t.app is not None
        for text in t.app.model_dump().values()
        for name in re.findall(r"\bllm_[a-z_]+", str(text))
    }
    assert len(wanted) == 7, wanted
    assert wanted <= names, wanted - names
    for name, labels, _ in samples:
        if name.startswith("llm_") and not name.endswith("_created"):
            assert {"route", "variant", "tenant_tier"} <= set(labels), (name, labels)
    by = {(n, tuple(sorted(ls.items()))): v for n, ls, v in samples}
    key = (("outcome", "ok"), ("route", "support-chat"), ("tenant_tier", "pro"), ("variant", "canary"))
    assert by[("llm_requests_total", key)] == 4
    assert _sum(samples, "llm_requests_total", tenant_tier="none") == 1  # no header: segment "none"
    assert _sum(samples, "llm_eval_results_total", result="pass") == 2  # exact: half of 4, then 1 of the other
    assert _sum(samples, "llm_eval_results_total") == 5
    assert _sum(samples, "llm_schema_checks_total", result="valid") == 5
    assert _sum(samples, "llm_request_duration_seconds_count") == 5
    tokens = _sum(samples, "llm_tokens_total")
    assert tokens > 500
    assert _sum(samples, "llm_cost_usd_total") == pytest.approx(tokens / 1000 * 0.01)
    assert _sum(samples, "llm_feedback_total") == 0  # created at 0 for each value: nobody rated yet


def test_a_vllm_server_exports_the_series_the_vllm_flavour_reads() -> None:
    """With `vllm_metrics` (`--vllm-metrics`) the stand-in is a vLLM server as Prometheus sees one: every
    vllm:* series a built-in template's vLLM flavour reads (the KV cache gauge by its current name),
    labelled `model_name` and `engine` only (the scrape config adds route and variant), on vLLM's bucket
    bounds, and no application series (whose route and variant labels would clash with the target's)."""
    behaviour = ms.Behaviour(latency=0, jitter=0, error_rate=0.25, preemption_rate=0.5, kv_cache=0.7)
    model = ms.Model(
        variant="canary", route="support-chat", model="acme/new-model", behaviour=behaviour, vllm_metrics=True
    )
    with ms.serving(model) as running:
        for _ in range(4):
            chat(running.url)
        samples = _samples(httpx.get(f"{running.url}/metrics", timeout=5).text)
    names = {n for n, _, _ in samples}
    wanted = {
        name
        for t in templates.BUILTIN.values()
        if t.vllm is not None
        for text in t.vllm.model_dump().values()
        for name in re.findall(r"\bvllm:[a-z0-9_]+", str(text))
    }
    assert len(wanted) == 6, wanted
    assert wanted - names == {"vllm:gpu_cache_usage_perc"}  # the old name: read where the new one is absent
    assert not any(n.startswith("llm_") for n in names)
    for name, labels, _ in samples:
        if not name.endswith("_created"):
            assert set(labels) - {"le", "finished_reason"} == {"model_name", "engine"}, (name, labels)
            assert (labels["model_name"], labels["engine"]) == ("acme/new-model", "0")
    assert _sum(samples, "vllm:request_success_total", finished_reason="stop") == 3
    assert _sum(samples, "vllm:request_success_total", finished_reason="error") == 1  # exact: a quarter of 4
    assert _sum(samples, "vllm:request_success_total", finished_reason="abort") == 0  # created at 0
    assert _sum(samples, "vllm:num_preemptions_total") == 2
    assert _sum(samples, "vllm:kv_cache_usage_perc") == 0.7
    assert _sum(samples, "vllm:time_to_first_token_seconds_count") == 4
    for name, bounds in (
        ("vllm:time_to_first_token_seconds_bucket", templates.VLLM_TTFT_BUCKETS),
        ("vllm:e2e_request_latency_seconds_bucket", templates.VLLM_E2E_BUCKETS),
    ):
        les = [ls["le"] for n, ls, _ in samples if n == name]
        assert tuple(float(le) for le in les if le != "+Inf") == bounds and "+Inf" in les


def test_feedback_counts_a_rating_of_one_of_its_answers(server: ms.Running) -> None:
    answer = chat(server.url).json()
    helpful = json.loads(answer["choices"][0]["message"]["content"])["helpful"]
    assert helpful is False  # liked defaults to 0.9, exact (error diffusion): the first 0.9 is not yet one
    rated = httpx.post(
        f"{server.url}/v1/feedback", json={"id": answer["id"], "value": "down"}, headers={ms.SEGMENT_HEADER: "pro"}
    )
    assert rated.status_code == 200
    samples = _samples(httpx.get(f"{server.url}/metrics", timeout=5).text)
    assert _sum(samples, "llm_feedback_total", value="down", tenant_tier="pro", variant="canary") == 1
    assert _sum(samples, "llm_feedback_total", value="up") == 0
    again = httpx.post(f"{server.url}/v1/feedback", json={"id": answer["id"], "value": "up"}, timeout=5)
    assert again.status_code == 404 and "rated already" in again.json()["error"]["message"]  # once per answer


def test_a_rating_of_an_answer_another_server_gave_as_this_variant_counts_once(server: ms.Running) -> None:
    """After a completion, Envoy's stable cluster is the canary's server: its answers say `stable`, so
    their ratings reach the stable variant's endpoint, which counts them as stable's, in the rating's
    segment, once each."""
    rating = {"id": "chatcmpl-stable-7", "value": "down"}
    first = httpx.post(f"{server.url}/v1/feedback", json=rating, headers={ms.SEGMENT_HEADER: "pro"}, timeout=5)
    again = httpx.post(f"{server.url}/v1/feedback", json=rating, headers={ms.SEGMENT_HEADER: "pro"}, timeout=5)
    assert (first.status_code, again.status_code) == (200, 404)
    samples = _samples(httpx.get(f"{server.url}/metrics", timeout=5).text)
    assert _sum(samples, "llm_feedback_total", value="down", tenant_tier="pro", variant="canary") == 1


def test_a_rating_counts_in_the_segment_of_the_answer_it_rates(server: ms.Running) -> None:
    answer = chat(server.url, tier="pro").json()
    rated = httpx.post(
        f"{server.url}/v1/feedback", json={"id": answer["id"], "value": "up"}, headers={ms.SEGMENT_HEADER: "beta"}
    )
    assert rated.status_code == 200
    samples = _samples(httpx.get(f"{server.url}/metrics", timeout=5).text)
    assert _sum(samples, "llm_feedback_total", value="up", tenant_tier="pro") == 1
    assert _sum(samples, "llm_feedback_total", tenant_tier="beta") == 0


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"id": "chatcmpl-canary-1", "value": "sideways"}, 400, "value must be up or down"),
        ({"id": "not-an-answer", "value": "up"}, 404, "no answer 'not-an-answer'"),
        ({"id": "chatcmpl-canary-99", "value": "up"}, 404, "no answer"),  # not served yet
        ({"value": "up"}, 404, "no answer"),
    ],
    ids=["bad-value", "not-an-answer", "unserved", "no-id"],
)
def test_feedback_refuses_what_is_not_a_rating_of_its_answer(
    server: ms.Running, body: dict[str, str], status: int, message: str
) -> None:
    chat(server.url)
    refused = httpx.post(f"{server.url}/v1/feedback", json=body, timeout=5)
    assert refused.status_code == status and message in refused.json()["error"]["message"]
    samples = _samples(httpx.get(f"{server.url}/metrics", timeout=5).text)
    assert _sum(samples, "llm_feedback_total") == 0


def _sum(samples: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    return sum(v for n, ls, v in samples if n == name and all(ls.get(k) == x for k, x in labels.items()))


def test_behaviour_changes_live(server: ms.Running) -> None:
    assert chat(server.url).status_code == 200
    changed = httpx.post(f"{server.url}/admin/behaviour", json={"error_rate": 1.0}, timeout=5)
    assert changed.status_code == 200 and changed.json()["error_rate"] == 1.0
    failed = chat(server.url)
    assert failed.status_code == 500 and failed.headers[ms.VARIANT_HEADER] == "canary"
    assert httpx.get(f"{server.url}/admin/behaviour", timeout=5).json()["error_rate"] == 1.0
    refused = httpx.post(f"{server.url}/admin/behaviour", json={"error_rate": 2}, timeout=5)
    assert refused.status_code == 400 and "between 0 and 1" in refused.json()["error"]["message"]
    assert httpx.post(f"{server.url}/admin/behaviour", content=b"[1]", timeout=5).status_code == 400
    assert server.model.behaviour.error_rate == 1.0  # a refused change changes nothing


def test_a_segment_can_behave_otherwise(server: ms.Running) -> None:
    """A regression one tenant tier sees: the change applies to that segment's requests only."""
    changed = httpx.post(f"{server.url}/admin/behaviour?segment=beta", json={"error_rate": 1.0}, timeout=5)
    assert changed.status_code == 200 and changed.json()["error_rate"] == 1.0
    assert chat(server.url, tier="beta").status_code == 500
    assert chat(server.url, tier="pro").status_code == 200 and chat(server.url, tier=None).status_code == 200
    assert httpx.get(f"{server.url}/admin/behaviour?segment=beta", timeout=5).json()["error_rate"] == 1.0
    assert httpx.get(f"{server.url}/admin/behaviour", timeout=5).json()["error_rate"] == 0.0
    httpx.post(f"{server.url}/admin/behaviour", json={"tokens": 50}, timeout=5).raise_for_status()
    assert server.model.behaviour_of("beta").error_rate == 1.0  # the segment's own change stays


def test_unknown_path_is_404(server: ms.Running) -> None:
    assert httpx.get(f"{server.url}/nope", timeout=5).status_code == 404
    assert httpx.post(f"{server.url}/v1/completions", json={}, timeout=5).status_code == 404


def test_loopback_only() -> None:
    model = ms.Model(variant="stable", route="r", model="m", behaviour=ms.Behaviour())
    with pytest.raises(ValueError, match="loopback"):
        ms.start(model, host="0.0.0.0")


def test_command_line_writes_its_port_and_stops_on_sigterm(tmp_path: Path) -> None:
    port_file = tmp_path / "port"
    args = [sys.executable, "-m", "controller.demo.model_server", "--variant", "stable", "--route", "triage"]
    args += ["--port-file", str(port_file), "--segments", "free,pro", "--eval-pass", "0.8", "--latency", "0"]
    args += ["--scenario", "regression"]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        port = prom.prom_poll("the port file", lambda: port_file.exists() and port_file.read_text())
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{url}/admin/behaviour", timeout=5).json()["eval_pass"] == pytest.approx(0.7)
        good = httpx.post(f"{url}/admin/scenario", json={"name": "good"}, timeout=5).json()
        assert good["eval_pass"] == 0.8  # back to what the flags said
        assert chat(url, tier="free").headers[ms.VARIANT_HEADER] == "stable"
        text = httpx.get(f"{url}/metrics", timeout=5).text
        assert 'llm_requests_total{outcome="ok",route="triage",tenant_tier="pro",variant="stable"} 0.0' in text
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert f"on http://127.0.0.1:{port}" in out.decode()


def test_command_line_vllm_metrics(tmp_path: Path) -> None:
    """`--vllm-metrics` exports vLLM's series only, with the preemption rate and KV cache usage given."""
    port_file = tmp_path / "port"
    args = [sys.executable, "-m", "controller.demo.model_server", "--variant", "canary", "--route", "r"]
    args += ["--port-file", str(port_file), "--latency", "0", "--model", "acme/m-2"]
    args += ["--vllm-metrics", "--preemption-rate", "1", "--kv-cache", "0.85"]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        port = prom.prom_poll("the port file", lambda: port_file.exists() and port_file.read_text())
        url = f"http://127.0.0.1:{port}"
        assert chat(url).status_code == 200
        samples = _samples(httpx.get(f"{url}/metrics", timeout=5).text)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert _sum(samples, "vllm:num_preemptions_total", model_name="acme/m-2", engine="0") == 1
    assert _sum(samples, "vllm:kv_cache_usage_perc") == 0.85
    assert _sum(samples, "vllm:request_success_total", finished_reason="stop") == 1
    assert not [n for n, _, _ in samples if not n.startswith("vllm:")]


def test_command_line_refuses_a_bad_behaviour() -> None:
    args = [sys.executable, "-m", "controller.demo.model_server", "--variant", "canary", "--route", "r"]
    done = subprocess.run([*args, "--error-rate", "3"], cwd=ROOT, capture_output=True, timeout=30)
    assert done.returncode == 2 and b"error_rate must be between 0 and 1" in done.stderr


@pytest.mark.parametrize(
    ("name", "changed"),
    [
        ("good", {}),
        ("regression", {"eval_pass": pytest.approx(0.8)}),
        ("latency", {"latency": pytest.approx(0.11), "jitter": pytest.approx(0.03)}),
        ("errors", {"error_rate": pytest.approx(0.1)}),
        ("json", {"json_valid": pytest.approx(0.8)}),
        ("disliked", {"liked": pytest.approx(0.6)}),
    ],
    ids=["good", "regression", "latency", "errors", "json", "disliked"],
)
def test_scenarios_change_one_thing(name: str, changed: dict[str, object]) -> None:
    stable = ms.Behaviour(latency=0.02, jitter=0.01, eval_pass=0.9)
    canary = ms.scenario(name, stable)
    diff = {k: v for k, v in dataclasses.asdict(canary).items() if dataclasses.asdict(stable)[k] != v}
    assert diff == changed


def test_unknown_scenario_is_refused() -> None:
    with pytest.raises(ms.BehaviourError, match="unknown scenario 'bad'"):
        ms.scenario("bad", ms.Behaviour())


def test_scenario_switches_live_relative_to_the_baseline(server: ms.Running) -> None:
    base = server.model.behaviour
    regressed = httpx.post(f"{server.url}/admin/scenario", json={"name": "errors"}, timeout=5)
    assert regressed.status_code == 200 and regressed.json()["error_rate"] == pytest.approx(0.1)
    again = httpx.post(f"{server.url}/admin/scenario", json={"name": "errors"}, timeout=5).json()
    assert again["error_rate"] == pytest.approx(0.1)  # relative to the baseline, not cumulative
    assert httpx.post(f"{server.url}/admin/scenario", json={"name": "good"}, timeout=5).json() == (
        dataclasses.asdict(base)
    )
    assert httpx.post(f"{server.url}/admin/scenario", json={"name": "nope"}, timeout=5).status_code == 400


def test_a_child_that_cannot_start_says_why_instead_of_being_waited_for(tmp_path: Path) -> None:
    log = tmp_path / "child.log"
    script = "import sys; print('ModuleNotFoundError: no controller here'); sys.exit(3)"
    with demo.process([sys.executable, "-c", script], log=log) as proc:
        proc.wait(timeout=30)
        with pytest.raises(RuntimeError, match=r"exited with 3: ModuleNotFoundError: no controller here"):
            demo.wait_for("the child", lambda: demo._exited(proc, log), deadline=60)
