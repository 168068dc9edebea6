"""A traffic generator: chat completion requests from several tenants at a target rate, bounded in
count and in time, counting answers per variant (from the `x-rollout-variant` response header). Its
users rate a share of the answers they get (thumbs up when the answer says it is helpful, down when
not), sent to the feedback endpoint of the variant that answered, as an application would record it.

A demo stand-in, not product code: the controller never imports it. It ships in the package for
`rollout demo`; the demo, the tests and the benches use it as a library (`Traffic(...).start()`,
`.stop()`, `.wait()`, `.report()`) or as `python -m controller.demo.loadgen`, which prints the report
as JSON.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent import futures
from dataclasses import dataclass, field

import httpx

VARIANT_HEADER = "x-rollout-variant"
SEGMENT_HEADER = "x-tenant-tier"
UNKNOWN = "unknown"  # an answer without the variant header
DEFAULT_TENANTS = {"free": 5.0, "pro": 3.0, "enterprise": 2.0}


@dataclass(frozen=True)
class Plan:
    """What to send: `rate` requests per second to `url` (the OpenAI base URL, ending in /v1),
    from tenants drawn by weight, until `max_requests` are sent or `duration` seconds pass."""

    url: str
    rate: float = 20.0
    max_requests: int = 1000
    duration: float = 60.0
    tenants: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_TENANTS))
    concurrency: int = 16
    model: str = "demo"
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 30.0
    seed: int = 0
    feedback: Mapping[str, str] = field(default_factory=dict)  # variant -> the URL its answers' ratings go to
    rating_share: float = 0.5  # share of answers their users rate

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.max_requests < 0 or self.duration < 0 or self.concurrency < 1:
            raise ValueError("rate must be > 0; max_requests and duration >= 0; concurrency >= 1")
        if not 0 <= self.rating_share <= 1:
            raise ValueError("rating_share must be between 0 and 1")
        if not self.tenants or any(w <= 0 for w in self.tenants.values()):
            raise ValueError("tenants need positive weights")


@dataclass(frozen=True)
class Report:
    """Answers per variant, failures per variant (status >= 500) and per kind of error."""

    sent: int
    answered: Mapping[str, int]  # variant -> answers with status < 500
    failed: Mapping[str, int]  # variant -> answers with status >= 500
    errors: Mapping[str, int]  # transport error type -> count (no answer at all)
    by_tenant: Mapping[str, int]
    seconds: float
    rated: Mapping[str, Mapping[str, int]] = field(default_factory=dict)  # variant -> "up"/"down" -> ratings

    @property
    def total_failed(self) -> int:
        return sum(self.failed.values()) + sum(self.errors.values())

    def as_json(self) -> dict[str, object]:
        return {
            "sent": self.sent,
            "answered": dict(self.answered),
            "failed": dict(self.failed),
            "errors": dict(self.errors),
            "by_tenant": dict(self.by_tenant),
            "rated": {variant: dict(values) for variant, values in self.rated.items()},
            "seconds": round(self.seconds, 3),
        }


class Traffic:
    """Sends the plan's requests from a pacing thread through a bounded pool of workers."""

    def __init__(self, plan: Plan, *, client: httpx.Client | None = None) -> None:
        self.plan = plan
        self._own_client = client is None
        self._client = client or httpx.Client(
            timeout=plan.timeout,
            limits=httpx.Limits(max_connections=plan.concurrency, max_keepalive_connections=plan.concurrency),
        )
        self._rng = random.Random(plan.seed)
        self._stop = threading.Event()
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._slots = threading.Semaphore(plan.concurrency)
        self._answered: Counter[str] = Counter()
        self._failed: Counter[str] = Counter()
        self._errors: Counter[str] = Counter()
        self._tenants: Counter[str] = Counter()
        self._rated: dict[str, Counter[str]] = {}
        self._sent = 0
        self._started = 0.0
        self._finished = 0.0
        self._thread: threading.Thread | None = None

    def start(self) -> Traffic:
        if self._thread is not None:
            raise RuntimeError("traffic already started")
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="traffic", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> Report:
        """Stop sending, wait for the requests in flight, and report."""
        self._stop.set()
        return self.wait()

    def wait(self, timeout: float | None = None) -> Report:
        """Wait until the plan is done (or stopped); TimeoutError if `timeout` passes first."""
        if self._thread is None:
            raise RuntimeError("traffic not started")
        if not self._done.wait(timeout):
            raise TimeoutError("traffic still running")
        self._thread.join()
        if self._own_client:
            self._client.close()
        return self.report()

    @property
    def running(self) -> bool:
        return self._thread is not None and not self._done.is_set()

    def report(self) -> Report:
        with self._lock:
            end = self._finished or time.monotonic()
            return Report(
                sent=self._sent,
                answered=dict(self._answered),
                failed=dict(self._failed),
                errors=dict(self._errors),
                by_tenant=dict(self._tenants),
                rated={variant: dict(values) for variant, values in self._rated.items()},
                seconds=end - self._started if self._started else 0.0,
            )

    def _run(self) -> None:
        plan = self.plan
        names, weights = list(plan.tenants), list(plan.tenants.values())
        deadline = self._started + plan.duration
        interval = 1.0 / plan.rate
        next_at = self._started
        try:
            with futures.ThreadPoolExecutor(plan.concurrency, thread_name_prefix="traffic-worker") as pool:
                for n in range(plan.max_requests):
                    now = time.monotonic()
                    if now >= deadline or self._stop.is_set():
                        break
                    if next_at > now and self._stop.wait(min(next_at, deadline) - now):
                        break  # pacing: wait for the next request's slot, or for stop()
                    if time.monotonic() >= deadline:
                        break
                    next_at += interval
                    tenant = self._rng.choices(names, weights)[0]
                    rates = self._rng.random() < plan.rating_share
                    self._slots.acquire()
                    with self._lock:
                        self._sent += 1
                        self._tenants[tenant] += 1
                    pool.submit(self._one, n, tenant, rates)
        finally:
            with self._lock:
                self._finished = time.monotonic()
            self._done.set()

    def _one(self, n: int, tenant: str, rates: bool) -> None:
        try:
            body = {
                "model": self.plan.model,
                "messages": [{"role": "user", "content": f"request {n} from a {tenant} tenant"}],
            }
            headers = {SEGMENT_HEADER: tenant, **self.plan.headers}
            try:
                response = self._client.post(
                    f"{self.plan.url.rstrip('/')}/chat/completions", json=body, headers=headers
                )
            except httpx.HTTPError as exc:
                with self._lock:
                    self._errors[type(exc).__name__] += 1
                return
            variant = response.headers.get(VARIANT_HEADER, UNKNOWN)
            with self._lock:
                if response.status_code >= 500:
                    self._failed[variant] += 1
                else:
                    self._answered[variant] += 1
            if rates and response.status_code == 200 and variant in self.plan.feedback:
                self._rate(response, variant, headers)
        finally:
            self._slots.release()

    def _rate(self, response: httpx.Response, variant: str, headers: Mapping[str, str]) -> None:
        """The user's thumbs on an answer: up if it says it is helpful, down if not; an answer that
        does not say is not rated, and a rating that cannot be sent counts as a transport error."""
        try:
            answer = response.json()
            helpful = json.loads(answer["choices"][0]["message"]["content"]).get("helpful")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            return
        if not isinstance(helpful, bool):
            return
        value = "up" if helpful else "down"
        try:
            sent = self._client.post(
                self.plan.feedback[variant], json={"id": answer.get("id"), "value": value}, headers=headers
            )
        except httpx.HTTPError as exc:
            with self._lock:
                self._errors[f"feedback {type(exc).__name__}"] += 1
            return
        with self._lock:
            if sent.is_success:
                self._rated.setdefault(variant, Counter())[value] += 1
            else:
                self._errors[f"feedback {sent.status_code}"] += 1


def parse_tenants(text: str) -> dict[str, float]:
    """`free=5,pro=3,enterprise=2` -> weights; a bare name has weight 1."""
    out: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, _, weight = part.partition("=")
        try:
            out[name.strip()] = float(weight) if weight else 1.0
        except ValueError as exc:
            raise ValueError(f"tenant {part!r}: weight is not a number") from exc
    return out


def parse_pairs(text: str) -> dict[str, str]:
    """`stable=http://a/v1/feedback,canary=http://b/v1/feedback` -> {variant: URL}."""
    out: dict[str, str] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, url = part.partition("=")
        if not sep or not name.strip() or not url.strip():
            raise ValueError(f"feedback {part!r}: expected variant=URL")
        out[name.strip()] = url.strip()
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m controller.demo.loadgen", description=__doc__)
    p.add_argument("--url", required=True, help="OpenAI base URL, e.g. http://127.0.0.1:10000/support-chat/v1")
    p.add_argument("--rate", type=float, default=20.0, help="requests per second")
    p.add_argument("--max-requests", type=int, default=1000)
    p.add_argument("--duration", type=float, default=60.0, help="seconds")
    p.add_argument("--tenants", default="free=5,pro=3,enterprise=2", help="name=weight,...")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--feedback",
        default="",
        help="variant=URL,...: where users' ratings of each variant's answers go (e.g. a model server's /v1/feedback)",
    )
    p.add_argument("--rating-share", type=float, default=0.5, help="share of answers their users rate, 0..1")
    args = p.parse_args(argv)
    try:
        plan = Plan(
            url=args.url,
            rate=args.rate,
            max_requests=args.max_requests,
            duration=args.duration,
            tenants=parse_tenants(args.tenants),
            concurrency=args.concurrency,
            seed=args.seed,
            feedback=parse_pairs(args.feedback),
            rating_share=args.rating_share,
        )
    except ValueError as exc:
        print(f"traffic: {exc}", file=sys.stderr)
        return 2
    traffic = Traffic(plan)
    stop_requested = threading.Event()

    def stop(signum: int, frame: object) -> None:
        stop_requested.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    traffic.start()
    while traffic.running and not stop_requested.wait(0.2):  # poll so a signal can end the wait
        pass
    report = traffic.stop()
    print(json.dumps(report.as_json()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
