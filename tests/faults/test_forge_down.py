"""The forge cannot be read at the start of a tick (GitHub down, this identity paused with nothing
kept): a rollback's router write still goes through, since it never waits for the forge, while any write
that would raise exposure holds, since the open PRs it might undo (a revert waiting) are unknown."""

from __future__ import annotations

from controller import errors
from controller.forge import base as forge_base
from controller.forge import local as forge_local
from tests.helpers.gitops import GitOps, add_bad_bot, outcome


class Down(forge_local.LocalForge):
    def list(self, *, prefix: str = "", state: forge_base.PRState | None = None) -> list[forge_base.PullRequest]:
        raise errors.ForgeUnavailable("github acme/rollouts: 503 Service Unavailable")


def test_a_forge_that_cannot_be_read_still_lets_a_rollback_through(gitops: GitOps) -> None:
    add_bad_bot(gitops)
    tick = gitops.controller(forge=Down(gitops.remote)).reconcile_once()
    bad, good = outcome(tick, "bad-bot"), outcome(tick, "good-bot")
    live = gitops.live("bad")
    assert live is not None and live.weight("canary") == 0 and live.shadow == 0  # rolled back, at once
    assert bad.adapter == "forge" and bad.error and "only what takes the canary out was written" in bad.error
    assert any("router local: set" in a for a in bad.actions)
    assert gitops.live("good") is None  # its first step mirrors traffic to the canary: a raise, held
    assert good.adapter == "forge" and good.actions == ()
    assert gitops.forge.list() == []  # no PR opened while the forge could not be read
