"""Checks requests and responses against the GitHub operations in tests/github/openapi-subset.json.

The stand-in routes by it and reports every mismatch as a violation; tests fail on any violation.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema

SUBSET = (
    Path(__file__).resolve().parent.parent / "github" / "openapi-subset.json"
)  # tests/github/extract_openapi.py writes it


def to_json_schema(node: Any) -> Any:
    """OpenAPI 3.0 schema -> JSON Schema: `nullable: true` becomes a union with null."""
    if isinstance(node, list):
        return [to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: to_json_schema(v) for k, v in node.items() if k != "nullable"}
    if k_props := node.get("properties"):
        out["properties"] = {name: to_json_schema(sub) for name, sub in k_props.items()}
    if node.get("nullable"):
        if isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
            if "enum" in out and None not in out["enum"]:
                out["enum"] = [*out["enum"], None]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


@dataclass(frozen=True)
class Operation:
    op_id: str
    method: str
    template: str
    pattern: re.Pattern[str]
    raw: dict[str, Any]

    def response_schema(self, status: int) -> dict[str, Any] | None:
        entry = self.raw["responses"].get(str(status)) or self.raw["responses"].get("default")
        return None if entry is None else entry["schema"]


class Contract:
    def __init__(self, path: Path = SUBSET) -> None:
        doc = json.loads(path.read_text("utf-8"))
        self.source = doc["source"]
        self.version = doc["info_version"]
        self.operations: list[Operation] = []
        for op_id, raw in doc["operations"].items():
            raw = to_json_schema(copy.deepcopy(raw))
            regex = re.sub(
                r"\\{(\w+)\\}",
                lambda m: f"(?P<{m.group(1)}>.+)" if m.group(1) == "ref" else f"(?P<{m.group(1)}>[^/]+)",
                re.escape(raw["path"]),
            )
            self.operations.append(Operation(op_id, raw["method"], raw["path"], re.compile(f"^{regex}$"), raw))

    def match(self, method: str, path: str) -> tuple[Operation, dict[str, str]] | None:
        for op in self.operations:
            if op.method == method and (m := op.pattern.match(path)):
                return op, m.groupdict()
        return None

    def check_request(
        self, op: Operation, *, path_params: dict[str, str], query: dict[str, list[str]], body: Any
    ) -> list[str]:
        where = f"{op.method} {op.template} ({op.op_id})"
        found: list[str] = []
        known = set()
        for param in op.raw["parameters"]:
            name, place = param["name"], param["in"]
            if place == "query":
                known.add(name)
                values = query.get(name)
                if values is None:
                    if param.get("required"):
                        found.append(f"{where}: missing required query parameter {name!r}")
                    continue
                value: Any = _coerce(values[-1], param.get("schema", {}))
                found += _errors(f"{where}: query parameter {name!r}", value, param.get("schema", {}))
            elif place == "path":
                value = _coerce(path_params.get(name, ""), param.get("schema", {}))
                found += _errors(f"{where}: path parameter {name!r}", value, param.get("schema", {}))
        for name in sorted(set(query) - known):
            found.append(f"{where}: undocumented query parameter {name!r}")
        schema = op.raw["requestBody"]
        if schema is None:
            if body is not None:
                found.append(f"{where}: a body where none is documented")
        elif body is None:
            if op.raw["requestBodyRequired"]:
                found.append(f"{where}: missing required request body")
        else:
            found += _errors(f"{where}: request body", body, schema)
        return found

    def check_response(self, op: Operation, *, status: int, body: Any) -> list[str]:
        where = f"{op.method} {op.template} ({op.op_id}) -> {status}"
        if str(status) not in op.raw["responses"] and "default" not in op.raw["responses"]:
            return [f"{where}: undocumented status"]
        schema = op.response_schema(status)
        if schema is None:
            return []
        return _errors(f"{where}: response body", body, schema)


@functools.cache
def contract() -> Contract:
    """The committed subset, loaded once per test session (it is read-only)."""
    return Contract()


def _coerce(text: str, schema: dict[str, Any]) -> Any:
    kind = schema.get("type")
    try:
        if kind == "integer":
            return int(text)
        if kind == "boolean" and text in ("true", "false"):
            return text == "true"
    except ValueError:
        return text
    return text


def _errors(where: str, value: Any, schema: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft202012Validator(schema)
    return [
        f"{where}: {'/'.join(str(p) for p in err.absolute_path) or '(root)'}: {err.message[:300]}"
        for err in validator.iter_errors(value)
    ]
