"""`rollout validate` and `rollout schema` as a user runs them, with their formats and exit codes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.helpers.examples import ROOT, broken, run, shipped_examples


def test_examples_are_valid(tmp_path: Path) -> None:
    code, out = run("validate", str(shipped_examples(tmp_path) / "rollouts"))
    assert code == 0, out
    assert "0 error(s)" in out or "valid: no problems found" in out


def test_schemas_are_up_to_date() -> None:
    """The committed JSON Schemas match the models; run `rollout schema` after changing spec.py."""
    code, out = run("schema", "--check", "--out", str(ROOT / "schemas"))
    assert code == 0, out


def test_schema_check_catches_drift(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "schemas", tmp_path / "schemas")
    (tmp_path / "schemas/rollout.schema.json").write_text("{}\n")
    code, out = run("schema", "--check", "--out", str(tmp_path / "schemas"))
    assert code == 1 and "rollout.schema.json" in out


def test_example_files_point_editors_at_the_schema(tmp_path: Path) -> None:
    for path in (shipped_examples(tmp_path) / "rollouts").rglob("*.yaml"):
        first = path.read_text().splitlines()[0]
        assert first.startswith("# yaml-language-server: $schema="), path
        schema = (path.parent / first.split("=", 1)[1]).resolve()
        assert schema.is_file(), f"{path}: {schema} does not exist"


def test_validate_text(examples: Path) -> None:
    broken(examples)
    code, out = run("validate", str(examples / "rollouts"))
    assert code == 1
    assert "rollout.yaml:22:16: error E002 spec.steps[2].weight: must be between 0 and 100" in out


def test_validate_json(examples: Path) -> None:
    broken(examples)
    code, out = run("validate", "--format", "json", str(examples / "rollouts"))
    report = json.loads(out)
    assert code == 1 and report["valid"] is False
    [finding] = [f for f in report["findings"] if f["severity"] == "error"]
    assert finding["line"] == 22 and finding["column"] == 16
    assert finding["field"] == "spec.steps[2].weight" and finding["code"] == "E002"


def test_validate_github_annotations(examples: Path) -> None:
    broken(examples)
    code, out = run("validate", "--format", "github", str(examples / "rollouts"))
    assert code == 1
    line = next(ln for ln in out.splitlines() if ln.startswith("::error "))
    assert (
        "ticket-triage/rollout.yaml,line=22,col=16,title=E002::spec.steps[2].weight: must be between 0 and 100" in line
    )


def test_github_format_cannot_inject_workflow_commands(examples: Path) -> None:
    path = examples / "rollouts/ticket-triage/rollout.yaml"
    path.write_text(path.read_text().replace("route: triage", 'route: triage\n  "x\\n::set-output name=a::b": 1'))
    code, out = run("validate", "--format", "github", str(path))
    assert code == 1
    assert all(ln.startswith(("::error ", "::warning ")) for ln in out.splitlines())
    assert "spec.x\\n::set-output" in out  # the key's newline is printed as an escape, never as a line break


def test_validate_one_file_reports_only_it(examples: Path) -> None:
    broken(examples)
    code, out = run("validate", str(examples / "rollouts/support-bot/rollout.yaml"))
    assert code == 0, out


def test_validate_usage_errors(tmp_path: Path) -> None:
    assert run("validate", str(tmp_path / "nope"))[0] == 2
    assert run("validate", str(tmp_path))[0] == 2  # no rollouts/controller.yaml above it
    with pytest.raises(SystemExit) as exc:
        run("validate", "--format", "xml")
    assert exc.value.code == 2
