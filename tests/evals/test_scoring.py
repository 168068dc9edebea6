"""Pure eval logic, table-driven: every check type, the judge's reply, Wilson intervals, flipped
cases, the offline gate, and golden-set loading errors that name file and line."""

from __future__ import annotations

import json
from typing import Any

import pytest

from controller import errors, evals, gates, spec
from tests.helpers import golden


class Tree:
    """An in-memory `load.Tree`."""

    def __init__(self, files: dict[str, str]) -> None:
        self.files = files

    def read(self, path: str) -> bytes:
        if path not in self.files:
            raise FileNotFoundError(path)
        return self.files[path].encode()

    def listdir(self, path: str) -> list[str]:
        prefix = path.rstrip("/") + "/"
        return sorted({p[len(prefix) :].split("/")[0] for p in self.files if p.startswith(prefix)})


def check(obj: dict[str, Any]) -> evals.AnswerCheck:
    case = evals.Case.model_validate({"id": "x", "messages": [{"role": "user", "content": "hi"}], "checks": [obj]})
    return case.checks[0]


def answer(content: str | None = None, *calls: tuple[str, Any]) -> evals.Answer:
    return evals.Answer(
        content=content,
        tool_calls=tuple(
            evals.ToolCall(name=n, arguments=a if isinstance(a, str) else json.dumps(a)) for n, a in calls
        ),
    )


SCHEMA = {"type": "object", "required": ["queue"], "properties": {"queue": {"enum": ["a", "b"]}}}
TOOL = {"type": "tool_call", "name": "refund", "arguments": {"order": "1182"}}

CHECKS = [
    ({"type": "exact", "value": "yes"}, answer(" yes\n"), True, ""),
    ({"type": "exact", "value": "yes"}, answer("Yes"), False, "expected exactly 'yes'"),
    ({"type": "exact", "value": "yes", "ignoreCase": True}, answer("YES"), True, ""),
    ({"type": "contains", "value": "refund"}, answer("a refund is on its way"), True, ""),
    ({"type": "contains", "value": "Refund"}, answer("a refund"), False, "does not contain 'Refund'"),
    ({"type": "contains", "value": "Refund", "ignoreCase": True}, answer("a refund"), True, ""),
    ({"type": "contains", "value": "ORD-", "negate": True}, answer("your order ORD-9"), False, "contains 'ORD-'"),
    ({"type": "regex", "pattern": r"\b\d{5}\b"}, answer("code 12345 ok"), True, ""),
    ({"type": "regex", "pattern": r"^no$"}, answer("nope"), False, "no match for /^no$/"),
    ({"type": "json_schema", "schema": SCHEMA}, answer('{"queue": "a"}'), True, ""),
    ({"type": "json_schema", "schema": SCHEMA}, answer('```json\n{"queue": "b"}\n```'), True, ""),
    ({"type": "json_schema", "schema": SCHEMA}, answer('{"queue": "c"}'), False, "schema: queue: 'c' is not one of"),
    ({"type": "json_schema", "schema": SCHEMA}, answer("{}"), False, "schema: (root): 'queue' is a required"),
    ({"type": "json_schema", "schema": SCHEMA}, answer("sure! {"), False, "not JSON: Expecting value"),
    ({"type": "json_field", "path": "a.b.1", "equals": 2}, answer('{"a": {"b": [1, 2]}}'), True, ""),
    ({"type": "json_field", "path": "urgent", "equals": True}, answer('{"urgent": 1}'), False, "urgent = 1"),
    ({"type": "json_field", "path": "urgent", "equals": True}, answer('{"x": 1}'), False, "no field 'urgent'"),
    (TOOL, answer(None, ("refund", {"order": "1182", "reason": "late"})), True, ""),
    (
        {**TOOL, "exactArguments": True},
        answer(None, ("refund", {"order": "1182", "x": 1})),
        False,
        "unexpected argument 'x'",
    ),
    (TOOL, answer(None, ("refund", {"order": "9"})), False, "order = '9', expected '1182'"),
    (TOOL, answer(None, ("lookup", {})), False, "no call to 'refund' (calls: lookup)"),
    (TOOL, answer(None, ("refund", "{nope")), False, "refund arguments are not JSON"),
    ({"type": "tool_call", "name": "refund"}, answer("I will refund you"), False, "calls: none"),
]


@pytest.mark.parametrize(
    ("obj", "given", "passed", "detail"),
    CHECKS,
    ids=[
        "exact", "exact-case", "exact-ignore-case", "contains", "contains-case", "contains-ignore-case",
        "contains-negate", "regex", "regex-miss", "schema", "schema-fenced", "schema-enum", "schema-required",
        "schema-not-json", "field-nested", "field-type", "field-missing", "tool-subset", "tool-exact-extra",
        "tool-wrong-arg", "tool-other-name", "tool-bad-json", "tool-no-call",
    ],
)  # fmt: skip
def test_score_check(obj: dict[str, Any], given: evals.Answer, passed: bool, detail: str) -> None:
    result = evals.score_check(check(obj), given)
    assert result.passed is passed
    assert detail in result.detail


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ('{"pass": true, "reason": "polite and correct"}', (True, "polite and correct")),
        ('```json\n{"pass": false, "reason": "invents a price"}\n```', (False, "invents a price")),
        ("PASS. Covers the return window.", (True, "Covers the return window")),
        ("fail: no handover", (False, "no handover")),
    ],
    ids=["json", "fenced-json", "pass-word", "fail-word"],
)
def test_parse_judge(reply: str, expected: tuple[bool, str]) -> None:
    assert evals.parse_judge(reply) == expected


@pytest.mark.parametrize("reply", ["maybe", '{"pass": "yes"}', ""], ids=["prose", "not-bool", "empty"])
def test_parse_judge_refuses(reply: str) -> None:
    with pytest.raises(ValueError):
        evals.parse_judge(reply)


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        (1, 1.0, True),
        (True, 1, False),
        ("1", 1, False),
        ({"a": [1, {"b": True}]}, {"a": [1.0, {"b": True}]}, True),
        ({"a": [True]}, {"a": [1]}, False),
        ({"a": 1}, {"a": 1, "b": 2}, False),
        (None, None, True),
        ([1, 2], [2, 1], False),
    ],
    ids=["int-float", "bool-int", "str-int", "nested", "nested-bool-int", "extra-key", "null", "order"],
)
def test_json_equal(a: Any, b: Any, equal: bool) -> None:
    assert evals.json_equal(a, b) is equal


def test_a_judge_check_needs_a_verdict() -> None:
    judge = check({"type": "judge", "rubric": "polite"})
    assert evals.score_check(judge, answer("hi")).passed is False
    assert evals.score_check(judge, answer("hi"), judged=(True, "fine")).passed is True


@pytest.mark.parametrize(
    ("passed", "n", "low", "high"),
    [(0, 0, 0.0, 1.0), (9, 10, 0.5958, 0.9821), (10, 10, 0.7225, 1.0), (0, 10, 0.0, 0.2775), (80, 100, 0.7112, 0.8666)],
    ids=["nothing", "9-of-10", "all", "none", "80-of-100"],
)
def test_wilson(passed: int, n: int, low: float, high: float) -> None:
    lo, hi = evals.wilson(passed, n)
    assert lo == pytest.approx(low, abs=1e-4) and hi == pytest.approx(high, abs=1e-4)


def report(stable: str, canary: str) -> evals.EvalReport:
    """One letter per case: p pass, f fail, e error."""
    status = {"p": evals.CaseStatus.PASS, "f": evals.CaseStatus.FAIL, "e": evals.CaseStatus.ERROR}

    def variant(name: str, letters: str) -> evals.VariantResult:
        cases = tuple(
            evals.CaseResult(id=f"c{i}", status=status[x], error="x" if x == "e" else None)
            for i, x in enumerate(letters)
        )
        return evals.VariantResult(variant=name, model="m", revision=name[:1] * 12, cases=cases)

    return evals.EvalReport(
        rollout="r",
        golden_set="g",
        cases=len(stable),
        variants={"stable": variant("stable", stable), "canary": variant("canary", canary)},
    )


GATE = spec.OfflineEval(max_drop=0.02, min_cases=5)


@pytest.mark.parametrize(
    ("stable", "canary", "gate", "verdict"),
    [
        ("pppppppppp", "pppppppppp", GATE, gates.Verdict.PASS),
        ("pppppppppf", "ppppppppfp", GATE, gates.Verdict.PASS),  # one flip each way: no drop
        ("pppppppppp", "pppppppppf", GATE, gates.Verdict.FAIL),  # 10 points
        ("pppp", "pppp", GATE, gates.Verdict.INCONCLUSIVE),  # 4 < minCases
        ("ppppppppee", "pppppppppp", GATE, gates.Verdict.ERROR),  # passing so far, 2 unanswered
        ("pppppppppp", "ppppppfpee", GATE, gates.Verdict.FAIL),  # already failing on what was answered
        ("peeeeeeeee", "peeeeeeeee", GATE, gates.Verdict.ERROR),  # too few answered
        ("ffffffffff", "pppppppfff", spec.OfflineEval(min_pass_rate=0.8), gates.Verdict.FAIL),
        ("ffffffffff", "ppppppppff", spec.OfflineEval(min_pass_rate=0.8), gates.Verdict.PASS),
    ],
    ids=["equal", "flips-cancel", "drop", "too-few", "partial-passing", "partial-failing", "mostly-errors", "min-rate-fail", "min-rate-pass"],
)  # fmt: skip
def test_offline_gate(stable: str, canary: str, gate: spec.OfflineEval, verdict: gates.Verdict) -> None:
    assert evals.offline_judgement(report(stable, canary), gate).verdict is verdict


def test_flips() -> None:
    flips = report("pfpe", "fppp").flips()
    assert [(f.id, f.direction) for f in flips] == [("c0", "regressed"), ("c1", "fixed")]


def test_offline_eval_needs_a_threshold() -> None:
    with pytest.raises(ValueError, match="maxDrop or minPassRate"):
        spec.OfflineEval()


BAD_LINES = [
    ("not json", 1, "invalid JSON"),
    ('{"id": "a", "messages": [{"role": "user", "content": "x"}], "checks": []}', 1, "at least 1 item"),
    (
        '{"id": "a", "messages": [{"role": "user", "content": "x"}], "checks": [{"type": "exactly", "value": "x"}]}',
        1,
        "exactly",
    ),
    (
        '{"id": "a", "messages": [{"role": "user", "content": "x"}], "checks": [{"type": "regex", "pattern": "("}]}',
        1,
        "invalid regular expression",
    ),
    (
        '{"id": "a", "messages": [{"role": "user", "content": "x"}], "checks": [{"type": "json_schema", "schema": {"type": 5}}]}',
        1,
        "not a valid JSON Schema",
    ),
    (
        '{"id": "a", "messages": [{"role": "user", "content": "x"}], "checks": [{"type": "exact", "value": "x"}], "extra": 1}',
        1,
        "Extra inputs",
    ),
]


@pytest.mark.parametrize(
    ("line", "number", "message"),
    BAD_LINES,
    ids=["not-json", "no-checks", "unknown-check", "bad-regex", "bad-schema", "extra-field"],
)
def test_loading_errors_name_file_and_line(line: str, number: int, message: str) -> None:
    good = golden.golden_lines()[0]
    tree = Tree({"rollouts/r/evals/a.jsonl": good + "\n\n" + line + "\n"})
    with pytest.raises(errors.SpecError) as caught:
        evals.load_set(tree, "r")
    problem = caught.value.problems[0]
    assert (problem.file, problem.line) == ("rollouts/r/evals/a.jsonl", number + 2)
    assert message in problem.message


def test_duplicate_ids_across_files() -> None:
    line = golden.golden_lines()[0]
    tree = Tree({"rollouts/r/evals/a.jsonl": line, "rollouts/r/evals/b.jsonl": "\n" + line})
    with pytest.raises(errors.SpecError) as caught:
        evals.load_set(tree, "r")
    assert (
        str(caught.value)
        == "rollouts/r/evals/b.jsonl:2: id: case id 'cancel-order' is also in rollouts/r/evals/a.jsonl"
    )


def test_no_cases_is_an_eval_error() -> None:
    with pytest.raises(errors.EvalError, match="no golden cases"):
        evals.load_set(Tree({"rollouts/r/evals/notes.txt": "x"}), "r")


def test_the_digest_follows_the_content() -> None:
    one = evals.load_set(Tree({"rollouts/r/evals/a.jsonl": golden.golden_lines()[0]}), "r")
    same = evals.load_set(Tree({"rollouts/r/evals/a.jsonl": golden.golden_lines()[0] + "\n"}), "r")
    other = evals.load_set(Tree({"rollouts/r/evals/a.jsonl": golden.golden_lines()[1]}), "r")
    assert one.digest != other.digest and len(one.digest) == 12
    assert same.digest != one.digest  # bytes, not meaning: a reviewed file is what was measured
