"""What a router carries: every router type x every difference between stable and canary (or previous),
refused by the loader, with file:line:column and field, where the router cannot carry it."""

from __future__ import annotations

import io
import typing
from pathlib import Path

import pytest

from controller import carries, cli, load, repo, spec

CONFIG = """apiVersion: rollouts/v1
kind: ControllerConfig
routers:
  local: {type: file, path: .rollout/routes.json}
  flags: {type: flagd, path: flags.json}
  gateway: {type: litellm, url: "http://127.0.0.1:4000"}
  edge:
    type: envoy
    admin: http://127.0.0.1:9901
    upstreams: {acme/a: "127.0.0.1:8001", acme/b: "127.0.0.1:8002"}
  edge-bundle:
    type: envoy
    admin: http://127.0.0.1:9902
    cdsPath: clusters.json
    promptsPath: prompts.json
    upstreams: {acme/a: "127.0.0.1:8001", acme/b: "127.0.0.1:8001"}
  edge-shared:
    type: envoy
    admin: http://127.0.0.1:9903
    upstreams: {acme/a: "127.0.0.1:8001", acme/b: "127.0.0.1:8001"}
"""

STABLE = "{model: acme/a, prompt: prompts/v1.md, params: {temperature: 0.2}}"
#: difference -> the other variant
OTHER = {
    "none": "{model: acme/a, prompt: prompts/v1-copy.md, params: {temperature: 0.2}}",  # same bytes, same params
    "model": "{model: acme/b, prompt: prompts/v1.md, params: {temperature: 0.2}}",
    "prompt": "{model: acme/a, prompt: prompts/v2.md, params: {temperature: 0.2}}",
    "params": "{model: acme/a, prompt: prompts/v1.md, params: {temperature: 0.7}}",
}

ROLLOUT = """apiVersion: rollouts/v1
kind: Rollout
metadata:
  name: bot
spec:
  router: {router}
  route: chat
  stable: {stable}
  {role}: {other}
  steps:
    - {{weight: 10}}
    - {{weight: 100}}
"""

#: router -> the differences it cannot carry (and a phrase its refusal says)
CANNOT: dict[str, dict[str, str]] = {
    "local": {},
    "flags": {},
    "gateway": {},
    "edge": {"prompt": "without promptsPath", "params": "without promptsPath"},
    "edge-bundle": {},
    "edge-shared": {
        "model": "send both acme/a and acme/b to 127.0.0.1:8001",
        "prompt": "without promptsPath",
        "params": "without promptsPath",
    },
}
TYPES = {"local": "file", "flags": "flagd", "gateway": "litellm"}


def make_repo(tmp_path: Path, *, router: str, difference: str, role: str = "canary") -> Path:
    root = tmp_path / "repo"
    (root / "rollouts" / "bot" / "prompts").mkdir(parents=True)
    (root / "rollouts" / "controller.yaml").write_text(CONFIG, "utf-8")
    for name, text in {"v1.md": "Be brief.\n", "v1-copy.md": "Be brief.\n", "v2.md": "Be thorough.\n"}.items():
        (root / "rollouts" / "bot" / "prompts" / name).write_text(text, "utf-8")
    rollout = ROLLOUT.format(router=router, stable=STABLE, role=role, other=OTHER[difference])
    (root / "rollouts" / "bot" / "rollout.yaml").write_text(rollout, "utf-8")
    return root


CASES = [(router, difference) for router in CANNOT for difference in OTHER]


@pytest.mark.parametrize(("router", "difference"), CASES, ids=[f"{r}-{d}" for r, d in CASES])
@pytest.mark.parametrize("role", ["canary", "previous"])
def test_every_router_and_difference(tmp_path: Path, router: str, difference: str, role: str) -> None:
    root = make_repo(tmp_path, router=router, difference=difference, role=role)
    result = load.load_repo(repo.WorkTree(root))
    refused = CANNOT[router].get(difference)
    if refused is None:
        assert result.problems == [] and [r.name for r in result.rollouts] == ["bot"]
        return
    assert result.rollouts == []  # never planned, never reconciled: no router is touched with it
    [problem] = result.problems
    kind = TYPES.get(router, "envoy")
    line = (root / "rollouts" / "bot" / "rollout.yaml").read_text("utf-8").splitlines()[8]
    column = line.index(f"{difference}: ") + len(difference) + 3  # the field's value, 1-based
    assert (problem.file, problem.line, problem.column, problem.code) == (
        "rollouts/bot/rollout.yaml",
        9,
        column,
        "E007",
    )
    assert problem.field == f"spec.{role}.{difference}"
    assert problem.message.startswith(f"router {router!r} ({kind}) cannot carry a {difference} difference")
    assert refused in problem.message


def test_the_table_covers_every_router_type_and_difference() -> None:
    types = {
        typing.get_args(m.model_fields["type"].annotation)[0] for m in typing.get_args(spec.RouterConfig.__origin__)
    }
    assert set(carries.TABLE) == types == {"file", "flagd", "litellm", "envoy", "unleash", "istio", "gateway-api"}
    for row in carries.TABLE.values():
        assert set(row) == set(carries.Difference)


def test_an_envoy_model_needs_an_upstream(tmp_path: Path) -> None:
    root = make_repo(tmp_path, router="edge", difference="model")
    path = root / "rollouts" / "bot" / "rollout.yaml"
    path.write_text(path.read_text("utf-8").replace("{model: acme/b,", "{model: acme/c,"), "utf-8")
    [problem] = load.load_repo(repo.WorkTree(root)).problems
    assert (problem.line, problem.field, problem.code) == (9, "spec.canary.model", "E007")
    assert "has no upstream for model 'acme/c'" in problem.message


def test_prompts_path_needs_cds_path(tmp_path: Path) -> None:
    root = make_repo(tmp_path, router="local", difference="none")
    config = root / "rollouts" / "controller.yaml"
    config.write_text(config.read_text("utf-8").replace("    cdsPath: clusters.json\n", ""), "utf-8")
    [problem] = load.load_repo(repo.WorkTree(root)).problems
    assert (problem.file, problem.field) == ("rollouts/controller.yaml", "routers.edge-bundle.promptsPath")
    assert problem.line == 14 and "needs cdsPath" in problem.message


def test_validate_names_file_line_column_router_and_field(tmp_path: Path) -> None:
    root = make_repo(tmp_path, router="edge", difference="prompt")
    out = io.StringIO()
    assert cli.main(["validate", str(root / "rollouts")], out=out) == 1
    text = out.getvalue()
    assert "rollouts/bot/rollout.yaml:9:35: error E007 spec.canary.prompt: router 'edge' (envoy) cannot carry" in text
    assert "set promptsPath on the router" in text


def test_an_unreadable_prompt_is_its_own_problem_not_a_difference(tmp_path: Path) -> None:
    root = make_repo(tmp_path, router="edge", difference="prompt")
    (root / "rollouts" / "bot" / "prompts" / "v2.md").unlink()
    problems = load.load_repo(repo.WorkTree(root)).problems
    assert [(p.field, p.code) for p in problems] == [("spec.canary.prompt", "E004")]


@pytest.mark.parametrize("key", ["api_base", "api_key", "aws_secret_access_key", "extra_headers"])
@pytest.mark.parametrize("role", ["stable", "canary"])
def test_a_litellm_variant_cannot_reroute_the_call(tmp_path: Path, key: str, role: str) -> None:
    """A rollout PR must not send the proxy's provider key elsewhere: connection params belong to
    controller.yaml's `deployments`, never to a variant's params."""
    root = make_repo(tmp_path, router="gateway", difference="params")
    path = root / "rollouts" / "bot" / "rollout.yaml"
    text = path.read_text("utf-8")
    if role == "stable":
        text = text.replace("stable: {model: acme/a, prompt: prompts/v1.md, params: {temperature: 0.2}}",
                            f"stable: {{model: acme/a, prompt: prompts/v1.md, params: {{{key}: x}}}}")  # fmt: skip
    else:
        text = text.replace("params: {temperature: 0.7}", f"params: {{temperature: 0.7, {key}: x}}")
    path.write_text(text, "utf-8")
    [problem] = load.load_repo(repo.WorkTree(root)).problems
    assert (problem.field, problem.code) == (f"spec.{role}.params", "E007")
    assert key in problem.message and "deployments" in problem.message


def test_a_litellm_variant_cannot_mirror_traffic_itself(tmp_path: Path) -> None:
    """`silent_model` in a variant's params would copy every request to a model no review chose: only
    a shadow step mirrors, and only to its canary."""
    root = make_repo(tmp_path, router="gateway", difference="params")
    path = root / "rollouts" / "bot" / "rollout.yaml"
    text = path.read_text("utf-8").replace("params: {temperature: 0.7}", "params: {temperature: 0.7, silent_model: x}")
    path.write_text(text, "utf-8")
    [problem] = load.load_repo(repo.WorkTree(root)).problems
    assert (problem.field, problem.code) == ("spec.canary.params", "E007")
    assert "'silent_model'" in problem.message and "shadow step" in problem.message
