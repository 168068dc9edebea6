"""The example golden sets: they load, are of a reviewable size, and are satisfiable: an oracle
model that answers what each case expects passes every case, and the offline gate passes."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from controller import cli, evals, repo
from tests.helpers import openai_standin

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ["support-bot", "ticket-triage"]


def oracle(golden: evals.GoldenSet) -> openai_standin.Answer:
    by_question = {c.messages[-1].content: c for c in golden.cases}

    def answer(model: str, messages: list[dict[str, Any]]) -> openai_standin.Reply:
        if messages[0]["content"] == evals.JUDGE_SYSTEM:
            return openai_standin.Reply('{"pass": true, "reason": "meets the rubric"}')
        case = by_question[messages[-1]["content"]]
        doc: dict[str, Any] = {}
        text = "Thanks for your message."
        for check in case.checks:
            if isinstance(check, evals.JsonField):
                doc[check.path] = check.equals
            elif isinstance(check, evals.Contains) and not check.negate:
                text += f" {check.value}"
            elif isinstance(check, evals.JsonSchemaCheck) and "answer" in check.schema_.get("required", []):
                doc["answer"] = None
        if "answer" in doc:
            doc["answer"] = text
        return openai_standin.Reply(json.dumps(doc))

    return answer


@pytest.mark.parametrize("name", EXAMPLES, ids=EXAMPLES)
def test_example_golden_sets_pass_an_oracle(name: str) -> None:
    golden = evals.load_set(repo.WorkTree(ROOT), name)
    assert 8 <= len(golden.cases) <= 15
    with openai_standin.standin(answer=oracle(golden)) as server:
        out = io.StringIO()
        code = cli.main(["eval", name, "--endpoint", server.url, "--repo", str(ROOT), "--format", "json"], out=out)
    doc = json.loads(out.getvalue())
    assert code == 0, out.getvalue()
    assert doc["offlineGate"]["verdict"] == "PASS"
    for variant in doc["variants"].values():
        assert all(c["status"] == "pass" for c in variant["cases"]), variant
