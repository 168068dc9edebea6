"""The notification adapter: posts `notify` events to the webhooks controller.yaml names, each destination
on a thread of its own, from a bounded queue, retried with backoff. Built once per process by the CLI and handed to
every `reconcile.Controller`; a tick only queues (`post`), never waits and never fails for it.

The webhook URLs and headers come from the environment and are secrets: no log line, error or metric
label carries them, only the name of the variable that holds them.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from controller import notify, settings, spec

log = logging.getLogger("rollout.notify")

#: What happened to a message, as `rollout_notifications{outcome}` counts it.
DELIVERED = "delivered"  # the receiver answered 2xx
RETRIED = "retried"  # a try failed (not answered, 429 or 5xx) and another follows
FAILED = "failed"  # every try failed: given up
REJECTED = "rejected"  # the receiver answered another 4xx: not tried again
DROPPED = "dropped"  # the queue was full (the oldest goes), or the process exited first
UNCONFIGURED = "unconfigured"  # its environment variable is unset or malformed: not sent

BODY_LIMIT = 4096  # bytes of an answer's body read at most (its status is what counts)


@dataclass(frozen=True)
class _Job:
    kind: str  # the destination's type: slack, webhook
    label: str  # how logs name it: `slack ($ROLLOUT_SLACK_WEBHOOK)`, never its URL
    url: str = field(repr=False)  # a secret
    headers: Mapping[str, str] = field(repr=False)  # a secret
    body: bytes
    about: str  # `support-bot rollback`, for the log


@dataclass
class _Lane:
    """One destination's queue and the daemon thread that delivers it, one message at a time: a receiver
    that hangs holds its own lane only, never another destination's."""

    queue: deque[_Job] = field(default_factory=deque)
    busy: bool = False  # a message is being delivered
    thread: threading.Thread | None = None


class _Late(Exception):
    """A try not over within `knobs.timeout` seconds in all (a receiver that hangs, or trickles bytes)."""


class Dispatcher:
    """A `notify.Sink`: `post` queues one message per destination and returns at once; a daemon thread per
    destination delivers its messages one at a time. `close` waits at most `knobs.flush` seconds for
    what is queued."""

    def __init__(
        self,
        *,
        env: Mapping[str, str],
        knobs: settings.Notifications | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] | None = None,
        counted: Callable[[str, str], None] | None = None,
    ) -> None:
        self.env = env
        self.knobs = knobs or settings.Notifications()
        # The transport, not an httpx.Client: a client logs every request's URL at INFO, and a webhook's
        # URL is its secret. No redirect is followed.
        self._transport = transport or httpx.HTTPTransport()
        self._timeout = httpx.Timeout(self.knobs.timeout).as_dict()
        self._sleep = sleep or self._wait
        self.counted = counted or (lambda kind, outcome: None)  # the CLI points it at telemetry
        self._lanes: dict[str, _Lane] = {}  # by destination (its label: type and variable)
        self._lock = threading.Condition()
        self._closing = threading.Event()  # `close` was called: no new message is taken
        self._deadline: float | None = None  # when `close` gives up (time.monotonic)
        self._abandon = threading.Event()  # the deadline passed: no more retries
        self._warned: set[str] = set()

    # -- the tick's side: never blocks, never raises ----------------------------------------------

    def post(self, destinations: Sequence[spec.NotificationConfig], event: notify.Event) -> None:
        for d in notify.wanted(destinations, event):
            try:
                job = self._job(d, event)
            except Exception as exc:  # a bug in building a body must not reach the tick
                log.error("notification %s: could not be built", _label(d), exc_info=exc)
                continue
            if job is None:
                self.counted(d.type, UNCONFIGURED)
                continue
            self._enqueue(job)

    def check(self, destinations: Sequence[spec.NotificationConfig]) -> None:
        """Warn now (once per variable) of a destination whose environment variable is unset or
        malformed, rather than at its first event; a tick goes on either way."""
        for d in destinations:
            if self._url(d) is not None and isinstance(d, spec.WebhookNotification):
                self._extra_headers(d)

    def _job(self, d: spec.NotificationConfig, event: notify.Event) -> _Job | None:
        label = _label(d)
        url = self._url(d)
        if url is None:
            return None
        headers = {"Content-Type": "application/json", "User-Agent": "rollout-controller"}
        match d:
            case spec.SlackNotification():
                body = notify.slack(event)
            case spec.WebhookNotification():
                body = notify.payload(event)
                extra = self._extra_headers(d)
                if extra is None:
                    return None
                headers.update(extra)
        data = json.dumps(body, ensure_ascii=False, allow_nan=False).encode("utf-8")
        return _Job(d.type, label, url, headers, data, f"{event.rollout} {event.action.value}")

    def _url(self, d: spec.NotificationConfig) -> str | None:
        """The destination's URL, or None (warned once, naming only the variable) when its variable is
        unset or holds no http(s) URL httpx can post to: the URL is parsed here, so that a malformed one
        never fails later with an error quoting it."""
        text = self.env.get(d.url_env, "").strip()
        try:
            url = httpx.URL(text)
            ok = url.scheme in ("http", "https") and bool(url.host)
        except Exception:  # InvalidURL and kin: their text quotes the URL
            ok = False
        if not ok:
            what = "is not set" if not text else "does not hold an http(s) URL"
            self._warn_once(d.url_env, f"notification {_label(d)}: ${d.url_env} {what}; nothing is posted there")
            return None
        return text

    def _extra_headers(self, d: spec.WebhookNotification) -> dict[str, str] | None:
        """The headers its `headersEnv` adds ({} when none), or None (warned once) when malformed."""
        if d.headers_env is None:
            return {}
        extra = _headers(self.env.get(d.headers_env, ""))
        if extra is None:
            self._warn_once(d.headers_env, _bad_headers(d))
        return extra

    def _enqueue(self, job: _Job) -> None:
        with self._lock:
            if self._closing.is_set():
                self.counted(job.kind, DROPPED)
                return
            lane = self._lanes.setdefault(job.label, _Lane())
            if len(lane.queue) >= max(1, self.knobs.queue):
                old = lane.queue.popleft()
                self.counted(old.kind, DROPPED)
                log.warning("notification %s for %s dropped: the queue is full", old.label, old.about)
            lane.queue.append(job)
            self._lock.notify_all()
            if lane.thread is None:
                lane.thread = threading.Thread(target=self._work, args=(lane,), daemon=True, name="rollout-notify")
                lane.thread.start()

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning("%s", message)

    # -- the thread's side ------------------------------------------------------------------------

    def _work(self, lane: _Lane) -> None:
        while True:
            with self._lock:
                while not lane.queue and not self._closing.is_set():
                    self._lock.wait()
                if not lane.queue:
                    return
                job = lane.queue.popleft()
                lane.busy = True
            try:
                self.counted(job.kind, self._deliver(job))
            except Exception as exc:  # never let the thread die: the next message still goes
                # No traceback: its frames and text may quote the URL or headers.
                log.error("notification %s for %s: unexpected error (%s)", job.label, job.about, type(exc).__name__)
                self.counted(job.kind, FAILED)
            finally:
                with self._lock:
                    lane.busy = False
                    self._lock.notify_all()

    def _deliver(self, job: _Job) -> str:
        """Try `job` up to `attempts` times; the outcome. Logs name the destination by its variable."""
        attempts = max(1, self.knobs.attempts)
        why = ""
        for n in range(attempts):
            wait: float | None = None
            try:
                code, asked = self._post(job)
            except _Late:
                why = f"not answered within {self.knobs.timeout:g} s"
            except Exception as exc:  # not answered (refused, timed out...): its text may quote the URL
                why = f"not answered ({type(exc).__name__})"
            else:
                if 200 <= code < 300:
                    return DELIVERED
                why = f"HTTP {code}"
                if code != 429 and code < 500:
                    log.warning("notification %s for %s refused (%s): not tried again", job.label, job.about, why)
                    return REJECTED
                wait = retry_after(asked, now=datetime.now(UTC))
            # The backoff, or longer when the receiver asks for it (never shorter: `Retry-After: 0` is
            # no reason to hammer it), capped.
            delay = min(self.knobs.max_wait, max(self.knobs.first_wait * 2**n, wait or 0.0))
            late = self._deadline is not None and time.monotonic() + delay > self._deadline
            if n + 1 >= attempts or self._abandon.is_set() or late:
                break
            self.counted(job.kind, RETRIED)
            self._sleep(delay)
        log.warning("notification %s for %s given up after %d tries: %s", job.label, job.about, n + 1, why)
        return FAILED

    def _post(self, job: _Job) -> tuple[int, str | None]:
        """One try: the answer's status and Retry-After, within `knobs.timeout` seconds in all (httpx's
        timeout bounds each socket read only, so a receiver trickling a byte at a time would hold the lane
        for ever). The try runs on a thread of its own that the lane stops waiting for at the deadline
        (`_Late`); left alone, that thread stops reading the body at the deadline, or at BODY_LIMIT bytes,
        and its connection ends at httpx's per-read timeout at the latest."""
        deadline = time.monotonic() + self.knobs.timeout
        got: list[tuple[int, str | None] | Exception] = []
        done = threading.Event()

        def attempt() -> None:
            try:
                got.append(self._exchange(job, deadline))
            except Exception as exc:  # handed to the lane, which logs its type only
                got.append(exc)
            finally:
                done.set()

        threading.Thread(target=attempt, daemon=True, name="rollout-notify-post").start()
        if not done.wait(self.knobs.timeout):
            raise _Late()
        answer = got[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def _exchange(self, job: _Job, deadline: float) -> tuple[int, str | None]:
        request = httpx.Request("POST", job.url, content=job.body, headers=dict(job.headers))
        request.extensions["timeout"] = self._timeout
        answer = self._transport.handle_request(request)
        try:
            read = 0
            for chunk in answer.stream:  # type: ignore[union-attr]
                read += len(chunk)
                if read >= BODY_LIMIT or time.monotonic() >= deadline:
                    break
        finally:
            answer.close()
        return answer.status_code, answer.headers.get("Retry-After")

    def _wait(self, seconds: float) -> None:
        self._abandon.wait(seconds)  # the end of `close`'s wait cuts a backoff short

    # -- shutdown ---------------------------------------------------------------------------------

    def close(self, timeout: float | None = None) -> bool:
        """Stop taking messages; wait at most `timeout` (default `knobs.flush`) seconds for the queued
        ones, retries included while they fit in that time. True when none was left behind."""
        limit = self.knobs.flush if timeout is None else timeout
        end = time.monotonic() + limit
        with self._lock:
            self._deadline = end
            self._closing.set()
            self._lock.notify_all()
            while any(lane.queue or lane.busy for lane in self._lanes.values()) and time.monotonic() < end:
                self._lock.wait(max(0.0, end - time.monotonic()))
            left = [job for lane in self._lanes.values() for job in lane.queue]
            for lane in self._lanes.values():
                lane.queue.clear()
            done = not left and not any(lane.busy for lane in self._lanes.values())
        self._abandon.set()
        for job in left:
            self.counted(job.kind, DROPPED)
        if left:
            log.warning("notifications: %d not posted before exit", len(left))
        return done


def _label(d: spec.NotificationConfig) -> str:
    return f"{d.type} (${d.url_env})"


def _bad_headers(d: spec.WebhookNotification) -> str:
    return (
        f"notification {_label(d)}: ${d.headers_env} is not a JSON object of header names to ASCII string values; "
        "nothing is posted there"
    )


def _headers(text: str) -> dict[str, str] | None:
    """Headers from a JSON object of ASCII strings, or None when it is not one (the text is never quoted):
    httpx would fail every post, with an error quoting the value, on a non-ASCII or control character."""
    try:
        value = json.loads(text)
        if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            return None
        raw = {k.encode("ascii"): v.encode("ascii") for k, v in value.items()}
        if any((b < 0x20 and b != 0x09) or b == 0x7F for v in raw.values() for b in v):  # a newline, say
            return None
    except Exception:  # ValueError, UnicodeEncodeError: their text may quote the secret
        return None
    return dict(value)


def retry_after(value: str | None, *, now: datetime) -> float | None:
    """Seconds a `Retry-After` header asks for (a number of seconds or an HTTP date), or None when it is
    absent or not one (a malformed date, `nan`, `inf`)."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            seconds = (when - now).total_seconds()
        except (TypeError, ValueError, OverflowError, IndexError):
            return None
    return max(0.0, seconds) if math.isfinite(seconds) else None
