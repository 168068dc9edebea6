"""Running one git command as the controller: its identity, the call, and the reason a failure gives.

Shared by the controller's clone (`repo`) and the local forge's store (`forge.gitstore`), so that
neither imports the other. A failure raises `git.GitCommandError`; callers translate it into
`errors.RepoError` with `reason`, which never carries a credential.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping

import git

from controller.redaction import redact

ACTOR = git.Actor("rollout-controller", "rollout-controller@users.noreply.local")


def run(repo: git.Repo, *args: str, stdin: bytes | None = None, env: Mapping[str, str] | None = None) -> str:
    """Run one git command in `repo`; its stdout. A failure raises git.GitCommandError."""
    return run_bytes(repo, *args, stdin=stdin, env=env).decode("utf-8", "replace")


def run_bytes(repo: git.Repo, *args: str, stdin: bytes | None = None, env: Mapping[str, str] | None = None) -> bytes:
    """`run`, with stdout as bytes (file names and contents as git stores them)."""
    proc = subprocess.run(
        ["git", *args],
        cwd=repo.working_dir or repo.git_dir,
        input=stdin if stdin is not None else b"",
        capture_output=True,
        env={**os.environ, **identity_env(), **(env or {})},
        check=False,
    )
    if proc.returncode != 0:
        raise git.GitCommandError(["git", args[0]], proc.returncode, proc.stderr)
    return proc.stdout


def reason(exc: Exception) -> str:
    """The last line git wrote to stderr (or the exception's text), credentials redacted."""
    if isinstance(exc, git.GitCommandError):
        raw = exc.stderr
        text = (raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw or "")).strip().splitlines()
        return redact(text[-1]) if text else f"git exited with {exc.status}"
    return redact(str(exc))


def identity_env() -> dict[str, str]:
    return {
        "GIT_AUTHOR_NAME": ACTOR.name or "",
        "GIT_AUTHOR_EMAIL": ACTOR.email or "",
        "GIT_COMMITTER_NAME": ACTOR.name or "",
        "GIT_COMMITTER_EMAIL": ACTOR.email or "",
    }
