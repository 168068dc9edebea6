"""`rollout pr create|list|show|approve|merge|close`: the pull requests of the local forge, a git remote
on disk, for a reviewer without a GitHub; `create` opens a person's PR from a branch pushed there."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from controller.cli import common, console

if TYPE_CHECKING:
    from controller.forge import base as forge_base
    from controller.forge import local as forge_local


def add_parser(sub: Any) -> None:
    pr = sub.add_parser("pr", help="the local forge's pull requests", epilog=common.example("rollout pr list --all"))
    pr_sub = pr.add_subparsers(dest="pr_command", required=True, metavar="ACTION")
    create = pr_sub.add_parser(
        "create",
        help="open a pull request from a branch pushed to the remote",
        epilog=common.example('rollout pr create --title "support-bot: prompt v4" --head prompt-v4'),
    )
    create.add_argument("--title", required=True, help="the pull request's title")
    create.add_argument("--body", default="", help="its description, markdown (default: none)")
    create.add_argument("--head", default=None, help="the branch (default: the one checked out here)")
    create.add_argument("--base", default="main", help="the branch to merge into")
    ls = pr_sub.add_parser(
        "list", help="open pull requests (--all for every one)", epilog=common.example("rollout pr list --all")
    )
    ls.add_argument("--all", action="store_true", help="closed and merged ones too")
    show = pr_sub.add_parser(
        "show", help="one pull request: body, checks, comments", epilog=common.example("rollout pr show 3 --diff")
    )
    show.add_argument("--diff", action="store_true", help="and its diff against its base")
    for p in (ls, show):
        p.add_argument("--format", choices=("text", "json"), default="text", help="json: stable keys")
    approve = pr_sub.add_parser(
        "approve", help="approve as a reviewer", epilog=common.example("rollout pr approve 3 --by alice")
    )
    approve.add_argument("--by", default=None, help="the reviewer's name (default: $USER)")
    merge = pr_sub.add_parser(
        "merge", help="merge (a real merge commit naming the PR)", epilog=common.example("rollout pr merge 3")
    )
    merge.add_argument("--force", action="store_true", help="merge without an approval or a passing check")
    close = pr_sub.add_parser(
        "close", help="close without merging", epilog=common.example('rollout pr close 3 --comment "superseded"')
    )
    close.add_argument("--comment", default="", help="left on the PR (default: none)")
    for p in (show, approve, merge, close):
        p.add_argument("number", type=int, metavar="N", help="the pull request's number")
    for p in (create, ls, show, approve, merge, close):
        p.add_argument("--remote", default=None, help="the local remote, a path (default: $ROLLOUT_REMOTE)")
    pr.set_defaults(func=cmd_pr)


def _local_forge(args: argparse.Namespace) -> forge_local.LocalForge:
    """The local forge of the remote the user named; refused unless its main holds controller.yaml."""
    from controller import errors, load, repo
    from controller.forge import local as forge_local

    remote = common.remote(args)
    if not Path(remote).exists():
        raise common.UsageError("`rollout pr` works on the local forge: give --remote PATH")
    try:
        repo.GitTree.open(remote, "refs/heads/main").read(load.CONFIG_FILE)
    except (FileNotFoundError, errors.RepoError):
        raise common.UsageError(
            f"{remote}: its main has no {load.CONFIG_FILE}, so it is not a rollouts repository; nothing was done"
        ) from None
    return forge_local.LocalForge(Path(remote))


@console.coloured
def cmd_pr(args: argparse.Namespace, out: TextIO) -> int:
    from controller.forge import base as forge_base

    forge = _local_forge(args)
    match args.pr_command:
        case "create":
            pr, opened = _create(forge, args)
            out.write(f"{opened} #{pr.number} {pr.title} ({pr.branch} -> {pr.base}) in {forge.remote}\n")
        case "list":
            state = None if args.all else forge_base.PRState.OPEN
            _list(forge.list(prefix="", state=state), args, out)
        case "show":
            _show(forge, args, out)
        case "approve":
            by = args.by or os.environ.get("USER", "reviewer")
            pr = forge.approve(args.number, by=by)
            out.write(f"approved #{pr.number} as {by} in {forge.remote}\n")
        case "merge":
            pr = forge.get(args.number)
            if not pr.approved and not args.force:
                raise common.UsageError(f"#{pr.number} is not approved (approve it first, or --force)")
            refused = None if args.force else _unchecked(forge, pr)
            if refused:
                out.write(refused)
                return 1
            pr = forge.merge(args.number, message=pr.title)
            out.write(f"merged #{pr.number} as {pr.merge_sha[:10]} in {forge.remote}\n")
        case "close":
            pr = forge.close(args.number, comment=args.comment)
            out.write(f"closed #{pr.number} in {forge.remote}\n")
    return 0


def _unchecked(forge: forge_local.LocalForge, pr: forge_base.PullRequest) -> str | None:
    """Why `pr` may not be merged yet, as branch protection would say it on GitHub; None when it may. A
    PR the controller opened carries its `rollout/gates` check, which must pass (a tick that held sets it
    back to pending); any other PR gets `rollout check` now, as the checks workflow runs it: a PR that
    lets a canary get more traffic needs passing gates, whoever opened it."""
    from datetime import UTC, datetime

    from controller import review
    from controller.cli import gates
    from controller.reconcile import pulls

    found = forge.checks(pr.number).get(pulls.CHECK_CONTEXT)
    if found is not None:
        if found["state"] == "success":
            return None
        return (
            f"#{pr.number} is not mergeable: its {pulls.CHECK_CONTEXT} check is {found['state']}: "
            f"{found['summary']}\n(wait for it to pass, or merge with --force)\n"
        )
    at = datetime.now(UTC)
    result = gates.check(Path(forge.remote), base=f"refs/heads/{pr.base}", head=pr.head_sha, at=at)
    if result.mergeable:
        return None
    return review.text(result, at=at.isoformat(timespec="seconds")) + "\n(merge with --force to override)\n"


def _create(forge: forge_local.LocalForge, args: argparse.Namespace) -> tuple[forge_base.PullRequest, str]:
    """A person's PR from --head (default: the branch checked out in the current directory), and whether
    it was opened or an open one updated."""
    from controller import proposals, repo
    from controller.forge import base as forge_base
    from controller.forge import local as forge_local

    head = args.head or repo.current_branch(Path.cwd())
    if head is None:
        raise common.UsageError("name the branch with --head: the current directory has no branch checked out")
    if head.startswith(proposals.BRANCH_PREFIX):
        raise common.UsageError(
            f"{head!r}: branches under {proposals.BRANCH_PREFIX} are the controller's own; name yours otherwise"
        )
    if head == forge_local.MAIN:
        raise common.UsageError(f"--head {head}: the controllers read {head}; push your change on a branch of its own")
    if head == args.base:
        raise common.UsageError(f"--head and --base are both {head!r}: push your change on a branch of its own")
    updated = any(p.branch == head for p in forge.list(prefix=head, state=forge_base.PRState.OPEN))
    pr = forge.create(head, base=args.base, title=args.title, body=args.body)
    return pr, "updated" if updated else "opened"


def _pull_json(pr: forge_base.PullRequest) -> dict[str, Any]:
    """A pull request's stable keys in `rollout pr list|show --format json`."""
    return {
        "number": pr.number,
        "title": pr.title,
        "state": pr.state.value,
        "branch": pr.branch,
        "base": pr.base,
        "headSha": pr.head_sha,
        "mergeSha": pr.merge_sha or None,
        "approved": pr.approved,
        "labels": list(pr.labels),
    }


def _shown(text: str) -> str:
    """A PR's words for a terminal: lines and tabs kept, any other control character (an escape sequence
    in a title someone pushed) spelled out, so showing a PR never drives the reader's terminal."""
    from controller import errors

    return "\n".join("\t".join(errors.printable(part) for part in line.split("\t")) for line in text.split("\n"))


def _list(pulls: list[forge_base.PullRequest], args: argparse.Namespace, out: TextIO) -> None:
    if args.format == "json":
        out.write(json.dumps({"pulls": [_pull_json(pr) for pr in pulls]}, indent=2) + "\n")
        return
    if not pulls:
        out.write("no pull requests\n" if args.all else "no open pull requests\n")
        return
    terminal = console.terminal(out)
    if terminal is not None:
        from rich.table import Table

        table = Table("#", "state", "", "title", "labels", box=None, header_style="bold")
        for pr in pulls:
            table.add_row(
                str(pr.number),
                pr.state.value,
                "approved" if pr.approved else "",
                _shown(pr.title),
                ", ".join(pr.labels),
            )
        terminal.print(table)
        return
    for pr in pulls:
        flags = f"  [{','.join(pr.labels)}]" if pr.labels else ""
        approved = "approved" if pr.approved else ""
        out.write(f"#{pr.number:<4} {pr.state.value:<7} {approved:<9} {_shown(pr.title)}{flags}\n")


def _show(forge: forge_local.LocalForge, args: argparse.Namespace, out: TextIO) -> None:
    """One pull request: its header, body and comments rendered from GitHub markdown (rich on a
    terminal, plain text elsewhere), its checks, and with --diff its changes."""
    pr = forge.get(args.number)
    checks, comments = forge.checks(args.number), forge.comments(args.number)
    diff = forge.diff(args.number) if args.diff else None
    if args.format == "json":
        found = {**_pull_json(pr), "body": pr.body, "checks": checks, "comments": comments, "diff": diff}
        out.write(json.dumps(found, indent=2) + "\n")
        return
    out.write(f"#{pr.number} {_shown(pr.title)}\n{pr.state.value}, {pr.branch} -> {pr.base}, head {pr.head_sha[:10]}")
    out.write(f"{', approved' if pr.approved else ''}; labels: {', '.join(pr.labels) or '-'}\n\n")
    _markdown(_shown(pr.body), out)
    for context, check in checks.items():
        out.write(f"check {context}: {check['state']}: {_shown(check['summary'])}\n")
    for key, body in comments.items():
        out.write(f"\ncomment ({key}):\n")
        _markdown(_shown(body), out)
    if diff is not None:
        out.write("\n")
        terminal = console.terminal(out)
        if terminal is None:
            out.write(diff)
        else:
            from rich.syntax import Syntax

            terminal.print(Syntax(diff, "diff", theme="ansi_dark", background_color="default"))


def _markdown(text: str, out: TextIO) -> None:
    """GitHub markdown rendered by rich on a terminal; elsewhere as plain text (`report.markdown_text`)."""
    from controller import report

    terminal = console.terminal(out)
    if terminal is None:
        out.write(report.markdown_text(text))
        return
    from rich.markdown import Markdown

    terminal.print(Markdown(report.unfold_details(text)))
