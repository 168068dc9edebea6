"""Workflow permissions are minimal and no trigger hands a fork our secrets or a write token."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
MAY_WRITE = {"rollout-checks.yml": {"pull-requests"}}  # it comments the plan on the PR


def load(path: Path) -> Any:
    return YAML(typ="safe").load(path.read_text("utf-8"))


def triggers(doc: Any) -> set[str]:
    on = doc.get("on", doc.get(True))  # YAML 1.1 reads a bare `on` as true
    return {on} if isinstance(on, str) else set(on)


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_workflow_is_least_privilege(path: Path) -> None:
    doc = load(path)
    assert not triggers(doc) & {"pull_request_target", "workflow_run"}, "a fork's PR must never get secrets"
    top = doc.get("permissions")
    assert isinstance(top, dict), "declare permissions at the top level (the default token may write)"
    scopes = [top] + [job.get("permissions", {}) for job in doc["jobs"].values()]
    for perms in scopes:
        assert perms != "write-all" and isinstance(perms, dict)
        writes = {scope for scope, level in perms.items() if level == "write"}
        assert writes <= MAY_WRITE.get(path.name, set()), f"{path.name} writes {writes}"
    text = path.read_text("utf-8")
    assert "${{ github.event.pull_request.title" not in text and "${{ github.event.pull_request.body" not in text, (
        "PR text must never be expanded into a script (script injection)"
    )
