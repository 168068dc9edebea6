"""The test suite's own layout rules: shared test code lives in tests/helpers/ only.

No module under tests/ imports a test module (a `test_*` file) or a `conftest`, and the small process
helpers (`free_port`, `wait_for`) are defined once, in tests/helpers/. Walks every .py file with `ast`.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

TESTS = Path(__file__).resolve().parent
HELPERS = TESTS / "helpers"
SHARED_ONLY = {"free_port", "wait_for"}
EXCLUDED = [
    TESTS / ".node",
]


def sources() -> list[Path]:
    return sorted(
        path
        for path in TESTS.rglob("*.py")
        if not any(path.is_relative_to(excluded) for excluded in EXCLUDED) and "__pycache__" not in path.parts
    )


@functools.cache
def parsed() -> tuple[tuple[Path, ast.Module], ...]:
    """Every source with its syntax tree, parsed once for all the checks."""
    return tuple((path, ast.parse(path.read_text(), filename=str(path))) for path in sources())


def is_test_module(dotted: str) -> bool:
    last = dotted.rsplit(".", 1)[-1]
    return last == "conftest" or last.startswith("test_")


def imported_modules(tree: ast.Module) -> list[tuple[int, str]]:
    """Every module an import statement names, `from a import b` counting as both a and a.b (b may be a module)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = ("." * node.level) + (node.module or "")
            if node.module:
                found.append((node.lineno, base))
            found.extend((node.lineno, f"{base}.{alias.name}".replace("..", ".")) for alias in node.names)
    return found


def test_the_walk_sees_the_suite() -> None:
    names = {path.name for path in sources()}
    assert {"test_layout.py", "conftest.py", "__init__.py"} <= names
    assert any(path.is_relative_to(HELPERS) for path in sources())


def test_no_module_imports_a_test_module_or_a_conftest() -> None:
    offences = [
        f"{path.relative_to(TESTS.parent)}:{line}: imports {name}"
        for path, tree in parsed()
        for line, name in imported_modules(tree)
        if any(is_test_module(part) for part in name.split("."))
    ]
    assert offences == [], "shared test code belongs in tests/helpers/:\n" + "\n".join(offences)


def test_process_helpers_are_defined_only_in_helpers() -> None:
    offences = [
        f"{path.relative_to(TESTS.parent)}:{node.lineno}: defines {node.name}"
        for path, tree in parsed()
        if not path.is_relative_to(HELPERS)
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name in SHARED_ONLY
    ]
    assert offences == [], "use tests.helpers.net instead:\n" + "\n".join(offences)


def test_the_checks_catch_what_they_forbid() -> None:
    bad = ast.parse(
        "from tests.spec.test_corpus import make_repo\n"
        "from tests.reconcile import conftest as rc\n"
        "import tests.faults.conftest\n"
        "from . import test_flow\n"
        "from tests.helpers import net\n"
    )
    flagged = [name for _, name in imported_modules(bad) if any(is_test_module(p) for p in name.split("."))]
    assert flagged == [
        "tests.spec.test_corpus",
        "tests.spec.test_corpus.make_repo",
        "tests.reconcile.conftest",
        "tests.faults.conftest",
        ".test_flow",
    ]
