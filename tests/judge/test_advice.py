"""Sample-size advice: `judge.advise_rate_bound` agrees with the judge, and `advice.step_advice` reads
a step's weight, the route's expected rate and each gate's kind the way the gates are judged."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from controller import advice, judge, load, repo, spec
from controller.gates import Verdict
from tests.helpers import corpus


@pytest.mark.parametrize(
    ("kwargs", "good_rate", "bad_rate"),
    [
        (dict(requests_per_second=10, weight=0.05, limit=0.01, at_most=True), 0.005, 0.02),
        (dict(requests_per_second=10, weight=0.05, limit=0.99, at_most=False), 0.995, 0.98),
    ],
    ids=["max-1pct", "min-99pct"],
)
def test_bound_advice_is_what_the_judge_does(kwargs: dict[str, Any], good_rate: float, bad_rate: float) -> None:
    """At the advised times, a canary comfortably within the bound passes and one as far beyond it
    fails, in at least `power` of seeded binomial draws (minus simulation slack)."""
    a = judge.advise_rate_bound(**kwargs)
    assert a.pass_after is not None and a.fail_after is not None
    rng = np.random.default_rng(7)
    rps, weight = kwargs["requests_per_second"], kwargs["weight"]
    for after, rate, expected in ((a.pass_after, good_rate, Verdict.PASS), (a.fail_after, bad_rate, Verdict.FAIL)):
        n = round(rps * weight * after.total_seconds())
        hits = sum(
            judge.judge_rate_bound(
                events=int(rng.binomial(n, rate)), total=n, limit=kwargs["limit"], at_most=kwargs["at_most"]
            ).verdict
            is expected
            for _ in range(300)
        )
        assert hits / 300 >= judge.DEFAULT_POWER - 0.05, (expected, hits)
    # and well before the advice, it mostly cannot decide yet
    early = round(rps * weight * a.pass_after.total_seconds() / 4)
    verdict = judge.judge_rate_bound(
        events=round(early * good_rate), total=early, limit=kwargs["limit"], at_most=kwargs["at_most"]
    ).verdict
    assert verdict is Verdict.INCONCLUSIVE


@pytest.mark.parametrize(
    ("change", "faster"),
    [(dict(requests_per_second=100), True), (dict(weight=0.01), False), (dict(limit=0.05), True)],
    ids=["more-traffic", "smaller-weight", "looser-bound"],
)
def test_bound_advice_moves_the_right_way(change: dict[str, Any], faster: bool) -> None:
    base = dict(requests_per_second=10, weight=0.05, limit=0.01, at_most=True)
    a, b = judge.advise_rate_bound(**base), judge.advise_rate_bound(**(base | change))
    assert a.pass_after is not None and b.pass_after is not None
    assert (b.pass_after < a.pass_after) is faster


RATE_CASES = [("10/s", 10.0), ("600/m", 10.0), ("36000/h", 10.0), ("0.5/s", 0.5), (" 2 / s ", 2.0)]


@pytest.mark.parametrize(("text", "per_second"), RATE_CASES, ids=[c[0].strip() for c in RATE_CASES])
def test_expected_rate_parses(text: str, per_second: float) -> None:
    analysis = spec.Analysis.model_validate({"expectedRate": text})
    assert analysis.expected_rate == pytest.approx(per_second)
    assert analysis.model_dump(by_alias=True)["expectedRate"] == f"{per_second:g}/s"


@pytest.mark.parametrize("text", ["10", "0/s", "ten/s", "10/week", 10], ids=["bare", "zero", "words", "unit", "int"])
def test_expected_rate_refuses(text: object) -> None:
    with pytest.raises(ValueError, match=r"rate|above zero"):
        spec.Analysis.model_validate({"expectedRate": text})


def loaded(
    tmp_path: Path, *, steps: str, gates: str, rate: str | None = "10/s", segments: str = "[]"
) -> load.LoadedRollout:
    analysis = f"{{gates: {gates}, segments: {segments}" + (f", expectedRate: {rate}}}" if rate else "}")
    root = corpus.make_repo(tmp_path)
    (root / "rollouts/case/rollout.yaml").write_text(
        "apiVersion: rollouts/v1\nkind: Rollout\nmetadata: {name: case}\nspec:\n  router: local\n  route: chat\n"
        "  stable: {model: acme/chat-2025-01-01, prompt: prompts/v1.md}\n"
        "  canary: {model: acme/chat-2025-02-01, prompt: prompts/v1.md}\n"
        f"  steps: {steps}\n  analysis: {analysis}\n"
    )
    result = load.load_repo(repo.WorkTree(root), only=["rollouts/case/rollout.yaml"])
    assert result.problems == [], result.problems
    [one] = result.rollouts
    return one


STEPS = "[{shadow: 100, for: 1h}, {weight: 5, for: 2h}, {weight: 100}]"
GATES = (
    "[{use: eval_pass_rate, maxDrop: 3%}, {use: error_rate, max: 1%, maxIncrease: 50%},"
    " {use: latency_p95, maxIncrease: 10%}, {use: cost_per_request, maxIncrease: 20%}]"
)


def test_step_advice_per_gate(tmp_path: Path) -> None:
    one = loaded(tmp_path, steps=STEPS, gates=GATES)
    a = advice.step_advice(one, step=1)
    assert a.rate == 10 and a.step_text == "5%" and a.step_for == timedelta(hours=2) and not a.note
    by = {(g.gate, g.check): g for g in a.gates}
    assert set(by) == {
        ("eval_pass_rate", "maxDrop 3 pts"),
        ("error_rate", "max 1%"),
        ("error_rate", "maxIncrease 50%"),
        ("latency_p95", "maxIncrease 10%"),
        ("cost_per_request", "maxIncrease 20%"),
    }
    eval_ = by[("eval_pass_rate", "maxDrop 3 pts")]
    assert eval_.pass_after is not None and eval_.fail_after is not None and eval_.exact
    direct = judge.advise_ratio(
        requests_per_second=10, weight=0.05, stable_weight=0.95, base_rate=0.5, higher_is_better=True, max_drop=0.03
    )
    assert eval_.pass_after == direct.pass_after
    latency = by[("latency_p95", "maxIncrease 10%")]
    assert not latency.exact and latency.pass_after == timedelta(seconds=judge.DEFAULT_QUANTILE_MIN_SAMPLES / 0.5)
    assert "pass >=" in latency.text()
    assert by[("error_rate", "maxIncrease 50%")].pass_after is not None  # paired with max: a clean canary can pass


def test_shadow_step_keeps_all_stable_traffic(tmp_path: Path) -> None:
    one = loaded(tmp_path, steps=STEPS, gates="[{use: eval_pass_rate, maxDrop: 3%}]")
    [g] = advice.step_advice(one, step=0).gates
    direct = judge.advise_ratio(
        requests_per_second=10, weight=1.0, stable_weight=1.0, base_rate=0.5, higher_is_better=True, max_drop=0.03
    )
    assert g.pass_after == direct.pass_after


def test_full_weight_cannot_compare(tmp_path: Path) -> None:
    one = loaded(tmp_path, steps=STEPS, gates="[{use: eval_pass_rate, maxDrop: 3%}, {use: error_rate, max: 1%}]")
    by = {g.gate: g for g in advice.step_advice(one, step=2).gates}
    assert not by["eval_pass_rate"].applies and by["eval_pass_rate"].text() == "n/a"
    assert by["error_rate"].applies and by["error_rate"].pass_after is not None


def test_unknown_rate_gives_a_note(tmp_path: Path) -> None:
    one = loaded(tmp_path, steps=STEPS, gates=GATES, rate=None)
    a = advice.step_advice(one, step=1)
    assert a.gates == () and "expectedRate" in a.note
    assert advice.step_advice(one, 10.0, step=1).gates  # a rate passed in wins


def test_too_short_and_segments(tmp_path: Path) -> None:
    one = loaded(tmp_path, steps="[{weight: 1, for: 1h}, {weight: 100}]", gates=GATES, rate="1/s", segments="[tier]")
    a = advice.step_advice(one, step=0)
    assert {g.gate for g in a.too_short()} >= {"eval_pass_rate", "latency_p95"}
    assert "tier" in a.caveat
    fast = advice.step_advice(one, 1000.0, step=0)
    assert fast.too_short() == ()


def test_custom_templates_need_the_config(tmp_path: Path) -> None:
    custom = {"kind": "ratio", "good": "rewrites_total", "total": "answers_total"}
    config_text = (corpus.make_repo(tmp_path / "probe") / load.CONFIG_FILE).read_text()
    root = tmp_path / "custom"
    one = loaded(root, steps=STEPS, gates="[{use: eval_pass_rate, maxDrop: 5%}]")
    # the same rollout, judged with a controller.yaml whose eval_pass_rate is a custom ratio template
    config = spec.ControllerConfig.model_validate(
        {**load.parse_yaml("c", config_text.encode()).data, "gateTemplates": {"eval_pass_rate": custom}}
    )
    [builtin] = advice.step_advice(one, step=1).gates
    [known] = advice.step_advice(one, step=1, config=config).gates
    assert builtin.applies and known.applies and known.pass_after == builtin.pass_after
    value = spec.ControllerConfig.model_validate(
        {**config.model_dump(by_alias=True), "gateTemplates": {"eval_pass_rate": {"kind": "value", "query": "x"}}}
    )
    [plain] = advice.step_advice(one, step=1, config=value).gates
    assert "plain comparison" in plain.assumes
