"""A judge check and a tool-call check, run through `evalrun.run` against the stand-in: the judge
goes through the same endpoint, with the stable model by default, and its failures mark the case."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from controller import evalrun, evals, llm, load, repo
from tests.helpers import golden, openai_standin

JUDGE = "acme/judge-2025-01-01"
CASES = [
    {
        "id": "refund-tool",
        "messages": [{"role": "user", "content": "Refund order 1182"}],
        "tools": [{"type": "function", "function": {"name": "refund", "parameters": {"type": "object"}}}],
        "checks": [{"type": "tool_call", "name": "refund", "arguments": {"order": "1182"}}],
    },
    {
        "id": "polite",
        "messages": [{"role": "user", "content": "Where is my parcel?"}],
        "checks": [{"type": "judge", "rubric": "Apologises and offers tracking.", "model": JUDGE}],
    },
]


def answer(model: str, messages: list[dict[str, Any]]) -> openai_standin.Reply:
    if model == JUDGE:
        graded = messages[-1]["content"]
        if "sorry" in graded:
            return openai_standin.Reply('{"pass": true, "reason": "apologises"}')
        if "broken-judge" in graded:
            return openai_standin.Reply("I think it is fine?")
        return openai_standin.Reply('{"pass": false, "reason": "no apology"}')
    last = messages[-1]["content"]
    if last.startswith("Refund"):
        order = "1182" if model == golden.STABLE else "1183"
        return openai_standin.Reply(None, tool_calls=(("refund", {"order": order}),))
    return openai_standin.Reply("sorry, here is your tracking link" if model == golden.STABLE else "broken-judge")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = golden.write_repo(tmp_path / "repo")
    (root / "rollouts" / golden.ROLLOUT / "evals" / "triage.jsonl").write_text(
        "\n".join(json.dumps(c) for c in CASES) + "\n"
    )
    return root


def test_tool_calls_and_the_judge(root: Path) -> None:
    tree = repo.WorkTree(root)
    loaded = load.load_repo(tree).rollout(golden.ROLLOUT)
    assert loaded is not None
    ticks: list[tuple[int, int]] = []
    with openai_standin.standin(answer=answer) as server, llm.Client(server.url, retries=0) as client:
        report = evalrun.run(
            tree, loaded, evals.load_set(tree, golden.ROLLOUT), client, progress=lambda d, t: ticks.append((d, t))
        )
        judged = [s.body for s in server.seen() if s.model == JUDGE]
    stable, canary = report.variants["stable"].by_id(), report.variants["canary"].by_id()
    assert stable["refund-tool"].status is evals.CaseStatus.PASS
    assert canary["refund-tool"].status is evals.CaseStatus.FAIL
    assert "order = '1183', expected '1182'" in canary["refund-tool"].checks[0].detail
    assert stable["polite"].status is evals.CaseStatus.PASS and stable["polite"].checks[0].detail == "apologises"
    # the judge's unreadable verdict is no verdict: the case is kept as an error, not a failure
    assert canary["polite"].status is evals.CaseStatus.ERROR
    assert "judge: the judge's reply is neither JSON" in (canary["polite"].error or "")
    assert len(judged) == 2 and judged[0]["temperature"] == 0
    assert "Apologises and offers tracking." in judged[0]["messages"][1]["content"]
    assert ticks[-1] == (6, 6)  # 4 answers and 2 judgements
    assert [f.id for f in report.flips()] == ["refund-tool"]
