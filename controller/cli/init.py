"""`rollout init DIR`: a team's own GitOps repository for the router it names, from the templates in
`controller.scaffold` and the schemas of the spec models; with `--local`, also the bare remote it is a
clone of, so that the next command is `rollout reconcile --once`."""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
from pathlib import Path
from typing import Any, TextIO

from controller import __version__, settings
from controller.cli import common, validate
from controller.scaffold import text as template

MODEL = "openai/gpt-4o-mini-2024-07-18"  # the scaffold's model: pinned, so lint R002 stays quiet
ROUTERS = {  # router type -> (the router's name in controller.yaml, what a route is on it)
    "file": ("local", "a route in the routes file"),
    "flagd": ("flags", "the flag key"),
    "litellm": ("gateway", "a LiteLLM model group"),
    "envoy": ("edge", "an Envoy route"),
}
#: Every router's first step (LiteLLM's too: it mirrors through silent_model, every request, so 100%)
SHADOW_STEP = "    - {shadow: 100, for: 1h, minSamples: 200}   # mirrored traffic: the canary answers, nobody sees it"
LITELLM_SETTINGS = """general_settings:
  master_key: os.environ/LITELLM_MASTER_KEY   # never a key in git; the controller reads the same variable
"""


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "init",
        help="write a new rollouts repository (a GitOps repository for your team)",
        epilog=common.example("rollout init my-rollouts --router litellm --local"),
    )
    p.add_argument("dir", metavar="DIR", help="a new or empty directory")
    p.add_argument("--router", choices=sorted(ROUTERS), default="file", help="the router type (default: file)")
    p.add_argument("--name", default="assistant", help="the rollout's name, a DNS label (default: assistant)")
    p.add_argument(
        "--install",
        default=None,
        metavar="SPEC",
        help="what the workflows pip-install the tool from: a git URL pinned to a tag or commit "
        "(default: where this installation came from, when pip recorded a git URL; else a step that says to set it)",
    )
    p.add_argument(
        "--local",
        action="store_true",
        help="also create a bare git remote (DIR.git beside DIR) with DIR as its clone, main pushed",
    )
    p.add_argument(
        "--remote-dir", default=None, help="with --local: where the bare remote goes (default: DIR.git beside DIR)"
    )
    p.set_defaults(func=cmd_init)


def _empty_or_new(path: Path, what: str) -> None:
    """Refuse a place that holds something, or that cannot become a directory (a file above it)."""
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise common.UsageError(f"{path}: {what} exists and is not empty; nothing was written")
    above = next(p for p in path.parents if p.exists())
    if not above.is_dir():
        raise common.UsageError(f"{path}: {what} cannot be created, {above} is not a directory; nothing was written")


def _places(args: argparse.Namespace) -> tuple[Path, Path | None]:
    """(DIR, the bare remote or None) as absolute paths, refused before anything is written when they
    cannot hold a new repository: not empty, `/`, or one inside the other (the remote would be committed
    into the scaffold, or be its own origin)."""
    root = Path(args.dir).absolute()
    if not root.name:
        raise common.UsageError(f"DIR {args.dir!r}: name a directory for the new repository, not {root}")
    _empty_or_new(root, "DIR")
    if not args.local:
        if args.remote_dir:
            raise common.UsageError("--remote-dir goes with --local")
        return root, None
    remote = Path(args.remote_dir).absolute() if args.remote_dir else root.with_name(f"{root.name}.git")
    resolved_root, resolved_remote = root.resolve(), remote.resolve()
    if (
        resolved_remote == resolved_root
        or resolved_root in resolved_remote.parents
        or resolved_remote in resolved_root.parents
    ):
        raise common.UsageError(f"--remote-dir {remote}: the remote must be outside DIR {root}, and DIR outside it")
    _empty_or_new(remote, "the remote")
    return root, remote


#: A pip requirement the workflows may install: a name, a version pin, a URL with `@ref` or `#egg=`.
INSTALLABLE = re.compile(r"[A-Za-z0-9][A-Za-z0-9@+:/._=<>!~,#-]*")
NO_INSTALL = (
    'echo "::error::Say where the rollout tool comes from (a git URL pinned to a tag or commit) in place of '
    'this line, or with rollout init --install SPEC" && exit 1'
)  # no colon and space in it: the workflow holds it as a plain YAML scalar


def install_run(spec: str | None) -> str:
    """The workflows' install step: pip-install `spec`, or, with none known, a step that fails saying what
    to set. Never a bare package name guessed for an index: llm-rollouts is not published, so whoever
    registered that name would run in the team's controller with its token."""
    if spec is None:
        return NO_INSTALL
    return f"python -m pip install --disable-pip-version-check -q {shlex.quote(spec)}"


def installed_from() -> str | None:
    """Where this installation of the tool came from, when pip recorded a git URL (`pip install
    git+https://...@v0.1.0`): that URL at the commit it installed, credentials left out. None for an
    install from a local path or an index."""
    import json
    from importlib import metadata

    from controller import redaction

    try:
        raw = metadata.distribution("llm-rollouts").read_text("direct_url.json")
        found = json.loads(raw) if raw else {}
    except (metadata.PackageNotFoundError, ValueError):
        return None
    vcs = found.get("vcs_info") if isinstance(found, dict) else None
    if not isinstance(vcs, dict) or vcs.get("vcs") != "git" or not vcs.get("commit_id"):
        return None
    url = redaction.redact(str(found.get("url", "")))
    return None if "***@" in url or not url else f"git+{url}@{vcs['commit_id']}"


def scaffold(*, router: str, name: str, install: str | None = None) -> dict[str, str]:
    """The repository's files, path -> text, for a router type and a rollout name; the workflows
    install the tool from `install` (see `install_run`)."""
    from controller import load

    router_name, route_word = ROUTERS[router]
    marks = {
        "@NAME@": name,
        "@ROUTE@": name,
        "@ROUTER@": router_name,
        "@ROUTE_WORD@": route_word,
        "@MODEL@": MODEL,
        "@VERSION@": __version__,
        "@INSTALL_RUN@": install_run(install),
        "@FIRST_STEP@": SHADOW_STEP,
        "@ROUTERS@": template(f"routers/{router}.yaml").rstrip("\n"),
    }

    def mark(m: re.Match[str]) -> str:
        """A mark's value; a mark that pads a comment into its column keeps the comment there."""
        value = marks.get(m.group(1), m.group(1))
        return value + " " * max(1, len(m.group(0)) - len(value)) if m.group(2) else value

    def fill(text: str) -> str:
        for _ in range(2):  # a mark's value may hold marks (@ROUTERS@ holds @ROUTER@)
            text = re.sub(r"(@[A-Z_]+@)((?<=@) {2,}(?=#))?", mark, text)
        return text

    rollout_dir = f"{load.ROLLOUTS_DIR}/{name}"
    files = {
        load.CONFIG_FILE: template("controller.yaml"),
        f"{rollout_dir}/{load.ROLLOUT_FILE}": template("rollout.yaml"),
        f"{rollout_dir}/prompts/{name}-v1.md": template("prompt-v1.md"),
        f"{rollout_dir}/prompts/{name}-v2.md": template("prompt-v2.md"),
        f"{rollout_dir}/evals/golden.jsonl": template("golden.jsonl"),
        ".github/workflows/rollout-checks.yml": template("github/rollout-checks.yml"),
        ".github/workflows/rollout-controller.yml": template("github/rollout-controller.yml"),
        ".github/workflows/rollout-commands.yml": template("github/rollout-commands.yml"),
        ".github/actions/rollout-checks/action.yml": template("github/action.yml"),
    }
    files = {path: fill(text) for path, text in files.items()}
    files.update({f"schemas/{n}": text for n, text in validate.render_schemas().items()})
    return files


def _litellm_proxy_config(root: Path) -> tuple[str, str]:
    """(path, text) of the LiteLLM proxy's config for the scaffold just written: what `rollout render
    litellm --out` renders into a config that takes the master key from the environment."""
    from controller import load, render, repo, spec

    result = load.load_repo(repo.WorkTree(root))
    assert result.config is not None  # the scaffold's own config: tests/cli/test_init.py validates it
    name, router = next((n, r) for n, r in result.config.routers.items() if isinstance(r, spec.LitellmRouterConfig))
    assert router.proxy_config is not None
    into = load.parse_yaml(router.proxy_config, LITELLM_SETTINGS.encode())
    return router.proxy_config, render.litellm_config(result, name, router, into=into).text


def cmd_init(args: argparse.Namespace, out: TextIO) -> int:
    from controller import spec

    if not re.fullmatch(spec.DNS_LABEL, args.name):
        raise common.UsageError(f"--name {args.name!r}: a DNS label (a-z, 0-9 and '-', at most 63 characters)")
    if args.install is not None and not INSTALLABLE.fullmatch(args.install):
        raise common.UsageError(
            f"--install {args.install!r}: a pip requirement, such as git+https://host/org/repo@v1.2"
        )
    root, remote = _places(args)
    created = [p for p in (root, remote) if p is not None and not p.exists()]
    try:
        sha = _create(root, remote, args)
    except BaseException:
        for place in (root, remote):  # nothing half-written is left behind: DIR and the remote were empty
            if place is None or not place.exists():
                continue
            if place in created:
                shutil.rmtree(place)
            else:
                _empty(place)
        raise
    out.write(f"wrote {root} ({args.router} router, rollout {args.name}) and committed it on main as {sha[:10]}\n")
    out.write(_next_steps(root, remote, args))
    return 0


def _empty(directory: Path) -> None:
    for entry in directory.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _create(root: Path, remote: Path | None, args: argparse.Namespace) -> str:
    """Write the scaffold into `root` and commit it (and push it to `remote`); the commit's sha."""
    from controller import repo

    files = scaffold(router=args.router, name=args.name, install=args.install or installed_from())
    extra = ""
    if args.router == "litellm":
        _write(root, files)
        path, text = _litellm_proxy_config(root)
        files = {path: text}
        extra = (
            f"| `{path}` | the LiteLLM proxy's config: start the proxy from it with `$ROLLOUT_WEIGHTS_FILE` set to "
            "the router's `weightsFile` (relative to `stateDir`); a new canary needs no re-render and no restart; "
            f"`rollout render litellm --out {path}` replaces only what it owns |\n"
        )
    if args.router == "envoy":
        extra = "| `envoy.yaml` (not in git) | Envoy's bootstrap: `rollout render envoy --out envoy.yaml` |\n"
        files[".gitignore"] = (
            "# Envoy's bootstrap, rendered by `rollout render envoy --out envoy.yaml`: not in git\nenvoy.yaml\n"
        )
    files["README.md"] = template("README.md").replace("@EXTRA_ROW@\n", extra)
    files["README.md"] = _fill_readme(files["README.md"], args, root)
    _write(root, files)
    return repo.publish(root, message=f"rollout init: the {args.name} rollout on a {args.router} router", remote=remote)


def _fill_readme(text: str, args: argparse.Namespace, root: Path) -> str:
    marks = {"@DIR@": root.name, "@NAME@": args.name, "@ROUTER_TYPE@": args.router, "@VERSION@": __version__}
    for mark, value in marks.items():
        text = text.replace(mark, value)
    return text


def _write(root: Path, files: dict[str, str]) -> None:
    for path, text in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, "utf-8")


def _next_steps(root: Path, remote: Path | None, args: argparse.Namespace) -> str:
    here = common.display(root, ".") if root != Path.cwd() else "."
    if remote is None:
        return (
            f"\nnext:\n  cd {shlex.quote(here)}\n  rollout validate\n"
            "  git remote add origin URL && git push -u origin main   # your team's remote\n"
            "  then set forge: github in rollouts/controller.yaml (README.md, 'On GitHub')\n"
        )
    return (
        f"remote {remote} (the local forge keeps its pull requests there)\n"
        f"\nnext:\n  cd {shlex.quote(here)}\n  export {settings.REMOTE_ENV}={shlex.quote(str(remote))}\n"
        "  rollout reconcile --once   # one tick: the route starts on stable\n"
        "  rollout status\n"
        "  rollout pr list\n"
        f"then your first rollout: README.md, 'Your first rollout' (uncomment the canary in rollouts/{args.name}/)\n"
    )
