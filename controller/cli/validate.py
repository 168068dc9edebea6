"""`rollout validate` (rollout specs and controller.yaml, with lint) and `rollout schema` (the JSON
Schemas of the spec files)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from controller.cli import common, console

if TYPE_CHECKING:
    from controller import lint


def add_parser(sub: Any) -> None:
    v = sub.add_parser(
        "validate",
        help="check rollout specs and controller.yaml, with lint",
        epilog=common.example("rollout validate rollouts/support-bot --strict"),
    )
    v.add_argument("paths", nargs="*", metavar="PATH", help="files or directories (default: rollouts)")
    v.add_argument("--format", choices=("text", "json", "github"), default="text", help="github: workflow annotations")
    v.add_argument("--strict", action="store_true", help="fail on warnings too")
    v.set_defaults(func=cmd_validate)

    s = sub.add_parser(
        "schema", help="write the JSON Schemas of the spec files", epilog=common.example("rollout schema --check")
    )
    s.add_argument("--out", default="schemas", help="the directory to write them in")
    s.add_argument("--check", action="store_true", help="only check that the files are up to date")
    s.set_defaults(func=cmd_schema)


def _selected(root: Path, path: Path) -> list[str] | None:
    """Which rollout files a PATH argument asks about; None means all of them."""
    from controller import load

    rel = path.resolve().relative_to(root).as_posix()
    if rel in (".", load.ROLLOUTS_DIR):
        return None
    if rel == load.CONFIG_FILE:
        return []
    if path.is_dir():
        return [f"{rel}/{load.ROLLOUT_FILE}"]
    return [rel]


@console.coloured
def cmd_validate(args: argparse.Namespace, out: TextIO) -> int:
    from controller import lint, load, report, worktree

    paths = [Path(p) for p in args.paths] or [common.find_root(Path.cwd()) / load.ROLLOUTS_DIR]  # as `plan` finds it
    findings: list[dict[str, Any]] = []
    for path in paths:
        if not path.exists():
            raise common.UsageError(f"{path}: no such file or directory")
        root = common.find_root(path if path.is_dir() else path.parent)
        tree = worktree.WorkTree(root)
        only = _selected(root, path)
        result = load.load_repo(tree, only=only, prompts=common.prompt_registry())
        findings += [common.problem_json(p, root) for p in result.problems]
        if result.config is not None:
            for loaded in result.rollouts:
                source = tree.read(loaded.path)
                findings += [_finding_json(f, root) for f in lint.lint(loaded, result.config, source)]
            if any(c.type in ("istio", "gateway-api") for c in result.config.routers.values()):
                from controller import render  # only then: rendering imports every router's module

                findings += [common.problem_json(p, root) for p in render.mesh_problems(result, _reader(tree))]
    findings = list({json.dumps(f, sort_keys=True): f for f in findings}.values())
    out.write(report.findings(findings, args.format))
    failed = any(f["severity"] == lint.ERROR for f in findings)
    if args.strict:
        failed = failed or bool(findings)
    return 1 if failed else 0


def _reader(tree: Any) -> Any:
    """A repository file's bytes, or None when it is missing or unreadable (a mesh manifest not yet rendered)."""
    from controller import load

    def read(path: str) -> bytes | None:
        try:
            data: bytes = tree.read(path)
        except (OSError, load.PathEscapes, load.NotAFile):
            return None
        return data

    return read


def _finding_json(f: lint.Finding, root: Path) -> dict[str, Any]:
    return {
        "file": common.display(root, f.file),
        "line": f.line,
        "column": f.column,
        "field": f.field,
        "code": f.code,
        "severity": f.severity,
        "message": f.message,
    }


def render_schemas() -> dict[str, str]:
    from controller import spec

    schemas = {
        "rollout.schema.json": spec.json_schema(spec.Rollout),
        "controller.schema.json": spec.json_schema(spec.ControllerConfig),
    }
    return {name: json.dumps(schema, indent=2) + "\n" for name, schema in schemas.items()}


def cmd_schema(args: argparse.Namespace, out: TextIO) -> int:
    target = Path(args.out)
    stale = []
    for name, text in render_schemas().items():
        path = target / name
        if args.check:
            if not path.is_file() or path.read_text("utf-8") != text:
                stale.append(str(path))
            continue
        target.mkdir(parents=True, exist_ok=True)
        path.write_text(text, "utf-8")
        print(f"wrote {path}", file=out)
    if stale:
        print("out of date (run `rollout schema`): " + ", ".join(stale), file=out)
        return 1
    return 0
