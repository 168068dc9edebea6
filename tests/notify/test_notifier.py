"""The notification adapter (`controller.notifier`) against a real local receiver
(tests/helpers/webhook_receiver.py): the bodies posted, retries with backoff, Retry-After, giving up,
a hanging receiver, the bounded queue and flush, and the secret URL and headers kept out of every log."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import pytest

from controller import notifier, notify, settings, spec
from tests.helpers.net import free_port, wait_for
from tests.helpers.webhook_receiver import Receiver, receiver

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "schemas" / "notification.schema.json").read_text())
SECRET = "T000/B000/s3cr3t-token"
AT = datetime(2026, 12, 7, 18, 0, tzinfo=UTC)
EVENT = notify.Event(
    notify.Action.ROLLBACK,
    "bad-bot",
    "3f2a9c1e04ab",
    "eval_pass_rate failed: canary 85% < stable 90% - 2 pts",
    "acme/rollouts",
    AT,
    evidence=(notify.GateLine("eval_pass_rate", "FAIL", "all", 0.9, 0.85, "maxDrop 2 pts", "down 5 pts"),),
    pr=notify.PullLink(7, "https://github.com/acme/rollouts/pull/7", "open"),
    step=1,
    steps=3,
)
FAST = settings.Notifications(attempts=4, first_wait=0.01, max_wait=0.5, flush=10.0)


def slack(env: str = "HOOK", on: list[str] | None = None) -> spec.NotificationConfig:
    return spec.SlackNotification.model_validate({"type": "slack", "urlEnv": env, **({"on": on} if on else {})})


def webhook(env: str = "HOOK", headers: str | None = None) -> spec.NotificationConfig:
    return spec.WebhookNotification.model_validate(
        {"type": "webhook", "urlEnv": env, **({"headersEnv": headers} if headers else {})}
    )


class Counts:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def __call__(self, kind: str, outcome: str) -> None:
        self.seen.append((kind, outcome))


def dispatcher(
    url: str, *, knobs: settings.Notifications = FAST, waits: list[float] | None = None, **env: str
) -> tuple[notifier.Dispatcher, Counts]:
    counts = Counts()
    sleep = None if waits is None else waits.append
    d = notifier.Dispatcher(env={"HOOK": url, **env}, knobs=knobs, counted=counts, sleep=sleep)
    return d, counts


def secret_url(r: Receiver) -> str:
    return f"{r.url}/services/{SECRET}"


def test_the_generic_payload_is_posted_and_matches_its_schema() -> None:
    with receiver() as r:
        d, counts = dispatcher(secret_url(r), TOKEN='{"Authorization": "Bearer tok-123"}')
        d.post([webhook(headers="TOKEN")], EVENT)
        assert d.close()
        [got] = r.requests
    jsonschema.validate(got.body, SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    assert got.path == f"/services/{SECRET}"
    assert got.headers["Authorization"] == "Bearer tok-123" and got.headers["Content-Type"] == "application/json"
    assert got.body["version"] == 1 and got.body["action"] == "rollback" and got.body["rollout"] == "bad-bot"
    assert got.body["pr"] == {"number": 7, "url": "https://github.com/acme/rollouts/pull/7", "state": "open"}
    assert got.body["evidence"][0]["canary"] == 0.85 and got.body["evidence"][0]["bound"] == "maxDrop 2 pts"
    assert counts.seen == [("webhook", "delivered")]


def test_the_slack_message_has_text_and_blocks() -> None:
    with receiver() as r:
        d, _ = dispatcher(secret_url(r))
        d.post([slack()], EVENT)
        assert d.close()
        [got] = r.requests
    assert set(got.body) == {"text", "blocks"}
    assert got.body["text"].startswith("bad-bot rolled back (revert PR #7)")
    assert [b["type"] for b in got.body["blocks"]] == ["section", "section", "context"]
    assert "<https://github.com/acme/rollouts/pull/7|PR #7>" in got.body["blocks"][0]["text"]["text"]


def test_a_destination_gets_only_the_events_it_asked_for() -> None:
    with receiver() as r:
        d, _ = dispatcher(secret_url(r))
        d.post([slack(on=["pause", "completion"])], EVENT)
        d.post([slack(on=["rollback"])], EVENT)
        assert d.close()
        assert len(r.requests) == 1


@pytest.mark.parametrize(
    ("status", "retry_after", "waits"),
    [
        (500, None, [0.01, 0.02]),
        (503, None, [0.01, 0.02]),
        (429, "0.3", [0.3, 0.3]),
        (429, "120", [0.5, 0.5]),
        (429, "0", [0.01, 0.02]),
        (429, "nan", [0.01, 0.02]),
        (503, "Mon, 07 Dec 99999999999 18:00:30 GMT", [0.01, 0.02]),
    ],
    ids=[
        "500-doubling",
        "503-doubling",
        "429-retry-after",
        "429-retry-after-capped",
        "429-retry-after-zero-still-backs-off",
        "429-retry-after-nan",
        "503-retry-after-date-overflowing",
    ],
)
def test_retried_with_backoff_then_delivered(status: int, retry_after: str | None, waits: list[float]) -> None:
    with receiver() as r:
        r.fail_first, r.fail_status, r.retry_after = 2, status, retry_after
        slept: list[float] = []
        d, counts = dispatcher(secret_url(r), waits=slept)
        d.post([webhook()], EVENT)
        assert d.close()
        assert len(r.requests) == 3
    assert slept == waits
    assert counts.seen == [("webhook", "retried"), ("webhook", "retried"), ("webhook", "delivered")]


def test_given_up_after_the_last_try_and_the_log_names_no_secret(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    with receiver() as r:
        r.fail_first = 100
        d, counts = dispatcher(secret_url(r), waits=[], TOKEN='{"Authorization": "Bearer tok-123"}')
        d.post([webhook(headers="TOKEN")], EVENT)
        assert d.close()
        assert len(r.requests) == FAST.attempts
    assert counts.seen[-1] == ("webhook", "failed")
    assert "notification webhook ($HOOK) for bad-bot rollback given up after 4 tries: HTTP 500" in caplog.text
    out = capsys.readouterr()
    for text in (caplog.text, out.out, out.err):
        assert SECRET not in text and "tok-123" not in text  # httpx's client would log the URL at INFO


def test_an_unanswered_post_is_retried_then_given_up(caplog: pytest.LogCaptureFixture) -> None:
    url = f"http://127.0.0.1:{free_port()}/services/{SECRET}"  # nothing listens: refused
    d, counts = dispatcher(url, waits=[])
    d.post([slack()], EVENT)
    assert d.close()
    assert counts.seen == [("slack", "retried")] * 3 + [("slack", "failed")]
    assert "given up after 4 tries: not answered (ConnectError)" in caplog.text


@pytest.mark.parametrize(
    ("url", "headers", "variable"),
    [
        ("https://user:s3cr3t-pass/hook", None, "HOOK"),  # no @: httpx's error quotes 's3cr3t-pass' as a port
        ("{receiver}", '{"Authorization": "Bearer t\u00f6k-s3cr3t-pass"}', "TOKEN"),  # not ASCII
        ("{receiver}", '{"Authorization": "Bearer s3cr3t-pass\\n"}', "TOKEN"),  # a control character
    ],
    ids=["url-missing-at", "header-not-ascii", "header-newline"],
)
def test_a_url_or_header_httpx_would_refuse_is_warned_by_name_and_never_quoted(
    url: str,
    headers: str | None,
    variable: str,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    with receiver() as r:
        env = {"TOKEN": headers} if headers else {}
        d, counts = dispatcher(url.format(receiver=r.url), **env)
        d.check([webhook(headers="TOKEN" if headers else None)])
        d.post([webhook(headers="TOKEN" if headers else None)], EVENT)
        assert d.close()
        assert r.requests == []
    assert counts.seen == [("webhook", "unconfigured")]
    assert caplog.text.count(f"${variable} ") == 1 and "nothing is posted there" in caplog.text
    out = capsys.readouterr()
    for text in (caplog.text, out.out, out.err):
        assert "s3cr3t-pass" not in text


def test_a_url_with_a_trailing_newline_is_posted() -> None:
    with receiver() as r:
        d, counts = dispatcher(secret_url(r) + "\n")  # as `echo` or a secret pasted with its newline leaves it
        d.post([slack()], EVENT)
        assert d.close()
        assert len(r.requests) == 1
    assert counts.seen == [("slack", "delivered")]


def test_a_job_never_shows_its_url_or_headers() -> None:
    d, _ = dispatcher(f"https://hooks.example/{SECRET}", TOKEN='{"Authorization": "Bearer tok-123"}')
    job = d._job(webhook(headers="TOKEN"), EVENT)
    assert job is not None and SECRET not in repr(job) and "tok-123" not in repr(job)


def test_another_4xx_is_not_tried_again(caplog: pytest.LogCaptureFixture) -> None:
    with receiver() as r:
        r.fail_first, r.fail_status = 5, 404
        d, counts = dispatcher(secret_url(r), waits=[])
        d.post([slack()], EVENT)
        assert d.close()
        assert len(r.requests) == 1
    assert counts.seen == [("slack", "rejected")]
    assert "refused (HTTP 404): not tried again" in caplog.text


def test_posting_never_waits_for_a_hanging_receiver_and_exit_is_bounded() -> None:
    with receiver() as r:
        r.hang = True
        d, counts = dispatcher(secret_url(r), knobs=settings.Notifications(timeout=30.0, flush=0.2))
        d.post([webhook()], EVENT)  # returns while the receiver holds the request
        d.post([webhook()], EVENT)
        wait_for("the receiver to hold the first POST", lambda: r.holding == 1)
        assert d.close() is False  # the flush gives up on what is left; it never waits for the receiver
        assert ("webhook", "dropped") in counts.seen
        r.release()


def test_a_hanging_destination_never_delays_another() -> None:
    with receiver() as hanging, receiver() as fine:
        hanging.hang = True
        counts = Counts()
        env = {"HOOK": secret_url(hanging), "OTHER": secret_url(fine)}
        knobs = settings.Notifications(timeout=60.0, flush=0.2)
        d = notifier.Dispatcher(env=env, knobs=knobs, counted=counts)
        d.post([webhook("HOOK"), slack("OTHER")], EVENT)  # the hanging one first
        wait_for("the first receiver to hold its POST", lambda: hanging.holding == 1)
        wait_for("the other destination's delivery", lambda: ("slack", "delivered") in counts.seen)
        assert hanging.holding == 1  # still held: the other went on without it
        d.close()
        hanging.release()


def test_a_trickling_receiver_is_abandoned_at_the_deadline(caplog: pytest.LogCaptureFixture) -> None:
    """httpx's timeout bounds each socket read: a byte every 0.1 s never trips it. The try has
    `timeout` seconds in all, then it counts as not answered, and is tried again."""
    with receiver() as r:
        r.trickle = 0.1
        knobs = settings.Notifications(timeout=0.5, attempts=2, first_wait=0.01, flush=0.1)
        d, counts = dispatcher(secret_url(r), knobs=knobs)
        d.post([webhook()], EVENT)
        wait_for("both tries to be given up", lambda: counts.seen == [("webhook", "retried"), ("webhook", "failed")])
        assert len(r.requests) == 2
        d.close()
    assert "given up after 2 tries: not answered within 0.5 s" in caplog.text


def test_a_full_queue_drops_the_oldest_and_counts_it() -> None:
    with receiver() as r:
        r.hang = True
        d, counts = dispatcher(secret_url(r), knobs=settings.Notifications(queue=2, flush=10.0))
        d.post([webhook()], EVENT)
        wait_for("the first POST to be held", lambda: r.holding == 1)
        for n in range(3):  # the queue holds 2: the first of these three is dropped
            d.post([webhook()], notify.Event(notify.Action.PAUSE, f"r{n}", "rev", "why", "repo", AT))
        assert counts.seen == [("webhook", "dropped")]
        r.release()
        assert d.close()
        rollouts = [b["rollout"] for b in r.bodies()]
    assert rollouts == ["bad-bot", "r1", "r2"]


def test_an_unset_or_malformed_variable_is_warned_once_and_nothing_is_posted(caplog: pytest.LogCaptureFixture) -> None:
    d = notifier.Dispatcher(env={"HOOK": "not a url " + SECRET, "H": "Bearer tok-123"}, knobs=FAST)
    d.check([slack("UNSET"), slack("HOOK"), webhook("UNSET", headers="H")])
    d.post([slack("UNSET")], EVENT)
    assert caplog.text.count("$UNSET is not set") == 1
    assert "$HOOK does not hold an http(s) URL" in caplog.text
    assert SECRET not in caplog.text and "tok-123" not in caplog.text
    assert d.close()


def test_malformed_headers_are_never_quoted(caplog: pytest.LogCaptureFixture) -> None:
    with receiver() as r:
        d, counts = dispatcher(secret_url(r), TOKEN="Authorization: Bearer tok-123")
        d.post([webhook(headers="TOKEN")], EVENT)
        assert d.close()
        assert r.requests == []
    assert counts.seen == [("webhook", "unconfigured")]
    assert "$TOKEN is not a JSON object" in caplog.text and "tok-123" not in caplog.text


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("3", 3.0),
        ("0.5", 0.5),
        ("-1", 0.0),
        ("Mon, 07 Dec 2026 18:00:30 GMT", 30.0),
        ("soon", None),
        (None, None),
        ("nan", None),
        ("inf", None),
        ("Mon, 07 Dec 99999999999 18:00:30 GMT", None),
        ("Mon, 07 Dec 2026 25:00:30 GMT", None),
        ("Mon,", None),
    ],
    ids=[
        "seconds",
        "fraction",
        "negative",
        "http-date",
        "garbage",
        "absent",
        "nan",
        "inf",
        "date-overflowing",
        "date-bad-hour",
        "date-truncated",
    ],
)
def test_retry_after(value: str | None, seconds: float | None) -> None:
    assert notifier.retry_after(value, now=AT) == seconds
