"""Cohorts in the spec: what loads, what is refused (with file, line and field), and the split each step asks for."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller import carries, errors, load, plan, repo, spec, traffic

CONFIG = """apiVersion: rollouts/v1
kind: ControllerConfig
routers:
  local: {type: file, path: /tmp/never-written/routes.json}
  gateway: {type: litellm, url: "http://127.0.0.1:4000"}
  edge: {type: envoy, admin: "http://127.0.0.1:9901", upstreams: {acme/a-2025: "127.0.0.1:9001", acme/b-2025: "127.0.0.1:9002"}}
  flags: {type: flagd, path: /tmp/never-written/flags.json}
"""

COHORTS = """  cohorts:
    - {name: internal, match: {user_group: internal}}
    - {name: beta, match: {tenant_tier: [beta, trial]}}
"""

RAMP = """  steps:
    - {cohort: internal, weight: 100, for: 1d}
    - {cohort: beta, weight: 25, for: 1d}
    - {cohort: beta, weight: 100, for: 1d}
    - {weight: 5, for: 1d}
    - {weight: 25, for: 1d}
    - {weight: 100}
"""


def rollout_text(cohorts: str = COHORTS, steps: str = RAMP, router: str = "local") -> str:
    return (
        "apiVersion: rollouts/v1\nkind: Rollout\nmetadata: {name: bot}\nspec:\n"
        f"  router: {router}\n  route: chat\n  stable: {{model: acme/a-2025}}\n  canary: {{model: acme/b-2025}}\n"
        + cohorts
        + steps
    )


def load_text(tmp_path: Path, text: str) -> load.RepoSpec:
    (tmp_path / "rollouts" / "bot").mkdir(parents=True, exist_ok=True)
    (tmp_path / "rollouts" / "controller.yaml").write_text(CONFIG)
    (tmp_path / "rollouts" / "bot" / "rollout.yaml").write_text(text)
    return load.load_repo(repo.WorkTree(tmp_path))


def only_problem(result: load.RepoSpec) -> errors.Problem:
    assert not result.rollouts
    return result.problems[0]


def test_the_ramp_loads(tmp_path: Path) -> None:
    result = load_text(tmp_path, rollout_text())
    (loaded,) = result.rollouts
    s = loaded.rollout.spec
    assert [c.name for c in s.cohorts] == ["internal", "beta"]
    assert s.cohort("beta").key == "tenant_tier" and s.cohort("beta").values == ("beta", "trial")
    assert s.cohort("internal").values == ("internal",)  # one value may be written bare
    assert [step.describe() for step in s.steps] == ["internal 100%", "beta 25%", "beta 100%", "5%", "25%", "100%"]


@pytest.mark.parametrize(
    ("cohorts", "steps", "line", "field", "says"),
    [
        (
            COHORTS,
            "  steps:\n    - {cohort: gold, weight: 5}\n    - {weight: 100}\n",
            13,
            "spec.steps[0].cohort",
            "unknown cohort 'gold'",
        ),
        (
            COHORTS,
            "  steps:\n    - {weight: 5}\n    - {cohort: beta, weight: 100}\n",
            14,
            "spec.steps[1].cohort",
            "the last step must be everyone's",
        ),
        (
            COHORTS,
            "  steps:\n    - {cohort: beta, weight: 50}\n    - {cohort: beta, weight: 25}\n    - {weight: 100}\n",
            14,
            "spec.steps[1].weight",
            "below the weight cohort 'beta' had before (50)",
        ),
        (
            COHORTS,
            "  steps:\n    - {weight: 25}\n    - {cohort: beta, weight: 25}\n    - {weight: 100}\n",
            14,
            "spec.steps[1].weight",
            "above everyone's weight at this point (25)",
        ),
        (
            COHORTS,
            "  steps:\n    - {cohort: beta, shadow: 100}\n    - {weight: 100}\n",
            13,
            "spec.steps[0].cohort",
            "a cohort step sets a weight",
        ),
        (
            "  cohorts:\n    - {name: a, match: {tier: beta}}\n    - {name: a, match: {tier: gold}}\n",
            RAMP.replace("internal", "a").replace("beta", "a"),
            11,
            "spec.cohorts[1].name",
            "names cohort 'a' twice",
        ),
        (
            "  cohorts:\n    - {name: a, match: {tier: beta}}\n    - {name: b, match: {tier: [gold, beta]}}\n",
            "  steps: [{weight: 100}]\n",
            11,
            "spec.cohorts[1].match.tier",
            "tier=beta already belongs to cohort 'a'",
        ),
        (
            "  cohorts:\n    - {name: a, match: {tier: beta, region: eu}}\n",
            "  steps: [{weight: 100}]\n",
            10,
            "spec.cohorts[0].match",
            "at most 1",
        ),
        (
            "  cohorts:\n    - {name: a, match: {tier: []}}\n",
            "  steps: [{weight: 100}]\n",
            10,
            "spec.cohorts[0].match.tier",
            "1 to 50 values",
        ),
        (
            "  cohorts:\n    - {name: a, match: {tier-name: beta}}\n",
            "  steps: [{weight: 100}]\n",
            10,
            "spec.cohorts[0].match.tier-name",
            "Prometheus label name",
        ),
        (
            '  cohorts:\n    - {name: a, match: {tier: " beta"}}\n',
            "  steps: [{weight: 100}]\n",
            10,
            "spec.cohorts[0].match.tier",
            "no space at either end",
        ),
    ],
    ids=[
        "unknown",
        "last-step",
        "cohort-decreases",
        "no-op",
        "shadow",
        "twice",
        "overlap",
        "two-keys",
        "no-values",
        "not-a-label",
        "padded-value",
    ],
)
def test_refused_with_line_and_field(
    tmp_path: Path, cohorts: str, steps: str, line: int, field: str, says: str
) -> None:
    problem = only_problem(load_text(tmp_path, rollout_text(cohorts, steps)))
    assert (problem.line, problem.field) == (line, field), problem
    assert says in problem.message


@pytest.mark.parametrize("key", ["variant", "route", "rollout", "le", "rollouts_group", "__name__"])
def test_a_label_that_names_the_series_is_no_attribute(tmp_path: Path, key: str) -> None:
    cohorts = (
        f"  cohorts:\n    - {{name: internal, match: {{{key}: x}}}}\n    - {{name: beta, match: {{tier: beta}}}}\n"
    )
    problem = only_problem(load_text(tmp_path, rollout_text(cohorts=cohorts)))
    assert (problem.line, problem.field) == (10, f"spec.cohorts[0].match.{key}"), problem
    assert "not a request attribute" in problem.message


def test_a_router_that_cannot_route_by_cohort_is_refused_saying_why(tmp_path: Path) -> None:
    """LiteLLM has a mechanism a user would reach for (tag routing): the refusal says why it does not fit,
    and which routers can."""
    problem = only_problem(load_text(tmp_path, rollout_text(router="gateway")))
    assert (problem.code, problem.field, problem.line) == ("E007", "spec.cohorts", 10)
    assert "cannot route by cohort" in problem.message
    assert f"routers that can: {', '.join(sorted(carries.COHORTS))}" in problem.message
    for named in ("tag routing", "enable_tag_filtering", "blend of their splits", "`order`", "`default` tag"):
        assert named in problem.message, named


@pytest.mark.parametrize("router", ["flags", "edge"], ids=["flagd", "envoy"])
def test_a_router_that_routes_by_cohort_takes_them(tmp_path: Path, router: str) -> None:
    result = load_text(tmp_path, rollout_text(router=router))
    assert not result.problems and [c.name for c in result.rollouts[0].rollout.spec.cohorts] == ["internal", "beta"]


def test_schema_says_which_routers_are_sticky() -> None:
    text = str(spec.json_schema(spec.Rollout))
    for router in spec.STICKY:
        assert router in text


def split(s: spec.RolloutSpec, index: int) -> tuple[int, dict[str, int]]:
    state = plan.step_state(s, index)
    return state.weight(traffic.CANARY), {c.name: c.canary for c in state.cohorts}


@pytest.mark.parametrize(
    ("index", "everyone", "cohorts"),
    [
        (0, 0, {"internal": 100}),
        (1, 0, {"internal": 100, "beta": 25}),
        (2, 0, {"internal": 100, "beta": 100}),
        (3, 5, {"internal": 100, "beta": 100}),  # cohorts stay open as the ramp widens
        (4, 25, {"internal": 100, "beta": 100}),
        (5, 100, {}),  # everyone at 100%: a cohort routes as everyone does, so none is left
    ],
)
def test_each_step_asks_for_its_split(tmp_path: Path, index: int, everyone: int, cohorts: dict[str, int]) -> None:
    (loaded,) = load_text(tmp_path, rollout_text()).rollouts
    assert split(loaded.rollout.spec, index) == (everyone, cohorts)


def test_a_cohort_below_everyone_routes_as_everyone(tmp_path: Path) -> None:
    steps = "  steps:\n    - {cohort: beta, weight: 10}\n    - {weight: 5}\n    - {weight: 50}\n    - {weight: 100}\n"
    (loaded,) = load_text(tmp_path, rollout_text(steps=steps)).rollouts
    # internal comes first in spec.cohorts: not opened, it still decides for its users, at everyone's weight
    assert split(loaded.rollout.spec, 1) == (5, {"internal": 5, "beta": 10})
    assert split(loaded.rollout.spec, 2) == (50, {})  # beta's 10% is below everyone's 50%: it gets 50%


def test_a_request_in_two_cohorts_is_the_first_listed_s_opened_or_not(tmp_path: Path) -> None:
    """So that every router (Envoy renders every cohort the spec names) routes it alike, and a later step
    never lowers a user: beta opened at 80% does not reach internal's users until internal opens."""
    steps = "  steps:\n    - {cohort: beta, weight: 80}\n    - {cohort: internal, weight: 90}\n    - {weight: 100}\n"
    (loaded,) = load_text(tmp_path, rollout_text(steps=steps)).rollouts
    both = {"user_group": "internal", "tenant_tier": "beta"}
    shares = [plan.step_state(loaded.rollout.spec, i).canary_for(both) for i in range(3)]
    assert shares == [0, 90, 100]


def test_cohort_order_is_the_spec_s_not_the_steps(tmp_path: Path) -> None:
    steps = "  steps:\n    - {cohort: beta, weight: 10}\n    - {cohort: internal, weight: 100}\n    - {weight: 100}\n"
    (loaded,) = load_text(tmp_path, rollout_text(steps=steps)).rollouts
    assert [c.name for c in plan.step_state(loaded.rollout.spec, 1).cohorts] == ["internal", "beta"]


def test_the_readme_names_every_router_that_carries_cohorts() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text("utf-8")
    table = readme.split("### Cohorts: who gets the canary first", 1)[1].split("\n### ", 1)[0]
    rows = {line.split("|")[1].strip().strip("`") for line in table.splitlines() if line.startswith("| `")}
    assert rows == set(carries.COHORTS)
