"""`rollout init DIR`: a team's own GitOps repository for the router it names, from the templates in
`controller.scaffold` and the schemas of the spec models; with `--local`, also the bare remote it is a
clone of, so that the next command is `rollout reconcile --once`."""

from __future__ import annotations

import argparse
import re
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
FIRST_STEP = {  # LiteLLM cannot mirror traffic (lint R007): its first step is a small live weight
    "litellm": "    - {weight: 1, for: 2h, minSamples: 200}     # LiteLLM cannot mirror: 1% of live traffic first",
}
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
        "--local",
        action="store_true",
        help="also create a bare git remote (DIR's sibling NAME.git) with DIR as its clone, main pushed",
    )
    p.add_argument(
        "--remote-dir", default=None, help="with --local: where the bare remote goes (default: DIR.git beside DIR)"
    )
    p.set_defaults(func=cmd_init)


def _empty_or_new(path: Path, what: str) -> None:
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise common.UsageError(f"{path}: {what} exists and is not empty; nothing was written")


def scaffold(*, router: str, name: str) -> dict[str, str]:
    """The repository's files, path -> text, for a router type and a rollout name."""
    from controller import load

    router_name, route_word = ROUTERS[router]
    marks = {
        "@NAME@": name,
        "@ROUTE@": name,
        "@ROUTER@": router_name,
        "@ROUTE_WORD@": route_word,
        "@MODEL@": MODEL,
        "@VERSION@": __version__,
        "@FIRST_STEP@": FIRST_STEP.get(router, SHADOW_STEP),
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
        ".github/actions/rollout-checks/action.yml": template("github/action.yml"),
    }
    files = {path: fill(text) for path, text in files.items()}
    files.update({f"schemas/{n}": text for n, text in validate.render_schemas().items()})
    return files


def _litellm_proxy_config(root: Path) -> tuple[str, str]:
    """(path, text) of the LiteLLM proxy's config for the scaffold just written: what `rollout render
    litellm` renders for it, with the master key taken from the environment."""
    from controller import load, render, repo, spec

    result = load.load_repo(repo.WorkTree(root))
    assert result.config is not None  # the scaffold's own config: tests/cli/test_init.py validates it
    name, router = next((n, r) for n, r in result.config.routers.items() if isinstance(r, spec.LitellmRouterConfig))
    assert router.proxy_config is not None
    rendered = render.litellm_config(result, name, router, state=common.state_dir(result.config))
    return router.proxy_config, rendered.text + LITELLM_SETTINGS


def cmd_init(args: argparse.Namespace, out: TextIO) -> int:
    from controller import repo, spec

    if not re.fullmatch(spec.DNS_LABEL, args.name):
        raise common.UsageError(f"--name {args.name!r}: a DNS label (a-z, 0-9 and '-', at most 63 characters)")
    root = Path(args.dir).absolute()
    remote: Path | None = None
    if args.local:
        remote = Path(args.remote_dir).absolute() if args.remote_dir else root.with_name(f"{root.name}.git")
        _empty_or_new(remote, "the remote")
    elif args.remote_dir:
        raise common.UsageError("--remote-dir goes with --local")
    _empty_or_new(root, "DIR")
    files = scaffold(router=args.router, name=args.name)
    extra = ""
    if args.router == "litellm":
        _write(root, files)
        path, text = _litellm_proxy_config(root)
        files = {path: text}
        extra = f"| `{path}` | the LiteLLM proxy's config: `rollout render litellm` renders its model_list |\n"
    if args.router == "envoy":
        extra = "| `envoy.yaml` (not in git) | Envoy's bootstrap: `rollout render envoy --out envoy.yaml` |\n"
    files["README.md"] = template("README.md").replace("@EXTRA_ROW@\n", extra)
    files["README.md"] = _fill_readme(files["README.md"], args, root)
    _write(root, files)
    sha = repo.publish(root, message=f"rollout init: the {args.name} rollout on a {args.router} router", remote=remote)
    out.write(f"wrote {root} ({args.router} router, rollout {args.name}) and committed it on main as {sha[:10]}\n")
    out.write(_next_steps(root, remote, args))
    return 0


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
            f"\nnext:\n  cd {here}\n  rollout validate\n"
            "  git remote add origin URL && git push -u origin main   # your team's remote\n"
            "  then set forge: github in rollouts/controller.yaml (README.md, 'On GitHub')\n"
        )
    return (
        f"remote {remote} (the local forge keeps its pull requests there)\n"
        f"\nnext:\n  cd {here}\n  export {settings.REMOTE_ENV}={remote}\n"
        "  rollout reconcile --once   # one tick: the route starts on stable\n"
        "  rollout status\n"
        "  rollout pr list\n"
        f"then your first rollout: README.md, 'Your first rollout' (uncomment the canary in rollouts/{args.name}/)\n"
    )
