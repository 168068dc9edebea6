"""`rollout validate` and `rollout schema` as a user runs them, with their formats and exit codes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.helpers.examples import FIXTURE, ROOT, broken, run, shipped_examples


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


def test_a_yaml_structure_error_shows_its_line_with_a_caret(examples: Path) -> None:
    """Text output prints the offending line and a caret under the column; JSON and GitHub annotations stay
    one line per finding (JSON carries the line as `source`)."""
    path = examples / "rollouts/ticket-triage/rollout.yaml"
    lines = path.read_text().splitlines()
    number = next(i for i, line in enumerate(lines) if line.startswith("  route:")) + 1
    lines[number - 1] = lines[number - 1].replace("route: ", "route:")
    path.write_text("\n".join(lines) + "\n")
    code, out = run("validate", str(path))
    assert code == 1
    head, source, caret = out.splitlines()[:3]
    column = len("  route:") + 1
    assert head.endswith(
        f"rollout.yaml:{number}:{column}: error E001 `route:triage` needs a space after the colon (`route: triage`)"
    )
    assert source == f"  {number} |   route:triage"
    assert caret == f"  {' ' * len(str(number))} | {' ' * (column - 1)}^"
    assert caret.index("^") == source.index("triage")

    code, out = run("validate", "--format", "json", str(path))
    [finding] = json.loads(out)["findings"]
    assert finding["source"] == "  route:triage" and finding["line"] == number and "\n" not in finding["message"]
    code, out = run("validate", "--format", "github", str(path))
    assert len(out.splitlines()) == 1 and out.startswith("::error ") and "route:triage` needs a space" in out


def test_validate_from_a_subfolder_finds_the_repository(examples: Path) -> None:
    """With no PATH, `rollout validate` looks for rollouts/controller.yaml above the current directory, as
    `plan` does, and checks every rollout; files are named relative to where it runs."""
    broken(examples)
    code, out = run("validate", cwd=examples / "rollouts/support-bot")
    assert code == 1, out
    assert "../ticket-triage/rollout.yaml:22:16: error E002 spec.steps[2].weight" in out
    assert run("validate", cwd=examples / "rollouts/support-bot/prompts")[0] == 1
    (examples / "rollouts/ticket-triage/rollout.yaml").write_text(
        (FIXTURE / "rollouts/ticket-triage/rollout.yaml").read_text()
    )
    assert run("validate", cwd=examples / "rollouts/support-bot")[0] == 0
