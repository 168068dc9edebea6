"""`rollout pr list|show` on a real local forge (a bare repository): JSON with stable keys, a body
rendered from GitHub markdown into readable text, and `--diff` against the PR's base."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from controller import report
from controller.forge import base as forge_base
from controller.forge import gitstore
from controller.forge import local as forge_local
from tests.helpers.examples import FILE_ROUTERS, run

CELLS = ("tenant|gold", "a_b *c* <d> `e`", "x & y")
BODY = "\n".join(
    [
        f"### Gates for {report.md('support_bot')}: **FAIL**",
        "",
        "| gate | segment | verdict |",
        "|---|---|---|",
        *(f"| {report.md(c)} | {report.md('tier=' + c)} | **FAIL** |" for c in CELLS),
        "",
        "<details><summary>Queries</summary>",
        "",
        "```promql",
        'sum(rate(x{a="b|c"}[5m]))',
        "```",
        "</details>",
        "Ask &lt;the owner&gt; first.",
    ]
)


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    """A bare rollouts repository whose main holds controller.yaml, with one open PR (#1) that has a
    check and a comment."""
    path = tmp_path / "remote.git"
    subprocess.run(["git", "init", "--bare", "-q", "-b", "main", str(path)], check=True)
    store = gitstore.GitStore(path)
    root = store.commit_files(parent=None, files={"rollouts/controller.yaml": FILE_ROUTERS.encode()}, message="init")
    assert store.update_ref("refs/heads/main", root, old=None)
    forge = forge_local.LocalForge(path)
    change = forge_base.Change(
        branch="rollout/support-bot/advance-1",
        title="support-bot: advance to 5%",
        body=BODY,
        message="advance",
        files={"rollouts/support-bot/rollout.yaml": b"status: {step: 1}\n"},
        labels=("rollout", "promotion"),
    )
    forge.propose(change, base="main")
    forge.set_check(1, state=forge_base.CheckState.SUCCESS, summary="gates pass", context="rollout/gates")
    forge.comment(1, f"**plan**: {report.md('a|b')}", key="plan")
    return path


def test_list_as_json(remote: Path) -> None:
    code, out = run("pr", "list", "--format", "json", "--remote", str(remote))
    assert code == 0
    (pull,) = json.loads(out)["pulls"]
    assert pull == {
        "number": 1,
        "title": "support-bot: advance to 5%",
        "state": "open",
        "branch": "rollout/support-bot/advance-1",
        "base": "main",
        "headSha": pull["headSha"],
        "mergeSha": None,
        "approved": False,
        "labels": ["promotion", "rollout"],
    }
    assert len(pull["headSha"]) == 40


def test_show_as_json_has_the_raw_body_checks_comments_and_diff(remote: Path) -> None:
    code, out = run("pr", "show", "1", "--format", "json", "--diff", "--remote", str(remote))
    assert code == 0
    shown = json.loads(out)
    assert shown["body"] == BODY and shown["number"] == 1
    assert shown["checks"] == {"rollout/gates": {"state": "success", "summary": "gates pass"}}
    assert shown["comments"] == {"plan": f"**plan**: {report.md('a|b')}"}
    assert "+status: {step: 1}" in shown["diff"]
    assert json.loads(run("pr", "show", "1", "--format", "json", "--remote", str(remote))[1])["diff"] is None


def test_show_renders_the_markdown_as_plain_text(remote: Path) -> None:
    code, out = run("pr", "show", "1", "--remote", str(remote))
    assert code == 0
    assert "Gates for support_bot: FAIL" in out
    rows = [line for line in out.splitlines() if line.startswith(CELLS)]
    assert [row.split("  ")[0] for row in rows] == list(CELLS)  # unescaped, one row each
    assert len({row.index("FAIL") for row in rows}) == 1  # the columns are aligned
    assert "Queries" in out and "<details>" not in out and "```" not in out
    assert '    sum(rate(x{a="b|c"}[5m]))' in out  # code stays as written, indented
    assert "Ask <the owner> first." in out and "plan: a|b" in out
    assert "check rollout/gates: success: gates pass" in out
    assert "\\" not in out and "**" not in out


def test_diff_shows_the_change_against_the_base_before_and_after_the_merge(remote: Path) -> None:
    before = run("pr", "show", "1", "--diff", "--remote", str(remote))[1]
    assert "+++ b/rollouts/support-bot/rollout.yaml" in before and "+status: {step: 1}" in before
    assert "controller.yaml" not in before.split("diff --git", 1)[1]  # only what the PR changes
    forge_local.LocalForge(remote).merge(1, message="merge")
    after = run("pr", "show", "1", "--diff", "--remote", str(remote))[1]
    assert after.split("diff --git", 1)[1] == before.split("diff --git", 1)[1]


@pytest.mark.parametrize("value", [*CELLS, "\\ back", "[link](x) #1 @team ~~s~~ !img", "1 + 2 = {3}"])
def test_plain_text_undoes_what_md_escapes(value: str) -> None:
    assert report.markdown_text(f"| {report.md(value)} |") == value + "\n"
