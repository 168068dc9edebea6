"""PR comment commands (`/rollout hold|abort|retry` on the bot's pull request): the comment read from
GitHub's `issue_comment` event, the command parsed, GitHub's CODEOWNERS rules, who may steer a rollout,
and what the bot answers. Pure: `reconcile.commands` reads the PR and the permission and acts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from controller import proposals

PREFIX = "/rollout"
MARKER = "<!-- rollout:command-"  # begins every answer (`answer`): an answer is never taken for a command
WRITERS = frozenset({"admin", "maintain", "write"})  # GitHub's permissions that may steer; read, triage, none may not
COLLABORATORS = frozenset({"read", "triage"})  # a code owner with one of these may steer too; `none` never
CODEOWNERS_PATHS = (".github/CODEOWNERS", "CODEOWNERS", "docs/CODEOWNERS")  # GitHub's order: the first found counts
USAGE = (
    "Usage, as the first line of a comment on the bot's pull request (write access or a code owner of the "
    "rollout's file):\n"
    "- `/rollout hold [reason]`: a pause PR; the rollout advances no further, its weights stay as they are\n"
    "- `/rollout abort <reason>`: the canary to 0 now, then the revert PR\n"
    "- `/rollout retry`: a PR that lets a rolled-back or paused revision run again"
)


class Verb(StrEnum):
    HOLD = "hold"
    ABORT = "abort"
    RETRY = "retry"


@dataclass(frozen=True)
class Command:
    verb: Verb
    reason: str = ""  # one line, without control characters (`proposals.one_line`)


@dataclass(frozen=True)
class Malformed:
    """A comment that starts with `/rollout` but is no command: answered with why and the usage."""

    why: str


def parse(body: str) -> Command | Malformed | None:
    """The command on the first line of a comment; None when that line does not start with `/rollout`
    (the comment is not for us: it is ignored without an answer)."""
    first = body.split("\n", 1)[0].strip()
    words = first.split(maxsplit=2)
    if not words or words[0] != PREFIX:
        return None
    if len(words) == 1:
        return Malformed("no command after `/rollout`")
    verb, rest = words[1], proposals.one_line(words[2] if len(words) > 2 else "", 500)
    match verb:
        case Verb.HOLD:
            return Command(Verb.HOLD, rest)
        case Verb.ABORT:
            return Command(Verb.ABORT, rest) if rest else Malformed("`/rollout abort` needs a reason")
        case Verb.RETRY:
            return Malformed("`/rollout retry` takes no argument") if rest else Command(Verb.RETRY)
    return Malformed(f"unknown command `{proposals.one_line(verb, 40).replace('`', '')}`")  # in backticks: no @mention


@dataclass(frozen=True)
class Comment:
    """A comment on a pull request, as GitHub's `issue_comment` event gives it."""

    id: int
    body: str
    login: str
    bot: bool  # written by a bot (GitHub's user type `Bot`, or a `[bot]` login)
    number: int  # the pull request's
    repository: str = ""  # owner/name, as the event names it ("" when it does not)


def comment_of(event: Mapping[str, Any]) -> Comment | None:
    """The comment of an `issue_comment` event (GITHUB_EVENT_PATH's JSON), or None when it is not on a
    pull request. A field missing or of the wrong type raises ValueError naming it."""

    def field(where: Mapping[str, Any], key: str, kind: type, path: str) -> Any:
        value = where.get(key) if isinstance(where, Mapping) else None
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
            raise ValueError(f"the event has no {path} ({kind.__name__})")
        return value

    issue = field(event, "issue", dict, "issue")
    if not issue.get("pull_request"):
        return None
    comment = field(event, "comment", dict, "comment")
    user = field(comment, "user", dict, "comment.user")
    login = field(user, "login", str, "comment.user.login")
    return Comment(
        id=field(comment, "id", int, "comment.id"),
        body=field(comment, "body", str, "comment.body"),
        login=login,
        bot=user.get("type") == "Bot" or login.endswith("[bot]"),
        number=field(issue, "number", int, "issue.number"),
        repository=str((event.get("repository") or {}).get("full_name") or ""),
    )


def ignored(comment: Comment) -> str:
    """Why a comment is no command to act on ("" when it may be one): a bot's, or an answer of ours."""
    if comment.bot:
        return f"@{comment.login} is a bot: its comments are never commands"
    if MARKER in comment.body:
        return "an answer of the controller's"
    return ""


# -- CODEOWNERS, by GitHub's rules ---------------------------------------------------------------------


@dataclass(frozen=True)
class OwnerRule:
    pattern: str
    owners: tuple[str, ...]  # `@user`, `@org/team` or an email, as written
    line: int
    regex: re.Pattern[str]


OWNER = re.compile(
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"  # @login
    r"(?:/[A-Za-z0-9._-]+)?"  # @org/team
    r"|[^@\s]+@[^@\s]+\.[^@\s]+"  # an email
)


def codeowners(text: str) -> list[OwnerRule]:
    """The rules of a CODEOWNERS file, in order. As GitHub: `#` starts a comment; a line GitHub cannot
    read is skipped: one whose pattern uses `\\#` (an escaped `#`, which GitHub does not honour), `!` or
    `[` (which it does not support), or that names an owner that is neither `@login`, `@org/team` nor an
    email. An escaped space (`my\\ bot/`) belongs to the pattern."""
    rules = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = re.sub(r"(?<!\\)#.*", "", raw).strip()
        if not line:
            continue
        pattern, *owners = re.split(r"(?<!\\)\s+", line)
        if "\\#" in pattern or pattern.startswith("!") or "[" in pattern:
            continue
        if not all(OWNER.fullmatch(o) for o in owners):
            continue
        pattern = pattern.replace("\\ ", " ")
        rules.append(OwnerRule(pattern, tuple(owners), n, _regex(pattern)))
    return rules


def owners(rules: Sequence[OwnerRule], path: str) -> tuple[str, ...]:
    """The code owners of `path` (from the repository's root): the last matching rule's, as on GitHub;
    () when none matches or the last that does names nobody."""
    found: tuple[str, ...] = ()
    for rule in rules:
        if rule.regex.fullmatch(path.lstrip("/")):
            found = rule.owners
    return found


def _regex(pattern: str) -> re.Pattern[str]:
    """A CODEOWNERS pattern as a regex over a file's path: gitignore's rules, as GitHub applies them. A
    pattern with a `/` at its start or in its middle is anchored at the root, else it matches at any
    depth; one that names a directory owns everything under it; `*` stays within a directory (`docs/*`
    owns `docs/a.md`, not `docs/x/b.md`), `**` crosses them."""
    directory = pattern.endswith("/")
    body = pattern.strip("/") if pattern != "/" else ""
    anchored = pattern.startswith("/") or "/" in body
    out = []
    i = 0
    while i < len(body):
        if body.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif body.startswith("/**", i) and i + 3 == len(body):
            out.append("/.*")
            i += 3
        elif body.startswith("**", i):
            out.append(".*")
            i += 2
        elif body[i] == "*":
            out.append("[^/]*")
            i += 1
        elif body[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(body[i]))
            i += 1
    head = "" if anchored else "(?:.*/)?"
    if directory:
        tail = "/.*"
    elif pattern.endswith("/*"):
        tail = ""
    else:
        tail = "(?:/.*)?"
    return re.compile(head + "".join(out) + tail)


# -- who may steer -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    why: str


def authorize(login: str, permission: str, code_owners: Sequence[str], *, path: str) -> Verdict:
    """May `login` steer the rollout whose file is `path`: write access to the repository (GitHub's
    `admin`, `maintain` or `write`), or a collaborator (`read` or `triage`) named as a code owner of `path`
    (`@login`). A login named in CODEOWNERS without access to the repository (`none`: a stale or mistyped
    entry anyone could register) counts for nothing, as GitHub ignores code owners without write access. A
    team among the code owners grants nothing here: its members need write access (team membership is not
    read)."""
    if permission in WRITERS:
        return Verdict(True, f"@{login} has {permission} access")
    named = f"@{login}".lower() in {o.lower() for o in code_owners}
    if named and permission in COLLABORATORS:
        return Verdict(True, f"@{login} is a code owner of `{path}`")
    if named:
        return Verdict(
            False,
            f"@{login} is named a code owner of `{path}` but has {permission or 'no'} access to the repository: "
            "a code owner must be a collaborator",
        )
    teams = [f"`{o}`" for o in code_owners if o.startswith("@") and "/" in o]  # named, never notified
    why = f"@{login} has {permission or 'no'} access and is not a code owner of `{path}`"
    if teams:
        why += f" (its owning teams, {', '.join(teams)}, count only through their members' write access)"
    return Verdict(False, why)


def out_of_date(verb: Verb, *, is_open: bool, action: str, revision: str, canary: str | None) -> str:
    """Why a command on a PR of the bot's is not taken ("" when it is): a command acts on main's canary
    today, so it is heard only on a PR about that revision (an earlier revision's PR is history), and only
    while the PR is open; but for `/rollout retry` on a revert or pause PR that was merged or closed, the
    one place left to ask for a rolled-back or paused revision to run again."""
    if canary is None:
        return "main's rollout has no canary now: a command acts on the canary"
    if revision != canary:
        return f"this PR is about revision {revision}, not the canary's now ({canary}): comment on a current PR"
    if is_open:
        return ""
    if verb is Verb.RETRY and action in (proposals.Action.ROLLBACK, proposals.Action.PAUSE):
        return ""
    return (
        "this PR is closed: comment on an open PR of the rollout (`/rollout retry` also on a closed revert or pause PR)"
    )


def key(comment: Comment) -> str:
    """The key of the answer to `comment` (one sticky comment per command: a run again edits it)."""
    return f"command-{comment.id}"


def answer(comment: Comment, text: str) -> str:
    """The answer to `comment`: the marker line the forges key sticky comments by (so an answer is
    never taken for a command), then `text`."""
    return f"<!-- rollout:{key(comment)} -->\n{text}"
