"""GitTree: files of one commit read from git objects, trees and blobs kept by object id across commits."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import git
import pytest

from controller import load, repo


def run(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout


def commit(root: Path, message: str) -> str:
    run(root, "add", "-A")
    run(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message)
    return run(root, "rev-parse", "HEAD").strip()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "r"
    (root / "rollouts/a b/prompts").mkdir(parents=True)
    (root / "rollouts/a b/rollout.yaml").write_text("one\n")
    (root / "rollouts/a b/prompts/v1.md").write_text("first\n")
    (root / "rollouts/café").mkdir()
    (root / "rollouts/café/rollout.yaml").write_text("two\n")
    (root / "rollouts/run.sh").write_text("#!/bin/sh\n")
    (root / "rollouts/run.sh").chmod(0o755)
    os.symlink("a b/prompts", root / "rollouts/linked")
    run(root.parent, "init", "-q", "-b", "main", str(root))
    commit(root, "one")
    return root


def test_tree_entries_are_what_git_lists(root: Path) -> None:
    listed = run(root, "ls-tree", "-z", "HEAD:rollouts").strip("\0").split("\0")
    expected = {}
    for line in listed:
        meta, name = line.split("\t", 1)
        mode, _, sha = meta.split()
        expected[name] = (int(mode, 8), sha)
    sha = run(root, "rev-parse", "HEAD:rollouts").strip()
    assert repo._tree_entries(git.Repo(root), sha) == expected


def test_reads_and_lists_through_names_symlinks_and_dot_dot(root: Path) -> None:
    tree = repo.GitTree.open(root, "main")
    assert tree.listdir("rollouts") == ["a b", "café", "linked", "run.sh"]
    assert tree.read("rollouts/café/rollout.yaml") == b"two\n"
    assert tree.read("rollouts/linked/v1.md") == b"first\n"  # a symlink to a directory
    assert tree.read("rollouts/café/../a b/rollout.yaml") == b"one\n"
    assert tree.listdir("rollouts/linked") == ["v1.md"]
    assert tree.listdir("rollouts/run.sh") == [] and tree.listdir("nowhere") == []
    with pytest.raises(IsADirectoryError):
        tree.read("rollouts/a b")
    with pytest.raises(FileNotFoundError):
        tree.read("rollouts/run.sh/x")
    with pytest.raises(load.PathEscapes):
        tree.read("../r/rollouts/run.sh")


def test_each_commit_reads_its_own_files(root: Path) -> None:
    first = run(root, "rev-parse", "HEAD").strip()
    (root / "rollouts/a b/rollout.yaml").write_text("one, changed\n")
    (root / "rollouts/café/rollout.yaml").unlink()
    (root / "rollouts/new").mkdir()
    (root / "rollouts/new/rollout.yaml").write_text("three\n")
    second = commit(root, "two")
    old, new = repo.GitTree.open(root, first), repo.GitTree.open(root, second)
    for _ in range(2):  # the second round reads from the caches
        assert old.read("rollouts/a b/rollout.yaml") == b"one\n"
        assert new.read("rollouts/a b/rollout.yaml") == b"one, changed\n"
        assert old.listdir("rollouts") == ["a b", "café", "linked", "run.sh"]
        assert new.listdir("rollouts") == ["a b", "linked", "new", "run.sh"]
        assert new.read("rollouts/a b/prompts/v1.md") == old.read("rollouts/a b/prompts/v1.md") == b"first\n"
        with pytest.raises(FileNotFoundError):
            new.read("rollouts/café/rollout.yaml")


def test_a_submodule_is_neither_a_file_nor_a_directory(root: Path) -> None:
    head = run(root, "rev-parse", "HEAD").strip()
    run(root, "update-index", "--add", "--cacheinfo", f"160000,{head},rollouts/sub")
    run(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "submodule")
    tree = repo.GitTree.open(root, "main")
    assert "sub" in tree.listdir("rollouts")
    assert tree.listdir("rollouts/sub") == []
    with pytest.raises(FileNotFoundError):
        tree.read("rollouts/sub")


def test_the_tree_cache_is_bounded(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trees = repo._Cache(6, repo._tree_cost)
    monkeypatch.setattr(repo, "_TREES", trees)
    tree = repo.GitTree.open(root, "main")
    for _ in range(2):
        assert tree.read("rollouts/a b/prompts/v1.md") == b"first\n"
        assert tree.read("rollouts/café/rollout.yaml") == b"two\n"
        assert trees.used <= 6
    assert sum(len(e) + 1 for _, e in trees.items()) == trees.used > 0


@pytest.fixture
def empty_caches(monkeypatch: pytest.MonkeyPatch) -> None:
    """As in a new process: no tree, blob or prefetch is remembered."""
    monkeypatch.setattr(repo, "_TREES", repo._Cache(repo._TREES.budget, repo._tree_cost))
    monkeypatch.setattr(repo, "_BLOBS", repo._Cache(repo._BLOBS.budget, len, largest=repo._BLOBS.largest))
    monkeypatch.setattr(repo, "_PREFETCHED", set())


def test_listing_a_directory_reads_what_is_under_it_at_once(
    root: Path, empty_caches: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = b"x" * (repo._PREFETCH_BLOB_BYTES + 1)
    (root / "rollouts/café/data.jsonl").write_bytes(big)
    commit(root, "big")
    tree = repo.GitTree.open(root, "main")
    assert tree.listdir("rollouts") == ["a b", "café", "linked", "run.sh"]
    for (_, sha), entries in repo._TREES.items():  # the listing is what the tree objects say
        assert entries == repo._parse_tree(repo._object_bytes(tree.repo, sha))

    def no_round_trips(repo_: git.Repo, sha: str) -> bytes:
        raise AssertionError(f"object {sha} was read on its own")

    with monkeypatch.context() as m:
        m.setattr(repo, "_object_bytes", no_round_trips)
        assert tree.read("rollouts/a b/prompts/v1.md") == b"first\n"
        assert tree.read("rollouts/linked/v1.md") == b"first\n"
        assert tree.read("rollouts/café/rollout.yaml") == b"two\n"
        assert tree.read("rollouts/run.sh") == b"#!/bin/sh\n"
        with pytest.raises(AssertionError, match="on its own"):
            tree.read("rollouts/café/data.jsonl")  # too large to read ahead
    assert tree.read("rollouts/café/data.jsonl") == big


def test_a_failed_prefetch_leaves_the_reads_one_by_one(
    root: Path, empty_caches: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> bytes:
        raise git.GitCommandError(["git", "ls-tree"], 128, b"fatal: broken")

    monkeypatch.setattr(repo, "_run_bytes", broken)
    tree = repo.GitTree.open(root, "main")
    assert tree.listdir("rollouts/a b") == ["prompts", "rollout.yaml"]
    assert tree.read("rollouts/a b/prompts/v1.md") == b"first\n"


@pytest.mark.parametrize(
    ("puts", "budget", "largest", "kept"),
    [
        ([("a", b"xx"), ("b", b"yy"), ("c", b"zz")], 4, None, ["b", "c"]),  # the oldest goes first
        ([("a", b"xx"), ("b", b"yy"), ("a", b"xx"), ("c", b"zz")], 4, None, ["b", "c"]),  # a re-put is no use
        ([("a", b"x" * 10), ("b", b"y")], 100, 5, ["b"]),  # too large to keep at all
        ([("a", b"xx"), ("b", b"yyy")], 4, None, ["b"]),
    ],
    ids=["lru", "re-put", "largest", "over-budget"],
)
def test_the_cache_keeps_the_recent_within_its_budget(
    puts: list[tuple[str, bytes]], budget: int, largest: int | None, kept: list[str]
) -> None:
    cache: repo._Cache[str, bytes] = repo._Cache(budget, len, largest=largest)
    for key, value in puts:
        cache.put(key, value)
    assert [k for k, _ in cache.items()] == kept
    assert cache.used == sum(len(v) for _, v in cache.items()) <= budget


def test_a_cache_hit_makes_an_entry_recent() -> None:
    cache: repo._Cache[str, bytes] = repo._Cache(4, len)
    cache.put("a", b"xx")
    cache.put("b", b"yy")
    assert cache.get("a") == b"xx"
    cache.put("c", b"zz")
    assert "a" in cache and "b" not in cache and cache.get("b") is None
