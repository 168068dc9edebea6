"""The rollouts repository: read-only trees (working tree or a git ref) and, later, git writes.

`load` reads specs through a `Tree`; this module supplies the two kinds. It is the only module
that talks to git (through gitpython); git exceptions become `errors.RepoError` here.
"""

from __future__ import annotations

import posixpath
import stat
from pathlib import Path

import git

from controller import errors, load

_MAX_LINKS = 16


class WorkTree:
    """The files on disk under `root`. Symlinks are followed only while they stay inside it."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()

    def _path(self, path: str) -> Path:
        full = (self.root / path).resolve()
        if not full.is_relative_to(self.root):
            raise load.PathEscapes(path)
        return full

    def read(self, path: str) -> bytes:
        full = self._path(path)
        if full.is_dir():
            raise IsADirectoryError(path)
        return full.read_bytes()

    def listdir(self, path: str) -> list[str]:
        try:
            full = self._path(path)
        except load.PathEscapes:
            return []
        return sorted(p.name for p in full.iterdir()) if full.is_dir() else []


class GitTree:
    """The files of one commit of a git repository, read without a checkout."""

    def __init__(self, repo: git.Repo, ref: str) -> None:
        try:
            self.commit = repo.commit(ref)
        except (git.BadName, ValueError, git.GitCommandError) as exc:
            raise errors.RepoError(f"cannot resolve git ref {ref!r} in {repo.working_dir or repo.git_dir}") from exc
        self.sha = self.commit.hexsha

    @classmethod
    def open(cls, path: str | Path, ref: str) -> GitTree:
        try:
            return cls(git.Repo(path, search_parent_directories=True), ref)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
            raise errors.RepoError(f"{path} is not a git repository") from exc

    def _object(self, path: str) -> git.Blob | git.Tree:
        """Follow the path component by component, resolving symlinks inside the tree."""
        parts = [p for p in posixpath.normpath(path).split("/") if p not in ("", ".")]
        hops = 0
        resolved: list[str] = []
        node: git.Blob | git.Tree = self.commit.tree
        while parts:
            part = parts.pop(0)
            if part == "..":
                if not resolved:
                    raise load.PathEscapes(path)
                resolved.pop()
                node = self._at(resolved, path)
                continue
            if not isinstance(node, git.Tree):
                raise FileNotFoundError(path)
            try:
                child = node[part]
            except KeyError:
                raise FileNotFoundError(path) from None
            if isinstance(child, git.Blob) and stat.S_ISLNK(child.mode):
                hops += 1
                if hops > _MAX_LINKS:
                    raise load.PathEscapes(path)
                target = child.data_stream.read().decode("utf-8", "replace")
                if target.startswith("/"):
                    raise load.PathEscapes(path)
                parts = [p for p in target.split("/") if p not in ("", ".")] + parts
                node = self._at(resolved, path)
                continue
            resolved.append(part)
            node = child
        return node

    def _at(self, parts: list[str], path: str) -> git.Blob | git.Tree:
        node: git.Blob | git.Tree = self.commit.tree
        for part in parts:
            assert isinstance(node, git.Tree)
            node = node[part]
        return node

    def read(self, path: str) -> bytes:
        node = self._object(path)
        if isinstance(node, git.Tree):
            raise IsADirectoryError(path)
        data: bytes = node.data_stream.read()
        return data

    def listdir(self, path: str) -> list[str]:
        try:
            node = self._object(path)
        except (FileNotFoundError, load.PathEscapes):
            return []
        if not isinstance(node, git.Tree):
            return []
        return sorted(child.name for child in node)


def clone_bare(url: str, into: Path) -> Path:
    """A bare clone of a remote, for reading refs without a working tree."""
    try:
        git.Repo.clone_from(url, into, bare=True)
    except git.GitCommandError as exc:
        raise errors.RepoError(f"cannot clone {_redact(url)}: git exited with {exc.status}") from exc
    return into


def _redact(url: str) -> str:
    """Drop credentials from a URL before it goes into a message."""
    import re

    return re.sub(r"//[^/@]*@", "//***@", url)
