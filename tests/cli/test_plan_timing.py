"""`rollout plan` shows how long the current step's gates need to decide, from analysis.expectedRate."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers.examples import run


def test_plan_shows_time_to_a_decision(examples: Path) -> None:
    root = examples  # support-bot sets expectedRate: 10/s; ticket-triage sets none
    code, text = run("plan", "--repo", str(root))
    assert code == 0, text
    block = text[text.index("+ support-bot") :]
    assert "decide   at 10/s, step 1 (1%) for 1d:" in block
    assert "eval_pass_rate maxDrop 3 pts: pass ~" in block and "latency_p95 maxIncrease 10%: pass >=" in block
    assert "judged per tenant_tier" in block
    triage = text[text.index("+ ticket-triage") :]
    assert "traffic unknown: set analysis.expectedRate" in triage.split("\n\n")[0]
    assert "release-notes" in text and "decide" not in text[text.index("+ release-notes") :].split("\n\n")[0]

    code, md = run("plan", "--repo", str(root), "--format", "markdown")
    assert "**Time to a decision**" in md
    assert any(ln.startswith("| support-bot | 1 (1%) | eval\\_pass\\_rate |") for ln in md.splitlines())

    code, raw = run("plan", "--repo", str(root), "--format", "json")
    rows = {r["rollout"]: r for r in json.loads(raw)["rollouts"]}
    timing = rows["support-bot"]["timing"]
    assert timing["requestsPerSecond"] == 10 and timing["stepFor"] == 86400
    eval_gate = next(g for g in timing["gates"] if g["gate"] == "eval_pass_rate")
    assert 0 < eval_gate["passAfter"] < eval_gate["failAfter"] and eval_gate["decidesWithinFor"] is True
    assert rows["ticket-triage"]["timing"]["gates"] == [] and rows["ticket-triage"]["timing"]["note"]
    assert rows["release-notes"]["timing"] is None  # nothing in flight


def test_plan_flags_a_step_too_short(examples: Path) -> None:
    root = examples
    path = root / "rollouts/support-bot/rollout.yaml"
    path.write_text(path.read_text().replace("expectedRate: 10/s", "expectedRate: 1/s"))
    code, text = run("plan", "--repo", str(root))
    assert "(longer than the step's `for`)" in text
    code, out = run("validate", str(root / "rollouts"))
    assert "R008" in out and code == 0  # a warning, not an error
