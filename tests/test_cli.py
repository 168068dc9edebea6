"""The `rollout` command as a user runs it: validate, schema and plan, with their formats and exit codes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from controller import cli, traffic
from controller.routers import file as file_router
from tests.helpers.examples import ROOT, copy_examples, run


@pytest.fixture
def examples(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the example repository, where every router is the embedded file router, its state
    beside the copy ($ROLLOUT_STATE_DIR)."""
    monkeypatch.setenv("ROLLOUT_STATE_DIR", str(tmp_path / "repo"))
    return copy_examples(tmp_path)


def test_examples_are_valid() -> None:
    code, out = run("validate", str(ROOT / "rollouts"))
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


def test_example_files_point_editors_at_the_schema() -> None:
    for path in (ROOT / "rollouts").rglob("*.yaml"):
        first = path.read_text().splitlines()[0]
        assert first.startswith("# yaml-language-server: $schema="), path
        schema = (path.parent / first.split("=", 1)[1]).resolve()
        assert schema.is_file(), f"{path}: {schema} does not exist"


def broken(examples: Path) -> Path:
    path = examples / "rollouts/ticket-triage/rollout.yaml"
    path.write_text(path.read_text().replace("{weight: 25,", "{weight: 250,"))
    return path


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


def test_python_dash_m_runs_the_same_command() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "controller", "validate", "rollouts"], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def set_live(examples: Path, router: str, route: str, weights: dict[str, int], shadow: int = 0) -> None:
    file_router.FileRouter(router, examples / f".rollout/{router}.json").write(
        {route: traffic.RouteState(weights, shadow)}
    )


def test_plan_shows_drift_made_by_hand(examples: Path) -> None:
    # ticket-triage is new: step 1 is shadow 50%. Someone set 30% canary by hand.
    set_live(examples, "local", "triage", {"stable": 70, "canary": 30})
    # release-notes is steady and in sync: stable 100%.
    set_live(examples, "flags", "release-notes-writer", {"stable": 100})

    code, text = run("plan", "--repo", str(examples))
    assert code == 0, text
    assert "~ ticket-triage" in text
    assert "live: stable 70%, canary 30%" in text and "desired: stable 100%, canary 0%" in text
    assert "self-heal drift: set stable 100%, canary 0%, shadow 50%" in text
    assert "= release-notes" in text
    assert "absent" in text  # support-bot's route has no live state yet

    code, md = run("plan", "--repo", str(examples), "--format", "markdown")
    row = next(ln for ln in md.splitlines() if ln.startswith("| ticket-triage"))
    assert "stable 70%, canary 30%" in row and "**yes**" in row and "0% → 50%" in row

    code, raw = run("plan", "--repo", str(examples), "--format", "json")
    plan = {r["rollout"]: r for r in json.loads(raw)["rollouts"]}
    assert plan["ticket-triage"]["drift"] is True
    assert plan["ticket-triage"]["live"]["weights"] == {"stable": 70, "canary": 30}
    assert plan["ticket-triage"]["desired"]["shadow"] == 50
    assert plan["release-notes"]["drift"] is False
    assert plan["support-bot"]["live"] is None


def test_plan_detailed_exitcode(examples: Path) -> None:
    set_live(examples, "local", "triage", {"stable": 100, "canary": 0}, shadow=50)
    set_live(examples, "flags", "release-notes-writer", {"stable": 100})
    set_live(examples, "gateway", "support-chat", {"stable": 99, "canary": 1})
    assert run("plan", "--repo", str(examples), "--detailed-exitcode")[0] == 0
    set_live(examples, "local", "triage", {"stable": 90, "canary": 10})
    assert run("plan", "--repo", str(examples), "--detailed-exitcode")[0] == 2


def test_plan_from_a_git_ref(examples: Path) -> None:
    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=examples, check=True, capture_output=True)

    git("init", "-q", "-b", "main")
    git("add", "rollouts")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    broken(examples)  # the working tree is broken; main is not
    code, out = run("plan", "--repo", str(examples), "--ref", "main", "--format", "json")
    assert code == 0, out
    assert {r["rollout"] for r in json.loads(out)["rollouts"]} == {"ticket-triage", "support-bot", "release-notes"}
    code, out = run("plan", "--repo", str(examples))
    assert code == 1 and "spec.steps[2].weight" in out


def test_plan_keeps_going_when_a_router_is_broken(examples: Path) -> None:
    (examples / ".rollout").mkdir()
    (examples / ".rollout/local.json").write_text("{not json")
    set_live(examples, "flags", "release-notes-writer", {"stable": 100})
    code, out = run("plan", "--repo", str(examples))
    assert code == 1
    assert "! ticket-triage  router unreachable or unreadable" in out and "not valid JSON" in out
    assert "= release-notes" in out


def test_what_a_command_acts_on_never_shows_the_remote_s_credentials() -> None:
    line = cli._acting_on("https://x-access-token:ghs_SECRET123@github.com/acme/rollouts.git", "a" * 40, Path("/s"))
    assert "ghs_SECRET123" not in line and "github.com/acme/rollouts.git" in line and "/s" in line


def test_a_relative_state_dir_override_is_refused(examples: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROLLOUT_STATE_DIR", "state")  # each terminal's own ./state: two places, not one
    code, _ = run("plan", "--repo", str(examples))
    assert code == 2


def test_an_unknown_kill_point_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The test-only kill switch refuses a name it does not know, before the command runs: a typo in a
    fault test must not pass for a process that survived its cut point."""
    monkeypatch.setenv(cli.KILL_ENV, "router.writen")
    assert cli.main(["schema", "--check"]) == 2
    assert "not a cut point" in capsys.readouterr().err
