"""The JSON Schemas `rollout schema` writes (what an editor validates and completes with): every default
satisfies its own subschema, titles read as words, `use` offers the built-in templates and still takes a
custom one; and the lint codes the README lists are exactly those `controller.lint` reports."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from controller import lint, spec
from controller.cli import validate

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = {
    name: json.loads(text) for name, text in validate.render_schemas().items()
}  # as `rollout schema` writes them


def _nodes(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _nodes(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _nodes(value, f"{path}/{i}")


DEFAULTS = [
    (name, path, node) for name, schema in SCHEMAS.items() for path, node in _nodes(schema) if "default" in node
]


def test_the_schemas_have_defaults_to_check() -> None:
    assert len(DEFAULTS) > 30 and any(path.endswith("/interval") for _, path, _ in DEFAULTS)


@pytest.mark.parametrize(("name", "path", "node"), DEFAULTS, ids=[f"{n}:{p}" for n, p, _ in DEFAULTS])
def test_every_default_satisfies_its_own_schema(name: str, path: str, node: dict[str, Any]) -> None:
    """A default an editor inserts must validate: `PT1M` for a duration whose pattern wants `1m` would not."""
    subschema = {k: v for k, v in node.items() if k != "default"} | {"$defs": SCHEMAS[name].get("$defs", {})}
    jsonschema.Draft202012Validator(subschema).validate(node["default"])


def test_a_duration_default_is_written_as_a_file_writes_it() -> None:
    interval = SCHEMAS["rollout.schema.json"]["$defs"]["Analysis"]["properties"]["interval"]
    assert interval["default"] == "1m"


def test_titles_read_as_words() -> None:
    titles = {
        node["title"] for schema in SCHEMAS.values() for _, node in _nodes(schema) if isinstance(node.get("title"), str)
    }
    assert {"Max drop", "Min samples", "Allow paired change", "Rollout spec", "On fail", "Cds path"} <= titles
    assert all(re.fullmatch(r"[A-Z][a-z0-9]*( [a-z0-9]+)*", t) for t in titles), sorted(
        t for t in titles if not re.fullmatch(r"[A-Z][a-z0-9]*( [a-z0-9]+)*", t)
    )


def test_use_offers_the_built_in_templates_and_takes_a_custom_one() -> None:
    schema = SCHEMAS["rollout.schema.json"]
    use = schema["$defs"]["Gate"]["properties"]["use"]
    assert next(b["enum"] for b in use["anyOf"] if "enum" in b) == sorted(spec.BUILTIN_GATES)
    gate = schema["$defs"]["Gate"] | {"$defs": schema["$defs"]}
    check = jsonschema.Draft202012Validator(gate)
    assert check.is_valid({"use": "error_rate", "max": "1%"})
    assert check.is_valid({"use": "rewrite_rate", "max": "1%"})  # a template named in controller.yaml
    assert not check.is_valid({"use": "Error-Rate", "max": "1%"})


def test_the_readme_lists_exactly_the_lint_codes() -> None:
    readme = (ROOT / "README.md").read_text("utf-8")
    paragraph = readme[readme.index("- **Lint**") :].split("\n\n")[0].split("\n- ")[0]
    listed = set(re.findall(r"`(R\d{3})`", paragraph))
    source = Path(lint.__file__).read_text("utf-8")
    assert listed == set(re.findall(r'"(R\d{3})"', source)), paragraph
