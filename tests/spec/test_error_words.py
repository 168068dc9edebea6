"""Errors in the user's words: YAML structure errors say what is wrong with which lines (`controller.hints`),
keep file:line:column and carry the offending line; an unknown key that is a field one level up or down,
or under a sibling, says where it belongs; a weight written as a percentage says the percent is implied."""

from __future__ import annotations

import pytest

from controller import errors, load, spec
from tests.helpers.corpus import VALID_ROLLOUT


def _problem(text: str) -> errors.Problem:
    with pytest.raises(errors.SpecError) as exc:
        load.load_model(spec.Rollout, "rollout.yaml", text.encode())
    [problem] = exc.value.problems
    return problem


def _edit(old: str, new: str) -> str:
    assert old in VALID_ROLLOUT
    return VALID_ROLLOUT.replace(old, new, 1)


# (id, the rollout as the user wrote it, line:column, the message)
STRUCTURE = [
    (
        "key-deeper-than-its-sibling",
        _edit(
            "      - {use: eval_pass_rate, maxDrop: 3%, onFail: rollback}",
            "      - use: error_rate\n        max: 1%\n          onFail: rollback",
        ),
        "19:11",
        "`onFail` is indented deeper than `max` on line 18 (10 spaces, not 8): a key beside it takes its indentation",
    ),
    (
        "key-less-deep-than-its-sibling",
        _edit(
            "  stable: {model: acme/chat-2025-01-01, prompt: prompts/v1.md}",
            "  stable:\n    model: a/b\n   prompt: p.md",
        ),
        "10:4",
        "`prompt` is indented less than `model` on line 9 (3 spaces, not 4): line them up",
    ),
    (
        "list-item-out-of-line",
        _edit("    - {weight: 5, for: 2h}", "   - {weight: 5, for: 2h}"),
        "12:4",
        "the list item `- {weight: 5, for: 2h}` is indented less than the list item `- {shadow: 100, for: 1h, "
        "minSamples: 10…` on line 11 (3 spaces, not 4): line them up",
    ),
    (
        "mapping-on-the-key-line",
        _edit("  route: chat", "  route: chat\n  previous: model: a/b"),
        "8:18",
        "`model: a/b` cannot be the value of `previous` on the same line: put it on a line of its own, indented "
        "under `previous`, or quote the value",
    ),
    (
        "no-space-after-the-colon",
        _edit("  route: chat", "  route:chat"),
        "7:9",
        "`route:chat` needs a space after the colon (`route: chat`)",
    ),
    (
        "no-space-after-the-dash",
        _edit("    - {weight: 5, for: 2h}\n", "    -weight: 5\n"),
        "12:6",
        "`-weight: 5` needs a space after the dash",
    ),
    (
        "tab-indent",
        _edit("  router: local", "\trouter: local"),
        "6:1",
        "a tab indents this line: YAML indents with spaces only",
    ),
    (
        "tab-after-colon",
        _edit("  router: local", "  router:\tlocal"),
        "6:10",
        "a tab separates here: YAML separates with spaces only",
    ),
    (
        "unclosed-double-quote",
        _edit("  route: chat", '  route: "chat'),
        "7:10",
        'the string opened with `"` here is never closed: end it with `"`',
    ),
    (
        "unclosed-single-quote",
        _edit("  route: chat", "  route: 'chat"),
        "7:10",
        "the string opened with `'` here is never closed: end it with `'`",
    ),
    (
        "unclosed-bracket",
        _edit("    - {weight: 100}\n", "    - {weight: 100}\n  segments: [tier\n"),
        "15:11",
        "the `[` opened on line 14 is never closed: end it with `]`",
    ),
    (
        "unclosed-brace",
        _edit(
            "{model: acme/chat-2025-01-01, prompt: prompts/v2.md}",
            "{model: acme/chat-2025-01-01, prompt: prompts/v2.md",
        ),
        "10:8",
        "the `{` opened on line 9 is never closed: end it with `}`",
    ),
    (
        "comma-missing-in-a-flow-mapping",
        _edit(
            "{model: acme/chat-2025-01-01, prompt: prompts/v2.md}",
            "{model: acme/chat-2025-01-01\n    prompt: prompts/v2.md}",
        ),
        "10:11",
        "a `,` is missing before this (between two items of the `{` on line 9)",
    ),
    (
        "list-item-beside-keys",
        _edit("  route: chat", "  route: chat\n  - chat-2"),
        "8:3",
        "a list item cannot sit beside `route` in a mapping: put the list under a key of its own (`key:` alone on "
        "a line) and indent it",
    ),
]


@pytest.mark.parametrize(("text", "where", "message"), [c[1:] for c in STRUCTURE], ids=[c[0] for c in STRUCTURE])
def test_a_yaml_structure_error_says_what_is_wrong_in_plain_words(text: str, where: str, message: str) -> None:
    problem = _problem(text)
    assert (f"{problem.line}:{problem.column}", problem.message, problem.code) == (where, message, "E001")
    assert problem.source == text.split("\n")[problem.line - 1], "it carries the line it points at"


def test_a_structure_error_no_advice_fits_keeps_the_parsers_words() -> None:
    problem = _problem(_edit("  route: chat", "  route: chat\n  ]"))
    assert problem.code == "E001" and "']'" in problem.message and problem.line == 8


# (id, the edit, field, message)
PLACEMENT = [
    (
        "prompt-beside-the-variants",
        ("  route: chat", "  route: chat\n  prompt: prompts/v1.md"),
        "spec.prompt",
        "unknown field here; it belongs under `spec.stable`, `spec.canary`, `spec.previous` or `spec.aliases[]`",
    ),
    (
        "analysis-at-the-top",
        ("spec:\n", "analysis: {interval: 1m}\nspec:\n"),
        "analysis",
        "unknown field here; it belongs under `spec`",
    ),
    (
        "gates-beside-analysis",
        ("  analysis:\n", "  gates: []\n  analysis:\n"),
        "spec.gates",
        "unknown field here; it belongs under `spec.analysis`",
    ),
    (
        "interval-in-a-step",
        ("{weight: 5, for: 2h}", "{weight: 5, for: 2h, interval: 1m}"),
        "spec.steps[1].interval",
        "unknown field here; it belongs under `spec.analysis`",
    ),
    (
        "min-samples-in-analysis",
        ("    interval: 1m", "    interval: 1m\n    minSamples: 100"),
        "spec.analysis.minSamples",
        "unknown field here; it belongs under `spec.steps[]`",
    ),
    (
        "segments-in-a-gate",
        ("onFail: rollback}", "onFail: rollback, segments: [tier]}"),
        "spec.analysis.gates[0].segments",
        "unknown field here; it belongs under `spec.analysis`",
    ),
    (
        "name-at-the-top",
        ("metadata:\n  name: case\n", "name: case\nmetadata:\n  name: case\n"),
        "name",
        "belongs under `metadata`",
    ),
    (
        "a-typo-with-no-placement",
        ("{weight: 5, for: 2h}", "{wieght: 5, weight: 5, for: 2h}"),
        "spec.steps[1].wieght",
        "unknown field; did you mean 'weight'?",
    ),
    (
        "weight-as-a-percentage",
        ("{weight: 5, for: 2h}", "{weight: 5%, for: 2h}"),
        "spec.steps[1].weight",
        "weight is a percentage already: write `weight: 5`",
    ),
    (
        "shadow-as-a-percentage",
        ("{shadow: 100, for: 1h", "{shadow: 50%, for: 1h"),
        "spec.steps[0].shadow",
        "shadow is a percentage already: write `shadow: 50`",
    ),
]


@pytest.mark.parametrize(("edit", "field", "message"), [c[1:] for c in PLACEMENT], ids=[c[0] for c in PLACEMENT])
def test_an_unknown_key_says_where_it_belongs(edit: tuple[str, str], field: str, message: str) -> None:
    problem = _problem(_edit(*edit))
    assert problem.field == field and message in problem.message and problem.line > 0
    if "belongs" in message:
        assert "did you mean" not in problem.message


def test_placement_reaches_into_discriminated_unions() -> None:
    """controller.yaml's routers are a union by `type`: a Prometheus field under a router belongs under
    `prometheus` (or `mlflow`, which has one too), computed from the models like the rest."""
    text = "apiVersion: rollouts/v1\nkind: ControllerConfig\nrouters:\n  local: {type: file, timeout: 5s}\n"
    with pytest.raises(errors.SpecError) as exc:
        load.load_model(spec.ControllerConfig, "controller.yaml", text.encode())
    [problem] = exc.value.problems
    assert (problem.field, problem.message) == (
        "routers.local.timeout",
        "unknown field here; it belongs under `prometheus` or `mlflow`",
    )
