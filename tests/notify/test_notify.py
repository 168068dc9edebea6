"""`controller.notify`, the pure part: which decision makes which event, the memory that tells each once,
the generic payload (checked against schemas/notification.schema.json) and the Slack message's escaping."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import pytest

from controller import notify, plan

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "schemas" / "notification.schema.json").read_text())
AT = datetime(2026, 12, 7, 18, 0, tzinfo=UTC)
OPEN = notify.PullLink(7, "https://github.com/acme/rollouts/pull/7", "open")
MERGED = notify.PullLink(8, "https://github.com/acme/rollouts/pull/8", "merged")
A = notify.Action


@pytest.mark.parametrize(
    ("kind", "pr", "news", "action"),
    [
        (plan.Kind.ROLLBACK, OPEN, "opened", A.ROLLBACK),
        (plan.Kind.ROLLBACK, None, "", A.ROLLBACK),  # the forge was down: told at once, the PR link later
        (plan.Kind.PAUSE, OPEN, "opened", A.PAUSE),
        (plan.Kind.PAUSE, OPEN, "", None),  # the pause repeats every tick while its PR is open: told once
        (plan.Kind.PAUSE, None, "", None),
        (plan.Kind.ADVANCE, OPEN, "opened", A.PROMOTION),
        (plan.Kind.ADVANCE, OPEN, "updated", None),  # moved to main's new head: told when opened, not again
        (plan.Kind.PAUSE, OPEN, "updated", None),
        (plan.Kind.COMPLETE, OPEN, "updated", None),
        (plan.Kind.ADVANCE, OPEN, "", None),
        (plan.Kind.ADVANCE, MERGED, "recorded", None),  # promotion: auto, merged by the bot: nobody waits
        (plan.Kind.COMPLETE, OPEN, "opened", A.COMPLETION),
        (plan.Kind.COMPLETE, MERGED, "recorded", A.COMPLETION),
        (plan.Kind.COMPLETE, None, "", None),
        (plan.Kind.HOLD, OPEN, "", None),
        (plan.Kind.APPLY, None, "", None),
        (plan.Kind.DECOMMISSION, OPEN, "opened", None),
    ],
    ids=lambda v: str(getattr(v, "value", v)),
)
def test_which_decision_makes_which_event(
    kind: plan.Kind, pr: notify.PullLink | None, news: str, action: notify.Action | None
) -> None:
    assert notify.action_of(kind, pr=pr, news=news) is action


def event(action: notify.Action = A.ROLLBACK, **kw: object) -> notify.Event:
    fields: dict[str, object] = {
        "rollout": "bad-bot",
        "revision": "3f2a9c1e04ab",
        "reason": "eval_pass_rate failed",
        "repository": "acme/rollouts",
        "at": AT,
        "pr": OPEN,
        "step": 2,
        "steps": 3,
        **kw,
    }
    return notify.Event(action, **fields)  # type: ignore[arg-type]


def test_each_event_is_told_once_and_the_memory_is_bounded() -> None:
    sent = notify.Sent(limit=2)
    first, again, other_pr = event(), event(), event(pr=MERGED)
    assert sent.first(first.key) and not sent.first(again.key) and sent.first(other_pr.key)
    assert sent.first(event(A.PAUSE).key) and len(sent) == 2
    assert sent.first(first.key), "the oldest was forgotten"


@pytest.mark.parametrize("action", list(A), ids=str)
@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"pr": None, "step": None, "steps": None, "error": "router edge: NOT confirmed"},
        {"by_hand": True, "evidence": (notify.GateLine("error_rate", "FAIL", None, None, 0.04, "max 0.01", "x"),)},
    ],
    ids=["full", "no-pr", "by-hand-with-evidence"],
)
def test_the_payload_matches_its_schema(action: notify.Action, extra: dict[str, object]) -> None:
    body = notify.payload(event(action, **extra))
    jsonschema.validate(body, SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    assert body["version"] == 1 and body["action"] == action.value
    assert json.loads(json.dumps(body, allow_nan=False)) == body


def test_the_payload_keeps_no_line_breaks_and_no_overlong_reason() -> None:
    body = notify.payload(event(reason="a\nb\r\x1b[31m" + "x" * 5000))  # type: ignore[arg-type]
    assert "\n" not in body["reason"] and "\x1b" not in body["reason"] and len(body["reason"]) <= 1000
    jsonschema.validate(body, SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("<!channel> look", "&lt;!channel&gt; look"),
        ("<https://evil.example|click>", "&lt;https://evil.example|click&gt;"),
        ("a & b", "a &amp; b"),
        ("&amp;", "&amp;amp;"),
        ("two\nlines", "two lines"),
    ],
    ids=["mention", "link", "ampersand", "already-escaped", "newline"],
)
def test_slack_text_is_escaped(text: str, shown: str) -> None:
    assert notify.slack_escape(text) == shown


def test_untrusted_values_reach_slack_escaped_everywhere() -> None:
    hostile = "<!here> & <https://evil.example|x>"
    gate = notify.GateLine(hostile, "FAIL", hostile, 0.9, 0.8, hostile, hostile)
    msg = notify.slack(event(reason=hostile, evidence=(gate,), repository=hostile, error=hostile))  # type: ignore[arg-type]
    texts = [msg["text"]] + [b["text"]["text"] for b in msg["blocks"] if "text" in b]
    texts += [e["text"] for b in msg["blocks"] for e in b.get("elements", [])]
    for t in texts:
        assert "<!here>" not in t and "<https://evil" not in t
    assert "&lt;!here&gt; &amp;" in msg["blocks"][0]["text"]["text"]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://github.com/acme/rollouts/pull/7", "<https://github.com/acme/rollouts/pull/7|PR #7>"),
        ("local:#7", "PR #7"),
        ("https://x.example/a|b", "PR #7"),
    ],
    ids=["github", "local-forge", "unsafe"],
)
def test_the_pr_is_a_link_only_when_its_url_is_a_safe_web_address(url: str, shown: str) -> None:
    msg = notify.slack(event(pr=notify.PullLink(7, url, "open")))
    assert shown in msg["blocks"][0]["text"]["text"]


def test_a_long_slack_section_is_cut_within_the_limit_and_never_inside_an_escape() -> None:
    gates = tuple(notify.GateLine(f"g{n}", "FAIL", None, 1.0, 2.0, "&" * 40, "") for n in range(20))
    msg = notify.slack(event(evidence=gates, reason="<" * 5000))  # type: ignore[arg-type]
    for b in msg["blocks"]:
        if "text" in b:
            t = b["text"]["text"]
            assert len(t) <= notify.SLACK_SECTION and not t.rstrip("…").endswith(
                ("&", "&a", "&am", "&amp", "&l", "&lt")
            )


@pytest.mark.parametrize(
    ("action", "extra", "title"),
    [
        (A.ROLLBACK, {}, "bad-bot rolled back (revert PR #7)"),
        (A.ROLLBACK, {"by_hand": True, "pr": None}, "bad-bot rolled back by hand"),
        (
            A.ROLLBACK,
            {"error": "router envoy: the write was not confirmed"},
            "bad-bot rollback NOT confirmed: the canary may still get traffic (revert PR #7)",
        ),
        (
            A.ROLLBACK,
            {"error": "router envoy: timed out", "by_hand": True, "pr": None},
            "bad-bot rollback by hand NOT confirmed: the canary may still get traffic",
        ),
        (A.PAUSE, {}, "bad-bot paused at step 2 (PR #7)"),
        (A.PROMOTION, {}, "bad-bot: promotion to step 2 waiting for review (PR #7)"),
        (A.COMPLETION, {}, "bad-bot: completion waiting for review (PR #7): the canary becomes the new stable"),
        (A.COMPLETION, {"pr": MERGED}, "bad-bot: completion merged (PR #8): the canary becomes the new stable"),
    ],
    ids=[
        "rollback",
        "abort",
        "rollback-unconfirmed",
        "abort-unconfirmed",
        "pause",
        "promotion",
        "completion",
        "completion-merged",
    ],
)
def test_titles(action: notify.Action, extra: dict[str, object], title: str) -> None:
    assert notify.title(event(action, **extra)) == title
    assert notify.payload(event(action, **extra))["summary"] == title
    assert notify.slack(event(action, **extra))["text"].startswith(notify.slack_escape(title))


@pytest.mark.parametrize(
    "change",
    [
        {"version": 2},
        {"action": "merge"},
        {"at": "yesterday"},
        {"summary": None},
        {"pr": {"number": 7, "url": "x"}},
        {
            "evidence": [
                {"gate": "g", "verdict": "MAYBE", "segment": None, "stable": 1, "canary": 1, "bound": "", "reason": ""}
            ]
        },
    ],
    ids=["version", "action", "at", "summary-not-a-string", "pr-without-state", "verdict"],
)
def test_the_schema_refuses_what_version_1_is_not(change: dict[str, object]) -> None:
    body = {**notify.payload(event()), **change}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(body, SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def test_the_schema_accepts_fields_added_within_version_1() -> None:
    """README: fields may be added within a version, so a receiver validating against the schema must not
    refuse a body with a field it does not know yet (top level, in an evidence item, in `pr`)."""
    body = notify.payload(event(evidence=(notify.GateLine("g", "FAIL", None, 1.0, 2.0, "max 1", ""),)))
    body["newField"] = 1
    body["evidence"][0]["newField"] = "x"
    body["pr"]["newField"] = True
    jsonschema.validate(body, SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
