"""review.classify and review.judge: what merging a PR does to a rollout, read from its content (never
its branch name), and which PRs need passing gates. One table of base -> head pairs."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from controller import errors, gates, load, review, spec, split

STABLE, CANARY, NEWER = "5ab1e0000001", "c0ffee000001", "c0ffee000002"
K = review.Effect
V = gates.Verdict
STEPS = [{"shadow": 100, "for": "1h"}, {"weight": 5, "for": "2h"}, {"weight": 50, "for": "2h"}, {"weight": 100}]


def rollout(
    step: int | None = None,
    phase: str = "Progressing",
    *,
    canary: str | None = CANARY,
    status_rev: str | None = None,
    rolled_back: tuple[str, ...] = (),
    retried: tuple[str, ...] = (),
    completed: bool = False,
    previous: bool = False,
    steps: list[dict[str, Any]] | None = None,
    gate_max: str = "1%",
    message: str | None = None,
    cohorts: list[dict[str, Any]] | None = None,
) -> load.LoadedRollout:
    """The support bot as main (or a PR's head) has it. `completed`: the canary was promoted to stable."""
    data: dict[str, Any] = {
        "apiVersion": "rollouts/v1",
        "kind": "Rollout",
        "metadata": {"name": "bot"},
        "spec": {
            "router": "local",
            "route": "chat",
            "stable": {"model": "m-2025-06-01" if completed else "m-2025-01-01"},
            "steps": steps or STEPS,
            "analysis": {"gates": [{"use": "error_rate", "max": gate_max}]},
            "cohorts": cohorts or [],
        },
    }
    revisions = {"stable": CANARY if completed else STABLE}
    if canary is not None and not completed:
        data["spec"]["canary"] = {"model": "m-2025-06-01" if canary == CANARY else "m-2025-09-01"}
        revisions["canary"] = canary
    if previous:
        data["spec"]["previous"] = {"model": "m-2025-01-01"}
        revisions["previous"] = STABLE
    if step is not None:
        data["status"] = {
            "revision": status_rev or canary or CANARY,
            "step": step,
            "phase": phase,
            "rolledBack": list(rolled_back),
            "retried": list(retried),
            **({"message": message} if message else {}),
        }
    return load.LoadedRollout("rollouts/bot/rollout.yaml", spec.Rollout.model_validate(data), revisions, {})


RAISED = [*STEPS[:1], {"weight": 20, "for": "2h"}, *STEPS[2:]]
WIDER_SHADOW = [{"shadow": 100, "for": "1h"}, *STEPS[1:]]
NARROW_SHADOW = [{"shadow": 50, "for": "1h"}, *STEPS[1:]]

BETA = [{"name": "beta", "match": {"tier": "beta"}}]
BETA_WIDER = [{"name": "beta", "match": {"tier": ["beta", "gold"]}}]
COHORT_STEPS = [{"cohort": "beta", "weight": 25, "for": "1h"}, {"weight": 5}, {"weight": 100}]
COHORT_RAISED = [{"cohort": "beta", "weight": 100, "for": "1h"}, *COHORT_STEPS[1:]]
COHORT_LOWERED = [{"cohort": "beta", "weight": 10, "for": "1h"}, *COHORT_STEPS[1:]]

CASES: list[tuple[str, load.LoadedRollout | None, load.LoadedRollout | None, review.Effect | None, str]] = [
    # a human's PR that gives an open cohort more: gated like any raise
    (
        "human-raises-an-open-cohort",
        rollout(0, steps=COHORT_STEPS, cohorts=BETA),
        rollout(0, steps=COHORT_RAISED, cohorts=BETA),
        K.PROMOTION,
        "measure",
    ),
    (
        "human-widens-an-open-cohort",
        rollout(0, steps=COHORT_STEPS, cohorts=BETA),
        rollout(0, steps=COHORT_STEPS, cohorts=BETA_WIDER),
        K.PROMOTION,
        "measure",
    ),
    (
        "human-lowers-an-open-cohort",
        rollout(0, steps=COHORT_STEPS, cohorts=BETA),
        rollout(0, steps=COHORT_LOWERED, cohorts=BETA),
        K.SPEC,
        "",
    ),
    # the controller's pull requests, as `proposals.propose` writes them
    ("advance", rollout(0), rollout(1), K.PROMOTION, "measure"),
    ("advance-a-fresh-revision", rollout(), rollout(1), K.PROMOTION, "measure"),
    ("advance-to-100", rollout(2), rollout(3), K.PROMOTION, "measure"),
    ("rollback", rollout(2), rollout(2, "RolledBack", rolled_back=(CANARY,)), K.ROLLBACK, ""),
    ("rollback-a-fresh-revision", rollout(), rollout(0, "RolledBack", rolled_back=(CANARY,)), K.ROLLBACK, ""),
    ("pause", rollout(1), rollout(1, "Paused"), K.PAUSE, ""),
    (
        "retry-after-rollback",
        rollout(2, "RolledBack", rolled_back=(CANARY,)),
        rollout(0, rolled_back=(CANARY,), retried=(CANARY,)),
        K.RETRY,
        "",
    ),
    ("retry-after-pause", rollout(1, "Paused"), rollout(1, retried=(CANARY,)), K.RETRY, ""),
    ("complete-at-100", rollout(3), rollout(3, "Completed", completed=True, previous=True), K.COMPLETION, ""),
    ("decommission", rollout(3, "Completed", completed=True, previous=True), rollout(3, "Completed", completed=True), K.DECOMMISSION, ""),
    # a human's pull requests: the content decides, whatever the branch is called
    ("human-raises-status-step", rollout(1), rollout(2), K.PROMOTION, "measure"),
    ("human-raises-the-current-steps-weight", rollout(1), rollout(1, steps=RAISED), K.PROMOTION, "measure"),
    ("human-raises-the-current-shadow", rollout(0, steps=NARROW_SHADOW), rollout(0, steps=WIDER_SHADOW), K.PROMOTION, "measure"),
    ("human-completes-from-50", rollout(2), rollout(2, "Completed", completed=True, previous=True), K.PROMOTION, "measure"),
    ("human-resumes-a-pause-one-step-up", rollout(1, "Paused"), rollout(2, retried=(CANARY,)), K.PROMOTION, "measure"),
    (
        "human-retries-a-rollback-at-step-3",
        rollout(2, "RolledBack", rolled_back=(CANARY,)),
        rollout(2, rolled_back=(CANARY,), retried=(CANARY,)),
        K.PROMOTION,
        "refused",
    ),
    ("new-canary-starts-at-step-1", rollout(2), rollout(2, canary=NEWER, status_rev=CANARY), K.SPEC, ""),
    ("new-canary-jumps-to-step-3", rollout(2), rollout(2, canary=NEWER), K.PROMOTION, "refused"),
    ("new-rollout", None, rollout(), K.SPEC, ""),
    ("new-rollout-already-at-step-3", None, rollout(2), K.PROMOTION, "refused"),
    ("human-lowers-the-step", rollout(2), rollout(1), K.SPEC, ""),
    ("human-tightens-a-gate", rollout(1), rollout(1, gate_max="0.5%"), K.SPEC, ""),
    (
        "human-edits-a-rolled-back-message",
        rollout(2, "RolledBack", rolled_back=(CANARY,)),
        rollout(2, "RolledBack", rolled_back=(CANARY,), message="see #support"),
        K.SPEC,
        "",
    ),
    ("removed", rollout(1), None, K.REMOVED, ""),
    ("unchanged", rollout(1), rollout(1), None, ""),
]  # fmt: skip


@pytest.mark.parametrize(("before", "after", "kind", "gated"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_classify(
    before: load.LoadedRollout | None, after: load.LoadedRollout | None, kind: review.Effect | None, gated: str
) -> None:
    found = review.classify(before, after)
    assert (found.kind if found else None) is kind
    if found is None:
        return
    assert found.name == "bot" and found.records
    if gated == "measure":
        assert found.measure is before is not None  # the base's rollout: its gates, not the ones the PR edits
    else:
        assert found.measure is None
    assert bool(found.refused) == (gated == "refused")


def evidence(verdict: gates.Verdict) -> gates.GateEvidence:
    gate = spec.Gate.model_validate({"use": "error_rate", "max": "1%"})
    return gates.GateEvidence(
        rollout="bot",
        gate=gate,
        kind="ratio",
        source="envoy",
        query="q",
        window="1h",
        min_samples=0,
        segments=(),
        verdict=verdict,
    )


def split_row(verdict: gates.Verdict) -> gates.GateEvidence:
    """The traffic-split check's row (no gate: it is built in)."""
    return dataclasses.replace(evidence(verdict), gate=None, kind=split.KIND)


PROMOTION = review.RolloutChange("bot", K.PROMOTION, "raises it", measure=rollout(0))
JUDGED = [
    ("pass", PROMOTION, (evidence(V.PASS),), V.PASS),
    ("one-inconclusive", PROMOTION, (evidence(V.PASS), evidence(V.INCONCLUSIVE)), V.INCONCLUSIVE),
    ("fail", PROMOTION, (evidence(V.FAIL),), V.FAIL),
    ("no-gates", PROMOTION, (), V.INCONCLUSIVE),
    ("split-mismatch-holds", PROMOTION, (evidence(V.PASS), split_row(V.FAIL)), V.FAIL),
    ("split-unmeasured-holds", PROMOTION, (evidence(V.PASS), split_row(V.ERROR)), V.ERROR),
    ("split-unjudged-does-not", PROMOTION, (evidence(V.PASS), split_row(V.INCONCLUSIVE)), V.PASS),
    ("split-alone-backs-nothing", PROMOTION, (split_row(V.PASS),), V.INCONCLUSIVE),
    ("unmeasured", PROMOTION, "no prometheus.url", V.ERROR),
    ("refused", review.RolloutChange("bot", K.PROMOTION, "starts it", refused="a new canary revision"), (), V.FAIL),
    ("revert-needs-no-gates", review.RolloutChange("bot", K.ROLLBACK, "records it"), "never measured", V.PASS),
]


@pytest.mark.parametrize(("change", "measured", "verdict"), [j[1:] for j in JUDGED], ids=[j[0] for j in JUDGED])
def test_judge(change: review.RolloutChange, measured: Any, verdict: gates.Verdict) -> None:
    result = review.judge([change], {"bot": measured})
    [one] = result.results
    assert one.verdict is verdict
    assert result.mergeable is (verdict is V.PASS)
    assert bool(one.why) is (verdict is not V.PASS)


def test_a_file_that_does_not_load_at_the_head_fails_the_check() -> None:
    problem = errors.Problem("rollouts/bot/rollout.yaml", 3, 1, "spec.steps", "weights decrease")
    result = review.judge([], {}, unreadable=[problem])
    assert not result.mergeable and review.headline(result) == "NOT mergeable: 1 file that does not load"


def repo_spec(*rollouts: load.LoadedRollout, problems: tuple[errors.Problem, ...] = ()) -> load.RepoSpec:
    config = spec.ControllerConfig.model_validate(
        {"apiVersion": "rollouts/v1", "kind": "ControllerConfig", "routers": {"local": {"type": "file"}}}
    )
    return load.RepoSpec(config, list(rollouts), list(problems))


def test_changes_skips_what_does_not_load_rather_than_calling_it_removed() -> None:
    problem = errors.Problem("rollouts/bot/prompts/v2.md", 0, 0, "", "not UTF-8")
    assert review.changes(repo_spec(rollout(1)), repo_spec(problems=(problem,))) == []
    assert [c.kind for c in review.changes(repo_spec(rollout(1)), repo_spec())] == [K.REMOVED]
    assert review.changes(repo_spec(rollout(1)), load.RepoSpec(None)) == []


@pytest.mark.parametrize("fmt", ["text", "markdown", "json"])
def test_every_format_says_what_merging_records(fmt: str) -> None:
    found = review.changes(repo_spec(rollout(2)), repo_spec(rollout(2, "RolledBack", rolled_back=(CANARY,))))
    result = review.judge(found, {})
    out = {"text": review.text, "markdown": review.markdown, "json": review.json_text}[fmt](result, at="now")
    assert "records the rollback of revision c0ffee000001" in out
    assert ("mergeable: 1 rollback" in out) if fmt != "json" else ('"mergeable": true' in out)
