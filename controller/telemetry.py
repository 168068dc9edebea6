"""The controller's own metrics and health: what `rollout run` serves on /metrics and /healthz.

Called by the CLI after each tick (`record`). A tick whose every rollout acted without an adapter
error counts as good; /healthz answers 503 when the last good tick is older than three intervals.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from controller import gates, reconcile


class Telemetry:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.tick_seconds = Histogram(
            "rollout_tick_duration_seconds",
            "Wall time of one reconcile tick.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
            registry=self.registry,
        )
        self.decisions = Counter(
            "rollout_decisions", "Decisions taken, by rollout and kind.", ["rollout", "kind"], registry=self.registry
        )
        self.errors = Counter("rollout_errors", "Errors by adapter.", ["adapter"], registry=self.registry)
        self.last_good = Gauge(
            "rollout_last_good_tick_timestamp_seconds",
            "When the last tick without errors ended.",
            registry=self.registry,
        )
        self.canary_weight = Gauge(
            "rollout_canary_weight", "The live canary weight, percent.", ["rollout", "route"], registry=self.registry
        )
        self.step = Gauge("rollout_step", "The current step, 0-based.", ["rollout"], registry=self.registry)
        self.router_retries = Counter(
            "rollout_router_write_retries",
            "Router writes retried with backoff (a rollback or heal the router did not confirm at once).",
            ["rollout"],
            registry=self.registry,
        )
        self.rollback_unconfirmed = Gauge(
            "rollout_rollback_unconfirmed",
            "1 while a rollback is decided but the router has not confirmed the canary is out.",
            ["rollout"],
            registry=self.registry,
        )
        self.unmeasured = Gauge(
            "rollout_gates_unmeasured",
            "Gates of a rollout that could not be measured in the last tick (e.g. Prometheus down): it holds.",
            ["rollout"],
            registry=self.registry,
        )
        self.fleet_pass_seconds = Gauge(
            "rollout_fleet_pass_seconds",
            "A fleet member's last pass: sync with the coordinator, then a tick of every repository it serves.",
            registry=self.registry,
        )
        self.fleet_passes = Counter("rollout_fleet_passes", "Passes a fleet member completed.", registry=self.registry)
        self.fleet_shards = Gauge(
            "rollout_fleet_shards_owned", "Shards this fleet member owns.", registry=self.registry
        )
        self.fleet_members = Gauge(
            "rollout_fleet_members", "The fleet's live members, as this member last saw them.", registry=self.registry
        )
        self.notifications = Counter(
            "rollout_notifications",
            "Notification messages by destination type and what became of them (delivered, retried, failed, "
            "rejected, dropped, unconfigured).",
            ["destination_type", "outcome"],
            registry=self.registry,
        )
        self.interval = 60.0

    def record(self, tick: reconcile.Tick, *, repository: str = "") -> None:
        """A tick's metrics. A fleet's member names the repository of a tick other than home's, so that
        two repositories' rollouts of one name are two series (`team-a/faq-bot`)."""
        self.tick_seconds.observe(tick.duration)
        bad = False
        for outcome in tick.outcomes:
            if repository:
                outcome = dataclasses.replace(outcome, rollout=f"{repository}/{outcome.rollout}")
            if outcome.decision is not None:
                self.decisions.labels(outcome.rollout, outcome.decision.kind.value).inc()
            if outcome.error:
                bad = True
                self.errors.labels(outcome.adapter or "controller").inc()
            self._record_router(outcome)
            if outcome.decision is not None:
                self.unmeasured.labels(outcome.rollout).set(
                    sum(1 for e in outcome.evidence if e.verdict is gates.Verdict.ERROR)
                )
            if outcome.decision is not None and outcome.step is not None:
                self.step.labels(outcome.rollout).set(outcome.step)
            if outcome.live is not None:
                route = outcome.decision.route if outcome.decision and outcome.decision.route else outcome.live
                self.canary_weight.labels(outcome.rollout, outcome.route).set(route.weight("canary"))
        if not bad and not tick.skipped:
            self.last_good.set(time.time())

    def count_notification(self, destination_type: str, outcome: str) -> None:
        """`notifier.Dispatcher.counted`: one message's outcome (called from its thread)."""
        self.notifications.labels(destination_type, outcome).inc()

    def _record_router(self, outcome: reconcile.Outcome) -> None:
        if outcome.router_attempts > 1:
            self.router_retries.labels(outcome.rollout).inc(outcome.router_attempts - 1)
        if outcome.router_attempts or outcome.rollback_unconfirmed:
            self.rollback_unconfirmed.labels(outcome.rollout).set(1 if outcome.rollback_unconfirmed else 0)

    def healthy(self) -> bool:
        last = self.last_good._value.get()  # the gauge's own value; no public getter exists
        return bool(last) and time.time() - last < 3 * self.interval

    def respond(self, path: str) -> tuple[int, str, bytes] | None:
        """(status, content type, body) of /metrics or /healthz; None for any other path."""
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, generate_latest(self.registry)
        if path == "/healthz":
            ok = self.healthy()
            return (200, "text/plain", b"ok\n") if ok else (503, "text/plain", b"no good tick recently\n")
        return None

    def serve(self, port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
        """/metrics and /healthz alone (`rollout run` serves them with the dashboard's pages)."""
        telemetry = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                code, kind, body = telemetry.respond(self.path) or (404, "text/plain", b"not found\n")
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer((host, port), Handler)
        threading.Thread(target=server.serve_forever, daemon=True, name="rollout-telemetry").start()
        return server
