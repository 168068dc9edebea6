"""The local forge's storage: commits, refs and merges on a bare git repository (plumbing only).

Used by `forge.local`; it talks to git through `controller.gitcmd`, as the controller's clone in
`controller.repo` does, and turns git's failures into `errors.RepoError`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path

import git

from controller import errors, gitcmd


class GitStore:
    """Commits, refs and merges on a bare repository, without a working tree or an index of its own.
    Every ref update is a compare-and-swap, so concurrent writers never lose each other's work."""

    ZERO = "0" * 40

    def __init__(self, path: str | Path) -> None:
        try:
            self.repo = git.Repo(path)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
            raise errors.RepoError(f"{path} is not a git repository") from exc
        self.path = Path(path)

    def _git(self, *args: str, stdin: bytes | None = None, env: Mapping[str, str] | None = None) -> str:
        try:
            return gitcmd.run(self.repo, *args, stdin=stdin, env=env)
        except git.GitCommandError as exc:
            raise errors.RepoError(f"git {args[0]} in {self.path}: {gitcmd.reason(exc)}") from exc

    def resolve(self, ref: str) -> str | None:
        try:
            return self._git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").strip() or None
        except errors.RepoError:
            return None

    def read(self, ref: str, path: str) -> bytes | None:
        try:
            blob = self.repo.commit(ref).tree / path
        except (KeyError, ValueError, git.BadName):
            return None
        data: bytes = blob.data_stream.read()
        return data

    def list(self, ref: str, directory: str) -> list[str]:
        try:
            tree = self.repo.commit(ref).tree / directory
        except (KeyError, ValueError, git.BadName):
            return []
        return sorted(item.name for item in tree)

    def commit_files(self, *, parent: str | None, files: Mapping[str, bytes | None], message: str) -> str:
        """A commit on top of `parent` (or a root commit) with `files` written (None deletes)."""
        with tempfile.TemporaryDirectory() as tmp:
            env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
            if parent:
                self._git("read-tree", parent, env=env)
            for path, data in files.items():
                if data is None:
                    self._git("update-index", "--force-remove", "--", path, env=env)
                    continue
                blob = self._git("hash-object", "-w", "--stdin", stdin=data).strip()
                self._git("update-index", "--add", "--cacheinfo", f"100644,{blob},{path}", env=env)
            tree = self._git("write-tree", env=env).strip()
        args = ["commit-tree", tree, "-m", message]
        if parent:
            args[2:2] = ["-p", parent]
        return self._git(*args).strip()

    def tree_of(self, ref: str) -> str:
        return self._git("rev-parse", f"{ref}^{{tree}}").strip()

    def merge(self, *, base: str, head: str, message: str) -> str:
        """A real merge commit of `head` into `base`; RepoError on conflicts."""
        try:
            tree = gitcmd.run(self.repo, "merge-tree", "--write-tree", base, head).splitlines()[0]
        except git.GitCommandError as exc:
            raise errors.RepoError(f"cannot merge {head[:10]} into {base[:10]}: conflicts") from exc
        return self._git("commit-tree", tree, "-p", base, "-p", head, "-m", message).strip()

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        try:
            gitcmd.run(self.repo, "merge-base", "--is-ancestor", ancestor, descendant)
        except git.GitCommandError:
            return False
        return True

    def diff(self, base: str, head: str) -> str:
        """What `head` changes since it branched from `base` (`git diff base...head`)."""
        return self._git("diff", f"{base}...{head}")

    def delete_ref(self, ref: str, *, old: str) -> bool:
        """Delete `ref` only if it still points at `old` (a branch pushed to since is kept)."""
        try:
            gitcmd.run(self.repo, "update-ref", "-d", ref, old)
        except git.GitCommandError:
            return False
        return True

    def update_ref(self, ref: str, new: str, *, old: str | None) -> bool:
        """Move `ref` to `new` only if it still points at `old` (None: only if it does not exist)."""
        try:
            gitcmd.run(self.repo, "update-ref", ref, new, old or self.ZERO)
        except git.GitCommandError:
            return False
        return True
