"""Loading: revisions, value types, files that are refused before parsing, and git trees."""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest

from controller import errors, load, repo, spec
from tests.helpers import corpus, examples

EXAMPLES = examples.FIXTURE
FIXTURE_SPEC = EXAMPLES / "rollouts" / "ticket-triage" / "rollout.yaml"


def rollout_yaml(**over: str) -> str:
    fields = {
        "stable": "{model: acme/chat-2025-01-01, prompt: prompts/v1.md, params: {temperature: 0.2}}",
        "canary": "{model: acme/chat-2025-01-01, prompt: prompts/v2.md, params: {temperature: 0.2}}",
        "route": "chat",
    } | over
    return (
        "apiVersion: rollouts/v1\nkind: Rollout\nmetadata: {name: case}\nspec:\n  router: local\n"
        f"  route: {fields['route']}\n  stable: {fields['stable']}\n  canary: {fields['canary']}\n"
        "  steps: [{weight: 5, minSamples: 10}, {weight: 100}]\n"
    )


def load_case(root: Path, text: str | bytes) -> load.RepoSpec:
    target = root / "rollouts/case/rollout.yaml"
    target.write_bytes(text.encode() if isinstance(text, str) else text)
    return load.load_repo(repo.WorkTree(root))


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("30s", 30), ("5m", 300), ("2h", 7200), ("1h30m", 5400), ("2d", 172800), ("250ms", 0.25)],
    ids=["s", "m", "h", "compound", "d", "ms"],
)
def test_durations(value: str, seconds: float) -> None:
    assert spec.parse_duration(value) == timedelta(seconds=seconds)
    assert spec.parse_duration(spec.format_duration(spec.parse_duration(value))) == timedelta(seconds=seconds)


@pytest.mark.parametrize("value", ["", "5", "1 hour", "-5m", "5x", 300], ids=str)
def test_bad_durations(value: object) -> None:
    with pytest.raises(ValueError, match="must be a duration"):
        spec.parse_duration(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("3%", 0.03), ("0.5%", 0.005), ("250ms", 0.25), ("2s", 2.0), (0.2, 0.2), (5, 5.0), ("1.5", 1.5)],
    ids=["percent", "fraction-percent", "ms", "s", "float", "int", "string-number"],
)
def test_thresholds(value: object, expected: float) -> None:
    assert spec.parse_threshold(value) == pytest.approx(expected)


@pytest.mark.parametrize("value", [True, -1, "-3%", "lots", "3 percent"], ids=str)
def test_bad_thresholds(value: object) -> None:
    with pytest.raises(ValueError):
        spec.parse_threshold(value)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (float("nan"), "must be a number, not .nan"),
        (float("inf"), "must be finite, not .inf"),
        (-float("inf"), "must be finite, not -.inf"),
        (10**400, "must be at most 1000000000"),
        (-(10**400), "must not be negative"),
        ("9" * 400, "must be at most 1000000000"),
        (1_000_000_001, "must be at most 1000000000"),
    ],
    ids=["nan", "inf", "minus-inf", "huge-int", "huge-negative-int", "400-digits", "just-above"],
)
def test_thresholds_are_finite_and_bounded(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        spec.parse_threshold(value)
    assert spec.parse_threshold(spec.MAX_THRESHOLD) == spec.MAX_THRESHOLD


@pytest.mark.parametrize(
    "value", ["367d", "366d1s", "9999999999999d", "1" * 5000 + "s", "\u0661h", "1\uff15m"], ids=str
)
def test_durations_are_bounded_and_ascii(value: str) -> None:
    with pytest.raises(ValueError, match=r"at most 366d|must be a duration"):
        spec.parse_duration(value)
    assert spec.parse_duration("366d") == spec.MAX_DURATION


class ExplodingTree(repo.WorkTree):
    """A working tree one of whose files fails to read for a reason nobody foresaw (injected through the
    Tree interface, not patched)."""

    def __init__(self, root: Path, *, fails: str, error: Exception) -> None:
        super().__init__(root)
        self.fails, self.error = fails, error

    def read(self, path: str) -> bytes:
        if path == self.fails:
            raise self.error
        return super().read(path)


@pytest.mark.parametrize(
    "error", [RecursionError("maximum recursion depth exceeded"), MemoryError(), KeyError("x")], ids=repr
)
def test_whatever_breaks_one_rollout_costs_only_that_rollout(tmp_path: Path, error: Exception) -> None:
    root = corpus.make_repo(tmp_path)
    (root / "rollouts/case/rollout.yaml").write_text(rollout_yaml())
    result = load.load_repo(ExplodingTree(root, fails="rollouts/case/rollout.yaml", error=error))
    assert [r.name for r in result.rollouts] == ["neighbour"]
    [problem] = result.problems
    assert str(problem).startswith(f"rollouts/case/rollout.yaml: could not be loaded ({type(error).__name__}")
    assert problem.code == "E006"


def test_whatever_breaks_controller_yaml_stops_loading_cleanly(tmp_path: Path) -> None:
    root = corpus.make_repo(tmp_path)
    result = load.load_repo(ExplodingTree(root, fails=load.CONFIG_FILE, error=RecursionError("too deep")))
    assert result.config is None and result.rollouts == []
    assert [str(p) for p in result.problems] == [
        "rollouts/controller.yaml: could not be loaded (RecursionError: too deep)"
    ]


def test_revision_is_stable_under_reformatting(tmp_path: Path) -> None:
    root = corpus.make_repo(tmp_path)
    flow = load_case(root, rollout_yaml()).rollout("case")
    block = load_case(
        root,
        rollout_yaml(
            stable="\n    params:\n      temperature: 0.20   # a comment\n    prompt: 'prompts/v1.md'\n"
            '    model: "acme/chat-2025-01-01"',
        ),
    ).rollout("case")
    assert flow and block
    assert flow.revisions["stable"] == block.revisions["stable"]


@pytest.mark.parametrize(
    "change",
    [
        {"stable": "{model: acme/chat-2025-02-01, prompt: prompts/v1.md, params: {temperature: 0.2}}"},
        {"stable": "{model: acme/chat-2025-01-01, prompt: prompts/v2.md, params: {temperature: 0.2}}"},
        {"stable": "{model: acme/chat-2025-01-01, prompt: prompts/v1.md, params: {temperature: 0.3}}"},
        {"stable": "{model: acme/chat-2025-01-01, params: {temperature: 0.2}}"},
    ],
    ids=["model", "prompt", "params", "no-prompt"],
)
def test_revision_changes_with_content(tmp_path: Path, change: dict[str, str]) -> None:
    root = corpus.make_repo(tmp_path)
    before = load_case(root, rollout_yaml()).rollout("case")
    after = load_case(root, rollout_yaml(**change)).rollout("case")
    assert before and after
    assert before.revisions["stable"] != after.revisions["stable"]


def test_revision_follows_prompt_bytes_not_name(tmp_path: Path) -> None:
    root = corpus.make_repo(tmp_path)
    before = load_case(root, rollout_yaml()).rollout("case")
    shutil.copy(root / "rollouts/case/prompts/v1.md", root / "rollouts/case/prompts/copy.md")
    renamed = load_case(
        root, rollout_yaml(stable="{model: acme/chat-2025-01-01, prompt: prompts/copy.md, params: {temperature: 0.2}}")
    ).rollout("case")
    (root / "rollouts/case/prompts/v1.md").write_text("You are a terse assistant.\n")
    edited = load_case(root, rollout_yaml()).rollout("case")
    assert before and renamed and edited
    assert renamed.revisions["stable"] == before.revisions["stable"]
    assert edited.revisions["stable"] != before.revisions["stable"]


def test_integral_float_params_are_the_same_revision() -> None:
    one = spec.Variant(model="m", params={"temperature": 1, "stop": ["x"]})
    one_f = spec.Variant(model="m", params={"stop": ["x"], "temperature": 1.0})
    assert spec.revision(one, b"p") == spec.revision(one_f, b"p")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            b"apiVersion: rollouts/v1\nkind: Rollout\nmetadata: {name: caf\xe9}\n",
            "rollout.yaml:3: file is not valid UTF-8",
        ),
        (b"a: " + b"x" * (1 << 20) + b"\n", "rollout.yaml: file is larger than 512 KiB"),
        (b"\x7fELF\x02\x01\x01\x00\x00\x00", "rollout.yaml: file contains NUL bytes"),
    ],
    ids=["non-utf8", "over-1MiB", "binary"],
)
def test_files_refused_before_parsing(tmp_path: Path, data: bytes, message: str) -> None:
    root = corpus.make_repo(tmp_path)
    result = load_case(root, data)
    assert [str(p) for p in result.problems] and str(result.problems[0]).startswith(f"rollouts/case/{message}")
    assert [r.name for r in result.rollouts] == ["neighbour"]


def test_prompt_symlink_out_of_the_repo_is_refused(tmp_path: Path) -> None:
    root = corpus.make_repo(tmp_path)
    secret = tmp_path / "secret.md"
    secret.write_text("not for the model")
    os.symlink(secret, root / "rollouts/case/prompts/link.md")
    result = load_case(
        root, rollout_yaml(canary="{model: acme/chat-2025-01-01, prompt: prompts/link.md, params: {temperature: 0.2}}")
    )
    assert [str(p) for p in result.problems] == [
        "rollouts/case/rollout.yaml:8:49: spec.canary.prompt: prompt file 'rollouts/case/prompts/link.md' "
        "is a symlink that leads outside the repository"
    ]


def test_prompt_symlink_inside_the_repo_is_followed(tmp_path: Path) -> None:
    root = corpus.make_repo(tmp_path)
    os.symlink("v2.md", root / "rollouts/case/prompts/current.md")
    direct = load_case(root, rollout_yaml()).rollout("case")
    linked = load_case(
        root,
        rollout_yaml(canary="{model: acme/chat-2025-01-01, prompt: prompts/current.md, params: {temperature: 0.2}}"),
    ).rollout("case")
    assert direct and linked and direct.revisions["canary"] == linked.revisions["canary"]


def test_prompt_directory_is_refused(tmp_path: Path) -> None:
    root = corpus.make_repo(tmp_path)
    result = load_case(
        root, rollout_yaml(canary="{model: acme/chat-2025-01-01, prompt: prompts, params: {temperature: 0.2}}")
    )
    assert "is a directory, not a file" in str(result.problems[0])


def test_two_rollouts_on_one_route(tmp_path: Path) -> None:
    root = corpus.make_repo(tmp_path)
    (root / "rollouts/neighbour/rollout.yaml").write_text(
        (root / "rollouts/neighbour/rollout.yaml").read_text().replace("neighbour-route", "chat")
    )
    result = load_case(root, rollout_yaml())
    assert [str(p) for p in result.problems] == [
        "rollouts/neighbour/rollout.yaml:6:10: spec.route: route 'chat' on router 'local' is already rolled out "
        "by rollouts/case/rollout.yaml"
    ]
    assert [r.name for r in result.rollouts] == ["case"]


def test_missing_controller_config_stops_everything(tmp_path: Path) -> None:
    root = corpus.make_repo(tmp_path)
    (root / load.CONFIG_FILE).unlink()
    result = load_case(root, rollout_yaml())
    assert result.config is None and result.rollouts == []
    assert str(result.problems[0]).startswith("rollouts/controller.yaml: file is missing")


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout


def test_git_tree_reads_what_the_working_tree_has(tmp_path: Path) -> None:
    root = tmp_path / "r"
    shutil.copytree(EXAMPLES / "rollouts", root / "rollouts")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    from_disk = load.load_repo(repo.WorkTree(root))
    from_git = load.load_repo(repo.GitTree.open(root, "main"))
    assert from_git.problems == from_disk.problems == []
    assert [(r.name, r.revisions) for r in from_git.rollouts] == [(r.name, r.revisions) for r in from_disk.rollouts]


def test_git_tree_refuses_symlinks_out(tmp_path: Path) -> None:
    root = corpus.make_repo(tmp_path)
    os.symlink("../../../../etc/hostname", root / "rollouts/case/prompts/out.md")
    os.symlink("v1.md", root / "rollouts/case/prompts/in.md")
    (root / "rollouts/case/rollout.yaml").write_text(rollout_yaml())
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    tree = repo.GitTree.open(root, "main")
    assert tree.read("rollouts/case/prompts/in.md") == (root / "rollouts/case/prompts/v1.md").read_bytes()
    with pytest.raises(load.PathEscapes):
        tree.read("rollouts/case/prompts/out.md")
    with pytest.raises(FileNotFoundError):
        tree.read("rollouts/case/prompts/none.md")


@pytest.mark.parametrize(
    ("at", "text", "field", "says"),
    [
        ("\nspec:\n", "\nspec:\n  Stable: x\n", "spec.Stable", "did you mean 'stable'?"),
        ("\nkind: Rollout\n", "\nkind: Rollout\nKind: x\n", "Kind", "did you mean 'kind'?"),
    ],
    ids=["capitalised-under-spec", "capitalised-at-the-top"],
)
def test_a_capitalised_unknown_key_is_named_as_written(at: str, text: str, field: str, says: str) -> None:
    """A key the user wrote capitalised is theirs, not the name of a union member pydantic adds."""
    data = FIXTURE_SPEC.read_text().replace(at, text, 1).encode()
    with pytest.raises(errors.SpecError) as raised:
        load.load_model(spec.Rollout, "rollout.yaml", data)
    [problem] = [p for p in raised.value.problems if p.field == field]
    assert problem.code == "E002" and says in problem.message, raised.value.problems


def test_an_unleash_url_with_a_password_is_refused_where_it_is(tmp_path: Path) -> None:
    """The tokens authenticate: an HTTP client would send user:password@ as basic auth in their place."""
    (tmp_path / "rollouts").mkdir()
    (tmp_path / "rollouts" / "controller.yaml").write_text(
        "apiVersion: rollouts/v1\nkind: ControllerConfig\nrouters:\n"
        "  flags:\n    type: unleash\n    url: http://ops:hunter2@127.0.0.1:4242\n"
    )
    with pytest.raises(errors.SpecError) as caught:
        load.load_config(repo.WorkTree(tmp_path))
    [problem] = caught.value.problems
    assert (problem.line, problem.field) == (6, "routers.flags.url") and "user:password@" in problem.message


def test_model_version_is_part_of_the_revision_when_set() -> None:
    """An alias moves to the canary's modelVersion when it completes: another version is another canary."""
    plain = spec.Variant(model="m")
    three = spec.Variant(model="m", modelVersion=3)
    four = spec.Variant(model="m", modelVersion=4)
    assert spec.revision(plain, b"p") == "fc84cd3d26d7"  # variants without one keep the revisions they had
    assert len({spec.revision(plain, b"p"), spec.revision(three, b"p"), spec.revision(four, b"p")}) == 3


def test_a_litellm_url_with_a_password_is_refused_where_it_is(tmp_path: Path) -> None:
    """The master key authenticates; a user:password@ in the URL would be printed in every message."""
    (tmp_path / "rollouts").mkdir()
    (tmp_path / "rollouts" / "controller.yaml").write_text(
        "apiVersion: rollouts/v1\nkind: ControllerConfig\nrouters:\n"
        "  llm:\n    type: litellm\n    url: http://admin:s3cret@127.0.0.1:9\n"
    )
    with pytest.raises(errors.SpecError) as caught:
        load.load_config(repo.WorkTree(tmp_path))
    [problem] = caught.value.problems
    assert (problem.line, problem.field) == (6, "routers.llm.url") and "user:password@" in problem.message
    assert "s3cret" not in str(caught.value)
