"""`rollout init DIR`: the scaffold validates with no finding for every router type (as written, and with
its canary uncommented, the user's first change), its schemas are the generated ones and its `$schema`
lines reach them, its workflows pass actionlint and are the project's own with the install step
changed, a non-empty DIR is refused with nothing written, and `--local` leaves a clone of a new bare
remote with the scaffold on main."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import git
import pytest

from controller import __version__
from controller.cli import init, validate
from tests.helpers import github_actions
from tests.helpers.examples import ROOT, run

ROUTERS = ["file", "flagd", "litellm", "envoy"]
FIRST_CHANGE = [("  # canary:\n", "  canary:\n"), ("  #   ", "    ")]
INSTALL = {  # the one line a team's repository installs the tool by, in place of this checkout's
    'run: python -m pip install --disable-pip-version-check -q "$GITHUB_ACTION_PATH/../../.."': (
        f'run: python -m pip install --disable-pip-version-check -q "llm-rollouts=={__version__}"'
    ),
    "run: python -m pip install --disable-pip-version-check -q .": (
        f'run: python -m pip install --disable-pip-version-check -q "llm-rollouts=={__version__}"'
    ),
    "      # the action's own checkout holds the tool, so this works from any repository\n": "",
    "(.github/SETUP.md)": "(README.md)",
    "(see .github/SETUP.md)": "(see README.md)",
}


def scaffolded(tmp_path: Path, router: str, *extra: str) -> Path:
    code, out = run("init", str(tmp_path / router), "--router", router, *extra)
    assert code == 0, out
    return tmp_path / router


@pytest.mark.parametrize("router", ROUTERS)
@pytest.mark.parametrize("canary", [False, True], ids=["as-written", "first-change"])
def test_the_scaffold_validates_clean(tmp_path: Path, router: str, canary: bool) -> None:
    root = scaffolded(tmp_path, router)
    spec = root / "rollouts/assistant/rollout.yaml"
    if canary:
        text = spec.read_text()
        for old, new in FIRST_CHANGE:
            assert old in text
            text = text.replace(old, new)
        spec.write_text(text)
    code, out = run("validate", "--strict", cwd=root)  # --strict: a lint warning fails too
    assert (code, out) == (0, "valid: no problems found\n")


def test_validate_can_fail_on_the_scaffold(tmp_path: Path) -> None:
    root = scaffolded(tmp_path, "file")
    spec = root / "rollouts/assistant/rollout.yaml"
    spec.write_text(spec.read_text().replace("router: local", "router: nowhere"))
    assert run("validate", cwd=root)[0] == 1


def test_the_litellm_scaffold_routes_by_weight(tmp_path: Path) -> None:
    """Its proxy config is what `rollout render litellm` renders, with the master key from the
    environment; a strategy that ignores weights there is an error of `rollout validate` (E008)."""
    root = scaffolded(tmp_path, "litellm")
    config = (root / "litellm/config.yaml").read_text()
    assert "routing_strategy: simple-shuffle" in config
    assert "master_key: os.environ/LITELLM_MASTER_KEY" in config
    (root / "litellm/config.yaml").write_text(config.replace("simple-shuffle", "usage-based-routing-v2"))
    code, out = run("validate", cwd=root)
    assert code == 1 and "E008" in out


@pytest.mark.parametrize("router", ROUTERS)
def test_schemas_are_generated_and_the_schema_lines_reach_them(tmp_path: Path, router: str) -> None:
    root = scaffolded(tmp_path, router)
    for name, text in validate.render_schemas().items():
        assert (root / "schemas" / name).read_text() == text
    lines = 0
    for path in (root / "rollouts").rglob("*.yaml"):
        found = re.match(r"# yaml-language-server: \$schema=(\S+)\n", path.read_text())
        assert found, path
        assert (path.parent / found[1]).resolve().is_file(), (path, found[1])
        lines += 1
    assert lines == 2


def test_the_workflows_are_the_projects_own_installing_the_released_tool(tmp_path: Path) -> None:
    root = scaffolded(tmp_path, "file")
    pairs = {
        ".github/workflows/rollout-checks.yml": ".github/workflows/rollout-checks.yml",
        ".github/workflows/rollout-controller.yml": ".github/workflows/rollout-controller.yml",
        ".github/actions/rollout-checks/action.yml": ".github/actions/rollout-checks/action.yml",
    }
    for ours, theirs in pairs.items():
        expected = (ROOT / theirs).read_text()
        for old, new in INSTALL.items():
            expected = expected.replace(old, new)
        # the scaffold says where its version comes from on the line above the install
        got = re.sub(r"\n *# the version that wrote this repository[^\n]*", "", (root / ours).read_text())
        assert got == expected, ours


def test_the_workflows_pass_actionlint(tmp_path: Path) -> None:
    root = scaffolded(tmp_path, "file")
    workflows = [str(p) for p in sorted((root / ".github/workflows").glob("*.yml"))]
    result = subprocess.run(
        [github_actions.actionlint(), "-no-color", *workflows], cwd=root, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_non_empty_dir_is_refused_with_nothing_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "repo"
    target.mkdir()
    (target / "notes.txt").write_text("mine\n")
    code, _ = run("init", str(target), "--local")
    assert code == 2
    assert "exists and is not empty; nothing was written" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]
    assert [p.name for p in target.iterdir()] == ["notes.txt"]


def test_a_bad_name_is_refused(tmp_path: Path) -> None:
    assert run("init", str(tmp_path / "x"), "--name", "Not_A_Label")[0] == 2
    assert not (tmp_path / "x").exists()


def test_local_makes_a_clone_of_a_new_bare_remote(tmp_path: Path) -> None:
    code, out = run("init", str(tmp_path / "team"), "--local")
    assert code == 0, out
    remote = tmp_path / "team.git"
    assert f"export ROLLOUT_REMOTE={remote}" in out and "rollout reconcile --once" in out
    bare = git.Repo(remote)
    assert bare.bare
    clone = git.Repo(tmp_path / "team")
    assert clone.remotes.origin.url == str(remote)
    assert clone.head.commit.hexsha == bare.commit("main").hexsha
    files = {b.path for b in bare.commit("main").tree.traverse() if isinstance(b, git.Blob)}
    assert set(init.scaffold(router="file", name="assistant")) | {"README.md"} == files
    assert not clone.is_dirty(untracked_files=True)


def test_without_local_dir_is_a_repository_to_push(tmp_path: Path) -> None:
    code, out = run("init", str(tmp_path / "team"), "--router", "envoy")
    assert code == 0, out
    assert "git remote add origin URL && git push -u origin main" in out
    assert not git.Repo(tmp_path / "team").remotes
    assert not (tmp_path / "team.git").exists()


def test_local_refuses_a_remote_that_exists_and_takes_remote_dir(tmp_path: Path) -> None:
    (tmp_path / "team.git").mkdir()
    (tmp_path / "team.git" / "HEAD").write_text("ref: refs/heads/main\n")
    assert run("init", str(tmp_path / "team"), "--local")[0] == 2
    assert not (tmp_path / "team").exists()
    code, out = run("init", str(tmp_path / "team"), "--local", "--remote-dir", str(tmp_path / "elsewhere.git"))
    assert code == 0, out
    assert git.Repo(tmp_path / "team").remotes.origin.url == str(tmp_path / "elsewhere.git")
