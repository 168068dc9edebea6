"""The forge Protocol: find-or-update pull requests, comments, labels and statuses.

The reconciler decides what a pull request says; a forge (the local forge, GitHub) only stores
it. Every write is find-or-update keyed by the head branch, so a tick run twice opens one PR.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol


class PRState(StrEnum):
    OPEN = "open"
    MERGED = "merged"
    CLOSED = "closed"  # closed without merging


class CheckState(StrEnum):
    PENDING = "pending"
    SUCCESS = "success"
    FAILURE = "failure"
    ERROR = "error"


@dataclass(frozen=True)
class Change:
    """What a pull request proposes: files to commit on top of the base branch, and its text."""

    branch: str  # the head branch, e.g. "rollout/support-bot/advance-3-3f2a9c1e04ab"; the PR's identity
    title: str
    body: str
    message: str  # the commit message
    files: Mapping[str, bytes]  # path from the repository root -> new content
    labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class PullRequest:
    number: int
    branch: str
    base: str
    title: str
    body: str
    state: PRState
    labels: tuple[str, ...] = ()
    approved: bool = False  # at least one approving review and no outstanding change request
    head_sha: str = ""
    merge_sha: str = ""  # the merge commit on the base branch, once merged
    url: str = ""
    meta: Mapping[str, str] = field(default_factory=dict)


class Forge(Protocol):
    """A place for pull requests. Implementations translate; the reconciler decides."""

    def find(self, branch: str) -> PullRequest | None:
        """The most recent PR whose head is `branch`, in any state, or None."""
        ...

    def list(self, *, prefix: str = "", state: PRState | None = None) -> list[PullRequest]:
        """PRs whose head branch starts with `prefix`, newest first (all pages)."""
        ...

    def propose(self, change: Change, *, base: str) -> PullRequest:
        """Find-or-update: commit `change.files` on a branch from `base`, then open the PR or update
        the open one with the same head branch (title, body, labels, and the branch's commit)."""
        ...

    def comment(self, number: int, body: str, *, key: str) -> None:
        """One sticky comment per (PR, key), created once and then edited in place."""
        ...

    def set_check(self, number: int, *, state: CheckState, summary: str, context: str) -> None:
        """A commit status (or check run) on the PR's head commit, e.g. the gate summary."""
        ...

    def add_labels(self, number: int, labels: tuple[str, ...]) -> None: ...

    def merge(self, number: int, *, message: str) -> PullRequest:
        """Merge (a real merge commit naming the PR). Only for `promotion: auto` or approved PRs."""
        ...

    def close(self, number: int, *, comment: str = "") -> PullRequest: ...


class Steering(Protocol):
    """What PR comment commands need of a forge (GitHub): a PR by number, a person's permission on the
    repository, and the sticky comment that answers."""

    def get(self, number: int) -> PullRequest | None:
        """The PR numbered `number` whose head branch lives in this repository, or None (none, or a fork's)."""
        ...

    def permission(self, login: str) -> str:
        """`login`'s permission on the repository as GitHub names it: admin, write, read or none."""
        ...

    def comment(self, number: int, body: str, *, key: str) -> None: ...
