"""`rollout render litellm` (shadow too), `rollout validate` (R007) and `rollout plan` against the session's real
LiteLLM proxy, on a copy of the example repository whose `gateway` router points at it."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from controller import cli, templates, traffic
from controller.routers import base
from tests.helpers import examples, litellm_proc
from tests.helpers.live_routers import LitellmStack, litellm_router

EXAMPLES = examples.FIXTURE / "rollouts"


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "repo"
    shutil.copytree(EXAMPLES, root / "rollouts")
    yield root


def point_at(root: Path, stack: LitellmStack) -> None:
    config = root / "rollouts" / "controller.yaml"
    text = config.read_text("utf-8").replace("url: http://127.0.0.1:4000", f"url: {stack.proxy.url}")
    text = text.replace("weightsFile: litellm-weights.json", f"weightsFile: {stack.proxy.weights_file}")
    config.write_text(text, "utf-8")


def render(root: Path, *extra: str) -> str:
    out = io.StringIO()
    assert cli.main(["render", "litellm", "--repo", str(root), *extra], out=out) == 0
    return out.getvalue()


def test_render_model_list(repo: Path) -> None:
    document = YAML(typ="safe").load(render(repo))
    assert list(document) == ["model_list", "router_settings", "litellm_settings"]
    assert document["router_settings"] == {"routing_strategy": "simple-shuffle"}  # the one that honours weights
    # the buckets before the callbacks (LiteLLM builds its histograms when the Prometheus callback loads)
    settings = document["litellm_settings"]
    assert list(settings) == ["prometheus_latency_buckets", "callbacks", "require_auth_for_metrics_endpoint"]
    assert settings["callbacks"] == ["prometheus", "controller.routers.litellm_callback.weights"]
    assert settings["require_auth_for_metrics_endpoint"] is False  # Prometheus scrapes without the master key
    assert settings["prometheus_latency_buckets"] == list(templates.LATENCY_BUCKETS)
    assert [
        (d["model_name"], d["model_info"]["id"], d["litellm_params"]["weight"]) for d in document["model_list"]
    ] == [
        ("support-chat", "support-bot_stable", 99),
        ("support-chat", "support-bot_canary", 1),
    ]
    stable, canary = document["model_list"]
    assert stable["litellm_params"]["api_key"] == "os.environ/OPENAI_API_KEY"
    assert stable["litellm_params"]["temperature"] == 0.2 and stable["litellm_params"]["max_tokens"] == 800
    prompt = (repo / "rollouts" / "support-bot" / "prompts" / "support-v3.md").read_text("utf-8")
    for deployment in (stable, canary):
        assert deployment["model_info"]["rollout"]["system_prompt"] == prompt
    assert stable["model_info"]["rollout"]["revision"] != canary["model_info"]["rollout"]["revision"]
    weights = json.loads(render(repo, "--weights"))
    assert weights["version"] == 2
    assert {d: e["weight"] for d, e in weights["groups"]["support-chat"].items()} == {
        "support-bot_stable": 99,
        "support-bot_canary": 1,
    }
    assert weights["groups"]["support-chat"]["support-bot_canary"]["serves"]["model"] == "openai/gpt-4o-2024-11-20"


def test_render_a_prompt_only_rollout_as_two_different_deployments(repo: Path) -> None:
    """The same model and two prompts: no silent A/A test; each deployment carries its variant's prompt."""
    directory = repo / "rollouts" / "support-bot"
    (directory / "prompts" / "support-v4.md").write_text("You are Acme's support assistant. Be brief.\n", "utf-8")
    text = (directory / "rollout.yaml").read_text("utf-8")
    text = text.replace(
        "model: openai/gpt-4o-2024-11-20\n    prompt: prompts/support-v3.md",
        "model: openai/gpt-4o-2024-08-06\n    prompt: prompts/support-v4.md",
    )
    (directory / "rollout.yaml").write_text(text, "utf-8")
    stable, canary = YAML(typ="safe").load(render(repo))["model_list"]
    assert stable["litellm_params"]["model"] == canary["litellm_params"]["model"] == "openai/gpt-4o-2024-08-06"
    assert canary["model_info"]["rollout"]["system_prompt"] == "You are Acme's support assistant. Be brief.\n"
    assert stable["model_info"]["rollout"]["system_prompt"] != canary["model_info"]["rollout"]["system_prompt"]


EXISTING = """# our proxy
general_settings:
  master_key: os.environ/LITELLM_MASTER_KEY   # never a key in git
model_list:
- model_name: embeddings                      # another team's group
  litellm_params: {model: openai/text-embedding-3-small}
- model_name: support-chat
  litellm_params: {model: openai/old, weight: 50}
  model_info: {id: support-bot_canary}
- model_name: support-chat                    # added by hand during an incident
  litellm_params: {model: openai/hotfix, weight: 20}
  model_info: {id: hotfix}
router_settings:
  num_retries: 2
  routing_strategy: simple-shuffle
litellm_settings:
  drop_params: true
  callbacks: [langfuse]
"""


def test_render_into_an_existing_proxy_config_keeps_every_key_it_does_not_own(repo: Path) -> None:
    """`--out` an existing proxy config: our deployments, the routing strategy and the metrics settings
    are replaced; the master key, other groups, a hand-added deployment, other settings and the
    comments stay; rendering again changes nothing."""
    config = repo / "litellm" / "config.yaml"
    with_proxy_config(repo, EXISTING)
    render(repo, "--out", str(config))
    text = config.read_text("utf-8")
    assert "master_key: os.environ/LITELLM_MASTER_KEY   # never a key in git" in text
    assert "# added by hand during an incident" in text
    document = YAML(typ="safe").load(text)
    assert document["general_settings"] == {"master_key": "os.environ/LITELLM_MASTER_KEY"}
    assert [(d["model_name"], d.get("model_info", {}).get("id")) for d in document["model_list"]] == [
        ("embeddings", None),
        ("support-chat", "support-bot_stable"),  # where our old deployment stood
        ("support-chat", "support-bot_canary"),
        ("support-chat", "hotfix"),
    ]
    assert document["model_list"][1:3] == YAML(typ="safe").load(render(repo))["model_list"]
    assert document["router_settings"] == {"num_retries": 2, "routing_strategy": "simple-shuffle"}
    settings = document["litellm_settings"]
    assert list(settings) == [
        "drop_params",
        "prometheus_latency_buckets",
        "callbacks",
        "require_auth_for_metrics_endpoint",
    ]
    assert settings["callbacks"] == ["langfuse", "prometheus", "controller.routers.litellm_callback.weights"]
    assert settings["drop_params"] is True and settings["require_auth_for_metrics_endpoint"] is False
    render(repo, "--out", str(config))
    assert config.read_text("utf-8") == text
    # a config that keeps the metrics behind a key says so, and the render leaves it
    config.write_text(
        text.replace("require_auth_for_metrics_endpoint: false", "require_auth_for_metrics_endpoint: true")
    )
    render(repo, "--out", str(config))
    assert YAML(typ="safe").load(config.read_text("utf-8"))["litellm_settings"]["require_auth_for_metrics_endpoint"]


def test_render_into_a_proxy_config_it_cannot_read_names_the_file_and_line(repo: Path) -> None:
    with_proxy_config(repo, "model_list: []\nrouter_settings: [simple-shuffle]\n")
    out = io.StringIO()
    config = repo / "litellm" / "config.yaml"
    before = config.read_text("utf-8")
    assert cli.main(["render", "litellm", "--repo", str(repo), "--out", str(config)], out=out) == 1
    assert f"{config}:2: router_settings must be a mapping" in out.getvalue()
    config.write_text("model_list: [\n")
    out = io.StringIO()
    assert cli.main(["render", "litellm", "--repo", str(repo), "--out", str(config)], out=out) == 1
    assert "config.yaml:" in out.getvalue() and config.read_text("utf-8") == "model_list: [\n"
    assert before


def with_proxy_config(root: Path, proxy: str) -> None:
    """The gateway router names the proxy's config.yaml, which lives in the repository."""
    (root / "litellm").mkdir(exist_ok=True)
    (root / "litellm" / "config.yaml").write_text(proxy, "utf-8")
    config = root / "rollouts" / "controller.yaml"
    text = config.read_text("utf-8")
    anchor = "    masterKeyEnv: LITELLM_MASTER_KEY\n"
    assert anchor in text
    config.write_text(text.replace(anchor, anchor + "    proxyConfig: litellm/config.yaml\n"), "utf-8")


PROXY = """model_list: []
router_settings:
  num_retries: 2
  routing_strategy: {strategy}
"""


def test_validate_and_render_refuse_a_proxy_config_whose_strategy_ignores_weights(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with_proxy_config(repo, PROXY.format(strategy="usage-based-routing-v2"))
    out = io.StringIO()
    assert cli.main(["validate", str(repo / "rollouts"), "--format", "json"], out=out) == 1
    [problem] = [f for f in json.loads(out.getvalue())["findings"] if f["code"] == "E008"]
    line = next(
        n
        for n, text in enumerate((repo / "rollouts" / "controller.yaml").read_text().splitlines(), 1)
        if "proxyConfig" in text
    )
    assert problem["file"].endswith("rollouts/controller.yaml") and problem["line"] == line
    assert problem["field"] == "routers.gateway.proxyConfig"
    assert (
        "litellm/config.yaml:4" in problem["message"]
        and "usage-based-routing-v2, which ignores weights" in problem["message"]
    )
    assert "'support-chat'" in problem["message"]
    out = io.StringIO()
    assert cli.main(["render", "litellm", "--repo", str(repo)], out=out) == 1
    assert "ignores weights" in out.getvalue() and "model_list" not in out.getvalue()


@pytest.mark.parametrize(
    "proxy",
    [PROXY.format(strategy="simple-shuffle"), "model_list: []\n"],
    ids=["simple-shuffle", "default"],
)
def test_validate_accepts_a_proxy_config_that_honours_weights(repo: Path, proxy: str) -> None:
    with_proxy_config(repo, proxy)
    out = io.StringIO()
    assert cli.main(["validate", str(repo / "rollouts"), "--format", "json"], out=out) == 0, out.getvalue()
    assert "E008" not in out.getvalue()
    assert "router_settings" in render(repo)


def test_validate_names_a_proxy_config_it_cannot_find(repo: Path) -> None:
    with_proxy_config(repo, "model_list: []\n")
    (repo / "litellm" / "config.yaml").unlink()
    out = io.StringIO()
    assert cli.main(["validate", str(repo / "rollouts")], out=out) == 1
    assert "proxyConfig" in out.getvalue() and "does not exist" in out.getvalue()


@pytest.mark.slow
def test_rendered_model_list_passes_litellm_validate_config(repo: Path, tmp_path: Path) -> None:
    missing = litellm_proc.available()
    if missing:
        pytest.skip(missing)
    document = YAML(typ="safe").load(render(repo))
    config = tmp_path / "proxy.json"
    config.write_text(json.dumps(litellm_proc.config(document["model_list"])), "utf-8")
    env = {
        **os.environ,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "OPENAI_API_KEY": "not-used",
        "PYTHONPATH": str(litellm_proc.ROOT),
    }
    exe = shutil.which("litellm") or "litellm"
    result = subprocess.run(
        [exe, "--config", str(config), "--validate_config"], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


def test_render_names_an_unknown_router(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["render", "litellm", "edge", "--repo", str(repo)]) == 2
    assert "not a LiteLLM router" in capsys.readouterr().err


def with_first_step(repo: Path, step: str) -> None:
    path = repo / "rollouts" / "support-bot" / "rollout.yaml"
    text = path.read_text("utf-8")
    path.write_text(text.replace("    - {weight: 1, for: 24h", f"    - {step}\n    - {{weight: 1, for: 24h"))


def test_validate_refuses_a_shadow_step_below_100_on_litellm(repo: Path) -> None:
    """LiteLLM mirrors every request or none: shadow 50% is an error naming the file, line and field."""
    with_first_step(repo, "{shadow: 50, for: 2h}")
    out = io.StringIO()
    assert cli.main(["validate", str(repo / "rollouts")], out=out) == 1
    [line] = [x for x in out.getvalue().splitlines() if "R007" in x]
    assert "support-bot/rollout.yaml:" in line and "spec.steps[0].shadow" in line, line
    assert "mirrors every request or none (silent_model)" in line and "use shadow: 100" in line


def test_a_shadow_step_validates_and_renders_stable_mirroring_to_the_canary(repo: Path) -> None:
    """Shadow 100 on LiteLLM: no R007; the render gives stable `silent_model: <the canary's id>` and
    puts the canary (weight 0) in the shadow group, where no user's request is routed; the weights file
    marks it `mirrored`."""
    with_first_step(repo, "{shadow: 100, for: 2h}")
    out = io.StringIO()
    cli.main(["validate", str(repo / "rollouts")], out=out)
    assert "R007" not in out.getvalue()
    document = YAML(typ="safe").load(render(repo))
    assert [
        (d["model_name"], d["model_info"]["id"], d["litellm_params"]["weight"], d["litellm_params"].get("silent_model"))
        for d in document["model_list"]
    ] == [
        ("support-chat", "support-bot_stable", 100, "support-bot_canary"),
        ("support-chat:shadow", "support-bot_canary", 0, None),
    ]
    entries = json.loads(render(repo, "--weights"))["groups"]["support-chat"]
    assert entries["support-bot_canary"]["mirrored"] is True and entries["support-bot_canary"]["weight"] == 0
    assert "mirrored" not in entries["support-bot_stable"]


def plan(root: Path) -> dict[str, Any]:
    buffer = io.StringIO()
    cli.main(["plan", "--repo", str(root), "--format", "json"], out=buffer)
    document: dict[str, Any] = json.loads(buffer.getvalue())
    return next(r for r in document["rollouts"] if r["rollout"] == "support-bot")


@pytest.mark.slow
def test_plan_reads_the_live_proxy(repo: Path, litellm_stack: LitellmStack, monkeypatch: pytest.MonkeyPatch) -> None:
    point_at(repo, litellm_stack)
    monkeypatch.setenv("LITELLM_MASTER_KEY", litellm_proc.MASTER_KEY)
    base.apply(litellm_router(litellm_stack), {"support-chat": traffic.RouteState({"stable": 70, "canary": 30})}).state(
        "support-chat"
    )
    found = plan(repo)
    assert found["live"]["weights"] == {"stable": 70, "canary": 30}
    assert found["drift"] is True
    base.apply(litellm_router(litellm_stack), {"support-chat": traffic.RouteState({"stable": 99, "canary": 1})}).state(
        "support-chat"
    )
    found = plan(repo)
    assert found["live"]["weights"] == {"stable": 99, "canary": 1} and found["drift"] is False

    monkeypatch.setenv("LITELLM_MASTER_KEY", "sk-not-the-key-42")
    buffer = io.StringIO()
    assert cli.main(["plan", "--repo", str(repo), "--format", "json"], out=buffer) == 1
    assert "sk-not-the-key-42" not in buffer.getvalue()
