"""The pure part of PR comment commands (controller/commands.py): parsing, the event, CODEOWNERS by
GitHub's rules, and who may steer. Table-driven."""

from __future__ import annotations

from typing import Any

import pytest

from controller import commands
from controller.commands import Command, Malformed, Verb

PARSED: list[tuple[str, str, Command | Malformed | None]] = [
    ("hold", "/rollout hold", Command(Verb.HOLD)),
    ("hold-reason", "/rollout hold  launch day ", Command(Verb.HOLD, "launch day")),
    ("abort", "/rollout abort answers in riddles", Command(Verb.ABORT, "answers in riddles")),
    ("retry", "/rollout retry", Command(Verb.RETRY)),
    ("first-line-only", "/rollout retry\n/rollout abort now", Command(Verb.RETRY)),
    ("later-lines-ignored", "/rollout abort bad\nmore words\n::error::x", Command(Verb.ABORT, "bad")),
    ("control-chars", "/rollout abort a\x1b[31mred", Command(Verb.ABORT, "a [31mred")),
    ("crlf", "/rollout hold why\r\nnext", Command(Verb.HOLD, "why")),
    ("abort-needs-reason", "/rollout abort", Malformed("`/rollout abort` needs a reason")),
    ("abort-blank-reason", "/rollout abort   ", Malformed("`/rollout abort` needs a reason")),
    ("retry-no-args", "/rollout retry now please", Malformed("`/rollout retry` takes no argument")),
    ("unknown", "/rollout promote", Malformed("unknown command `promote`")),
    ("unknown-backticks", "/rollout `x`", Malformed("unknown command `x`")),
    ("bare", "/rollout", Malformed("no command after `/rollout`")),
    ("case-sensitive", "/rollout Hold", Malformed("unknown command `Hold`")),
    ("not-ours", "LGTM", None),
    ("not-ours-prefix", "/rollouts hold", None),
    ("second-line", "thanks!\n/rollout abort x", None),
    ("quoted", "> /rollout abort x", None),
    ("empty", "", None),
]


@pytest.mark.parametrize(("body", "expected"), [c[1:] for c in PARSED], ids=[c[0] for c in PARSED])
def test_parse(body: str, expected: Command | Malformed | None) -> None:
    assert commands.parse(body) == expected


def event(**comment: Any) -> dict[str, Any]:
    user = {"login": "alice", "type": "User"} | comment.pop("user", {})
    return {
        "action": "created",
        "issue": {"number": 7, "pull_request": {"url": "https://api.github.com/repos/acme/rollouts/pulls/7"}},
        "comment": {"id": 42, "body": "/rollout retry", "user": user} | comment,
        "repository": {"full_name": "acme/rollouts"},
    }


def test_the_comment_of_an_event() -> None:
    assert commands.comment_of(event()) == commands.Comment(42, "/rollout retry", "alice", False, 7, "acme/rollouts")
    issue_only = event()
    del issue_only["issue"]["pull_request"]
    assert commands.comment_of(issue_only) is None  # a comment on an issue, not a PR


@pytest.mark.parametrize(
    ("broken", "named"),
    [
        ({"comment": {"id": "42", "body": "x", "user": {"login": "a"}}}, "comment.id"),
        ({"comment": {"id": 42, "body": None, "user": {"login": "a"}}}, "comment.body"),
        ({"comment": {"id": 42, "body": "x", "user": {}}}, "comment.user.login"),
        ({"comment": {"id": True, "body": "x", "user": {"login": "a"}}}, "comment.id"),
        ({"issue": None}, "issue"),
    ],
    ids=["id-string", "body-null", "no-login", "id-bool", "no-issue"],
)
def test_a_broken_event_names_its_field(broken: dict[str, Any], named: str) -> None:
    with pytest.raises(ValueError, match=f"no {named} "):
        commands.comment_of(event() | broken)


@pytest.mark.parametrize(
    ("user", "body", "why"),
    [
        ({"login": "rollout-bot[bot]", "type": "Bot"}, "/rollout retry", "is a bot"),
        ({"login": "renovate[bot]"}, "/rollout retry", "is a bot"),
        ({}, "<!-- rollout:command-41 -->\nDone: /rollout retry", "answer"),
        ({}, "/rollout retry", ""),
    ],
    ids=["bot-type", "bot-login", "our-answer", "a-person"],
)
def test_bots_and_our_own_answers_are_never_commands(user: dict[str, str], body: str, why: str) -> None:
    comment = commands.comment_of(event(user=user, body=body))
    assert comment is not None
    said = commands.ignored(comment)
    assert (why in said and said) if why else said == ""


def test_an_answer_is_marked_and_keyed_by_its_command() -> None:
    comment = commands.Comment(42, "/rollout retry", "alice", False, 7)
    text = commands.answer(comment, "Done")
    assert text.startswith("<!-- rollout:command-42 -->\n") and commands.key(comment) == "command-42"
    assert commands.parse(text) is None and commands.ignored(commands.Comment(43, text, "bot", False, 7))


# GitHub's documented examples (docs: "About code owners", "Example of a CODEOWNERS file"), and ours
OWNERS_FILE = r"""
# a comment
*                       @global-owner
*.js                    @js-owner  # a trailing comment
/build/logs/            @doctocat
guides/*                docs@example.com
apps/                   @octocat
/docs/                  @doctocat
/scripts/               @doctocat @octocat
**/logs                 @octocat
/apps/github
/rollouts/              @acme/ml-platform
/rollouts/support-bot/  @acme/support-ai @dana
!/rollouts/x/           @never
/rollouts/[ab]/         @never
\#notes                 @hash
/my\ bot/               @spacey
/bad/                   @ok bob
/team-ok/               @acme/ml-platform docs@example.com
"""

OWNED = [
    ("star", "README.md", ("@global-owner",)),
    ("js-anywhere", "src/deep/app.js", ("@js-owner",)),
    ("build-logs-then-any-logs", "build/logs/x.txt", ("@octocat",)),  # `**/logs` comes later: it wins
    ("build-logs", "build/logs", ("@octocat",)),
    ("dir-star-direct", "guides/getting-started.md", ("docs@example.com",)),
    ("dir-star-not-nested", "guides/build-app/troubleshooting.md", ("@global-owner",)),
    ("middle-slash-anchored", "lib/guides/getting-started.md", ("@global-owner",)),
    ("apps-anywhere", "src/apps/x.py", ("@octocat",)),
    ("root-docs-nested", "docs/build-app/troubleshooting.md", ("@doctocat",)),
    ("scripts", "scripts/run.sh", ("@doctocat", "@octocat")),
    ("logs-anywhere", "deploy/logs/today.txt", ("@octocat",)),
    ("no-owner-wins", "apps/github/x.py", ()),
    ("last-match-wins", "rollouts/support-bot/rollout.yaml", ("@acme/support-ai", "@dana")),
    ("parent-dir", "rollouts/ticket-triage/rollout.yaml", ("@acme/ml-platform",)),
    ("negation-skipped", "rollouts/x/rollout.yaml", ("@acme/ml-platform",)),
    ("ranges-skipped", "rollouts/a/rollout.yaml", ("@acme/ml-platform",)),
    ("escaped-hash-unsupported", "#notes", ("@global-owner",)),  # GitHub does not honour `\#`: line skipped
    ("escaped-space", "my bot/rollout.yaml", ("@spacey",)),
    ("invalid-owner-line-skipped", "bad/x.py", ("@global-owner",)),  # `bob` is no @login, team or email
    ("team-and-email", "team-ok/x.py", ("@acme/ml-platform", "docs@example.com")),
    ("leading-slash-path", "/rollouts/y/rollout.yaml", ("@acme/ml-platform",)),
]


@pytest.mark.parametrize(("path", "expected"), [c[1:] for c in OWNED], ids=[c[0] for c in OWNED])
def test_codeowners_by_githubs_rules(path: str, expected: tuple[str, ...]) -> None:
    assert commands.owners(commands.codeowners(OWNERS_FILE), path) == expected


def test_the_repositorys_own_codeowners() -> None:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / ".github" / "CODEOWNERS").read_text("utf-8")
    rules = commands.codeowners(text)
    assert commands.owners(rules, "rollouts/support-bot/rollout.yaml") == ("@acme/support-ai",)
    assert commands.owners(rules, "rollouts/controller.yaml") == ("@acme/ml-platform", "@acme/sre")


AUTHORIZED = [
    ("admin", "admin", (), True, "has admin access"),
    ("maintain", "maintain", (), True, "has maintain access"),
    ("write", "write", (), True, "has write access"),
    ("read", "read", (), False, "has read access and is not a code owner"),
    ("triage", "triage", (), False, "has triage access"),
    ("none", "none", (), False, "has none access"),
    ("unknown", "", (), False, "has no access"),
    ("owner-read", "read", ("@Alice",), True, "is a code owner of `rollouts/a/rollout.yaml`"),
    ("other-owner", "read", ("@bob",), False, "not a code owner"),
    ("owner-triage", "triage", ("@alice",), True, "is a code owner"),
    ("owner-no-access", "none", ("@alice",), False, "has none access to the repository: a code owner must be"),
    ("owner-unknown", "", ("@alice",), False, "has no access to the repository"),
    ("team-owner", "read", ("@acme/support-ai",), False, "`@acme/support-ai`, count only through"),
    ("email-owner", "read", ("alice@example.com",), False, "not a code owner"),
]


@pytest.mark.parametrize(
    ("permission", "owners", "allowed", "why"), [c[1:] for c in AUTHORIZED], ids=[c[0] for c in AUTHORIZED]
)
def test_who_may_steer(permission: str, owners: tuple[str, ...], allowed: bool, why: str) -> None:
    verdict = commands.authorize("alice", permission, owners, path="rollouts/a/rollout.yaml")
    assert verdict.allowed is allowed and why in verdict.why


OUT_OF_DATE = [  # (verb, open, action, PR's revision, main's canary revision) -> why contains ("" taken)
    ("open-current", commands.Verb.ABORT, True, "advance", "r2", "r2", ""),
    ("open-revert-current", commands.Verb.HOLD, True, "rollback", "r2", "r2", ""),
    ("earlier-revision", commands.Verb.ABORT, True, "advance", "r1", "r2", "about revision r1, not the canary's"),
    ("earlier-revision-retry", commands.Verb.RETRY, False, "rollback", "r1", "r2", "about revision r1"),
    ("no-canary", commands.Verb.HOLD, True, "decommission", "r1", None, "has no canary now"),
    ("closed-abort", commands.Verb.ABORT, False, "advance", "r2", "r2", "this PR is closed"),
    ("closed-hold-on-revert", commands.Verb.HOLD, False, "rollback", "r2", "r2", "this PR is closed"),
    ("closed-retry-on-advance", commands.Verb.RETRY, False, "advance", "r2", "r2", "this PR is closed"),
    ("merged-revert-retry", commands.Verb.RETRY, False, "rollback", "r2", "r2", ""),
    ("merged-pause-retry", commands.Verb.RETRY, False, "pause", "r2", "r2", ""),
]


@pytest.mark.parametrize(
    ("verb", "is_open", "action", "revision", "canary", "why"),
    [c[1:] for c in OUT_OF_DATE],
    ids=[c[0] for c in OUT_OF_DATE],
)
def test_a_command_is_heard_only_on_a_current_pr(
    verb: commands.Verb, is_open: bool, action: str, revision: str, canary: str | None, why: str
) -> None:
    said = commands.out_of_date(verb, is_open=is_open, action=action, revision=revision, canary=canary)
    assert (why in said) if why else said == ""
