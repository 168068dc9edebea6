"""The dashboard's look (controller/dashboard/look.py) on a real GitOps remote: a rollout's timeline is
every commit of its files on main (its rollout file and its prompt files), and a forge or a history
that cannot be read leaves the tick on the pages with a note saying why."""

from __future__ import annotations

import pytest

from controller import errors, load
from controller.dashboard import look, source, views
from controller.forge import base as forge_base
from controller.forge import local as forge_local
from tests.helpers.gitops import GitOps


class DownForge(forge_local.LocalForge):
    """The local forge, unreachable: its error quotes a URL with a password, as an HTTP client's does."""

    def list(self, *, prefix: str = "", state: forge_base.PRState | None = None) -> list[forge_base.PullRequest]:
        raise errors.ForgeUnavailable("cannot reach https://bot:ghp_secret@forge.example/api: connection refused")


def test_a_prompt_only_commit_is_on_the_timeline(gitops: GitOps) -> None:
    gitops.commit({"rollouts/good-bot/prompts/v2.md": "You are helpful, brief and kind.\n"}, "good-bot: kinder canary")
    gitops.commit({"rollouts/other.txt": "unrelated\n"}, "an unrelated file")
    seen = look.take(gitops.controller(), history=True)
    assert [c.subject for c in seen.history["good-bot"]] == ["good-bot: kinder canary", "Add good-bot"]
    loaded = seen.desired.rollout("good-bot")
    assert loaded is not None and look.files(loaded) == [
        "rollouts/good-bot/rollout.yaml", "rollouts/good-bot/prompts/v1.md", "rollouts/good-bot/prompts/v2.md"
    ]  # fmt: skip


def test_a_registry_prompt_is_not_a_file_of_the_rollout() -> None:
    loaded = load.LoadedRollout(
        "rollouts/a/rollout.yaml",
        None,
        {},
        {"stable": "rollouts/a/p.md", "canary": "prompts:/a/2"},  # type: ignore[arg-type]
    )
    assert look.files(loaded) == ["rollouts/a/rollout.yaml", "rollouts/a/p.md"]


def test_a_forge_that_is_down_leaves_the_tick_on_the_pages_with_a_note(gitops: GitOps) -> None:
    tick = gitops.controller().reconcile_once(dry_run=True)
    down = gitops.controller(forge=DownForge(gitops.remote, clock=gitops.now), holder="down")
    seen = look.after(down, tick, history=True)
    assert seen.pulls == [] and [o.rollout for o in seen.tick.outcomes] == ["good-bot"]
    assert seen.history["good-bot"], "the timeline is still read"
    [note] = seen.notes
    assert "the forge could not be read" in note and "ghp_secret" not in note
    snap = source.Snapshot(tick.at, seen)
    page = views.overview(snap, now=tick.at, refresh=10)
    assert 'href="/rollouts/good-bot"' in page and "the forge could not be read" in page
    assert views.overview_json(snap, now=tick.at)["notes"] == [note]


def test_a_history_that_cannot_be_read_is_a_note(gitops: GitOps, monkeypatch: pytest.MonkeyPatch) -> None:
    controller = gitops.controller()
    tick = controller.reconcile_once(dry_run=True)

    def unreadable(*paths: str, **_: object) -> list[object]:
        raise errors.RepoError(f"cannot read the history of {', '.join(paths)}: bad object")

    monkeypatch.setattr(controller.workspace, "log", unreadable)
    seen = look.after(controller, tick, history=True)
    assert "good-bot" not in seen.history and len(seen.notes) == 1
    assert seen.notes[0].startswith("no timeline for good-bot: cannot read the history of rollouts/good-bot/")
    page = views.rollout(source.Snapshot(tick.at, seen), "good-bot", now=tick.at, refresh=10) or ""
    assert "No history read." in page and "no timeline for good-bot" in page
