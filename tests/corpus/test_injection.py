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
from tests.corpus import cases as corpus
from tests.spec.test_corpus import make_repo

ATTACKS = {
    "html": "<img src=x onerror=alert(1)><script>alert(2)</script>",
    "mention": "@acme/admins please merge, cc @octocat",
    "markdown-link": "[approve here](http://evil.example/x) ![img](http://evil.example/p.png)",
    "code-fence": "```\n</details>\n```",
    "workflow-command": "ok\n::set-output name=approved::true\n::add-mask::x\n::error::boom",
    "crlf-heading": "ok\r\n## Approved by security\r\n- [x] reviewed",
    "table-break": "a | b |\n|---|---|\n| c | d |",
    "html-comment": '<!-- rollout:meta {"action": "advance"} -->',
}
_AT = datetime(2026, 1, 1, tzinfo=UTC)


def neutral(text: str, attack: str, *, where: str, markdown: bool = True) -> None:
    """No line starts a workflow command, no @mention is live; in markdown, no raw HTML, link, heading
    or meta comment from the attack survives."""
    for line in text.splitlines():
        assert not line.lstrip().startswith("::"), f"{where}: workflow command line {line!r}"
    if "@acme" in attack:
        assert not re.search(r"(?<![\\\w])@(acme|octocat)", text), f"{where}: live @mention"
    if not markdown:
        return
    if "<img" in attack:
        assert not re.search(r"(?<!\\)<(img|script)", text), where
    if "](http" in attack:
        assert "](http" not in text, f"{where}: live link"
    if "rollout:meta" in attack:
        assert text.count("<!-- rollout:meta") <= 1, f"{where}: a forged meta comment"
    if "## Approved" in attack:
        assert not any(line.startswith("## Approved") for line in text.splitlines()), f"{where}: a forged heading"


@pytest.fixture
def loaded(tmp_path: Path) -> load.LoadedRollout:
    root = make_repo(tmp_path)
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


@pytest.mark.parametrize("attack", list(ATTACKS.values()), ids=list(ATTACKS))
def test_label_values_in_gate_reasons_are_neutralised(loaded: load.LoadedRollout, attack: str) -> None:
    found = (failing(loaded, attack),)
    result = plan.GateResult(found[0].gate.use, found[0].verdict, spec.OnFail.ROLLBACK, proposals.gate_reason(found[0]))
    decision = plan.Decision(plan.Kind.ROLLBACK, plan._gate_reason((result,)), failed=(result,))
    p = proposals.propose(loaded, proposals.Action.ROLLBACK, decision, found, text=corpus.VALID_ROLLOUT, at=_AT)
    neutral(p.body, attack, where="body")
    neutral(evidence.markdown(loaded.name, found, at="now"), attack, where="evidence")
    neutral(p.message, attack, where="commit message", markdown=False)
    assert "\n" not in p.title and "@acme" not in p.title and "@octocat" not in p.title
    assert p.title.startswith("case: roll back, eval_pass_rate failed")
    status = load.parse_yaml("x.yaml", p.text.encode()).data["status"]
    assert "\n" not in status["message"] and len(status["message"]) <= 2000


@pytest.mark.parametrize("attack", list(ATTACKS.values()), ids=list(ATTACKS))
def test_abort_reasons_are_neutralised(loaded: load.LoadedRollout, attack: str) -> None:
    reason = proposals.one_line(attack)
    decision = plan.Decision(plan.Kind.ROLLBACK, f"aborted by hand: {reason}")
    p = proposals.propose(loaded, proposals.Action.ROLLBACK, decision, (), text=corpus.VALID_ROLLOUT, at=_AT)
    neutral(p.body, attack, where="body")
    neutral(p.message, attack, where="commit message", markdown=False)
    assert "\n" not in p.title and not re.search(r"@(acme|octocat)", p.title)
