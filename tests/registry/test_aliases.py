"""MLflow aliases that follow a rollout's stable variant (`spec.aliases`): the pure judgement (table), the
spec's checks, the completion PR's record, and the controller's tick against a real `mlflow server`:
moved on completion, moved back when main goes back, and a hand-moved alias left where it is."""

from __future__ import annotations

import re
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from controller import aliases, errors, load, plan, proposals, reconcile, spec, worktree
from controller.registry import mlflow
from tests.helpers import gitops as gitops_helper
from tests.helpers import mlflow_proc, net

# -- the judgement: pure -------------------------------------------------------------------------

_TARGET = aliases.Target(spec.RegistryAlias(model="m", alias="champion"), version=4, own=frozenset({3}))


@pytest.mark.parametrize(
    ("current", "verdict"),
    [
        (4, aliases.Verdict.IN_SYNC),
        (3, aliases.Verdict.MOVE),  # from this rollout's other version (the old stable, or the canary)
        (2, aliases.Verdict.DRIFT),  # moved by hand
        (None, aliases.Verdict.DRIFT),  # nobody made it
    ],
    ids=["in-sync", "own-version", "hand-moved", "absent"],
)
def test_judge(current: int | None, verdict: aliases.Verdict) -> None:
    assert aliases.judge(_TARGET, current)[0] is verdict


def test_drift_says_where_and_what_to_do() -> None:
    _, why = aliases.judge(_TARGET, 2)
    assert why.startswith("model 'm' alias 'champion' points at version 2, not at this rollout's version 3 or 4")
    assert "left as it is" in why


def _spec(**extra: object) -> dict[str, object]:
    return {
        "router": "local",
        "route": "r",
        "stable": {"model": "acme/a", "modelVersion": 3, "prompt": "prompts:/support/7"},
        "canary": {"model": "acme/b", "modelVersion": 4, "prompt": "prompts:/support/8"},
        "steps": [{"weight": 100}],
        **extra,
    }


def test_targets_follow_the_stable_variant() -> None:
    s = spec.RolloutSpec.model_validate(
        _spec(aliases=[{"model": "support-model", "alias": "champion"}, {"prompt": "support", "alias": "production"}])
    )
    found = [(t.name, t.alias.alias, t.version, t.own) for t in aliases.targets(s)]
    assert found == [("support-model", "champion", 3, frozenset({4})), ("support", "production", 7, frozenset({8}))]
    assert aliases.completion_moves(s) == [
        "model 'support-model' alias `champion`: version 3 -> 4",
        "prompt 'support' alias `production`: version 7 -> 8",
    ]


@pytest.mark.parametrize(
    ("alias", "message"),
    [
        ({"model": "m", "prompt": "p", "alias": "a"}, "name either `model` or `prompt`"),
        ({"alias": "a"}, "name either `model` or `prompt`"),
        ({"model": "m", "alias": "latest"}, "reserves `latest`"),
        ({"prompt": "other", "alias": "a"}, "spec.stable needs a prompt `prompts:/other/VERSION`"),
    ],
    ids=["both", "neither", "reserved", "no-version"],
)
def test_spec_refuses(alias: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        spec.RolloutSpec.model_validate(_spec(aliases=[alias]))


def test_a_model_alias_needs_every_variants_model_version() -> None:
    body = _spec(aliases=[{"model": "m", "alias": "champion"}])
    body["canary"] = {"model": "acme/b", "prompt": "prompts:/support/8"}
    with pytest.raises(ValueError, match=r"spec\.canary needs a `modelVersion`"):
        spec.RolloutSpec.model_validate(body)


# -- against a real MLflow server ----------------------------------------------------------------


def _uid() -> str:
    return uuid.uuid4().hex[:8]


def test_the_adapter_reads_and_sets_aliases(mlflow_server: mlflow_proc.Server) -> None:
    config = spec.MlflowConfig(tracking_uri=mlflow_server.url)
    registry = mlflow.Registry(environ={})
    model, prompt = f"model-{_uid()}", f"prompt-{_uid()}"
    one, two = mlflow_server.register_model_version(model), mlflow_server.register_model_version(model)
    mlflow_server.register_prompt(prompt, "v1\n")
    mlflow_server.register_prompt(prompt, "v2\n")
    assert registry.alias(config, model, "champion") is None
    registry.set_alias(config, model, "champion", one)
    registry.set_alias(config, prompt, "production", 2)
    assert registry.alias(config, model, "champion") == one
    assert mlflow_server.client().get_prompt_version_by_alias(prompt, "production").template == "v2\n"
    registry.set_alias(config, model, "champion", two)
    assert mlflow_server.client().get_model_version_by_alias(model, "champion").version == str(two)
    with pytest.raises(errors.RegistryError, match=r"version 99 .* does not exist"):
        registry.set_alias(config, model, "champion", 99)


CONFIG = """apiVersion: rollouts/v1
kind: ControllerConfig
routers:
  local: {{type: file, path: routes.json}}
prometheus: {{url: "{prom}"}}
forge: {{type: local}}
mlflow: {{trackingUri: "{mlflow}"}}
"""

ROLLOUT = """apiVersion: rollouts/v1
kind: Rollout
metadata: {{name: alias-bot}}
spec:
  router: local
  route: alias
  stable: {{model: acme/chat-{stable}, modelVersion: {stable}, prompt: "prompts:/{prompt}/{stable}"}}
  {other}: {{model: acme/chat-{old}, modelVersion: {old}, prompt: "prompts:/{prompt}/{old}"}}
  steps:
    - {{weight: 100}}
  aliases:
    - {{model: {model}, alias: champion}}
    - {{prompt: {prompt}, alias: production}}
  keepPreviousFor: 30m
"""


class _Setup:
    def __init__(self, tmp_path: Path, server: mlflow_proc.Server, monkeypatch: pytest.MonkeyPatch) -> None:
        self.prom = f"http://127.0.0.1:{net.free_port()}"  # nothing listens: no gate decides anything here
        self.ops = gitops_helper.make_gitops(tmp_path, self.prom, monkeypatch)
        self.server, self.model, self.prompt = server, f"model-{_uid()}", f"prompt-{_uid()}"
        for n in (1, 2):
            assert server.register_model_version(self.model) == n
            assert server.register_prompt(self.prompt, f"You are helpful, version {n}.\n") == n
        self.config = spec.MlflowConfig(tracking_uri=server.url)
        self.registry = mlflow.Registry(environ={})

    def main(self, *, stable: int, other: str, old: int) -> None:
        text = ROLLOUT.format(stable=stable, other=other, old=old, model=self.model, prompt=self.prompt)
        files = {"rollouts/controller.yaml": CONFIG.format(prom=self.prom, mlflow=self.server.url)}
        self.ops.commit({**files, "rollouts/alias-bot/rollout.yaml": text}, f"alias-bot: stable {stable}")

    def aliases(self) -> tuple[int | None, int | None]:
        return (
            self.registry.alias(self.config, self.model, "champion"),
            self.registry.alias(self.config, self.prompt, "production"),
        )

    def set(self, version: int) -> None:
        self.registry.set_alias(self.config, self.model, "champion", version)
        self.registry.set_alias(self.config, self.prompt, "production", version)

    def tick(self) -> reconcile.Outcome:
        controller = replace(self.ops.controller(), prompts=self.registry, registry=self.registry)
        outcomes = {o.rollout: o for o in controller.reconcile_once().outcomes}
        return outcomes["alias-bot"]


@pytest.fixture
def setup(tmp_path: Path, mlflow_server: mlflow_proc.Server, monkeypatch: pytest.MonkeyPatch) -> _Setup:
    return _Setup(tmp_path, mlflow_server, monkeypatch)


@pytest.mark.slow
def test_a_merged_completion_moves_the_aliases_then_main_going_back_moves_them_back(setup: _Setup) -> None:
    setup.set(1)
    setup.main(stable=2, other="previous", old=1)  # what merging the completion PR leaves on main
    outcome = setup.tick()
    assert outcome.error is None, outcome
    assert setup.aliases() == (2, 2)
    assert f"MLflow model {setup.model!r} alias 'champion': version 1 -> 2" in outcome.actions
    assert f"MLflow prompt {setup.prompt!r} alias 'production': version 1 -> 2" in outcome.actions
    assert setup.tick().error is None and setup.aliases() == (2, 2)  # in sync: nothing more to do

    setup.main(stable=1, other="canary", old=2)  # the completion reverted: main says stable is 1 again
    outcome = setup.tick()
    assert outcome.error is None, outcome
    assert setup.aliases() == (1, 1)
    assert f"MLflow model {setup.model!r} alias 'champion': version 2 -> 1" in outcome.actions


@pytest.mark.slow
def test_a_hand_moved_alias_is_drift_that_holds(setup: _Setup) -> None:
    setup.server.register_model_version(setup.model)  # version 3, nobody's in this rollout
    setup.registry.set_alias(setup.config, setup.model, "champion", 3)
    setup.registry.set_alias(setup.config, setup.prompt, "production", 1)
    setup.main(stable=2, other="previous", old=1)
    outcome = setup.tick()
    assert outcome.adapter == "registry" and outcome.error is not None
    assert f"model {setup.model!r} alias 'champion' points at version 3, not at this rollout's version 1 or 2" in (
        outcome.error
    )
    assert setup.aliases() == (3, 2)  # the hand-moved one stays; the other one moved
    assert setup.ops.live("alias") is not None  # the router's write went first, whatever the aliases say


def test_the_completion_pr_records_the_moves(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    (root / "rollouts/alias-bot").mkdir(parents=True)
    (root / "rollouts/controller.yaml").write_text(
        CONFIG.format(prom="http://127.0.0.1:1", mlflow="http://127.0.0.1:1")
    )
    text = ROLLOUT.format(stable=1, other="canary", old=2, model="support-model", prompt="support")
    (root / "rollouts/alias-bot/rollout.yaml").write_text(text)

    class Templates:
        def template(self, config: spec.MlflowConfig, name: str, version: int) -> str:
            return f"version {version}\n"  # the load needs the prompts' text; the PR is what is tested

    result = load.load_repo(worktree.WorkTree(root), prompts=Templates())
    loaded = result.rollout("alias-bot")
    assert loaded is not None, result.problems
    decision = plan.Decision(plan.Kind.COMPLETE, "the last step is done")
    p = proposals.propose(loaded, proposals.Action.COMPLETE, decision, (), text=text, at=datetime.now(UTC))
    assert "Moves MLflow's model 'support-model' alias `champion`: version 1 -> 2" in p.body
    assert "Moves MLflow's prompt 'support' alias `production`: version 1 -> 2" in p.body


def test_aliases_without_an_mlflow_section_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    (root / "rollouts/alias-bot").mkdir(parents=True)
    config = CONFIG.format(prom="http://127.0.0.1:1", mlflow="x").split("mlflow:")[0]
    (root / "rollouts/controller.yaml").write_text(config)
    text = ROLLOUT.format(stable=1, other="canary", old=2, model="m", prompt="p")
    (root / "rollouts/alias-bot/rollout.yaml").write_text(text)
    result = load.load_repo(worktree.WorkTree(root))
    assert any(p.field == "spec.aliases" and "has no `mlflow:` section" in p.message for p in result.problems)


class _AliasesDown:
    """MLflow answering prompt reads but not alias requests (an outage of the moment, as the adapter
    reports it): what the kill switch must not wait for."""

    def __init__(self, real: mlflow.Registry) -> None:
        self.real = real

    def template(self, config: spec.MlflowConfig, name: str, version: int) -> str:
        return self.real.template(config, name, version)

    def alias(self, config: spec.MlflowConfig, name: str, alias: str) -> int | None:
        raise errors.RegistryUnavailable(f"alias {alias!r} of {name!r}: the MLflow server cannot be reached")

    def set_alias(self, config: spec.MlflowConfig, name: str, alias: str, version: int) -> None:
        raise errors.RegistryUnavailable(f"alias {alias!r} of {name!r}: the MLflow server cannot be reached")


@pytest.mark.slow
def test_aliases_never_stand_in_for_the_kill_switch(setup: _Setup) -> None:
    setup.set(1)
    setup.main(stable=1, other="canary", old=2)  # a canary at its only step: 100%
    down = _AliasesDown(setup.registry)
    controller = replace(setup.ops.controller(), prompts=down, registry=down)
    outcome = {o.rollout: o for o in controller.reconcile_once().outcomes}["alias-bot"]
    live = setup.ops.live("alias")
    assert live is not None and live.weight("canary") == 100  # the router follows main
    assert outcome.adapter == "registry" and "MLflow aliases: alias" in (outcome.error or "")
    controller.abort("alias-bot", reason="bad answers")
    live = setup.ops.live("alias")
    assert live is not None and live.weight("canary") == 0  # taken out at once, MLflow or not
    assert setup.aliases() == (1, 1)


@pytest.mark.slow
def test_a_decommission_waits_for_the_aliases_it_would_strand(setup: _Setup) -> None:
    """MLflow down all through keepPreviousFor: removing `previous` would leave the aliases at the old
    stable's version, no longer this rollout's to move (drift for ever). The decommission holds until they
    are moved."""
    setup.set(1)
    setup.main(stable=2, other="previous", old=1)  # the completion merged; the aliases not moved yet
    down = replace(setup.ops.controller(), prompts=_AliasesDown(setup.registry), registry=_AliasesDown(setup.registry))
    first = down.reconcile_once().outcomes[0]  # the router follows main, the aliases cannot be moved
    assert first.decision is not None and first.decision.kind is plan.Kind.APPLY, first
    setup.ops.advance(timedelta(hours=1))  # keepPreviousFor (30m) is over, MLflow down all along
    outcome = {o.rollout: o for o in down.reconcile_once().outcomes}["alias-bot"]
    assert outcome.decision is not None and outcome.decision.kind is plan.Kind.HOLD, outcome
    assert "the old stable stays until the aliases follow main" in outcome.decision.reason
    assert setup.ops.forge.list() == []  # no decommission PR
    assert setup.aliases() == (1, 1)
    outcome = setup.tick()  # MLflow answers: this tick moves them, the decommission waits one more tick
    assert outcome.decision is not None and outcome.decision.kind is plan.Kind.HOLD, outcome
    assert setup.aliases() == (2, 2)
    outcome = setup.tick()
    assert outcome.decision is not None and outcome.decision.kind is plan.Kind.DECOMMISSION, outcome
    assert outcome.pr is not None
