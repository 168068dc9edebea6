"""A rejected push: another writer moves a ref between our read and our compare-and-swap (git's
non-fast-forward). The local forge fetches the new state and retries; no record is lost, no PR is
doubled, and the reconciler's tick succeeds."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller import plan
from controller.forge import base as forge_base
from controller.forge import gitstore
from controller.forge import local as forge_local
from tests.helpers.gitops import GitOps, add_bad_bot, kind

pytestmark = pytest.mark.slow


class RacingStore(gitstore.GitStore):
    """The real bare-repo store; before each of the first `races` ref updates of `ref`, another
    writer lands a change on it first, so our compare-and-swap is really refused by git."""

    def __init__(self, path: Path, *, ref: str, races: int, other: forge_local.LocalForge) -> None:
        super().__init__(path)
        self.ref, self.races, self.other, self.rejected = ref, races, other, 0

    def update_ref(self, ref: str, new: str, *, old: str | None) -> bool:
        if ref == self.ref and self.races > 0:
            self.races -= 1
            self.other.propose(
                forge_base.Change(
                    branch=f"human/concurrent-{self.races}",
                    title=f"a human's PR {self.races}",
                    body="",
                    message="concurrent",
                    files={"README.md": b"hello\n"},
                ),
                base="main",
            )
        ok = super().update_ref(ref, new, old=old)
        self.rejected += not ok
        return ok


def test_a_rejected_ref_update_is_fetched_and_retried(gitops: GitOps) -> None:
    add_bad_bot(gitops)
    forge = gitops.forge
    store = RacingStore(gitops.remote, ref=forge_local.DB_REF, races=2, other=gitops.forge)
    forge.store = store
    tick = gitops.controller(forge=forge).reconcile_once()
    assert kind(tick, "bad-bot") is plan.Kind.ROLLBACK
    assert store.rejected >= 2  # git really refused our stale compare-and-swap, twice
    pulls = gitops.forge.list()
    assert sorted(p.branch.split("/")[0] for p in pulls) == ["human", "human", "rollout"]
    assert len({p.number for p in pulls}) == 3, "a lost race must not reuse a PR number"
    [ours] = gitops.forge.list(prefix="rollout/bad-bot/")
    check = gitops.forge.checks(ours.number)["rollout/gates"]
    assert check["state"] == "success" and check["summary"].startswith("merging records the rollback")


def test_a_rejected_branch_push_is_retried(gitops: GitOps) -> None:
    add_bad_bot(gitops)
    forge = gitops.forge
    branch_ref = "refs/heads/rollout/bad-bot/"
    store = RacingStore(gitops.remote, ref="", races=0, other=gitops.forge)

    original = store.update_ref
    moved = {"n": 0}

    def update_ref(ref: str, new: str, *, old: str | None) -> bool:
        if ref.startswith(branch_ref) and moved["n"] == 0:
            moved["n"] += 1  # someone pushed to the PR branch first: our CAS must fail, then retry
            other = gitstore.GitStore(gitops.remote)
            stray = other.commit_files(parent=other.resolve("refs/heads/main"), files={"x": b"1"}, message="stray")
            assert other.update_ref(ref, stray, old=old)
        return original(ref, new, old=old)

    store.update_ref = update_ref  # type: ignore[method-assign]
    forge.store = store
    tick = gitops.controller(forge=forge).reconcile_once()
    assert kind(tick, "bad-bot") is plan.Kind.ROLLBACK and moved["n"] == 1
    [ours] = gitops.forge.list(prefix="rollout/bad-bot/")
    store = gitstore.GitStore(gitops.remote)
    assert store.read(ours.head_sha, "x") is None, "the retried push replaced the stray commit with our change"
    assert b"RolledBack" in (store.read(ours.head_sha, "rollouts/bad-bot/rollout.yaml") or b"")
