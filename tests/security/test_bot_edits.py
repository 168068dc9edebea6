"""The bot edits only `status` (and, for a completion or a decommission, the variants it promotes or
removes): every PR of a full ramp and a rollback is checked against its base, file by file and key
by key, and the bytes outside the edited blocks (comments, order) are kept."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import git
import pytest
from ruamel.yaml import YAML

from controller.forge import base as forge_base
from tests.helpers.gitops import GitOps, add_bad_bot, approve_and_merge

pytestmark = pytest.mark.slow

ALLOWED = {  # action -> the spec keys it may change besides status
    "advance": set(),
    "rollback": set(),
    "complete": {"stable", "canary", "previous"},
    "decommission": {"previous"},
}


def yaml_of(data: bytes) -> Any:
    return YAML(typ="safe").load(data)


def run_everything(gitops: GitOps) -> list[forge_base.PullRequest]:
    add_bad_bot(gitops)
    c = gitops.controller()
    c.reconcile_once()  # bad-bot: rollback PR; good-bot: shadow
    for wait in (2, 2, 2, 31):  # two advances, the completion, the decommission (keepPreviousFor: 30m)
        gitops.advance(timedelta(minutes=wait))
        c.reconcile_once()
        [pr] = gitops.forge.list(prefix="rollout/good-bot/", state=forge_base.PRState.OPEN)
        approve_and_merge(gitops, pr.number)
        c.reconcile_once()
    return gitops.forge.list()


def test_every_bot_pr_touches_only_what_its_action_may(gitops: GitOps) -> None:
    pulls = run_everything(gitops)
    actions = sorted(p.branch.split("/")[2].split("-")[0] for p in pulls)
    assert actions == ["advance", "advance", "complete", "decommission", "rollback"]
    remote = git.Repo(gitops.remote)
    for pr in pulls:
        head = remote.commit(pr.head_sha)
        [parent] = head.parents
        changed = [d.a_path for d in parent.diff(head)]
        rollout = pr.branch.split("/")[1]
        assert changed == [f"rollouts/{rollout}/rollout.yaml"], (pr.title, changed)
        before = parent.tree[changed[0]].data_stream.read()
        after = head.tree[changed[0]].data_stream.read()
        old, new = yaml_of(before), yaml_of(after)
        action = pr.branch.split("/")[2].split("-")[0]
        assert {k for k in old if k != "status"} == {k for k in new if k != "status"}
        for key in old:
            if key not in ("status", "spec"):
                assert old[key] == new[key], (pr.title, key)
        spec_keys = set(old["spec"]) | set(new["spec"])
        touched = {k for k in spec_keys if old["spec"].get(k) != new["spec"].get(k)}
        assert touched <= ALLOWED[action], (pr.title, touched)
        head_lines = before.decode().split("\nstatus:")[0].splitlines()
        if not ALLOWED[action]:  # a status-only edit keeps every byte above the status block
            assert after.decode().startswith("\n".join(head_lines)), pr.title
        assert before.decode().splitlines()[0] == after.decode().splitlines()[0]  # the leading comment
