"""`rollout init DIR`: the scaffold validates with no finding for every router type (as written, and with
its canary uncommented, the user's first change), its schemas are the generated ones and its `$schema`
lines reach them, its workflows pass actionlint and are the project's own with the install step
changed, a non-empty DIR is refused with nothing written, and `--local` leaves a clone of a new bare
remote with the scaffold on main."""

from __future__ import annotations

import importlib.metadata
import json
import re
import subprocess
from pathlib import Path

import git
import pytest

from controller.cli import init, validate
from tests.helpers import github_actions
from tests.helpers.examples import ROOT, run

ROUTERS = ["file", "flagd", "litellm", "envoy"]
FIRST_CHANGE = [("  # canary:\n", "  canary:\n"), ("  #   ", "    ")]
SOURCE = "git+https://git.example.com/acme/llm-rollouts@v0.1.0"  # what a team names with --install
INSTALL = {  # the one line a team's repository installs the tool by, in place of this checkout's
    'run: python -m pip install --disable-pip-version-check -q "$GITHUB_ACTION_PATH/../../.."': (
        f"run: python -m pip install --disable-pip-version-check -q {SOURCE}"
    ),
    "run: python -m pip install --disable-pip-version-check -q .": (
        f"run: python -m pip install --disable-pip-version-check -q {SOURCE}"
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
    """Its proxy config is what `rollout render litellm --out` renders into it, with the master key from
    the environment (rendering again keeps it, and changes nothing), and no machine's path; a strategy
    that ignores weights there is an error of `rollout validate` (E008)."""
    root = scaffolded(tmp_path, "litellm")
    config = (root / "litellm/config.yaml").read_text()
    assert "routing_strategy: simple-shuffle" in config
    assert "master_key: os.environ/LITELLM_MASTER_KEY" in config
    assert str(tmp_path) not in config and "/state/" not in config
    assert run("render", "litellm", "--out", "litellm/config.yaml", cwd=root)[0] == 0
    assert (root / "litellm/config.yaml").read_text() == config
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


def test_the_workflows_are_the_projects_own_installing_the_named_tool(tmp_path: Path) -> None:
    root = scaffolded(tmp_path, "file", "--install", SOURCE)
    pairs = {
        ".github/workflows/rollout-checks.yml": ".github/workflows/rollout-checks.yml",
        ".github/workflows/rollout-controller.yml": ".github/workflows/rollout-controller.yml",
        ".github/workflows/rollout-commands.yml": ".github/workflows/rollout-commands.yml",
        ".github/actions/rollout-checks/action.yml": ".github/actions/rollout-checks/action.yml",
    }
    for ours, theirs in pairs.items():
        expected = (ROOT / theirs).read_text()
        for old, new in INSTALL.items():
            expected = expected.replace(old, new)
        # the scaffold says where the tool comes from on the line above the install
        got = re.sub(r"\n *# where the tool comes from[^\n]*", "", (root / ours).read_text())
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


@pytest.mark.parametrize(
    ("remote_dir", "says"),
    [
        ("team/remote.git", "must be outside DIR"),  # it would be committed into the scaffold
        ("team", "must be outside DIR"),  # its own origin
        (".", "must be outside DIR"),  # DIR inside the remote
        ("afile/r.git", "is not a directory"),  # a path under a regular file
    ],
    ids=["inside-dir", "dir-itself", "dir-inside-it", "under-a-file"],
)
def test_a_remote_that_cannot_be_one_is_refused_with_nothing_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], remote_dir: str, says: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("not a directory\n")
    assert run("init", "team", "--local", "--remote-dir", remote_dir)[0] == 2
    assert says in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_the_root_is_no_dir_for_a_repository(capsys: pytest.CaptureFixture[str]) -> None:
    assert run("init", "/", "--local")[0] == 2
    assert "name a directory" in capsys.readouterr().err


def test_a_failure_while_writing_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever fails after the first file is written (here: git refuses to create the remote), DIR and the
    remote are gone again, so running the command again is not refused for a half-written DIR."""
    from controller import errors, repo

    def refuse(path: Path, **_: object) -> str:
        raise errors.RepoError(f"cannot create the repository {path}: refused")

    monkeypatch.setattr(repo, "publish", refuse)
    assert run("init", str(tmp_path / "team"), "--local")[0] == 1
    assert list(tmp_path.iterdir()) == []


def test_with_no_source_known_the_install_step_says_what_to_set(tmp_path: Path) -> None:
    """No package name is guessed for an index (llm-rollouts is not published: whoever registers it would
    run in the controller): an install from a local path leaves a step that fails saying what to set."""
    root = scaffolded(tmp_path, "file")  # this checkout is installed from a path (pip install -e .)
    for path in (
        ".github/actions/rollout-checks/action.yml",
        ".github/workflows/rollout-controller.yml",
        ".github/workflows/rollout-commands.yml",
    ):
        text = (root / path).read_text()
        assert "run: " + init.NO_INSTALL in text and "pip install" not in text.split("rollout init --install")[0][-300:]


@pytest.mark.parametrize(
    ("direct_url", "expected"),
    [
        ({"url": "https://github.com/acme/llm-rollouts", "vcs_info": {"vcs": "git", "commit_id": "a" * 40}},
         "git+https://github.com/acme/llm-rollouts@" + "a" * 40),
        ({"url": "https://x:ghp_SECRET@github.com/acme/llm-rollouts", "vcs_info": {"vcs": "git", "commit_id": "b" * 40}},
         None),  # never a credential in a workflow
        ({"url": "file:///src/llm-rollouts", "dir_info": {"editable": True}}, None),
        (None, None),
    ],
    ids=["git", "git-with-credentials", "local-path", "from-an-index"],
)  # fmt: skip
def test_where_this_installation_came_from(
    monkeypatch: pytest.MonkeyPatch, direct_url: dict[str, object] | None, expected: str | None
) -> None:
    class Installed:
        def read_text(self, name: str) -> str | None:
            assert name == "direct_url.json"
            return None if direct_url is None else json.dumps(direct_url)

    monkeypatch.setattr(importlib.metadata, "distribution", lambda name: Installed())
    assert init.installed_from() == expected


@pytest.mark.parametrize("spec", ["llm-rollouts; rm -rf /", "x y", "$(id)", "a\nb"])
def test_an_install_spec_that_is_not_a_requirement_is_refused(tmp_path: Path, spec: str) -> None:
    code, _ = run("init", str(tmp_path / "t"), "--install", spec)
    assert code == 2 and not (tmp_path / "t").exists()


def test_the_envoy_bootstrap_stays_out_of_git(tmp_path: Path) -> None:
    """The scaffold's README says `envoy.yaml` is not in git; a `git add .` after rendering it agrees."""
    root = scaffolded(tmp_path, "envoy")
    (root / "envoy.yaml").write_text("# rendered\n")
    ignored = subprocess.run(["git", "check-ignore", "envoy.yaml"], cwd=root, capture_output=True, text=True)
    assert ignored.returncode == 0, ignored
