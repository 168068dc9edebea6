"""`proposals`: the pull request each decision proposes, and what each action's pull request carries
(its branch, the status it writes, its check, labels and auto-merge), through the public API."""

from __future__ import annotations

import dataclasses
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from controller import edits, gates, load, plan, proposals, repo, spec, traffic

ROLLOUTS = Path(__file__).parent.parent / "fixtures" / "repo" / "rollouts"
NAME = "ticket-triage"  # four steps, shadow first
AT = datetime(2026, 1, 1, tzinfo=UTC)
Action = proposals.Action

#: every decision kind, and the pull request it proposes (None: none)
BY_KIND: dict[plan.Kind, proposals.Action | None] = {
    plan.Kind.HOLD: None,
    plan.Kind.APPLY: None,
    plan.Kind.ADVANCE: Action.ADVANCE,
    plan.Kind.ROLLBACK: Action.ROLLBACK,
    plan.Kind.PAUSE: Action.PAUSE,
    plan.Kind.COMPLETE: Action.COMPLETE,
    plan.Kind.DECOMMISSION: Action.DECOMMISSION,
}


@pytest.mark.parametrize("kind", list(plan.Kind), ids=[k.value for k in plan.Kind])
def test_every_decision_kind_maps_to_its_action(kind: plan.Kind) -> None:
    assert kind in BY_KIND, f"a new decision kind {kind!r}: say which pull request it proposes"
    assert proposals.action_for(kind) is BY_KIND[kind]


def test_every_action_but_retry_is_decided() -> None:
    decided = {proposals.action_for(k) for k in plan.Kind} - {None}
    assert decided == set(Action) - {Action.RETRY}


@pytest.mark.parametrize(
    ("action", "value"),
    [
        (Action.ADVANCE, "advance"),
        (Action.ROLLBACK, "rollback"),
        (Action.PAUSE, "pause"),
        (Action.COMPLETE, "complete"),
        (Action.DECOMMISSION, "decommission"),
        (Action.RETRY, "retry"),
    ],
    ids=lambda v: str(v),
)
def test_branch_names_keep_their_spelling(action: proposals.Action, value: str) -> None:
    """A branch is a PR's identity: a renamed action would orphan every open PR."""
    name = proposals.branch("support-bot", action, "3f2a9c1e04ab")
    assert name == f"rollout/support-bot/{value}-3f2a9c1e04ab"
    assert proposals.parse_branch(name) == ("support-bot", value, "3f2a9c1e04ab")


@pytest.mark.parametrize("name", ["main", "rollout/", "rollout/x", "rollout/x/advance", "feature/x/advance-1"])
def test_branches_not_the_controllers_do_not_parse(name: str) -> None:
    assert proposals.parse_branch(name) is None


def loaded_rollout(root: Path, *, promotion: str, promoted: bool = False) -> tuple[load.LoadedRollout, str]:
    path = root / "rollouts" / NAME / "rollout.yaml"
    text = re.sub(r"promotion: \w+", f"promotion: {promotion}", path.read_text())
    if promoted:
        text = edits.promote_canary(text)
    path.write_text(text)
    found = load.load_repo(repo.WorkTree(root)).rollout(NAME)
    assert found is not None
    return found, text


@pytest.fixture
def root(tmp_path: Path) -> Path:
    shutil.copytree(ROLLOUTS, tmp_path / "rollouts")
    return tmp_path


FAILED = plan.GateResult("eval_pass_rate", gates.Verdict.FAIL, spec.OnFail.ROLLBACK, "canary 80% vs stable 90%")
DECISIONS = {
    Action.ADVANCE: plan.Decision(plan.Kind.ADVANCE, "every gate passes", to_step=1),
    Action.ROLLBACK: plan.Decision(plan.Kind.ROLLBACK, "eval_pass_rate failed", failed=(FAILED,)),
    Action.PAUSE: plan.Decision(plan.Kind.PAUSE, "tokens_per_request failed"),
    Action.COMPLETE: plan.Decision(plan.Kind.COMPLETE, "the last step is done"),
    Action.DECOMMISSION: plan.Decision(plan.Kind.DECOMMISSION, "kept warm long enough"),
    Action.RETRY: plan.Decision(plan.Kind.HOLD, "retried by hand"),
}

#: action, promotion -> (the check's summary, its labels, auto-merged)
EXPECTED = [
    (Action.ADVANCE, "manual", "every gate passes", ("rollout", "advance"), False),
    (Action.ADVANCE, "auto", "every gate passes", ("rollout", "advance", "auto-merge"), True),
    (Action.COMPLETE, "manual", "the last step is done", ("rollout", "complete"), False),
    (Action.COMPLETE, "auto", "the last step is done", ("rollout", "complete", "auto-merge"), True),
    (Action.DECOMMISSION, "manual", "kept warm long enough", ("rollout", "decommission"), False),
    (Action.DECOMMISSION, "auto", "kept warm long enough", ("rollout", "decommission", "auto-merge"), True),
    (
        Action.ROLLBACK,
        "auto",
        "merging records the rollback: the canary stays at 0%; eval_pass_rate failed",
        ("rollout", "rollback"),
        False,
    ),
    (
        Action.PAUSE,
        "auto",
        "merging records the pause: the canary holds; tokens_per_request failed",
        ("rollout", "pause"),
        False,
    ),
    (Action.RETRY, "auto", None, ("rollout", "retry"), False),
]


@pytest.mark.parametrize(
    ("action", "promotion", "check", "labels", "auto"), EXPECTED, ids=[f"{a.value}-{p}" for a, p, *_ in EXPECTED]
)
def test_each_action_proposes_its_check_labels_and_merge(
    root: Path,
    action: proposals.Action,
    promotion: str,
    check: str | None,
    labels: tuple[str, ...],
    auto: bool,
) -> None:
    loaded, text = loaded_rollout(root, promotion=promotion, promoted=action is Action.DECOMMISSION)
    p = proposals.propose(loaded, action, DECISIONS[action], (), text=text, at=AT)
    assert (p.action, p.check, p.labels, p.auto_merge) == (action, check, labels, auto)
    about = traffic.PREVIOUS if action is Action.DECOMMISSION else traffic.CANARY
    assert p.revision == loaded.revisions[about]
    assert p.branch == proposals.branch(NAME, action, p.revision)
    assert p.path == loaded.path and p.rollout == NAME
    assert p.title.startswith(f"{NAME}: ") and "\n" not in p.title
    assert p.message.startswith(p.title + "\n\n")
    assert f'"action": "{action.value}"' in p.body  # the meta comment


#: action -> the status merging writes (the fields that say what happened)
STATUS = [
    (Action.ADVANCE, {"step": 1, "phase": "Progressing"}),
    (Action.ROLLBACK, {"step": 0, "phase": "RolledBack"}),
    (Action.PAUSE, {"step": 0, "phase": "Paused"}),
    (Action.COMPLETE, {"step": 3, "phase": "Completed"}),
    (Action.RETRY, {"step": 0, "phase": "Progressing"}),
]


@pytest.mark.parametrize(("action", "want"), STATUS, ids=[a.value for a, _ in STATUS])
def test_each_action_writes_its_status(root: Path, action: proposals.Action, want: dict[str, object]) -> None:
    loaded, text = loaded_rollout(root, promotion="manual")
    p = proposals.propose(loaded, action, DECISIONS[action], (), text=text, at=AT)
    after = load.validate(spec.Rollout, load.parse_yaml(loaded.path, p.text.encode()))
    assert after.status is not None
    got = after.status.model_dump(by_alias=True, mode="json")
    assert {k: got[k] for k in want} == want
    assert after.status.revision == loaded.revisions[traffic.CANARY]
    if action is not Action.COMPLETE:  # which also promotes the canary in `spec`
        assert p.text.startswith(text.split("status:", 1)[0])  # every byte before the status is kept


def test_a_decommission_drops_the_old_stable(root: Path) -> None:
    loaded, text = loaded_rollout(root, promotion="manual", promoted=True)
    assert "previous:" in text
    p = proposals.propose(loaded, Action.DECOMMISSION, DECISIONS[Action.DECOMMISSION], (), text=text, at=AT)
    assert "previous:" not in p.text
    assert p.title == f"{NAME}: decommission (triage-v7.md)"  # a prompt-only change: named by its prompt


def test_a_prompt_only_completion_is_named_by_its_prompt(root: Path) -> None:
    """The example changes the prompt, not the model: a title naming the unchanged model says nothing."""
    loaded, text = loaded_rollout(root, promotion="manual")
    p = proposals.propose(loaded, Action.COMPLETE, DECISIONS[Action.COMPLETE], (), text=text, at=AT)
    assert p.title == f"{NAME}: complete (triage-v8.md is the new stable)"


@pytest.mark.parametrize(
    ("applied", "says", "never"),
    [(True, "The router **already** sends no traffic", "Not yet confirmed"), (False, "Not yet confirmed", "already")],
    ids=["confirmed", "unconfirmed"],
)
def test_a_revert_pr_says_whether_the_router_confirmed_it(root: Path, applied: bool, says: str, never: str) -> None:
    loaded, text = loaded_rollout(root, promotion="manual")
    p = proposals.propose(loaded, Action.ROLLBACK, DECISIONS[Action.ROLLBACK], (), text=text, at=AT, applied=applied)
    assert says in p.body and never not in p.body
    assert p.title == f"{NAME}: roll back (eval_pass_rate: canary 80% vs stable…)"
    assert "| after merge | stable 100%, canary 0% | 0% |" in p.body


def test_comments_on_other_prs_name_the_pr_and_escape_the_reason() -> None:
    assert proposals.rolled_back_in(12) == "Closed: the rollout was rolled back in #12."
    comment = proposals.pause_comment("cost up [see](http://x) @team", 7)
    assert "See #7." in comment and "](http" not in comment
    assert proposals.one_line("a\n::error::b\r\nc") == "a ::error::b c"


def _error_rate_failed(rollout: str) -> gates.GateEvidence:
    """error_rate's evidence: the canary at 3.9% against `max: 1%`, FAIL."""
    gate = spec.Gate(use="error_rate", max=0.01)
    check = gates.Check("max", gates.Verdict.FAIL, 0.039, 0.031, 0.047, 0.01, "rate", "beyond the bound")
    segment = gates.SegmentEvidence(
        (), gates.Measurement(0.002, 5000), gates.Measurement(0.039, 900), gates.Verdict.FAIL, "beyond", True, (check,)
    )
    return gates.GateEvidence(rollout, gate, "ratio", "app", "q", "5m", 100, (segment,), gates.Verdict.FAIL)


def test_a_revert_pr_title_says_which_gate_failed_and_by_how_much(root: Path) -> None:
    loaded, text = loaded_rollout(root, promotion="manual")
    failed = plan.GateResult("error_rate", gates.Verdict.FAIL, spec.OnFail.ROLLBACK, "a long reason " * 20)
    decision = plan.Decision(plan.Kind.ROLLBACK, "error_rate failed: " + "a long reason " * 20, failed=(failed,))
    p = proposals.propose(loaded, Action.ROLLBACK, decision, (_error_rate_failed(NAME),), text=text, at=AT)
    assert p.title == f"{NAME}: roll back (error_rate 3.9% > 1%)"
    assert p.message.split("\n")[0] == p.title and "a long reason" in p.body  # the detail is in the body


@pytest.mark.parametrize("length", [len(NAME), 40, 63], ids=["short-name", "40-character-name", "63-character-name"])
@pytest.mark.parametrize("action", list(Action), ids=[a.value for a in Action])
def test_titles_stay_short_and_keep_the_name_and_the_action(root: Path, action: proposals.Action, length: int) -> None:
    """At most TITLE_LIMIT characters (a merge commit's subject adds ` (#N)` and stays under 72), whatever
    the reason; what gives way is the detail in parentheses, never the rollout's name or the action: a
    name too long for both keeps the name and the action alone."""
    loaded, text = loaded_rollout(root, promotion="manual", promoted=action is Action.DECOMMISSION)
    name = (NAME + "-" + "x" * 63)[:length].rstrip("-")
    loaded = dataclasses.replace(
        loaded,
        rollout=loaded.rollout.model_copy(
            update={"metadata": loaded.rollout.metadata.model_copy(update={"name": name})}
        ),
    )
    failed = plan.GateResult("error_rate", gates.Verdict.FAIL, spec.OnFail.ROLLBACK, "x" * 500)
    decision = dataclasses.replace(DECISIONS[action], reason="why " * 300, failed=(failed,))
    p = proposals.propose(loaded, action, decision, (_error_rate_failed(name),), text=text, at=AT)
    head = {
        Action.ADVANCE: f"{name}: advance to 5%",
        Action.ROLLBACK: f"{name}: roll back",
        Action.PAUSE: f"{name}: pause at step 1",
        Action.COMPLETE: f"{name}: complete",
        Action.DECOMMISSION: f"{name}: decommission",
        Action.RETRY: f"{name}: retry from step 1",
    }[action]
    assert p.title.startswith(head)
    assert len(p.title) <= proposals.TITLE_LIMIT or p.title == head
    if proposals.TITLE_LIMIT - len(head) - len(" ()") >= proposals.MIN_DETAIL:
        assert p.title != head, "the detail is left out only when it cannot fit"
    assert p.message.split("\n")[0] == p.title


@pytest.mark.parametrize(
    ("detail", "expected"),
    [
        ("error_rate: canary 12.5% above max 5.0% in every tenant tier since the step began", "(error_rate: canary 12.5% above max…)"),
        ("bad answers reported in #support by three customers this morning", "(bad answers reported in #support by…)"),
        ("x" * 80, "(" + "x" * 38 + "…)"),  # one word fills the room: cut within it
        ("short reason", "(short reason)"),
    ],
    ids=["between-words", "abort-reason", "one-long-word", "fits"],
)  # fmt: skip
def test_a_title_s_detail_is_cut_between_words(detail: str, expected: str) -> None:
    title = proposals._title("support-bot: roll back", detail)
    assert title == f"support-bot: roll back {expected}" and len(title) <= proposals.TITLE_LIMIT
