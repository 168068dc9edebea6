"""The rollouts repository as the controller sees it: read-only trees, the controller's clone, the lease.

`load` reads specs through a `Tree`: this module supplies the commits' (`GitTree`) and names the working
tree's, which lives in `controller.worktree` so that reading one imports no git. Git commands run through
`controller.gitcmd` (shared with the local forge's store) and gitpython; their exceptions become
`errors.RepoError` here. The YAML edits of a rollout's status are `controller.edits` (pure).
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import os
import posixpath
import stat
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Generic, TypeVar

import git

from controller import cutpoints, errors, load, worktree
from controller.gitcmd import reason as _git_reason
from controller.gitcmd import run as _run
from controller.gitcmd import run_bytes as _run_bytes
from controller.redaction import redact

_MAX_LINKS = 16

WorkTree = worktree.WorkTree  # the other kind of `load.Tree`, where callers of this module expect it


_TREE_MODE = 0o040000
_GITLINK_MODE = 0o160000  # a submodule: a commit of another repository
_Entry = tuple[int, str]  # (mode, object id) of one entry of a tree
_K = TypeVar("_K")
_V = TypeVar("_V")


class GitTree:
    """The files of one commit of a git repository, read without a checkout."""

    def __init__(self, repo: git.Repo, ref: str) -> None:
        try:
            self.commit = repo.commit(ref)
        except (git.BadName, ValueError, git.GitCommandError) as exc:
            raise errors.RepoError(f"cannot resolve git ref {ref!r} in {repo.working_dir or repo.git_dir}") from exc
        self.repo = repo
        self.sha = self.commit.hexsha
        self._root: _Entry = (_TREE_MODE, self.commit.tree.hexsha)

    @classmethod
    def open(cls, path: str | Path, ref: str) -> GitTree:
        try:
            return cls(git.Repo(path, search_parent_directories=True), ref)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
            raise errors.RepoError(f"{path} is not a git repository") from exc

    def _object(self, path: str) -> _Entry:
        """Follow the path component by component, resolving symlinks inside the tree."""
        parts = [p for p in posixpath.normpath(path).split("/") if p not in ("", ".")]
        hops = 0
        resolved: list[str] = []
        node = self._root
        while parts:
            part = parts.pop(0)
            if part == "..":
                if not resolved:
                    raise load.PathEscapes(path)
                resolved.pop()
                node = self._at(resolved, path)
                continue
            child = _tree_entries(self.repo, node[1]).get(part) if node[0] == _TREE_MODE else None
            if child is None:
                raise FileNotFoundError(path)
            if stat.S_ISLNK(child[0]):
                hops += 1
                if hops > _MAX_LINKS:
                    raise load.PathEscapes(path)
                target = _blob_bytes(self.repo, child[1]).decode("utf-8", "replace")
                if target.startswith("/"):
                    raise load.PathEscapes(path)
                parts = [p for p in target.split("/") if p not in ("", ".")] + parts
                node = self._at(resolved, path)
                continue
            resolved.append(part)
            node = child
        return node

    def _at(self, parts: list[str], path: str) -> _Entry:
        node = self._root
        for part in parts:
            node = _tree_entries(self.repo, node[1])[part]
        return node

    def read(self, path: str) -> bytes:
        mode, sha = self._object(path)
        if mode == _TREE_MODE:
            raise IsADirectoryError(path)
        if mode == _GITLINK_MODE:
            raise FileNotFoundError(path)
        return _blob_bytes(self.repo, sha)

    def listdir(self, path: str) -> list[str]:
        """The names in a directory, sorted. Listing a directory also reads what is under it, in two git
        commands (`_prefetch`): whoever lists a directory reads its files next (the loader lists
        `rollouts/`, then reads every spec and prompt), and one by one each would be a round trip."""
        try:
            mode, sha = self._object(path)
        except (FileNotFoundError, load.PathEscapes):
            return []
        if mode != _TREE_MODE:
            return []
        _prefetch(self.repo, sha)
        return sorted(_tree_entries(self.repo, sha))


def clone_bare(url: str, into: Path) -> Path:
    """A bare clone of a remote, for reading refs without a working tree."""
    try:
        git.Repo.clone_from(url, into, bare=True)
    except git.GitCommandError as exc:
        raise errors.RepoError(f"cannot clone {redact(url)}: git exited with {exc.status}") from exc
    return into


def publish(path: Path, *, message: str, remote: Path | None = None) -> str:
    """Make `path` a repository whose main holds everything in it, in one commit (`rollout init`); with
    `remote`, first a new bare repository there, which `path` tracks as origin and main is pushed to.
    The commit is the user's (their git identity), or `rollout init`'s when git has none. Its sha."""
    try:
        if remote is not None:
            git.Repo.init(remote, bare=True, initial_branch="main")
        repo = git.Repo.init(path, initial_branch="main")
        repo.git.add("-A")
        try:
            repo.git.config("--get", "user.email")
            identity: list[str] = []
        except git.GitCommandError:  # unset: a commit would fail with "Please tell me who you are"
            identity = ["-c", "user.name=rollout init", "-c", "user.email=rollout-init@users.noreply.local"]
        repo.git.execute(["git", *identity, "commit", "-q", "-m", message])
        if remote is not None:
            repo.create_remote("origin", str(remote))
            repo.git.push("-q", "-u", "origin", "main")
        return repo.head.commit.hexsha
    except git.GitCommandError as exc:
        raise errors.RepoError(f"cannot create the repository {path}: {_git_reason(exc)}") from exc


def current_branch(path: Path) -> str | None:
    """The branch checked out in the repository around `path`; None outside one, or on a detached HEAD."""
    try:
        found = git.Repo(path, search_parent_directories=True).git.symbolic_ref("--quiet", "--short", "HEAD")
    except (git.InvalidGitRepositoryError, git.NoSuchPathError, git.GitCommandError):
        return None
    return str(found).strip() or None


def head_sha(path: Path, *, ref: str = "HEAD") -> str | None:
    """The commit `ref` names (default: the one checked out) in the repository around `path`; None outside
    one, before its first commit, or when it has no such ref."""
    try:
        return str(git.Repo(path, search_parent_directories=True).commit(ref).hexsha)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError, git.BadName, ValueError):
        return None


# -- the controller's clone of the remote ---------------------------------------------------------


class Workspace:
    """The controller's own clone of the remote. It is fetched every tick and never edited by hand:
    the desired state is always read from `origin/<branch>`."""

    def __init__(self, repo: git.Repo, *, branch: str = "main") -> None:
        self.repo = repo
        self.branch = branch
        self._histories: dict[tuple[str, str, int], dict[str, list[tuple[str, datetime]]]] = {}
        self._trees: dict[str, GitTree] = {}

    @classmethod
    def open(cls, remote: str, path: Path, *, branch: str = "main") -> Workspace:
        """Clone `remote` into `path`, or reuse the clone already there."""
        try:
            if (path / ".git").is_dir() or (path / "HEAD").is_file():
                repo = git.Repo(path)
            else:
                repo = git.Repo.clone_from(remote, path, no_checkout=True)
        except (git.GitCommandError, git.InvalidGitRepositoryError) as exc:
            raise errors.RepoError(f"cannot clone {redact(remote)} into {path}") from exc
        ws = cls(repo, branch=branch)
        ws.fetch()
        return ws

    @classmethod
    def of_checkout(cls, path: Path, *, branch: str = "main") -> Workspace | None:
        """A person's clone around `path`, read as the controller reads its own (`origin/<branch>`, as last
        fetched; nothing is fetched); None outside a git repository."""
        try:
            return cls(git.Repo(path, search_parent_directories=True), branch=branch)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError):
            return None

    @property
    def remote_url(self) -> str:
        return str(self.repo.remotes.origin.url)

    @property
    def ref(self) -> str:
        return f"origin/{self.branch}"

    def fetch(self) -> str:
        """Fetch the remote; the sha that `origin/<branch>` now names."""
        self._histories = {}
        self._trees = {}
        try:
            self.repo.remotes.origin.fetch(prune=True)
            return self.repo.commit(self.ref).hexsha
        except (git.GitCommandError, ValueError, git.BadName) as exc:
            raise errors.RepoError(f"cannot fetch {redact(self.remote_url)}: {_git_reason(exc)}") from exc

    def has(self, sha: str) -> bool:
        """True when commit `sha` is on `origin/<branch>` as last fetched (merged into it, or older)."""
        if not sha:
            return False
        try:
            self.repo.git.merge_base("--is-ancestor", sha, self.ref)
        except git.GitCommandError:
            return False  # not an ancestor, or not a commit this clone knows
        return True

    def tree(self, ref: str | None = None) -> GitTree:
        """The files at `ref` (default: origin/<branch>). Trees are kept until the next `fetch`, so the
        step history of many rollouts at one commit parses that commit's trees once."""
        key = ref or self.ref
        found = self._trees.get(key)
        if found is None:
            if len(self._trees) >= 64:
                self._trees.clear()
            found = self._trees[key] = GitTree(self.repo, key)
        return found

    def histories(self, root: str, *, ref: str | None = None, depth: int = 2) -> dict[str, list[tuple[str, datetime]]]:
        """`history` of every directory `depth` levels under the root of the repository (for `rollouts/`
        and depth 2: each `rollouts/<name>`), from one `git log`; cached until the next `fetch`."""
        key = (ref or self.ref, root, depth)  # `fetch` forgets every answer: until then a ref stays put
        cached = self._histories.get(key)
        if cached is not None:
            return cached
        sha = key[0]
        try:
            text = _run(
                self.repo,
                "log",
                "--first-parent",
                "--max-count=5000",  # older than that, a step's start reads later: the rollout waits longer
                "--diff-merges=first-parent",
                "--name-only",
                "-z",
                "--format=%x01%H %ct",
                sha,
                "--",
                root,
            )
        except git.GitCommandError as exc:
            raise errors.RepoError(f"cannot read the history of {root}: {_git_reason(exc)}") from exc
        out: dict[str, list[tuple[str, datetime]]] = {}
        for entry in text.split("\x01")[1:]:  # "\x01SHA TIME\0\nname\0name\0"
            head, *names = entry.split("\x00")
            commit, _, stamp = head.partition(" ")
            when = datetime.fromtimestamp(int(stamp), UTC)
            paths = (n.strip("\n") for n in names)
            for d in sorted({"/".join(n.split("/")[:depth]) for n in paths if n.count("/") >= depth}):
                out.setdefault(d, []).append((commit, when))
        self._histories[key] = out
        return out

    def log(self, *paths: str, ref: str | None = None, limit: int = 50) -> list[Commit]:
        """The first-parent commits of `ref` (default: origin/<branch>) that changed any of `paths`, newest
        first, at most `limit`: who committed or merged what, and when (a rollout's timeline)."""
        try:
            text = _run(
                self.repo,
                "log",
                "--first-parent",
                f"--max-count={limit}",
                "-z",  # records end in NUL, which no commit message holds; fields are lines
                "--format=%H %P%n%ct%n%an%n%s",
                ref or self.ref,
                "--",
                *paths,
            )
        except git.GitCommandError as exc:
            raise errors.RepoError(f"cannot read the history of {', '.join(paths)}: {_git_reason(exc)}") from exc
        found = []
        for entry in filter(None, text.split("\x00")):
            shas, stamp, author, subject = entry.split("\n", 3)
            sha, *parents = shas.split()
            when = datetime.fromtimestamp(int(stamp), UTC)
            found.append(Commit(sha, author, when, subject, merge=len(parents) > 1))
        return found


@dataclass(frozen=True)
class Commit:
    """One commit of a rollout's history, as a timeline shows it."""

    sha: str
    author: str
    when: datetime  # the commit time
    subject: str
    merge: bool  # a merge commit: a pull request merged into the branch


class _Cache(Generic[_K, _V]):
    """A least-recently-used map within a budget: each value costs `cost(value)`, the oldest go first
    when the total would exceed `budget`, and a value costing more than `largest` is not kept. Git
    objects are immutable, so entries keyed by object id never go stale. Thread-safe: two controllers
    may run in one process (tests)."""

    def __init__(self, budget: int, cost: Callable[[_V], int], largest: int | None = None) -> None:
        self.budget, self.cost, self.largest = budget, cost, largest
        self.used = 0
        self.lock = threading.Lock()
        self._entries: collections.OrderedDict[_K, _V] = collections.OrderedDict()

    def get(self, key: _K) -> _V | None:
        with self.lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def put(self, key: _K, value: _V) -> None:
        size = self.cost(value)
        if self.largest is not None and size > self.largest:
            return
        with self.lock:
            if key not in self._entries:
                self._entries[key] = value
                self.used += size
            while self.used > self.budget:
                _, old = self._entries.popitem(last=False)
                self.used -= self.cost(old)

    def __contains__(self, key: object) -> bool:
        with self.lock:
            return key in self._entries

    def items(self) -> list[tuple[_K, _V]]:
        with self.lock:
            return list(self._entries.items())

    def clear(self) -> None:
        with self.lock:
            self._entries.clear()
            self.used = 0


def _tree_cost(entries: dict[str, _Entry]) -> int:
    return len(entries) + 1


_BLOBS: _Cache[tuple[str, str], bytes] = _Cache(64 << 20, len, largest=load.MAX_FILE_BYTES)  # specs and prompts
_TREES: _Cache[tuple[str, str], dict[str, _Entry]] = _Cache(500_000, _tree_cost)  # entries: many commits' trees


def _blob_bytes(repo: git.Repo, sha: str) -> bytes:
    """A blob's bytes; small ones are kept by object id, so a tick reads each unchanged spec and
    prompt without a round trip to git."""
    key = (str(repo.git_dir), sha)
    cached = _BLOBS.get(key)
    if cached is None:
        cached = _object_bytes(repo, sha)
        _BLOBS.put(key, cached)
    return cached


def _tree_entries(repo: git.Repo, sha: str) -> dict[str, _Entry]:
    """name -> (mode, object id) of a tree object, kept by object id: the commits of one history share
    most of their trees, so a commit read after another costs little."""
    key = (str(repo.git_dir), sha)
    cached = _TREES.get(key)
    if cached is None:
        cached = _parse_tree(_object_bytes(repo, sha))
        _TREES.put(key, cached)
    return cached


_PREFETCHED: set[tuple[str, str]] = set()  # trees whose trees and small blobs are already in the caches
_PREFETCH_LOCK = threading.Lock()
_PREFETCH_BLOB_BYTES = 64 << 10  # larger files are read when asked for
_PREFETCH_BUDGET = _BLOBS.budget // 4  # bytes of blobs one prefetch reads at most


def _prefetch(repo: git.Repo, sha: str) -> None:
    """Read every tree under a tree (one `git ls-tree -r`) and its small blobs (one `git cat-file --batch`)
    into the caches. Best effort: if git fails here, the reads one by one still do the work."""
    git_dir = str(repo.git_dir)
    with _PREFETCH_LOCK:
        if (git_dir, sha) in _PREFETCHED:
            return
    try:
        listing = _run_bytes(repo, "ls-tree", "-r", "-t", "-l", "-z", sha)
    except git.GitCommandError:
        return
    trees: dict[bytes, str] = {b"": sha}
    children: dict[bytes, dict[str, _Entry]] = {b"": {}}
    blobs: dict[str, None] = {}
    budget = _PREFETCH_BUDGET
    for record in listing.split(b"\0"):  # "<mode> <type> <id> <size>\t<path>", paths under `sha`
        if not record:
            continue
        meta, _, path = record.partition(b"\t")
        mode, kind, obj, size = meta.split()
        parent, _, name = path.rpartition(b"/")
        children.setdefault(parent, {})[name.decode("utf-8", "surrogateescape")] = (int(mode, 8), obj.decode())
        if kind == b"tree":
            trees[path] = obj.decode()
            children.setdefault(path, {})
        elif kind == b"blob" and int(size) <= min(_PREFETCH_BLOB_BYTES, budget):
            budget -= int(size)
            blobs[obj.decode()] = None
    for path, tree in trees.items():
        _TREES.put((git_dir, tree), children[path])
    missing = [b for b in blobs if (git_dir, b) not in _BLOBS]
    if missing:
        try:
            out = _run_bytes(repo, "cat-file", "--batch", stdin="".join(f"{b}\n" for b in missing).encode())
        except git.GitCommandError:
            return
        at = 0
        while at < len(out):  # "<id> <type> <size>\n<content>\n", or "<id> missing\n"
            end = out.index(b"\n", at)
            header = out[at:end].split()
            at = end + 1
            if header[1] == b"missing":
                continue
            data = out[at : at + int(header[2])]
            at += len(data) + 1
            _BLOBS.put((git_dir, header[0].decode()), data)
    with _PREFETCH_LOCK:
        if len(_PREFETCHED) > 100_000:
            _PREFETCHED.clear()
        _PREFETCHED.update((git_dir, tree) for tree in trees.values())


def _parse_tree(data: bytes) -> dict[str, _Entry]:
    """The entries of a raw tree object: `<octal mode> <name>\\0<20-byte id>`, repeated."""
    entries: dict[str, _Entry] = {}
    at = 0
    while at < len(data):
        space = data.index(b" ", at)
        nul = data.index(b"\0", space)
        name = data[space + 1 : nul].decode("utf-8", "surrogateescape")
        entries[name] = (int(data[at:space], 8), data[nul + 1 : nul + 21].hex())
        at = nul + 21
    return entries


def _object_bytes(repo: git.Repo, sha: str) -> bytes:
    """The content of one object, through the repository's long-running `git cat-file --batch`."""
    data: bytes = repo.odb.stream(bytes.fromhex(sha)).read()
    return data


def clear_caches() -> None:
    """Forget every blob and tree read so far, as a new process would (for benchmarks and tests)."""
    _BLOBS.clear()
    _TREES.clear()
    with _PREFETCH_LOCK:
        _PREFETCHED.clear()


# -- a lease on the remote, so two controllers never act at once -----------------------------------

LEASE_REF = "refs/rollout/lease"


@dataclass(frozen=True)
class Lease:
    holder: str
    expires: datetime


def valid_holder(holder: str) -> bool:
    """A holder name the lease can carry: printable, no whitespace and no `=` (the lease commit's
    message is `holder=NAME expires=TIME`; a name it cannot parse back reads as an expired lease)."""
    return bool(holder) and holder.isprintable() and not any(ch.isspace() or ch == "=" for ch in holder)


def _read_lease(repo: git.Repo, remote: str) -> tuple[str, Lease | None]:
    """(sha or "", the lease) as the remote has it now."""
    try:
        line = _run(repo, "ls-remote", remote, LEASE_REF)
    except git.GitCommandError as exc:
        raise errors.RepoError(f"cannot read the lease on {redact(remote)}: {_git_reason(exc)}") from exc
    if not line.strip():
        return "", None
    sha = line.split()[0]
    try:
        _run(repo, "fetch", remote, f"+{LEASE_REF}:{LEASE_REF}")
        message = repo.commit(sha).message
    except (git.GitCommandError, ValueError) as exc:
        raise errors.RepoError(f"cannot read the lease on {redact(remote)}: {_git_reason(exc)}") from exc
    fields = dict(part.split("=", 1) for part in str(message).split() if "=" in part)
    try:
        return sha, Lease(fields["holder"], datetime.fromisoformat(fields["expires"]))
    except (KeyError, ValueError):
        return sha, None  # unreadable: treat as expired


def _held(lease: Lease) -> errors.LeaseHeld:
    return errors.LeaseHeld(
        f"controller {lease.holder!r} holds the lease until {lease.expires.isoformat()}", holder=lease.holder
    )


def acquire_lease(ws: Workspace, *, holder: str, ttl: timedelta, now: datetime) -> Lease:
    """Take or renew the lease; LeaseHeld (naming the holder) if another live controller has it. A lease
    this holder left behind (a process killed before it could release it) is taken back at once.
    Compare-and-swap on the remote (`git push --force-with-lease`), so of two controllers racing, one
    wins."""
    remote = ws.remote_url
    sha, current = _read_lease(ws.repo, remote)
    if current is not None and current.holder != holder and current.expires > now:
        raise _held(current)
    lease = Lease(holder, now + ttl)
    try:
        tree = _run(ws.repo, "hash-object", "-t", "tree", "-w", "--stdin", stdin=b"").strip()
        commit = _run(
            ws.repo, "commit-tree", tree, "-m", f"lease holder={holder} expires={lease.expires.isoformat()}"
        ).strip()
    except git.GitCommandError as exc:
        raise errors.RepoError(f"cannot write a lease: {_git_reason(exc)}") from exc
    try:
        _run(ws.repo, "push", remote, f"--force-with-lease={LEASE_REF}:{sha}", f"{commit}:{LEASE_REF}")
    except git.GitCommandError as exc:
        winner = None
        with contextlib.suppress(errors.RepoError):
            winner = _read_lease(ws.repo, remote)[1]
        if winner is not None and winner.holder == holder:
            return winner  # the same holder renewed it first: the members of one fleet share its name
        if winner is not None:
            raise _held(winner) from exc
        raise errors.LeaseHeld(f"another controller took the lease first ({_git_reason(exc)})") from exc
    cutpoints.reached(cutpoints.LEASE)
    return lease


def release_lease(ws: Workspace, *, holder: str) -> bool:
    """Give the lease up if `holder` has it, so the next controller need not wait for it to expire;
    True when it was released. Best effort: a lease not released expires by itself. It starts git's
    long-running `cat-file` afresh: Ctrl-C on a terminal signals the whole process group, so the one this
    process kept may be dead, and reading through it would end in a BrokenPipeError."""
    ws.repo.git.clear_cache()
    try:
        sha, current = _read_lease(ws.repo, ws.remote_url)
    except errors.RepoError:
        return False
    if current is None or current.holder != holder:
        return False
    try:
        _run(ws.repo, "push", ws.remote_url, f"--force-with-lease={LEASE_REF}:{sha}", f":{LEASE_REF}")
    except git.GitCommandError:
        return False
    return True


@contextlib.contextmanager
def workdir_lock(workdir: Path, *, holder: str) -> Iterator[None]:
    """One controller process at a time on `workdir`. A controller's default name in the lease comes
    from its host and workdir, so two processes on one workdir would both pass as the holder; this
    advisory lock keeps the second out (LeaseHeld, naming the process). The kernel drops it when the
    process dies, however it dies: a killed controller never leaves it held."""
    workdir.mkdir(parents=True, exist_ok=True)
    with open(workdir / "controller.lock", "a+", encoding="utf-8") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            who = lock.read().strip() or "another process"
            raise errors.LeaseHeld(
                f"{who} on this host runs a controller with workdir {workdir} as {holder!r}", holder=holder
            ) from None
        lock.truncate(0)
        lock.write(f"pid {os.getpid()}\n")
        lock.flush()
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
