"""A stand-in OpenAI-compatible model server that exports the application metrics the gates read.

A demo stand-in, not product code: the controller never imports it. It ships in the package so that
`rollout demo` works from an install, which runs it as `python -m controller.demo.model_server`; the
tests and benches run it that way too, or in-process with `serving()`.

One server is one variant (`stable` or `canary`) of one route; its behaviour (latency, 5xx rate, eval
pass rate, JSON validity, tokens, cost) can be changed live with POST /admin/behaviour (fields) or
POST /admin/scenario (`{"name": "regression"}`, see `scenario()`); POST /admin/behaviour?segment=beta
changes it for that segment's requests only (a regression one tenant tier sees).

It is the application too, for users' feedback: each answer says whether its user finds it helpful
(`liked`, the share who do), and POST /v1/feedback `{"id": <an answer's id>, "value": "up"|"down"}`
counts a user's rating of one of its answers in `llm_feedback_total`, as the README's snippet does.

Metric names and labels follow `controller/templates.py`: `route`, `variant` and a segment label
(default `tenant_tier`, read from the request header `x-tenant-tier`).

With `--vllm-metrics` it is a vLLM server instead, as Prometheus sees one: its /metrics exports vLLM's
series (`vllm:request_success_total{finished_reason}`, `vllm:e2e_request_latency_seconds` and
`vllm:time_to_first_token_seconds` with vLLM's bucket bounds, `vllm:num_preemptions_total`,
`vllm:kv_cache_usage_perc`) labelled `model_name` and `engine` only, and no application series: the
scrape config adds `route` and `variant`. It answers in one piece, so its first token comes with the
whole answer (time to first token = latency); `preemption_rate` is the share of requests preempted
once, `kv_cache` the KV cache usage it reports.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import http.server
import json
import random
import re
import signal
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import prometheus_client
from prometheus_client import exposition

VARIANT_HEADER = "x-rollout-variant"
SEGMENT_HEADER = "x-tenant-tier"
SEGMENT_LABEL = "tenant_tier"
NO_SEGMENT = "none"  # the segment of a request without the header
#: Latency buckets in seconds: fine enough for a useful p95 from 5 ms to a minute.
LATENCY_BUCKETS = (
    *(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75),
    *(1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 20.0, 30.0, 60.0),
)
#: vLLM's own bounds (vllm/v1/metrics/loggers.py), as `controller.templates` knows them.
VLLM_E2E_BUCKETS = (
    *(0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0),
    *(40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0),
)
VLLM_TTFT_BUCKETS = (
    *(0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0),
    *(2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0),
)
VLLM_FINISHED_REASONS = ("stop", "length", "abort", "error", "repetition")


class BehaviourError(ValueError):
    """A behaviour field is unknown or out of range."""


@dataclass(frozen=True)
class Behaviour:
    """How the stand-in model answers. Rates are fractions 0..1; latency in seconds."""

    latency: float = 0.02  # base latency of every answer
    jitter: float = 0.01  # plus a uniform 0..jitter
    error_rate: float = 0.0  # share of requests answered 500
    eval_pass: float = 0.9  # share of answers the online eval passes
    json_valid: float = 1.0  # share of answers that are valid JSON
    tokens: int = 200  # completion tokens per answer
    cost_per_1k: float = 0.002  # USD per 1000 tokens, prompt and completion
    liked: float = 0.9  # share of answers their user finds helpful (rates up, if they rate it)
    preemption_rate: float = 0.0  # with vLLM metrics: share of requests preempted once (KV cache full)
    kv_cache: float = 0.3  # with vLLM metrics: the KV cache usage it reports, 0..1
    exact: bool = True  # rates exact per segment (error diffusion), not random draws

    def replace(self, changes: Mapping[str, Any]) -> Behaviour:
        """A copy with `changes` applied and checked; unknown fields and bad values raise BehaviourError."""
        fields = {f.name: f for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - set(fields))
        if unknown:
            raise BehaviourError(f"unknown behaviour field(s): {', '.join(unknown)}")
        values = dataclasses.asdict(self)
        for name, raw in changes.items():
            current = values[name]
            if isinstance(current, bool):
                if not isinstance(raw, bool):
                    raise BehaviourError(f"{name} must be true or false")
                values[name] = raw
            elif isinstance(current, int):
                if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
                    raise BehaviourError(f"{name} must be a whole number >= 0")
                values[name] = raw
            else:
                if isinstance(raw, bool) or not isinstance(raw, int | float) or raw < 0:
                    raise BehaviourError(f"{name} must be a number >= 0")
                values[name] = float(raw)
        for name in ("error_rate", "eval_pass", "json_valid", "liked", "preemption_rate", "kv_cache"):
            if values[name] > 1:
                raise BehaviourError(f"{name} must be between 0 and 1")
        return Behaviour(**values)


def scenario(name: str, baseline: Behaviour) -> Behaviour:
    """The canary of a demo scenario: `baseline` (stable's behaviour) changed in one way.

    good: the same; regression: eval pass 10 points lower; latency: three times slower;
    errors: 10% answered 500; json: 20% of answers invalid JSON; disliked: 30 points fewer answers
    their users find helpful (every machine metric unchanged).
    """
    match name:
        case "good":
            return baseline
        case "regression":
            return baseline.replace({"eval_pass": max(0.0, baseline.eval_pass - 0.10)})
        case "latency":
            return baseline.replace({"latency": baseline.latency * 3 + 0.05, "jitter": baseline.jitter * 3})
        case "errors":
            return baseline.replace({"error_rate": min(1.0, baseline.error_rate + 0.10)})
        case "json":
            return baseline.replace({"json_valid": max(0.0, baseline.json_valid - 0.20)})
        case "disliked":
            return baseline.replace({"liked": max(0.0, baseline.liked - 0.30)})
    raise BehaviourError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")


SCENARIOS = ("good", "regression", "latency", "errors", "json", "disliked")
FEEDBACK_VALUES = ("up", "down")
UNRATED_KEPT = 100_000  # answers a rating can still name: the latest ones
_ANSWER_ID = re.compile(r"chatcmpl-[a-z]+-[0-9]+")  # an answer of any stand-in


class _Outcomes:
    """Decides yes/no for a rate, per key: exact (error diffusion) or random."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._carry: dict[tuple[str, ...], float] = {}

    def draw(self, key: tuple[str, ...], rate: float, *, exact: bool) -> bool:
        if not exact:
            return self._rng.random() < rate
        carry = self._carry.get(key, 0.0) + rate
        hit = carry >= 1.0 - 1e-9
        self._carry[key] = carry - 1.0 if hit else carry
        return hit


class Metrics:
    """The application metrics of one server, in its own registry."""

    def __init__(self, *, segment_label: str) -> None:
        self.registry = prometheus_client.CollectorRegistry()
        labels = ["route", "variant", segment_label]
        r = self.registry
        self.requests = prometheus_client.Counter(
            "llm_requests", "Requests answered, by outcome.", [*labels, "outcome"], registry=r
        )
        self.duration = prometheus_client.Histogram(
            "llm_request_duration_seconds", "Request latency.", labels, buckets=LATENCY_BUCKETS, registry=r
        )
        self.evals = prometheus_client.Counter(
            "llm_eval_results", "Online eval verdicts on answers.", [*labels, "result"], registry=r
        )
        self.schema = prometheus_client.Counter(
            "llm_schema_checks", "Structured-output checks on answers.", [*labels, "result"], registry=r
        )
        self.tokens = prometheus_client.Counter("llm_tokens", "Prompt and completion tokens.", labels, registry=r)
        self.cost = prometheus_client.Counter("llm_cost_usd", "Spend in USD.", labels, registry=r)
        self.feedback = prometheus_client.Counter(
            "llm_feedback", "Users' thumbs up and down on answers.", [*labels, "value"], registry=r
        )

    def init(self, route: str, variant: str, segment: str) -> None:
        """Create every series of one segment at 0, so that `increase()` counts the first requests."""
        base = (route, variant, segment)
        for outcome in ("ok", "error"):
            self.requests.labels(*base, outcome)
        for result in ("pass", "fail"):
            self.evals.labels(*base, result)
        for result in ("valid", "invalid"):
            self.schema.labels(*base, result)
        for value in FEEDBACK_VALUES:
            self.feedback.labels(*base, value)
        self.duration.labels(*base)
        self.tokens.labels(*base)
        self.cost.labels(*base)


class VllmMetrics:
    """vLLM's own series of one server, in its own registry, labelled as vLLM labels them."""

    def __init__(self, *, model: str) -> None:
        self.registry = prometheus_client.CollectorRegistry()
        labels, r = ["model_name", "engine"], self.registry
        self.base = (model, "0")
        self.finished = prometheus_client.Counter(
            "vllm:request_success",
            "Count of successfully processed requests.",
            [*labels, "finished_reason"],
            registry=r,
        )
        self.preemptions = prometheus_client.Counter(
            "vllm:num_preemptions", "Cumulative number of preemption from the engine.", labels, registry=r
        )
        self.e2e = prometheus_client.Histogram(
            "vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", labels,
            buckets=VLLM_E2E_BUCKETS, registry=r,
        )  # fmt: skip
        self.ttft = prometheus_client.Histogram(
            "vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", labels,
            buckets=VLLM_TTFT_BUCKETS, registry=r,
        )  # fmt: skip
        self.kv_cache = prometheus_client.Gauge(
            "vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", labels, registry=r
        )
        for reason in VLLM_FINISHED_REASONS:  # created at 0, as vLLM does, so increase() counts the first
            self.finished.labels(*self.base, reason)
        self.preemptions.labels(*self.base)
        self.e2e.labels(*self.base)
        self.ttft.labels(*self.base)

    def record(self, *, failed: bool, preempted: bool, kv_cache: float) -> None:
        self.finished.labels(*self.base, "error" if failed else "stop").inc()
        if preempted:
            self.preemptions.labels(*self.base).inc()
        self.kv_cache.labels(*self.base).set(kv_cache)

    def observe(self, seconds: float) -> None:
        self.e2e.labels(*self.base).observe(seconds)
        self.ttft.labels(*self.base).observe(seconds)  # one piece: the first token is the whole answer


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]


class Model:
    """The server's state: who it is, how it behaves now, and its metrics. Thread-safe."""

    def __init__(
        self,
        *,
        variant: str,
        route: str,
        model: str,
        behaviour: Behaviour,
        segments: Sequence[str] = (),
        segment_label: str = SEGMENT_LABEL,
        seed: int = 0,
        baseline: Behaviour | None = None,
        vllm_metrics: bool = False,
    ) -> None:
        self.variant = variant
        self.route = route
        self.model = model
        self.segment_label = segment_label
        self.metrics = Metrics(segment_label=segment_label)
        self._lock = threading.Lock()
        self._behaviour = behaviour
        self._by_segment: dict[str, Behaviour] = {}  # segments that behave otherwise than the rest
        self.baseline = baseline or behaviour  # what a scenario changes (default: the starting behaviour)
        self._rng = random.Random(seed)
        self._outcomes = _Outcomes(self._rng)
        self.served = 0
        self._id_prefix = f"chatcmpl-{variant}-"
        self._unrated: collections.OrderedDict[int, str] = collections.OrderedDict()  # answer -> its segment
        self._rated_elsewhere: collections.OrderedDict[str, None] = collections.OrderedDict()  # others' answers
        for segment in segments or (NO_SEGMENT,):  # the configured ones; "none" only without any
            self.metrics.init(route, variant, segment)
        self.vllm = VllmMetrics(model=model) if vllm_metrics else None  # a vLLM server: exports these instead
        if self.vllm is not None:
            self.vllm.kv_cache.labels(*self.vllm.base).set(behaviour.kv_cache)

    @property
    def registry(self) -> prometheus_client.CollectorRegistry:
        """What /metrics exports: vLLM's series for a vLLM server, else the application's."""
        return self.vllm.registry if self.vllm is not None else self.metrics.registry

    @property
    def behaviour(self) -> Behaviour:
        with self._lock:
            return self._behaviour

    def behaviour_of(self, segment: str) -> Behaviour:
        with self._lock:
            return self._by_segment.get(segment, self._behaviour)

    def set_behaviour(self, changes: Mapping[str, Any], *, segment: str = "") -> Behaviour:
        """Change how every request is answered or, with `segment`, that segment's requests only."""
        with self._lock:
            if segment:
                self._by_segment[segment] = self._by_segment.get(segment, self._behaviour).replace(changes)
                return self._by_segment[segment]
            self._behaviour = self._behaviour.replace(changes)
            return self._behaviour

    def set_scenario(self, name: str) -> Behaviour:
        """Switch to a demo scenario, relative to the behaviour this server started with."""
        changed = scenario(name, self.baseline)
        with self._lock:
            self._behaviour = changed
            return changed

    def answer(self, request: Mapping[str, Any], *, segment: str) -> tuple[Answer, float]:
        """The answer to one chat completion request and how long to wait before sending it."""
        with self._lock:
            b = self._by_segment.get(segment, self._behaviour)
            delay = b.latency + self._rng.uniform(0, b.jitter) if b.jitter else b.latency
            failed = self._outcomes.draw(("error", segment), b.error_rate, exact=b.exact)
            passed = self._outcomes.draw(("eval", segment), b.eval_pass, exact=b.exact) if not failed else False
            valid = self._outcomes.draw(("json", segment), b.json_valid, exact=b.exact) if not failed else False
            helpful = self._outcomes.draw(("liked", segment), b.liked, exact=b.exact) if not failed else False
            # drawn only for a vLLM server, so an application server's random draws stay as they were
            preempted = self.vllm is not None and self._outcomes.draw(
                ("preempt", segment), b.preemption_rate, exact=b.exact
            )
            self.served += 1
            n = self.served
            if not failed:
                self._unrated[n] = segment
                if len(self._unrated) > UNRATED_KEPT:
                    self._unrated.popitem(last=False)
        labels = (self.route, self.variant, segment)
        if self.vllm is not None:
            self.vllm.record(failed=failed, preempted=preempted, kv_cache=b.kv_cache)
        if failed:
            self.metrics.requests.labels(*labels, "error").inc()
            return Answer(500, {"error": {"message": "stand-in model failure", "type": "server_error"}}), delay
        prompt_tokens = max(1, len(json.dumps(request.get("messages", []))) // 4)
        total = prompt_tokens + b.tokens
        content = json.dumps(
            {"answer": f"{self.variant} answer {n}", "eval": "pass" if passed else "fail", "helpful": helpful}
        )
        if not valid:
            content = content[: len(content) // 2]  # truncated JSON
        m = self.metrics
        m.requests.labels(*labels, "ok").inc()
        m.evals.labels(*labels, "pass" if passed else "fail").inc()
        m.schema.labels(*labels, "valid" if valid else "invalid").inc()
        m.tokens.labels(*labels).inc(total)
        m.cost.labels(*labels).inc(total / 1000 * b.cost_per_1k)
        body = {
            "id": f"{self._id_prefix}{n}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": str(request.get("model") or self.model),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": b.tokens, "total_tokens": total},
        }
        return Answer(200, body), delay

    def rate(self, request: Mapping[str, Any], *, segment: str) -> Answer:
        """A user's rating of an answer this variant served: `{"id": ..., "value": "up"|"down"}`, counted
        once per answer. One of this server's own answers counts in the segment of the request it
        answered; one another stand-in gave as this variant (after a completion, Envoy's stable cluster
        is the canary's server, and its answers say `stable`) counts in the rating request's `segment`."""
        value, answer_id = request.get("value"), str(request.get("id", ""))
        if value not in FEEDBACK_VALUES:
            return Answer(400, {"error": {"message": "value must be up or down", "type": "invalid_request_error"}})
        number = answer_id.removeprefix(self._id_prefix)
        with self._lock:
            if number != answer_id:
                found = self._unrated.pop(int(number), None) if number.isdigit() else None
            elif _ANSWER_ID.fullmatch(answer_id) and answer_id not in self._rated_elsewhere:
                found = segment
                self._rated_elsewhere[answer_id] = None
                if len(self._rated_elsewhere) > UNRATED_KEPT:
                    self._rated_elsewhere.popitem(last=False)
            else:
                found = None
        segment = found or ""
        if found is None:
            message = f"no answer {answer_id!r} of this server to rate (unknown, or rated already)"
            return Answer(404, {"error": {"message": message, "type": "not_found"}})
        self.metrics.feedback.labels(self.route, self.variant, segment, value).inc()
        return Answer(200, {"id": answer_id, "value": value})

    def observe(self, segment: str, seconds: float) -> None:
        self.metrics.duration.labels(self.route, self.variant, segment).observe(seconds)
        if self.vllm is not None:
            self.vllm.observe(seconds)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        model = self.server.model
        if path == "/healthz":
            self._send(200, {"status": "ok", "variant": model.variant, "route": model.route})
        elif path == "/metrics":
            body = exposition.generate_latest(model.registry)
            self._send_bytes(200, body, exposition.CONTENT_TYPE_LATEST)
        elif path == "/admin/behaviour":
            self._send(200, dataclasses.asdict(model.behaviour_of(self._segment_param())))
        elif path == "/v1/models":
            self._send(200, {"object": "list", "data": [{"id": model.model, "object": "model", "owned_by": "demo"}]})
        else:
            self._send(404, {"error": {"message": f"no such path {path}", "type": "not_found"}})

    def do_POST(self) -> None:
        started = time.monotonic()
        path = self.path.split("?", 1)[0]
        try:
            request = self._json()
        except ValueError as exc:
            self._send(400, {"error": {"message": str(exc), "type": "invalid_request_error"}})
            return
        model = self.server.model
        if path in ("/admin/behaviour", "/admin/scenario"):
            try:
                if path == "/admin/scenario":
                    behaviour = model.set_scenario(str(request.get("name", "")))
                else:
                    behaviour = model.set_behaviour(request, segment=self._segment_param())
            except BehaviourError as exc:
                self._send(400, {"error": {"message": str(exc), "type": "invalid_request_error"}})
                return
            self._send(200, dataclasses.asdict(behaviour))
            return
        segment = self.headers.get(SEGMENT_HEADER) or NO_SEGMENT
        if path == "/v1/feedback":
            rated = model.rate(request, segment=segment)
            self._send(rated.status, rated.body)
            return
        if path != "/v1/chat/completions":
            self._send(404, {"error": {"message": f"no such path {path}", "type": "not_found"}})
            return
        answer, delay = model.answer(request, segment=segment)
        if self.server.stopping.wait(delay):
            answer = Answer(503, {"error": {"message": "shutting down", "type": "server_error"}})
        model.observe(segment, time.monotonic() - started)
        self._send(answer.status, answer.body)

    def _segment_param(self) -> str:
        """The `segment` query parameter of an admin request, or '' for every segment."""
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        return query.get("segment", [""])[0]

    def _json(self) -> dict[str, Any]:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b"{}"
        try:
            data = json.loads(raw or b"{}")
        except json.JSONDecodeError as exc:
            raise ValueError(f"the body is not JSON: {exc.msg}") from exc
        if not isinstance(data, dict):
            raise ValueError("the body must be a JSON object")
        return data

    def _send(self, status: int, body: Mapping[str, Any]) -> None:
        self._send_bytes(status, json.dumps(body).encode(), "application/json")

    def _send_bytes(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.send_header(VARIANT_HEADER, self.server.model.variant)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, model: Model, *, host: str, port: int) -> None:
        super().__init__((host, port), _Handler)
        self.model = model
        self.stopping = threading.Event()


@dataclass
class Running:
    """A model server serving in a thread of this process."""

    model: Model
    server: _Server
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def stop(self) -> None:
        self.server.stopping.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def start(model: Model, *, host: str = "127.0.0.1", port: int = 0) -> Running:
    if host not in ("127.0.0.1", "::1", "localhost"):
        raise ValueError(f"the stand-in serves on loopback only, not {host!r}")
    server = _Server(model, host=host, port=port)
    thread = threading.Thread(target=server.serve_forever, name=f"model-{model.variant}", daemon=True)
    thread.start()
    return Running(model, server, thread)


@contextlib.contextmanager
def serving(model: Model, *, port: int = 0) -> Iterator[Running]:
    running = start(model, port=port)
    try:
        yield running
    finally:
        running.stop()


# -- the command line --------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    d = Behaviour()
    p = argparse.ArgumentParser(prog="python -m controller.demo.model_server", description=__doc__)
    p.add_argument("--variant", required=True, help="stable or canary: the value of the variant label")
    p.add_argument("--route", required=True, help="the route label (the rollout's spec.route)")
    p.add_argument("--model", default="", help="the model id it answers as (default: demo/<variant>)")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--port-file", type=Path, help="write the bound port here (atomically) once serving")
    p.add_argument("--segments", default="", help="segment values to create at 0, comma-separated")
    p.add_argument("--segment-label", default=SEGMENT_LABEL)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--latency", type=float, default=d.latency, help="base latency in seconds")
    p.add_argument("--jitter", type=float, default=d.jitter, help="plus uniform 0..jitter seconds")
    p.add_argument("--error-rate", type=float, default=d.error_rate, help="share of 500 answers, 0..1")
    p.add_argument("--eval-pass", type=float, default=d.eval_pass, help="share of evals passed, 0..1")
    p.add_argument("--json-valid", type=float, default=d.json_valid, help="share of valid JSON answers, 0..1")
    p.add_argument("--tokens", type=int, default=d.tokens, help="completion tokens per answer")
    p.add_argument("--cost-per-1k", type=float, default=d.cost_per_1k, help="USD per 1000 tokens")
    p.add_argument("--liked", type=float, default=d.liked, help="share of answers users find helpful, 0..1")
    p.add_argument("--random", action="store_true", help="draw outcomes at random instead of exact rates")
    p.add_argument(
        "--vllm-metrics",
        action="store_true",
        help="be a vLLM server: export vLLM's vllm:* series (labelled model_name, engine) instead of the application's",
    )
    p.add_argument(
        "--preemption-rate", type=float, default=d.preemption_rate, help="with --vllm-metrics: share preempted, 0..1"
    )
    p.add_argument("--kv-cache", type=float, default=d.kv_cache, help="with --vllm-metrics: KV cache usage, 0..1")
    p.add_argument(
        "--scenario",
        choices=SCENARIOS,
        default="good",
        help="start in this demo scenario, relative to the behaviour the other flags give",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]  # own process: no *_created
    try:
        behaviour = Behaviour().replace(
            {
                "latency": args.latency,
                "jitter": args.jitter,
                "error_rate": args.error_rate,
                "eval_pass": args.eval_pass,
                "json_valid": args.json_valid,
                "tokens": args.tokens,
                "cost_per_1k": args.cost_per_1k,
                "liked": args.liked,
                "preemption_rate": args.preemption_rate,
                "kv_cache": args.kv_cache,
                "exact": not args.random,
            }
        )
    except BehaviourError as exc:
        print(f"model_server: {exc}", file=sys.stderr)
        return 2
    baseline = behaviour
    try:
        behaviour = scenario(args.scenario, baseline)
    except BehaviourError as exc:
        print(f"model_server: {exc}", file=sys.stderr)
        return 2
    model = Model(
        variant=args.variant,
        route=args.route,
        model=args.model or f"demo/{args.variant}",
        behaviour=behaviour,
        segments=[s for s in args.segments.split(",") if s],
        segment_label=args.segment_label,
        seed=args.seed,
        baseline=baseline,  # /admin/scenario good returns to the flags' behaviour
        vllm_metrics=args.vllm_metrics,
    )
    running = start(model, port=args.port)
    done = threading.Event()

    def stop(signum: int, frame: object) -> None:
        done.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if args.port_file:
        tmp = args.port_file.with_name(args.port_file.name + ".tmp")
        tmp.write_text(str(running.port))
        tmp.replace(args.port_file)
    print(f"model_server {args.variant} of route {args.route} on {running.url}", flush=True)
    try:
        done.wait()
    finally:
        running.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
