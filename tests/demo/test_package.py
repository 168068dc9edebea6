"""The demo is a package of its own that ships with the controller: nothing under controller/ imports
the checkout's tests/ or edits sys.path, the demo does not import the CLI, the wheel's package list
holds `controller.demo`, and the stand-in model server runs from a copy of the package alone."""

from __future__ import annotations

import ast
import json
import os
import shutil
import signal
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import setuptools

from controller import demo
from controller.demo import loadgen, model_server
from tests.helpers import prom

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "controller"


def _modules(under: Path) -> list[Path]:
    return sorted(p for p in under.rglob("*.py") if "__pycache__" not in p.parts)


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    """Every module an `import` or `from ... import` in `path` names, with its line, relative imports
    resolved against the module's own package; `from a import b` yields both `a` and `a.b`."""
    package = list(path.relative_to(ROOT).parent.parts)  # a module's package, or an __init__'s own
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            yield node.lineno, base
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"


def _names(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def test_the_package_walk_sees_the_demo_and_its_stand_ins() -> None:
    found = {p.relative_to(ROOT).as_posix() for p in _modules(PACKAGE)}
    assert {"controller/demo/__init__.py", "controller/demo/model_server.py", "controller/demo/loadgen.py"} <= found


def test_the_import_walk_sees_what_a_module_imports() -> None:
    names = {name for _, name in _imports(PACKAGE / "demo" / "__init__.py")}
    assert {"controller.demo.loadgen", "controller.traffic", "git", "controller.routers.factory"} <= names


def test_no_module_under_controller_imports_tests() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line}: imports {name}"
        for path in _modules(PACKAGE)
        for line, name in _imports(path)
        if _names(name, "tests")
    ]
    assert not found, "the product must not import the checkout's tests/:\n" + "\n".join(found)


def test_no_module_under_controller_edits_sys_path() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for path in _modules(PACKAGE)
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path)))
        if isinstance(node, ast.Attribute)
        and node.attr == "path"
        and isinstance(node.value, ast.Name)
        and node.value.id == "sys"
    ]
    assert not found, "sys.path is left alone in the product:\n" + "\n".join(found)


def test_the_demo_does_not_import_the_cli() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line}: imports {name}"
        for path in _modules(PACKAGE / "demo")
        for line, name in _imports(path)
        if _names(name, "controller.cli")
    ]
    assert not found, "the CLI calls the demo, never the other way round:\n" + "\n".join(found)


def test_the_demo_starts_the_model_server_shipped_in_the_package(tmp_path: Path) -> None:
    command = demo.model_server_command("canary", port_file=tmp_path / "port")
    assert command[:3] == [sys.executable, "-m", "controller.demo.model_server"]
    assert command[2] == model_server.__name__
    assert loadgen.__name__ == "controller.demo.loadgen"


def test_the_wheel_ships_the_demo_package() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    shipped = set(setuptools.find_packages(str(ROOT), include=config["include"], exclude=config.get("exclude", ())))
    assert "controller.demo" in shipped
    assert not any(_names(p, "tests") for p in shipped)


#: Runs a module as `python -m` would, with any import of `tests` refused and with `controller` required
#: to come from the directory given first on the command line.
CHILD = """
import importlib.abc, runpy, sys
class NoTests(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "tests" or name.startswith("tests."):
            raise ImportError(f"the demo imported {name} from the checkout's tests/")
        return None
sys.meta_path.insert(0, NoTests())
home, module = sys.argv[1], sys.argv[2]
del sys.argv[1:3]
import controller, controller.demo
if not controller.__file__.startswith(home):
    sys.exit(f"controller came from {controller.__file__}, not from {home}")
runpy.run_module(module, run_name="__main__", alter_sys=True)
"""


def _copy_of_the_package(tmp_path: Path) -> Path:
    """The package alone, as a wheel installs it: controller/ and nothing else from the checkout."""
    site = tmp_path / "site"
    shutil.copytree(PACKAGE, site / "controller", ignore=shutil.ignore_patterns("__pycache__"))
    return site


def test_the_model_server_runs_from_the_package_alone(tmp_path: Path) -> None:
    site = _copy_of_the_package(tmp_path)
    port_file = tmp_path / "port"
    args = [sys.executable, "-c", CHILD, str(site), "controller.demo.model_server"]
    args += demo.model_server_command("stable", port_file=port_file)[3:]
    env = {**os.environ, "PYTHONPATH": str(site)}
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        prom.prom_poll("the port file, or the end", lambda: proc.poll() is not None or port_file.exists(), deadline=30)
        assert proc.poll() is None, "the model server exited"
        port = port_file.read_text().strip()
        answer = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        assert answer.is_success
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err.decode()
    assert f"on http://127.0.0.1:{port}" in out.decode()


def test_the_traffic_generator_runs_from_the_package_alone(tmp_path: Path) -> None:
    site = _copy_of_the_package(tmp_path)
    args = [sys.executable, "-c", CHILD, str(site), "controller.demo.loadgen"]
    args += ["--url", "http://127.0.0.1:9/v1", "--rate", "100", "--max-requests", "2", "--duration", "20"]
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    assert json.loads(done.stdout)["sent"] == 2


@pytest.mark.parametrize("forbidden", ["tests.helpers", "tests"])
def test_the_child_guard_refuses_an_import_of_tests(tmp_path: Path, forbidden: str) -> None:
    """The guard the two tests above rely on does fire: a module importing tests/ fails under it."""
    site = _copy_of_the_package(tmp_path)
    (site / "probe.py").write_text(f"import {forbidden}\n")
    args = [sys.executable, "-c", CHILD, str(site), "probe"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    done = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, timeout=60)
    assert done.returncode != 0 and b"from the checkout's tests/" in done.stderr
