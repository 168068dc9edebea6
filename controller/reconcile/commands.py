"""PR comment commands carried out (`rollout comment`, run by the rollout-commands workflow): a comment's
command checked (a PR of the bot's, a commenter who may steer that rollout) and run exactly as the CLI
runs it (`Controller.hold`, `abort`, `retry`), then answered on the PR. What a command is and who may
give it is `commands`'; this module reads the PR, the permission and CODEOWNERS, and acts.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import assert_never

from controller import commands, errors, load, proposals, redaction, spec, traffic
from controller.forge import base as forge_base
from controller.reconcile import tick


class Status(StrEnum):
    DONE = "done"
    IGNORED = "ignored"  # not a command (or a bot's comment): nothing done, nothing said
    USAGE = "usage"  # a malformed command: answered with the usage
    REFUSED = "refused"  # not a PR of the bot's, or a commenter who may not steer: nothing done
    FAILED = "failed"  # allowed, but the command failed (or its router write was not confirmed)


@dataclass(frozen=True)
class Steered:
    status: Status
    said: str  # the answer posted on the PR; for an ignored comment, why it was ignored (not posted)
    outcome: tick.Outcome | None = None


def steer(controller: tick.Controller, forge: forge_base.Steering, comment: commands.Comment) -> Steered:
    """Carry out `comment`'s command, if it is one, and answer it on its PR (one sticky answer per
    comment: a run again edits it)."""
    if why := commands.ignored(comment):
        return Steered(Status.IGNORED, why)
    parsed = commands.parse(comment.body)
    if parsed is None:
        return Steered(Status.IGNORED, "the comment's first line is no `/rollout` command")
    if isinstance(parsed, commands.Malformed):
        return _say(forge, comment, Status.USAGE, f"{parsed.why}: nothing was done.\n\n{commands.USAGE}")
    said = f"`/rollout {parsed.verb}` by @{comment.login}"
    try:
        checked = _check(controller, forge, comment, parsed, said)
    except errors.RolloutError as exc:  # the PR, main or the permission unread: said on the PR when it can be
        text = f"{said} failed before anything was done: {redaction.redact(str(exc))}"
        try:
            return _say(forge, comment, Status.FAILED, text)
        except errors.RolloutError:
            raise exc from None
    if isinstance(checked, Steered):
        return checked
    name, verdict = checked
    try:
        match parsed.verb:
            case commands.Verb.HOLD:
                outcome = controller.hold(name, reason=parsed.reason, by=comment.login)
            case commands.Verb.ABORT:
                reason = f"{parsed.reason} (by @{comment.login} on #{comment.number})"
                outcome = controller.abort(name, reason=reason)
            case commands.Verb.RETRY:
                outcome = controller.retry(name)
            case _:
                assert_never(parsed.verb)
    except errors.RolloutError as exc:
        text = f"{said} ({verdict.why}) failed: {redaction.redact(str(exc))}"
        return _say(forge, comment, Status.FAILED, text)
    lines = [f"{said} ({verdict.why}), on rollout `{name}`:", *(f"- {a}" for a in outcome.actions)]
    if not outcome.actions:
        back = outcome.phase is spec.Phase.ROLLED_BACK
        lines.append(f"- nothing to do: {'the rollout is rolled back already' if back else 'it is done already'}")
    if outcome.error:
        lines.append(f"- **not done**: {redaction.redact(outcome.error)}")
    status = Status.FAILED if outcome.error else Status.DONE
    return _say(forge, comment, status, "\n".join(lines), outcome)


def _check(
    controller: tick.Controller,
    forge: forge_base.Steering,
    comment: commands.Comment,
    parsed: commands.Command,
    said: str,
) -> Steered | tuple[str, commands.Verdict]:
    """The rollout `comment`'s PR is about and the verdict that allows its command, or the refusal said."""
    pr = forge.get(comment.number)
    branch = proposals.parse_branch(pr.branch) if pr is not None else None
    if branch is None:
        why = (
            f"#{comment.number} is not a pull request of the rollout controller's: commands act only on its PRs "
            f"(branches `{proposals.BRANCH_PREFIX}NAME/...`)"
        )
        return _say(forge, comment, Status.REFUSED, f"{said}: refused, nothing was done. {why}.")
    name = branch[0]
    controller.workspace.fetch()
    tree = controller.workspace.tree()
    loaded = load.load_repo(tree, prompts=controller.prompts, degraded=True).rollout(name)
    if loaded is None:
        why = f"main has no valid rollout named `{name}`"
        return _say(forge, comment, Status.REFUSED, f"{said}: refused, nothing was done. {why}.")
    canary = loaded.revisions.get(traffic.CANARY) if loaded.rollout.spec.canary is not None else None
    is_open = pr is not None and pr.state is forge_base.PRState.OPEN
    if why := commands.out_of_date(parsed.verb, is_open=is_open, action=branch[1], revision=branch[2], canary=canary):
        return _say(forge, comment, Status.REFUSED, f"{said}: refused, nothing was done. {why}.")
    code_owners = commands.owners(commands.codeowners(_codeowners(tree)), loaded.path)
    verdict = commands.authorize(comment.login, forge.permission(comment.login), code_owners, path=loaded.path)
    if not verdict.allowed:
        return _say(forge, comment, Status.REFUSED, f"{said}: refused, nothing was done. {verdict.why}.")
    return name, verdict


def _say(
    forge: forge_base.Steering,
    comment: commands.Comment,
    status: Status,
    text: str,
    outcome: tick.Outcome | None = None,
) -> Steered:
    forge.comment(comment.number, commands.answer(comment, text), key=commands.key(comment))
    return Steered(status, text, outcome)


def _codeowners(tree: load.Tree) -> str:
    """The CODEOWNERS file on main where GitHub looks for it (the first found), or "" when there is none."""
    for path in commands.CODEOWNERS_PATHS:
        try:
            return tree.read(path).decode("utf-8", "replace")
        except FileNotFoundError:
            continue
    return ""
