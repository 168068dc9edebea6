"""What several command groups of the `rollout` command share: the usage error, finding and opening
the rollouts repository, the router state directory, the GitOps remote, times and problems as JSON.

Importing the CLI builds only its parser: each command imports what it runs when it runs, so
`rollout --help` and `rollout validate` never load git, HTTP clients or rich (tests/cli/test_startup.py).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TextIO

from controller import errors, settings

if TYPE_CHECKING:
    from controller import load, repo, spec
    from controller.registry import mlflow


class UsageError(Exception):
    """Bad arguments: exit code 2."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Each option's help ends with its default, unless it says it already (a default taken from the
    environment says `$NAME`, never `None`); the example in the epilog keeps its lines."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS) or action.required:
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """Every parser of `rollout` (subcommands inherit the class): help with defaults and an example."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def example(command: str) -> str:
    """A command's epilog: the one example its --help ends with."""
    return f"example:\n  {command}"


def state_dir(config: spec.ControllerConfig) -> Path:
    """Where the routers' relative paths resolve, the same for every command and every working
    directory: $ROLLOUT_STATE_DIR, else controller.yaml's `stateDir`, else $XDG_STATE_HOME/rollout
    (~/.local/state/rollout)."""
    try:
        return settings.state_dir(config, env=os.environ, home=Path.home())
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def find_root(path: Path) -> Path:
    """The repository root above `path`: the directory holding rollouts/controller.yaml."""
    from controller import load

    start = path.resolve()
    for candidate in [start, *start.parents]:
        if os.path.lexists(candidate / load.CONFIG_FILE):  # a FIFO or a dangling link too: loading says what is wrong
            return candidate
    raise UsageError(f"no {load.CONFIG_FILE} found in {path} or above it")


def bare(path: Path) -> bool:
    """A bare git repository (a GitOps remote on disk): no working tree, so no rollouts/ to find above it."""
    from controller import load

    return (
        (path / "HEAD").is_file()
        and (path / "objects").is_dir()
        and (path / "refs").is_dir()
        and not os.path.lexists(path / load.CONFIG_FILE)
    )


def bare_tree(path: Path, ref: str | None) -> repo.GitTree:
    """`ref` of a bare repository; without one, its HEAD, else its main (a HEAD that names a branch
    nobody pushed)."""
    from controller import repo

    if ref is not None:
        return repo.GitTree.open(path, ref)
    try:
        return repo.GitTree.open(path, "HEAD")
    except errors.RepoError:
        return repo.GitTree.open(path, "main")


def open_tree(repo_arg: str, ref: str | None) -> tuple[load.Tree, Path, str]:
    """(tree, local root for relative router paths, a label for the source). `repo_arg` is a path in a
    rollouts repository's working tree, a bare repository, or a URL."""
    from controller import repo, worktree

    local = Path(repo_arg)
    if local.exists() and bare(local):
        tree = bare_tree(local, ref)
        return tree, Path.cwd(), f"{local.resolve()}@{ref or 'HEAD'} ({tree.sha[:10]})"
    if local.exists():
        root = find_root(local)
        if ref is None:
            return worktree.WorkTree(root), root, _working_tree_label(root)
        tree = repo.GitTree.open(root, ref)
        return tree, root, f"{root}@{ref} ({tree.sha[:10]})"
    clone = repo.clone_bare(repo_arg, Path(tempfile.mkdtemp(prefix="rollout-plan-")))
    tree = repo.GitTree.open(clone, ref or "HEAD")
    return tree, Path.cwd(), f"{repo_arg}@{ref or 'HEAD'} ({tree.sha[:10]})"


def _working_tree_label(root: Path) -> str:
    """The working tree as a plan names it: its branch and commit, and, off main, that what it shows is
    what merging would do (a live state that differs from a branch is no drift)."""
    from controller import repo

    branch, head = repo.current_branch(root), repo.head_sha(root)
    if head is None:
        return str(root)
    where = f"{root} (working tree of {f'branch {branch}' if branch else 'a detached HEAD'} at {head[:10]})"
    if branch != "main":
        return f"{where}; desired is read from this checkout, not main: `next` is what merging it would do"
    upstream = repo.head_sha(root, ref="origin/main")
    if upstream is not None and upstream != head:
        return f"{where}; origin/main (as last fetched) is at {upstream[:10]}: pull to see what the controller reads"
    return where


class Mlflow:
    """MLflow's registries: `prompts:/NAME/VERSION` prompts (`load.PromptRegistry`) and the aliases the
    controller moves (`reconcile.aliases.Registry`), with this process's environment for `mlflow.tokenEnv`;
    the HTTP client is imported only when the registry is first asked."""

    def __init__(self) -> None:
        self._registry: mlflow.Registry | None = None

    def _real(self) -> mlflow.Registry:
        if self._registry is None:
            from controller.registry import mlflow

            self._registry = mlflow.Registry(environ=os.environ)
        return self._registry

    def template(self, config: spec.MlflowConfig, name: str, version: int) -> str:
        return self._real().template(config, name, version)

    def alias(self, config: spec.MlflowConfig, name: str, alias: str) -> int | None:
        return self._real().alias(config, name, alias)

    def set_alias(self, config: spec.MlflowConfig, name: str, alias: str, version: int) -> None:
        self._real().set_alias(config, name, alias, version)


def prompt_registry() -> Mlflow:
    """Where every command reads `prompts:/` prompts from (and the controller moves aliases)."""
    return Mlflow()


class NamedRollout(NamedTuple):
    tree: load.Tree
    root: Path
    config: spec.ControllerConfig
    loaded: load.LoadedRollout
    source: str = ""  # where it was read, as `rollout plan` names it (branch, commit, behind origin/main)


def named_rollout(args: argparse.Namespace, out: TextIO) -> NamedRollout | None:
    """The valid rollout `args.name` in `args.repo`, with the tree and config it was read with; None
    (after writing why) when the controller config is unusable."""
    from controller import load, report

    tree, root, source = open_tree(args.repo, None)
    result = load.load_repo(tree, prompts=prompt_registry())
    if result.config is None:
        out.write(report.findings([problem_json(p, root) for p in result.problems], "text"))
        return None
    loaded = result.rollout(args.name)
    if loaded is None:
        raise UsageError(f"no valid rollout named {args.name!r} (try `rollout validate`)")
    return NamedRollout(tree, root, result.config, loaded, source)


def remote(args: argparse.Namespace) -> str:
    """The GitOps repository a controller command acts on: --remote, else $ROLLOUT_REMOTE. Never the
    current checkout's origin: in a clone of this tool that is the tool's own upstream. A local path
    is made absolute, so the same repository is named the same way from any directory."""
    named: str | None = args.remote or os.environ.get(settings.REMOTE_ENV)
    if not named:
        raise UsageError(
            f"name the GitOps repository to act on: --remote URL|PATH, or set ${settings.REMOTE_ENV} "
            "(it is never guessed from the current checkout)"
        )
    local = Path(named).expanduser()
    return str(local.resolve()) if local.exists() else named


def parse_time(value: str) -> datetime:
    """`now`, unix seconds, or ISO 8601 (UTC when no offset is given)."""
    if value == "now":
        return datetime.now(UTC)
    try:
        return datetime.fromtimestamp(float(value), UTC)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise UsageError(f"--at {value!r}: expected now, unix seconds or an ISO 8601 time") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def display(root: Path, file: str) -> str:
    """A repository file as the user names it: relative to the current directory where it can be."""
    full = root / file
    try:
        return os.path.relpath(full)
    except ValueError:
        return str(full)


def problem_json(p: errors.Problem, root: Path) -> dict[str, Any]:
    """A loading problem as a finding of `report.findings`: always an error; `source`, the offending line,
    only where the problem carries it (a YAML structure error)."""
    from controller import lint

    finding = {
        "file": display(root, p.file),
        "line": p.line,
        "column": p.column,
        "field": p.field,
        "code": p.code,
        "severity": lint.ERROR,
        "message": p.message,
    }
    return finding | ({"source": p.source} if p.source else {})
