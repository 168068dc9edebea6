"""Regenerates tests/github/openapi-subset.json: the GitHub REST operations the forge uses, cut from
GitHub's official OpenAPI description (npm @octokit/openapi) with every $ref resolved.

Run: python tests/github/extract_openapi.py [PATH to a .tgz from `npm pack` or to api.github.com.json]
Without a path it runs `npm pack @octokit/openapi@VERSION` in a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

PACKAGE = "@octokit/openapi"
VERSION = "23.0.2"
MEMBER = "package/generated/api.github.com.json"
OUT = Path(__file__).with_name("openapi-subset.json")

# operationId -> why the forge needs it
OPERATIONS = {
    "repos/get": "github3 Repository object (default branch)",
    "git/get-ref": "the base branch's head, and whether a head branch exists",
    "git/get-commit": "the base commit's tree",
    "git/get-tree": "is an unchanged proposal already on its branch (no writes then)",
    "git/create-blob": "file contents of a proposal",
    "git/create-tree": "the proposal's tree on top of the base tree",
    "git/create-commit": "the proposal's commit (signed when made by a GitHub App)",
    "git/create-ref": "a new head branch",
    "git/update-ref": "move an existing head branch (force)",
    "git/delete-ref": "delete a merged PR's head branch",
    "pulls/list": "find a PR by head branch; list by prefix (paginated)",
    "pulls/get": "read one PR (merged state, head sha)",
    "pulls/create": "open a PR",
    "pulls/update": "update title/body, or close",
    "pulls/merge": "merge with a merge commit",
    "pulls/list-reviews": "approved or changes requested",
    "issues/list-comments": "find our sticky comment by its marker (paginated)",
    "issues/create-comment": "the sticky comment, first time",
    "issues/update-comment": "the sticky comment, afterwards",
    "issues/add-labels": "labels, in the documented {labels: [...]} form",
    "repos/create-commit-status": "the gate summary on the head commit; tests post Actions' check results",
    "repos/update-branch-protection": "tests only: the required status checks a merge must wait for",
    "apps/create-installation-access-token": "GitHub App auth: an installation token from the App's JWT",
    "repos/get-collaborator-permission-level": "a PR comment command: may its commenter steer the rollout",
}


def load_description(path: Path | None) -> tuple[dict[str, Any], str]:
    if path is None:
        tmp = Path(tempfile.mkdtemp(prefix="octokit-openapi-"))
        subprocess.run(["npm", "pack", f"{PACKAGE}@{VERSION}"], cwd=tmp, check=True, capture_output=True)
        path = next(tmp.glob("*.tgz"))
    if path.suffix == ".tgz":
        with tarfile.open(path) as tar:
            pkg = json.load(tar.extractfile("package/package.json"))  # type: ignore[arg-type]
            doc = json.load(tar.extractfile(MEMBER))  # type: ignore[arg-type]
        return doc, f"{PACKAGE}@{pkg['version']}"
    return json.loads(path.read_text("utf-8")), f"{PACKAGE} ({path.name})"


DROP = ("examples", "example", "x-github", "description", "summary")


def resolve(doc: dict[str, Any], node: Any, stack: tuple[str, ...] = (), *, names: bool = False) -> Any:
    """Inline every $ref; a recursive reference becomes {} (any value), which only loosens the check.
    Prose is dropped to keep the file small; `names` marks a `properties` map, whose keys are fields."""
    if isinstance(node, list):
        return [resolve(doc, item, stack) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        ref = node["$ref"]
        if ref in stack:
            return {}
        target: Any = doc
        for part in ref.removeprefix("#/").split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        return resolve(doc, target, (*stack, ref), names=names)
    return {
        k: resolve(doc, v, stack, names=k == "properties" and not names)
        for k, v in node.items()
        if names or k not in DROP
    }


def extract(doc: dict[str, Any]) -> dict[str, Any]:
    ops: dict[str, Any] = {}
    for path, item in doc["paths"].items():
        shared = item.get("parameters", [])
        for method, op in item.items():
            if not isinstance(op, dict) or op.get("operationId") not in OPERATIONS:
                continue
            responses = {}
            for status, response in op["responses"].items():
                response = resolve(doc, response)
                schema = response.get("content", {}).get("application/json", {}).get("schema")
                responses[status] = {"schema": schema}
            body = resolve(doc, op.get("requestBody", {}))
            ops[op["operationId"]] = {
                "method": method.upper(),
                "path": path,
                "parameters": [
                    {k: p[k] for k in ("name", "in", "required", "schema") if k in p}
                    for p in resolve(doc, [*shared, *op.get("parameters", [])])
                ],
                "requestBody": body.get("content", {}).get("application/json", {}).get("schema"),
                "requestBodyRequired": body.get("required", False),
                "responses": responses,
            }
    missing = sorted(set(OPERATIONS) - set(ops))
    if missing:
        raise SystemExit(f"operations not in the description: {missing}")
    return ops


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("path", nargs="?", type=Path)
    args = ap.parse_args()
    doc, source = load_description(args.path)
    subset = {
        "source": source,
        "openapi": doc["openapi"],
        "info_version": doc["info"]["version"],
        "operations": dict(sorted(extract(doc).items())),
    }
    OUT.write_text(json.dumps(subset, separators=(",", ":")) + "\n", "utf-8")
    print(f"wrote {OUT} ({len(subset['operations'])} operations from {source})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
