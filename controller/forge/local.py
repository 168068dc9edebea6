"""The embedded forge: pull requests as branches in the remote plus records kept in git.

A PR's head is a real branch (`refs/heads/rollout/...`) in the remote repository; its record
(title, body, labels, reviews, comments, checks, state) is a JSON file on the ref
`refs/rollout-forge/db`, so it survives restarts and can be inspected with plain git
(`git show refs/rollout-forge/db:pulls/1.json`). Every write is a compare-and-swap on a ref.
Merging makes a real merge commit on the base branch that names the PR.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from controller import cutpoints, errors, settings
from controller.forge import base, gitstore

DB_REF = "refs/rollout-forge/db"
MAIN = "main"  # the branch every controller reads: never deleted, never the head of a PR


def _now() -> datetime:
    return datetime.now(UTC)


class LocalForge:
    def __init__(
        self,
        remote: str | Path,
        *,
        clock: Callable[[], datetime] = _now,
        updates: int = settings.Retries.local_forge_updates,
    ) -> None:
        self.remote = str(remote)
        self.updates = updates  # compare-and-swap tries of one ref update under contention
        self.store = gitstore.GitStore(remote)
        self.clock = clock

    # -- records ---------------------------------------------------------------------------------

    def _records(self) -> list[dict[str, Any]]:
        head = self.store.resolve(DB_REF)
        if head is None:
            return []
        out = []
        for name in self.store.list(head, "pulls"):
            data = self.store.read(head, f"pulls/{name}")
            if data is None:
                continue
            try:
                out.append(json.loads(data))
            except json.JSONDecodeError as exc:
                raise errors.ForgeError(f"local forge: pulls/{name} on {DB_REF} is not valid JSON") from exc
        return sorted(out, key=lambda r: -int(r["number"]))

    def _record(self, number: int) -> dict[str, Any]:
        for record in self._records():
            if record["number"] == number:
                return record
        raise errors.ForgeError(f"local forge: no pull request #{number}")

    def _write(self, change: Callable[[list[dict[str, Any]]], dict[str, Any]], message: str) -> dict[str, Any]:
        """Apply `change` to the records and commit the record it returns; retried on a lost race."""
        for _ in range(self.updates):
            head = self.store.resolve(DB_REF)
            record = change(self._records())
            record["updated_at"] = self.clock().isoformat()
            data = json.dumps(record, indent=2, sort_keys=True).encode() + b"\n"
            commit = self.store.commit_files(
                parent=head, files={f"pulls/{record['number']:06d}.json": data}, message=message
            )
            if self.store.update_ref(DB_REF, commit, old=head):
                return record
        raise errors.ForgeUnavailable(f"local forge: {DB_REF} kept changing under us; try again")

    def _update(self, number: int, message: str, edit: Callable[[dict[str, Any]], None]) -> base.PullRequest:
        def change(records: list[dict[str, Any]]) -> dict[str, Any]:
            record = next((r for r in records if r["number"] == number), None)
            if record is None:
                raise errors.ForgeError(f"local forge: no pull request #{number}")
            edit(record)
            return record

        return _pull(self._write(change, message))

    # -- the Forge protocol ----------------------------------------------------------------------

    def find(self, branch: str) -> base.PullRequest | None:
        """The PR of `branch`; an open one's head is its branch as it is now, as GitHub reports it (a
        push to the branch moves the head, and reviews of the earlier head no longer approve it)."""
        record = next((r for r in self._records() if r["branch"] == branch), None)
        if record is None:
            return None
        if record["state"] == "open" and (live := self.store.resolve(f"refs/heads/{branch}")) is not None:
            record = {**record, "head_sha": live}
        return _pull(record)

    def list(self, *, prefix: str = "", state: base.PRState | None = None) -> list[base.PullRequest]:
        pulls = [_pull(r) for r in self._records() if r["branch"].startswith(prefix)]
        return [p for p in pulls if state is None or p.state is state]

    def get(self, number: int) -> base.PullRequest:
        return _pull(self._record(number))

    def comments(self, number: int) -> dict[str, str]:
        return dict(self._record(number).get("comments", {}))

    def checks(self, number: int) -> dict[str, dict[str, str]]:
        return dict(self._record(number).get("checks", {}))

    def diff(self, number: int) -> str:
        """A pull request's changes against its base; once merged, against the base it was merged into."""
        pr = self.get(number)
        return self.store.diff(f"{pr.merge_sha}^1" if pr.merge_sha else f"refs/heads/{pr.base}", pr.head_sha)

    def propose(self, change: base.Change, *, base: str) -> base.PullRequest:
        base_sha = self.store.resolve(f"refs/heads/{base}")
        if base_sha is None:
            raise errors.ForgeError(f"local forge: no base branch {base!r}")
        ref = f"refs/heads/{change.branch}"
        head = self._commit_branch(ref, base_sha, change)
        cutpoints.reached(cutpoints.BRANCH_PUSHED)

        pr = self._open(change.branch, base=base, head=head, title=change.title, body=change.body, labels=change.labels)
        cutpoints.reached(cutpoints.PR_OPENED)
        return pr

    def create(self, branch: str, *, base: str, title: str, body: str) -> base.PullRequest:
        """A person's pull request from `branch`, already pushed to the remote (`rollout pr create`);
        find-or-update like `propose`, so creating it again after a push updates it."""
        head = self.store.resolve(f"refs/heads/{branch}")
        if head is None:
            raise errors.ForgeError(f"local forge: no branch {branch!r} in {self.remote}; push it first")
        base_sha = self.store.resolve(f"refs/heads/{base}")
        if base_sha is None:
            raise errors.ForgeError(f"local forge: no base branch {base!r} in {self.remote}")
        if self.store.is_ancestor(head, base_sha):
            raise errors.ForgeError(f"local forge: {branch!r} has no commits that {base!r} does not have")
        return self._open(branch, base=base, head=head, title=title, body=body, labels=())

    def _open(
        self, branch: str, *, base: str, head: str, title: str, body: str, labels: tuple[str, ...]
    ) -> base.PullRequest:
        """Open the PR whose head is `branch` at `head`, or update the open one (new commits dismiss its
        approvals, as branch protection does)."""

        def upsert(records: list[dict[str, Any]]) -> dict[str, Any]:
            open_one = next((r for r in records if r["branch"] == branch and r["state"] == "open"), None)
            record = open_one or {
                "number": max((r["number"] for r in records), default=0) + 1,
                "branch": branch,
                "state": "open",
                "created_at": self.clock().isoformat(),
                "reviews": [],
                "comments": {},
                "checks": {},
                "merge_sha": "",
            }
            if open_one is not None and (open_one["head_sha"] != head or open_one["base"] != base):
                record["reviews"] = []  # an approval was of these commits into that branch
            record.update(base=base, title=title, body=body, labels=sorted(set(labels)), head_sha=head)
            return record

        return _pull(self._write(upsert, f"propose {branch}"))

    def _commit_branch(self, ref: str, base_sha: str, change: base.Change) -> str:
        """Point the PR branch at base + files; keep the current commit if it already is exactly that."""
        for _ in range(self.updates):
            current = self.store.resolve(ref)
            commit = self.store.commit_files(parent=base_sha, files=dict(change.files), message=change.message)
            unchanged = current is not None and self.store.tree_of(current) == self.store.tree_of(commit)
            if unchanged and self.store.resolve(f"{current}^") == base_sha:
                assert current is not None
                return current
            if self.store.update_ref(ref, commit, old=current):
                return commit
        raise errors.ForgeUnavailable(f"local forge: branch {ref} kept changing under us; try again")

    def comment(self, number: int, body: str, *, key: str) -> None:
        self._update(number, f"comment on #{number}", lambda r: r.setdefault("comments", {}).__setitem__(key, body))

    def set_check(self, number: int, *, state: base.CheckState, summary: str, context: str) -> None:
        def edit(record: dict[str, Any]) -> None:
            record.setdefault("checks", {})[context] = {"state": str(state), "summary": summary[:1000]}

        self._update(number, f"check {context} on #{number}", edit)
        cutpoints.reached(cutpoints.CHECK_SET)

    def add_labels(self, number: int, labels: tuple[str, ...]) -> None:
        def edit(record: dict[str, Any]) -> None:
            record["labels"] = sorted(set(record.get("labels", [])) | set(labels))

        self._update(number, f"label #{number}", edit)

    def approve(self, number: int, *, by: str) -> base.PullRequest:
        """A review that approves the PR's current head (local forge only: `rollout pr approve`)."""

        def edit(record: dict[str, Any]) -> None:
            if record["state"] != "open":
                raise errors.ForgeError(f"local forge: #{number} is {record['state']}, not open")
            record.setdefault("reviews", []).append(
                {"by": by, "state": "APPROVED", "head_sha": record["head_sha"], "at": self.clock().isoformat()}
            )

        return self._update(number, f"approve #{number}", edit)

    def merge(self, number: int, *, message: str) -> base.PullRequest:
        record = self._record(number)
        if record["state"] == "merged":
            return _pull(record)
        if record["state"] != "open":
            raise errors.ForgeError(f"local forge: #{number} is closed; it cannot be merged")
        head = self.store.resolve(f"refs/heads/{record['branch']}")
        if head is None or head != record["head_sha"]:
            raise errors.ForgeError(
                f"local forge: #{number}'s branch moved since the PR was updated; update it (a person's PR: "
                "`rollout pr create` again) and approve it again"
            )
        base_ref = f"refs/heads/{record['base']}"
        # the subject is the PR's short title, as GitHub's merge says it; the body says where it came from
        subject = f"{record['title']} (#{number})"
        said = f"Merge pull request #{number} from {record['branch']}"
        if message and message != record["title"]:
            said += f"\n\n{message}"
        for _ in range(self.updates):
            base_sha = self.store.resolve(base_ref)
            if base_sha is None:
                raise errors.ForgeError(f"local forge: no base branch {record['base']!r}")
            merged = self.store.merge(base=base_sha, head=head, message=f"{subject}\n\n{said}")
            if self.store.update_ref(base_ref, merged, old=base_sha):
                break
        else:
            raise errors.ForgeUnavailable(f"local forge: {base_ref} kept moving; try again")

        def done(r: dict[str, Any]) -> None:
            r.update(state="merged", merge_sha=merged, merged_at=self.clock().isoformat())

        pr = self._update(number, f"merge #{number}", done)
        if self._disposable(record["branch"]):
            self.store.delete_ref(f"refs/heads/{record['branch']}", old=head)  # a merged branch is done
        return pr

    def _disposable(self, branch: str) -> bool:
        """A merged head branch is deleted, unless it is one a repository lives on: main (what every
        controller reads) or the base of an open PR."""
        return branch != MAIN and all(r["base"] != branch for r in self._records() if r["state"] == "open")

    def close(self, number: int, *, comment: str = "") -> base.PullRequest:
        def edit(record: dict[str, Any]) -> None:
            if record["state"] == "open":
                record["state"] = "closed"
                record["closed_at"] = self.clock().isoformat()
            if comment:
                record.setdefault("comments", {})["close"] = comment

        return self._update(number, f"close #{number}", edit)


def _pull(record: Mapping[str, Any]) -> base.PullRequest:
    latest: dict[str, str] = {}
    for review in record.get("reviews", []):
        if review.get("head_sha") == record.get("head_sha"):
            latest[review["by"]] = review["state"]
    approved = "APPROVED" in latest.values() and "CHANGES_REQUESTED" not in latest.values()
    return base.PullRequest(
        number=int(record["number"]),
        branch=record["branch"],
        base=record.get("base", "main"),
        title=record.get("title", ""),
        body=record.get("body", ""),
        state=base.PRState(record["state"]),
        labels=tuple(record.get("labels", ())),
        approved=approved,
        head_sha=record.get("head_sha", ""),
        merge_sha=record.get("merge_sha", ""),
        url=f"local:#{record['number']}",
        meta={k: str(record[k]) for k in ("created_at", "updated_at", "merged_at", "closed_at") if k in record},
    )
