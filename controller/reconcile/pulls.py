"""The act pass of a tick on the forge: carries out a `proposals.Proposal` (open or update its PR,
set its check, close, label or comment on the rollout's other PRs, merge under `promotion: auto`),
one exhaustive `match` on the action. What the PRs say is `proposals`'; this module only does it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import assert_never

from controller import errors, gates, load, plan, proposals, render, repo, settings, spec, traffic
from controller.forge import base as forge_base
from controller.reconcile import observe

CHECK_CONTEXT = "rollout/gates"


@dataclass
class Pulls:
    """The controller's pull requests on one forge, and the checks this process has set on them."""

    forge: forge_base.Forge
    workspace: repo.Workspace
    clock: Callable[[], datetime]
    remember: int = settings.Memory.checks  # (PR, head) checks remembered, so they are not set again
    refresh: timedelta = settings.Settings.pr_refresh  # an open PR's figures are rewritten at most this often
    _checks: dict[tuple[int, str], tuple[str, str]] = field(default_factory=dict)  # (PR, head) -> check we set
    _proposed: dict[str, tuple[str, str, datetime]] = field(default_factory=dict)  # branch -> (gist, head, when)

    def ours(self, rollouts: Sequence[load.LoadedRollout]) -> list[forge_base.PullRequest]:
        """The controller's open PRs (one listing, whatever the history), and, for each of `rollouts`
        with a canary, the newest revert PR of that revision when none is open: closed without merging,
        it still holds the canary at 0 (`observe.rollback_pending`). On GitHub both are conditional
        requests, free while nothing changed."""
        found = self.forge.list(prefix=proposals.BRANCH_PREFIX, state=forge_base.PRState.OPEN)
        open_branches = {p.branch for p in found}
        for loaded in rollouts:
            revision = loaded.revisions.get(traffic.CANARY)
            if revision is None:
                continue
            branch = proposals.branch(loaded.name, proposals.Action.ROLLBACK, revision)
            if branch not in open_branches and (pr := self.forge.find(branch)) is not None:
                found.append(pr)
            # a pause PR open while main says the revision was retried: the retry PR (merged and on main),
            # which lifts the pause if it came after it (`observe.lifted_pauses`); asked only then
            status = loaded.rollout.status
            pause = proposals.branch(loaded.name, proposals.Action.PAUSE, revision)
            if pause in open_branches and status is not None and revision in status.retried:
                retry = self.forge.find(proposals.branch(loaded.name, proposals.Action.RETRY, revision))
                if (
                    retry is not None
                    and retry.state is forge_base.PRState.MERGED
                    and self.workspace.has(retry.merge_sha)
                ):
                    found.append(retry)
        return found

    def act(
        self,
        loaded: load.LoadedRollout,
        decision: plan.Decision,
        found: Sequence[gates.GateEvidence],
        mine: Sequence[forge_base.PullRequest],
        *,
        base: str,
        actions: list[str],
        applied: bool,
    ) -> forge_base.PullRequest | None:
        """The forge side of a decision: its PR carried out, if it proposes one; on a hold, the open
        advance PRs' checks back to pending; and every open revert PR's check in place."""
        pr: forge_base.PullRequest | None = None
        action = proposals.action_for(decision.kind)
        if action is not None:
            pr = self.carry_out(
                self.proposal(loaded, action, decision, found, applied=applied), mine, base=base, actions=actions
            )
        elif decision.kind is plan.Kind.HOLD:
            for other in mine:
                parsed = proposals.parse_branch(other.branch)
                if other.state is forge_base.PRState.OPEN and parsed and parsed[1] == proposals.Action.ADVANCE:
                    self._set_check(other, forge_base.CheckState.PENDING, decision.reason)
        self._check_open_reverts(mine, actions)
        return pr

    def proposal(
        self,
        loaded: load.LoadedRollout,
        action: proposals.Action,
        decision: plan.Decision,
        found: Sequence[gates.GateEvidence],
        *,
        applied: bool = True,
    ) -> proposals.Proposal:
        """`proposals.propose` on the rollout file as the workspace has it; on a mesh router, with the
        route's manifest as merging leaves the rollout (`render.mesh_manifest`), so that the manifest in
        git is always what the rollout file says. A split the router cannot express raises RouterError."""
        tree = self.workspace.tree()
        text = tree.read(loaded.path).decode("utf-8")
        p = proposals.propose(loaded, action, decision, found, text=text, at=self.clock(), applied=applied)
        config = load.load_config(tree)
        router = config.routers.get(loaded.rollout.spec.router)
        if not isinstance(router, render.MeshConfig):
            return p
        overlay = _Overlay(tree, {p.path: p.text.encode("utf-8")})
        after = load.load_rollout(overlay, p.path, config, prompts=_Read(loaded), degraded=True)
        m = render.mesh_manifest(loaded.rollout.spec.router, router, after)
        return replace(p, also=((m.path, m.text),))

    def carry_out(
        self, p: proposals.Proposal, mine: Sequence[forge_base.PullRequest], *, base: str, actions: list[str]
    ) -> forge_base.PullRequest:
        """Find-or-update the PR of `p` against `base`, then what its action does to the check, the
        merge, and the rollout's other PRs (`mine`); what was done goes to `actions`."""
        existing = self.forge.find(p.branch)
        merged = existing if existing is not None and existing.state is forge_base.PRState.MERGED else None
        match p.action:
            case proposals.Action.ROLLBACK:
                # Already merged: main shows it on the next fetch. Unless main already has that merge and
                # still wants this rollback: then that PR recorded an earlier rollback of the revision,
                # before a retry, and this one needs its own record.
                if merged is not None and not self.workspace.has(merged.merge_sha):
                    pr = merged
                else:
                    pr = self._propose(p, base=base, existing=existing)
                    self._set_passing(pr, p)
                for other in mine:
                    if other.state is forge_base.PRState.OPEN and other.branch != pr.branch:
                        self.forge.close(other.number, comment=proposals.rolled_back_in(pr.number))
                        actions.append(f"closed #{other.number}")
            case proposals.Action.ADVANCE:
                # never the merged one: the branch is one per revision, so a merged one was an earlier step
                pr = self._promote(self._propose(p, base=base, existing=existing), p, actions)
            case proposals.Action.COMPLETE | proposals.Action.DECOMMISSION:
                pr = self._promote(merged or self._propose(p, base=base, existing=existing), p, actions)
            case proposals.Action.PAUSE:
                pr = self._recorded(merged) or self._propose(p, base=base, existing=existing)
                self._set_passing(pr, p)
                for other in mine:
                    if other.state is forge_base.PRState.OPEN and other.branch != pr.branch:
                        self.forge.add_labels(other.number, (proposals.PAUSED_LABEL,))
                        self.forge.comment(other.number, proposals.pause_comment(p.reason, pr.number), key="pause")
            case proposals.Action.RETRY:
                pr = self._recorded(merged) or self._propose(p, base=base, existing=existing)
                for other in mine:  # an open pause PR holds the rollout until the retry is merged
                    parsed = proposals.parse_branch(other.branch)
                    if other.state is forge_base.PRState.OPEN and parsed and parsed[1] == proposals.Action.PAUSE:
                        self.forge.comment(other.number, proposals.retry_proposed(pr.number), key="retry")
                        actions.append(f"#{other.number} holds until #{pr.number} is merged")
            case _:
                assert_never(p.action)
        return pr

    def _recorded(self, merged: forge_base.PullRequest | None) -> forge_base.PullRequest | None:
        """A merged PR of the branch a pause or a retry proposes, while main does not have its merge yet
        (the next fetch shows it); None once main has it: that PR recorded an earlier pause or retry of
        the revision, and this one needs its own record."""
        return merged if merged is not None and not self.workspace.has(merged.merge_sha) else None

    def close_superseded(self, loaded: load.LoadedRollout, mine: Sequence[forge_base.PullRequest]) -> list[str]:
        """Open PRs about a revision main no longer has are closed, with a word on why; so is an open pause
        PR a merged retry lifted (`observe.lifted_pauses`)."""
        current = set(loaded.revisions.values())
        done = []
        for pause, retry in observe.lifted_pauses(loaded, mine):
            self.forge.close(pause.number, comment=proposals.retried_in(retry.number))
            done.append(f"closed #{pause.number} (retried in #{retry.number})")
        for pr in mine:
            parsed = proposals.parse_branch(pr.branch)
            if pr.state is forge_base.PRState.OPEN and parsed and parsed[2] not in current:
                self.forge.close(pr.number, comment=proposals.SUPERSEDED)
                done.append(f"closed #{pr.number} (superseded)")
        return done

    def _propose(
        self, p: proposals.Proposal, *, base: str, existing: forge_base.PullRequest | None
    ) -> forge_base.PullRequest:
        """Find-or-update `p`'s PR. An open PR this process proposed with the same title, file, labels
        and check, whose head is still the commit this process put there, is left as it is until
        `refresh` has passed: only its figures changed (a sample count grows every tick), and rewriting
        every open PR every tick would spend GitHub's budget on noise. A head someone else moved is
        set back at once, never checked or merged as it is."""
        gist = hashlib.sha256(repr((p.title, p.text, p.also, p.labels, p.check, p.message, base)).encode()).hexdigest()
        now = self.clock()
        last = self._proposed.get(p.branch)
        if (
            existing is not None
            and existing.state is forge_base.PRState.OPEN
            and last is not None
            and last[:2] == (gist, existing.head_sha)
            and now - last[2] < self.refresh
        ):
            return existing
        if len(self._proposed) >= self.remember:
            self._proposed.clear()
        pr = self._change(p, base=base)
        self._proposed[p.branch] = (gist, pr.head_sha, now)
        return pr

    def _change(self, p: proposals.Proposal, *, base: str) -> forge_base.PullRequest:
        change = forge_base.Change(
            branch=p.branch,
            title=p.title,
            body=p.body,
            message=p.message,
            files={p.path: p.text.encode("utf-8"), **{path: text.encode("utf-8") for path, text in p.also}},
            labels=p.labels,
        )
        return self.forge.propose(change, base=base)

    def _promote(self, pr: forge_base.PullRequest, p: proposals.Proposal, actions: list[str]) -> forge_base.PullRequest:
        """A promotion's passing check, and its merge under `promotion: auto`."""
        self._set_passing(pr, p)
        if p.auto_merge and pr.state is forge_base.PRState.OPEN:
            pr = self.forge.merge(pr.number, message=pr.title)
            actions.append(f"merged #{pr.number} (promotion: auto)")
        return pr

    def _set_passing(self, pr: forge_base.PullRequest, p: proposals.Proposal) -> None:
        if p.check is not None:
            self._set_check(pr, forge_base.CheckState.SUCCESS, p.check)

    def _check_open_reverts(self, mine: Sequence[forge_base.PullRequest], actions: list[str]) -> None:
        """Every open revert PR carries a passing `rollout/gates` check that says what merging records (a
        failing one would block the record behind a required check). `carry_out` sets it when it opens
        the PR; a process that died in between leaves the PR without it, so each process sets it once on
        every open revert PR it has not set a check on."""
        for other in mine:
            parsed = proposals.parse_branch(other.branch)
            if other.state is not forge_base.PRState.OPEN or not parsed or parsed[1] != proposals.Action.ROLLBACK:
                continue
            if (other.number, other.head_sha) not in self._checks:
                self._set_check(other, forge_base.CheckState.SUCCESS, proposals.REVERT_CHECK)
                actions.append(f"set the check on revert #{other.number}")

    def _set_check(self, pr: forge_base.PullRequest, state: forge_base.CheckState, summary: str) -> None:
        """The `rollout/gates` check of a PR's head commit; skipped when this process already set the same
        one there (on GitHub every call adds a status to the commit, at most 1000 per commit)."""
        key, value = (pr.number, pr.head_sha), (state.value, summary)
        if self._checks.get(key) == value:
            return
        self.forge.set_check(pr.number, state=state, summary=summary, context=CHECK_CONTEXT)
        if len(self._checks) >= self.remember:
            self._checks.clear()
        self._checks[key] = value


@dataclass(frozen=True)
class _Overlay:
    """A tree with some files as a pull request leaves them (a `load.Tree`)."""

    tree: load.Tree
    files: dict[str, bytes]

    def read(self, path: str) -> bytes:
        return self.files[path] if path in self.files else self.tree.read(path)

    def listdir(self, path: str) -> list[str]:
        return self.tree.listdir(path)


@dataclass(frozen=True)
class _Read:
    """The `prompts:/` prompts this tick already read for a rollout (a `load.PromptRegistry`): a pull request
    only moves the rollout's variants, so its file as merging leaves it names no other, and rendering it
    asks MLflow nothing."""

    loaded: load.LoadedRollout

    def template(self, config: spec.MlflowConfig, name: str, version: int) -> str:
        for role, prompt in self.loaded.prompts.items():
            if spec.registry_prompt(prompt) == (name, version) and role in self.loaded.prompt_texts:
                return self.loaded.prompt_texts[role]
        raise errors.RegistryUnavailable(f"prompt {name!r} version {version} was not read this tick")
