"""The files of a working tree on disk, read as a `load.Tree`: what `rollout validate`, `plan`, `render`
and the demo read specs from. Kept apart from `controller.repo` so that reading files imports no git."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from controller import load


class WorkTree:
    """The files on disk under `root`. Symlinks are followed only while they stay inside it."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()

    def _path(self, path: str) -> Path:
        try:
            full = (self.root / path).resolve()
        except RuntimeError as exc:  # Python 3.11 reports a symlink loop so
            raise OSError(errno.ELOOP, "symlink loop", path) from exc
        if not full.is_relative_to(self.root):
            raise load.PathEscapes(path)
        return full

    def read(self, path: str) -> bytes:
        """Only a regular file is read: a FIFO would block forever and a device never end (NotAFile).
        It is opened without blocking and checked again, so a file swapped for a FIFO in between is
        refused too. At most `load.MAX_READ_BYTES + 1` bytes are read: every reader refuses a file that
        large, and refusing a 5 GB file should not take 5 GB."""
        full = str(self._path(path))
        st = os.stat(full)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(path)
        if not stat.S_ISREG(st.st_mode):
            raise load.NotAFile(path)
        fd = os.open(full, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise load.NotAFile(path)
            return _read_at_most(fd, load.MAX_READ_BYTES + 1, first=st.st_size + 1)
        finally:
            os.close(fd)

    def listdir(self, path: str) -> list[str]:
        try:
            full = self._path(path)
            return sorted(p.name for p in full.iterdir()) if full.is_dir() else []
        except (load.PathEscapes, OSError):
            return []


def _read_at_most(fd: int, limit: int, *, first: int) -> bytes:
    """Up to `limit` bytes of a regular file: one read of `first` bytes (its size and one more), more only
    if it grew meanwhile."""
    parts: list[bytes] = []
    total, ask = 0, min(first, limit)
    while total < limit:
        chunk = os.read(fd, min(ask, limit - total))
        if not chunk:
            break
        parts.append(chunk)
        total += len(chunk)
        ask = 1 << 20
    return parts[0] if len(parts) == 1 else b"".join(parts)
