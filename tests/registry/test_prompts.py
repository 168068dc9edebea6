"""Prompts from MLflow's Prompt Registry (`prompt: prompts:/NAME/VERSION`), against a real `mlflow server`:
the adapter reads a version's template exactly, a variant's revision hashes it as it would a prompt file's
bytes, and `rollout validate` names the file, line and field when the registry or the version is missing."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from controller import errors, load, spec, worktree
from controller.registry import mlflow
from tests.helpers import mlflow_proc, net
from tests.helpers.examples import copy_examples, run

TRIAGE = "rollouts/ticket-triage/rollout.yaml"
CANARY_PROMPT = "    prompt: prompts/triage-v8.md"  # line 17 of the fixture's ticket-triage rollout


def _name() -> str:
    return f"triage-{uuid.uuid4().hex[:8]}"


def _repo(tmp_path: Path, *, url: str | None, prompt: str, extra: str = "") -> Path:
    """The fixture repository with ticket-triage's canary prompt set to `prompt`, and `mlflow:` at `url`."""
    root = copy_examples(tmp_path)
    config = root / "rollouts/controller.yaml"
    if url is not None:
        config.write_text(config.read_text() + f"mlflow: {{trackingUri: {url!r}{extra}}}\n")
    path = root / TRIAGE
    text = path.read_text()
    assert CANARY_PROMPT in text
    path.write_text(text.replace(CANARY_PROMPT, f"    prompt: {prompt}"))
    return root


def test_a_version_template_is_read_exactly(mlflow_server: mlflow_proc.Server) -> None:
    name = _name()
    template = "Triage the ticket.\n\n  Queues: {{queues}}\tbilling\n"
    first = mlflow_server.register_prompt(name, template)
    second = mlflow_server.register_prompt(name, "another\n")
    registry = mlflow.Registry(environ={})
    config = spec.MlflowConfig(tracking_uri=mlflow_server.url)
    assert registry.template(config, name, first) == template
    assert registry.template(config, name, second) == "another\n"


def test_the_revision_hashes_the_template_as_a_prompt_files_bytes(
    tmp_path: Path, mlflow_server: mlflow_proc.Server
) -> None:
    """A prompt moved from a file into the registry, byte for byte, is the same revision: nothing to roll out."""
    name = _name()
    on_file = copy_examples(tmp_path / "file")
    text = (on_file / "rollouts/ticket-triage/prompts/triage-v8.md").read_text("utf-8")
    version = mlflow_server.register_prompt(name, text)
    in_registry = _repo(tmp_path / "registry", url=mlflow_server.url, prompt=f"prompts:/{name}/{version}")
    registry = mlflow.Registry(environ={})
    a = load.load_repo(worktree.WorkTree(on_file)).rollout("ticket-triage")
    b = load.load_repo(worktree.WorkTree(in_registry), prompts=registry).rollout("ticket-triage")
    assert a is not None and b is not None
    assert b.revisions == a.revisions and b.prompt_digests == a.prompt_digests
    assert b.prompts["canary"] == f"prompts:/{name}/{version}" and b.prompt_texts["canary"] == text
    # another template is another revision
    other = mlflow_server.register_prompt(name, text + "Answer in French.\n")
    changed = _repo(tmp_path / "other", url=mlflow_server.url, prompt=f"prompts:/{name}/{other}")
    c = load.load_repo(worktree.WorkTree(changed), prompts=registry).rollout("ticket-triage")
    assert c is not None and c.revisions["canary"] != a.revisions["canary"]
    assert c.revisions["stable"] == a.revisions["stable"]


def test_validate_reads_the_registry(tmp_path: Path, mlflow_server: mlflow_proc.Server) -> None:
    name = _name()
    version = mlflow_server.register_prompt(name, "Triage the ticket.\n")
    root = _repo(tmp_path, url=mlflow_server.url, prompt=f"prompts:/{name}/{version}")
    code, out = run("validate", str(root / "rollouts"))
    assert code == 0, out


def test_validate_names_a_missing_version(tmp_path: Path, mlflow_server: mlflow_proc.Server) -> None:
    name = _name()
    version = mlflow_server.register_prompt(name, "Triage the ticket.\n")
    root = _repo(tmp_path, url=mlflow_server.url, prompt=f"prompts:/{name}/{version + 1}")
    code, out = run("validate", str(root / "rollouts"))
    assert code == 1
    assert (
        f"ticket-triage/rollout.yaml:17:13: error E004 spec.canary.prompt: prompt 'prompts:/{name}/{version + 1}'"
        in out
    )
    assert f"prompt {name!r} version {version + 1} does not exist" in out


def test_validate_names_an_unreachable_registry_and_never_the_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"http://127.0.0.1:{net.free_port()}"  # nothing listens there
    monkeypatch.setenv("MLFLOW_TEST_TOKEN", "s3cret-mlflow-token")
    root = _repo(tmp_path, url=url, prompt="prompts:/triage/3", extra=", tokenEnv: MLFLOW_TEST_TOKEN")
    code, out = run("validate", str(root / "rollouts"))
    assert code == 1
    assert "ticket-triage/rollout.yaml:17:13: error E004 spec.canary.prompt:" in out
    assert f"could not be read from {url}" in out and "cannot be reached" in out
    assert "s3cret" not in out


def test_a_token_that_is_not_set_is_named(tmp_path: Path, mlflow_server: mlflow_proc.Server) -> None:
    root = _repo(tmp_path, url=mlflow_server.url, prompt="prompts:/triage/3", extra=", tokenEnv: MLFLOW_UNSET_TOKEN")
    code, out = run("validate", str(root / "rollouts"))
    assert code == 1 and "$MLFLOW_UNSET_TOKEN (mlflow.tokenEnv) is not set" in out


def test_a_registered_model_is_not_a_prompt(mlflow_server: mlflow_proc.Server) -> None:
    name = f"model-{uuid.uuid4().hex[:8]}"
    version = mlflow_server.register_model_version(name)
    with pytest.raises(errors.RegistryError, match="is a registered model, not a prompt"):
        mlflow.Registry(environ={}).template(spec.MlflowConfig(tracking_uri=mlflow_server.url), name, version)


def test_without_an_mlflow_section_the_prompt_is_refused(tmp_path: Path) -> None:
    root = _repo(tmp_path, url=None, prompt="prompts:/triage/3")
    code, out = run("validate", str(root / "rollouts"))
    assert code == 1
    assert "rollout.yaml:17:13: error E004 spec.canary.prompt:" in out and "has no `mlflow:` section" in out


@pytest.mark.parametrize("prompt", ["prompts:/triage@production", "prompts:/triage", "prompts:/triage/latest"])
def test_a_registry_prompt_pins_a_version(tmp_path: Path, prompt: str) -> None:
    root = _repo(tmp_path, url="http://127.0.0.1:1", prompt=prompt)
    code, out = run("validate", str(root / "rollouts"))
    assert code == 1
    assert "rollout.yaml:17:13: error E002 spec.canary.prompt:" in out and "with a version number" in out


def test_plan_reads_the_registry(
    tmp_path: Path, mlflow_server: mlflow_proc.Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = _name()
    version = mlflow_server.register_prompt(name, "Triage the ticket.\n")
    root = _repo(tmp_path, url=mlflow_server.url, prompt=f"prompts:/{name}/{version}")
    monkeypatch.setenv("ROLLOUT_STATE_DIR", str(root))
    code, out = run("plan", "--repo", str(root), "--format", "json")
    assert code == 0, out
    assert "ticket-triage" in {r["rollout"] for r in json.loads(out)["rollouts"]}
