"""Lint rules: each code fires on the risk it names and stays quiet otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller import lint, load, repo
from tests.helpers import corpus

SAFE = {
    "canary": "{model: acme/chat-2025-01-01, prompt: prompts/v2.md}",
    "steps": "[{shadow: 100, for: 1h, minSamples: 100}, {weight: 5, for: 1h}, {weight: 100}]",
    "gates": "[{use: error_rate, max: 1%, onFail: rollback}]",
    "extra": "",
}


def codes(tmp_path: Path, **over: str) -> list[str]:
    fields = SAFE | over
    text = (
        "apiVersion: rollouts/v1\nkind: Rollout\nmetadata: {name: case}\nspec:\n  router: local\n  route: chat\n"
        "  stable: {model: acme/chat-2025-01-01, prompt: prompts/v1.md}\n"
        f"  canary: {fields['canary']}\n  steps: {fields['steps']}\n"
        f"  analysis: {{gates: {fields['gates']}}}\n{fields['extra']}"
    )
    root = corpus.make_repo(tmp_path)
    (root / "rollouts/case/rollout.yaml").write_text(text)
    tree = repo.WorkTree(root)
    result = load.load_repo(tree, only=["rollouts/case/rollout.yaml"])
    assert result.problems == [] and result.config
    [loaded] = result.rollouts
    return [f.code for f in lint.lint(loaded, result.config, tree.read(loaded.path))]


CASES = [
    ("safe", {}, []),
    ("paired-change", {"canary": "{model: acme/chat-2025-03-01, prompt: prompts/v2.md}"}, ["R001"]),
    (
        "paired-change-allowed",
        {"canary": "{model: acme/chat-2025-03-01, prompt: prompts/v2.md}", "extra": "  allowPairedChange: true\n"},
        [],
    ),
    ("model-only", {"canary": "{model: acme/chat-2025-03-01, prompt: prompts/v1.md}"}, []),
    ("floating-alias", {"canary": "{model: openai/gpt-4o, prompt: prompts/v2.md}"}, ["R001", "R002"]),
    ("latest", {"canary": "{model: acme/chat-latest, prompt: prompts/v1.md}"}, ["R002"]),
    ("no-rollback-gate", {"gates": "[{use: error_rate, max: 1%, onFail: pause}]"}, ["R003"]),
    ("no-gates", {"gates": "[]"}, ["R003"]),
    ("big-first-step", {"steps": "[{weight: 20, minSamples: 10}, {weight: 100}]"}, ["R004"]),
    ("small-first-step", {"steps": "[{weight: 5, minSamples: 10}, {weight: 100}]"}, []),
    ("no-min-samples", {"steps": "[{shadow: 100}, {weight: 5}, {weight: 100}]"}, ["R005"]),
    # R008: a relative limit on a rate without an absolute partner can hold forever
    ("relative-error-gate-alone", {"gates": "[{use: error_rate, maxIncrease: 50%, onFail: rollback}]"}, ["R009"]),
    ("relative-error-gate-paired", {"gates": "[{use: error_rate, maxIncrease: 50%, max: 1%, onFail: rollback}]"}, []),
    (
        "relative-latency-gate-is-fine",
        {"gates": "[{use: error_rate, max: 1%, onFail: rollback}, {use: latency_p95, maxIncrease: 10%}]"},
        [],
    ),
    # R011 (a gate on Envoy's own metrics, which carry no cohort label) is in test_r011_names_a_gate_blind_to_cohorts
    ("cohorts-on-application-metrics", {"extra": "  cohorts: [{name: beta, match: {tenant_tier: beta}}]\n"}, []),
    # R012: a cohort at 100% with only relative limits: nothing can judge it
    (
        "cohort-at-100-relative-only",
        {
            "gates": "[{use: eval_pass_rate, maxDrop: 3%, onFail: rollback}], segments: [tenant_tier]",
            "extra": "  cohorts: [{name: beta, match: {tenant_tier: beta}}]\n",
            "steps": "[{cohort: beta, weight: 100, for: 1h, minSamples: 100}, {weight: 5, for: 1h}, {weight: 100}]",
        },
        ["R012"],
    ),
    # R013: a shadow step where every gate is judged on users' feedback (liveOnly): nothing can judge it
    ("shadow-feedback-only", {"gates": "[{use: feedback_negative_rate, max: 20%, onFail: rollback}]"}, ["R013"]),
    (
        "shadow-feedback-and-errors",
        {"gates": "[{use: feedback_negative_rate, max: 20%, onFail: rollback}, {use: error_rate, max: 1%}]"},
        [],
    ),
    # R007: at the expected rate, a step's `for` is too short for a gate to reach any decision
    (
        "step-too-short-to-decide",
        {
            "steps": "[{shadow: 100, for: 10m, minSamples: 100}, {weight: 1, for: 1h}, {weight: 100}]",
            "gates": "[{use: eval_pass_rate, maxDrop: 1%, onFail: rollback}], expectedRate: 5/s",
        },
        ["R008", "R008"],
    ),
    (
        "steps-long-enough",
        {
            "steps": "[{shadow: 100, for: 2h, minSamples: 100}, {weight: 25, for: 24h}, {weight: 100}]",
            "gates": "[{use: eval_pass_rate, maxDrop: 3%, onFail: rollback}], expectedRate: 10/s",
        },
        [],
    ),
    (
        "no-expected-rate-no-advice",
        {
            "steps": "[{shadow: 100, for: 10m, minSamples: 100}, {weight: 1, for: 1h}, {weight: 100}]",
            "gates": "[{use: eval_pass_rate, maxDrop: 1%, onFail: rollback}]",
        },
        [],
    ),
]


@pytest.mark.parametrize(("over", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_lint(tmp_path: Path, over: dict[str, str], expected: list[str]) -> None:
    assert codes(tmp_path, **over) == expected


@pytest.mark.parametrize(
    ("model", "floats"),
    [
        ("openai/gpt-4o", True),
        ("gpt-4o-latest", True),
        ("anthropic/claude-3-5-sonnet", True),
        ("openai/gpt-4o-2024-08-06", False),
        ("anthropic/claude-3-5-haiku-20241022", False),
        ("gemini-1.5-pro-002", False),
        ("acme/triage:v3", False),
    ],
    ids=str,
)
def test_floating_aliases(model: str, floats: bool) -> None:
    assert lint.floating(model) is floats


def test_r007_points_at_the_step_and_says_how_long(tmp_path: Path) -> None:
    root = corpus.make_repo(tmp_path)
    (root / "rollouts/case/rollout.yaml").write_text(
        "apiVersion: rollouts/v1\nkind: Rollout\nmetadata: {name: case}\nspec:\n  router: local\n  route: chat\n"
        "  stable: {model: acme/chat-2025-01-01, prompt: prompts/v1.md}\n"
        "  canary: {model: acme/chat-2025-02-01, prompt: prompts/v1.md}\n"
        "  steps:\n    - {weight: 1, for: 1h, minSamples: 100}\n    - {weight: 100}\n"
        "  analysis:\n    expectedRate: 600/m\n    gates: [{use: eval_pass_rate, maxDrop: 1%}]\n"
    )
    tree = repo.WorkTree(root)
    result = load.load_repo(tree, only=["rollouts/case/rollout.yaml"])
    assert result.config
    [loaded] = result.rollouts
    [finding] = lint.lint(loaded, result.config, tree.read(loaded.path))
    assert finding.code == "R008" and finding.line == 10 and finding.field == "spec.steps[0].for"
    assert "10/s" in finding.message and "eval_pass_rate" in finding.message and "pass ~" in finding.message


CONFIG = """apiVersion: rollouts/v1
kind: ControllerConfig
routers:
  local: {type: file, path: .rollout/routes.json}
  edge:
    type: envoy
    admin: http://127.0.0.1:9901
    upstreams: {acme/chat-2025-01-01: 127.0.0.1:8001, acme/chat-2025-02-01: 127.0.0.1:8002}
  gateway: {type: litellm, url: http://127.0.0.1:4000, weightsFile: w.json}
  flags: {type: unleash, url: http://127.0.0.1:4242}
prometheus: {url: http://127.0.0.1:9090}
"""


@pytest.mark.parametrize(
    ("router", "gate", "found"),
    [
        ("edge", "{use: latency_p95, maxIncrease: 10%}", ""),
        ("edge", "{use: latency_p95, maxIncrease: 5%}", "can pass only where the quantile lies in 0.02..0.022 s"),
        ("edge", "{use: latency_p95, maxIncrease: 2%}", "the gate can never pass"),
        ("gateway", "{use: latency_p95, maxIncrease: 3%}", "LiteLLM's default buckets (1, 2, 5, 10, 30 s, ...)"),
        ("gateway", "{use: latency_p95, maxIncrease: 20%}", ""),
        ("local", "{use: latency_p95, maxIncrease: 2%}", ""),  # the application's buckets: unknown here
        ("edge", "{use: latency_p95, max: 2s}", ""),
    ],
    ids=["envoy-10pct", "envoy-5pct", "envoy-2pct", "litellm-3pct", "litellm-20pct", "app-buckets", "envoy-bound"],
)
def test_r010_a_latency_limit_finer_than_the_rendered_buckets(
    tmp_path: Path, router: str, gate: str, found: str
) -> None:
    findings = [f for f in _lint_on(tmp_path, router, gate) if f.code == "R010"]
    if not found:
        assert findings == []
        return
    [finding] = findings
    assert found in finding.message and finding.field == "spec.analysis.gates[1].maxIncrease" and finding.line == 15


def test_the_step_advice_says_a_gate_on_too_coarse_buckets_never_passes(tmp_path: Path) -> None:
    """`rollout plan` and R008 read the same advice: no time is long enough."""
    findings = _lint_on(tmp_path, "edge", "{use: latency_p95, maxIncrease: 2%}", extra="    expectedRate: 100/s\n")
    [r008] = [f for f in findings if f.code == "R008" and "latency_p95" in f.message]
    assert "latency_p95" in r008.message and "pass not within 30d" in r008.message
    assert "the envoy latency buckets are wider than the limit everywhere: it can never pass" in r008.message


def _lint_on(tmp_path: Path, router: str, gate: str, *, extra: str = "") -> list[lint.Finding]:
    return _lint_case(
        tmp_path,
        "apiVersion: rollouts/v1\nkind: Rollout\nmetadata: {name: case}\nspec:\n"
        f"  router: {router}\n  route: chat\n"
        "  stable: {model: acme/chat-2025-01-01, prompt: prompts/v1.md}\n"
        "  canary: {model: acme/chat-2025-02-01, prompt: prompts/v1.md}\n"
        "  steps:\n    - {weight: 1, for: 1h, minSamples: 100}\n    - {weight: 100}\n"
        f"  analysis:\n    gates:\n      - {{use: error_rate, max: 1%, onFail: rollback}}\n      - {gate}\n{extra}",
    )


def _lint_case(tmp_path: Path, rollout: str, *, config: str = CONFIG) -> list[lint.Finding]:
    """Lint one rollout file (`rollout`) beside `config`; it must load without problems."""
    root = corpus.make_repo(tmp_path)
    (root / "rollouts/controller.yaml").write_text(config)
    (root / "rollouts/case/rollout.yaml").write_text(rollout)
    tree = repo.WorkTree(root)
    result = load.load_repo(tree, only=["rollouts/case/rollout.yaml"])
    assert result.problems == [] and result.config
    [loaded] = result.rollouts
    return lint.lint(loaded, result.config, tree.read(loaded.path))


@pytest.mark.parametrize(
    ("router", "shadow", "message"),
    [
        ("flags", 100, "is an Unleash server, which cannot mirror traffic"),
        ("gateway", 50, "mirrors every request or none (silent_model): shadow 50% cannot be carried; use shadow: 100"),
        ("gateway", 100, None),  # LiteLLM mirrors through silent_model: every request, which shadow 100 asks
    ],
    ids=["unleash", "litellm-partial", "litellm-100"],
)
def test_r007_a_shadow_step_a_router_cannot_carry(
    tmp_path: Path, router: str, shadow: int, message: str | None
) -> None:
    findings = _lint_case(
        tmp_path,
        "apiVersion: rollouts/v1\nkind: Rollout\nmetadata: {name: case}\nspec:\n"
        f"  router: {router}\n  route: chat\n"
        "  stable: {model: acme/chat-2025-01-01, prompt: prompts/v1.md}\n"
        "  canary: {model: acme/chat-2025-02-01, prompt: prompts/v1.md}\n"
        f"  steps:\n    - {{shadow: {shadow}, for: 1h}}\n    - {{weight: 100}}\n",
    )
    found = [f for f in findings if f.code == "R007"]
    if message is None:
        assert found == []
        return
    [one] = found
    assert one.severity == lint.ERROR and message in one.message and one.field.endswith("shadow")


def test_r011_names_a_gate_blind_to_cohorts(tmp_path: Path) -> None:
    config = (
        "apiVersion: rollouts/v1\nkind: ControllerConfig\nprometheus: {url: 'http://127.0.0.1:9090'}\nrouters:\n"
        "  edge: {type: envoy, admin: 'http://127.0.0.1:9901', upstreams: {acme/a-2025-01-01: '127.0.0.1:9001', "
        "acme/b-2025-01-01: '127.0.0.1:9002'}}\n"
    )
    rollout = (
        "apiVersion: rollouts/v1\nkind: Rollout\nmetadata: {name: case}\nspec:\n  router: edge\n  route: chat\n"
        "  stable: {model: acme/a-2025-01-01}\n  canary: {model: acme/b-2025-01-01}\n"
        "  cohorts: [{name: beta, match: {tenant_tier: beta}}]\n"
        "  steps: [{cohort: beta, weight: 10, for: 1h, minSamples: 100}, {weight: 100}]\n"
        "  analysis: {gates: [{use: error_rate, max: 1%, onFail: rollback}, {use: eval_pass_rate, min: 80%}]}\n"
    )
    found = [f for f in _lint_case(tmp_path, rollout, config=config) if f.code == "R011"]
    assert [f.field for f in found] == ["spec.analysis.gates[0].use"]  # error_rate reads Envoy's; eval the app's
    assert "carry no cohort label" in found[0].message


@pytest.mark.parametrize(
    ("router", "gate", "found"),
    [
        ("local", "{use: latency_p95, maxIncrease: 10%}", "the gate can never pass"),
        ("edge", "{use: ttft_p95, maxIncrease: 20%}", "vLLM's buckets are fixed in its code (0.001, 0.005"),
        ("local", "{use: latency_p95, maxIncrease: 25%}", "pass only where the quantile lies in 0.8..1 s, 2..2.5 s"),
        ("local", "{use: ttft_p95, max: 1s}", ""),  # a max at one of vLLM's bounds
        ("local", "{use: ttft_p95, max: 1.5s}", "max 1.5 s lies inside vLLM's bucket (1, 2.5] s"),
        ("local", "{use: latency_p95, max: 12s}", "use a bound of vLLM's buckets, 10 or 15"),
        ("edge", "{use: latency_p95, max: 12s}", ""),  # on an envoy router latency_p95 reads Envoy's
        ("local", "{use: latency_p95, max: 0.2s}", "max 0.2 s lies below vLLM's first bucket bound, 0.3 s"),
        ("local", "{use: ttft_p95, max: 0.0005s}", "the gate can never pass"),
    ],
    ids=[
        "e2e-10pct",
        "ttft-20pct-on-envoy",
        "e2e-25pct",
        "ttft-max",
        "ttft-max-inside",
        "e2e-max-inside",
        "e2e-max-on-envoy-reads-envoys",
        "e2e-max-below-first-bound",
        "ttft-max-below-first-bound",
    ],
)
def test_r010_on_vllms_fixed_buckets(tmp_path: Path, router: str, gate: str, found: str) -> None:
    """With `analysis.metrics: vllm` the latency gates read vLLM's histograms where the router has none
    (ttft_p95 whatever the router), and R010 checks a limit against vLLM's fixed bounds (20% to 400% apart)."""
    findings = [f for f in _lint_on(tmp_path, router, gate, extra="    metrics: vllm\n") if f.code == "R010"]
    if not found:
        assert findings == []
        return
    [finding] = findings
    assert found in finding.message
    assert ("the vllm latency buckets are too coarse" in finding.message) == ("maxIncrease" in gate)
    assert finding.field == f"spec.analysis.gates[1].{'maxIncrease' if 'maxIncrease' in gate else 'max'}"


def test_r011_vllm_metrics_carry_no_cohort_label(tmp_path: Path) -> None:
    rollout = (
        "apiVersion: rollouts/v1\nkind: Rollout\nmetadata: {name: case}\nspec:\n  router: local\n  route: chat\n"
        "  stable: {model: acme/a-2025-01-01}\n  canary: {model: acme/b-2025-01-01}\n"
        "  cohorts: [{name: beta, match: {tenant_tier: beta}}]\n"
        "  steps: [{cohort: beta, weight: 10, for: 1h, minSamples: 100}, {weight: 100}]\n"
        "  analysis:\n    metrics: vllm\n    gates: [{use: error_rate, max: 1%, onFail: rollback}, "
        "{use: eval_pass_rate, min: 80%}, {use: preemptions, max: 0}]\n"
    )
    found = [f for f in _lint_case(tmp_path, rollout) if f.code == "R011"]
    assert [f.field for f in found] == ["spec.analysis.gates[0].use", "spec.analysis.gates[2].use"]
    assert all("reads vLLM's own metrics, which carry no cohort label" in f.message for f in found)
