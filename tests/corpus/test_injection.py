"""Text from outside reaches pull requests: an abort reason typed by a human, label values that
Prometheus returns (segments) inside gate reasons. Each injection attempt (markdown links, HTML,
@mentions, code fences, GitHub workflow commands such as `::set-output`, newlines) is neutralised in
the PR title, the body, the commit message and the status written to the spec."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from controller import evidence, gates, load, plan, proposals, repo, spec
from tests.helpers import corpus

_AT = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def loaded(tmp_path: Path) -> load.LoadedRollout:
    root = corpus.make_repo(tmp_path)
    (root / corpus.ROLLOUT).write_text(corpus.VALID_ROLLOUT + "    segments: [tenant_tier]\n")
    found = load.load_repo(repo.WorkTree(root)).rollout("case")
    assert found is not None
    return found


def failing(loaded: load.LoadedRollout, label_value: str) -> gates.GateEvidence:
    gate = loaded.rollout.spec.analysis.gates[0]
    row = gates.SegmentEvidence(
        segment=(("tenant_tier", label_value),),
        stable=gates.Measurement(0.9, 1000),
        canary=gates.Measurement(0.5, 1000),
        verdict=gates.Verdict.FAIL,
        reason=f"canary 50% vs stable 90% in {label_value}",
        counted=True,
    )
    return gates.GateEvidence(
        rollout=loaded.name,
        gate=gate,
        kind="ratio",
        source="app",
        query='sum by (variant) (rate(x{tenant_tier="a"}[5m]))',
        window="5m",
        min_samples=100,
        segments=(row,),
        verdict=gates.Verdict.FAIL,
    )


@pytest.mark.parametrize("attack", list(corpus.ATTACKS.values()), ids=list(corpus.ATTACKS))
def test_label_values_in_gate_reasons_are_neutralised(loaded: load.LoadedRollout, attack: str) -> None:
    found = (failing(loaded, attack),)
    result = plan.GateResult(found[0].gate.use, found[0].verdict, spec.OnFail.ROLLBACK, proposals.gate_reason(found[0]))
    decision = plan.Decision(plan.Kind.ROLLBACK, plan._gate_reason((result,)), failed=(result,))
    p = proposals.propose(loaded, proposals.Action.ROLLBACK, decision, found, text=corpus.VALID_ROLLOUT, at=_AT)
    corpus.neutral(p.body, attack, where="body")
    corpus.neutral(evidence.markdown(loaded.name, found, at="now"), attack, where="evidence")
    corpus.neutral(p.message, attack, where="commit message", markdown=False)
    assert "\n" not in p.title and "@acme" not in p.title and "@octocat" not in p.title
    assert p.title.startswith("case: roll back (eval_pass_rate")
    status = load.parse_yaml("x.yaml", p.text.encode()).data["status"]
    assert "\n" not in status["message"] and len(status["message"]) <= 2000


@pytest.mark.parametrize("attack", list(corpus.ATTACKS.values()), ids=list(corpus.ATTACKS))
def test_abort_reasons_are_neutralised(loaded: load.LoadedRollout, attack: str) -> None:
    reason = proposals.one_line(attack)
    decision = plan.Decision(plan.Kind.ROLLBACK, f"aborted by hand: {reason}")
    p = proposals.propose(loaded, proposals.Action.ROLLBACK, decision, (), text=corpus.VALID_ROLLOUT, at=_AT)
    corpus.neutral(p.body, attack, where="body")
    corpus.neutral(p.message, attack, where="commit message", markdown=False)
    assert "\n" not in p.title and not re.search(r"@(acme|octocat)", p.title)
