"""The import contracts in pyproject.toml (checked by `lint-imports` in .ci/run) name every module of the
package, so a new module cannot sit outside the layering; and they hold on today's tree."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _contracts() -> list[dict[str, object]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    assert config["root_package"] == "controller"
    return list(config["contracts"])


def _named(contracts: list[dict[str, object]]) -> set[str]:
    names: set[str] = set()
    for contract in contracts:
        for key in ("source_modules", "forbidden_modules", "modules"):
            names.update(str(m) for m in contract.get(key, []))  # type: ignore[attr-defined]
        for layer in contract.get("layers", []):  # type: ignore[attr-defined]
            names.update(f"controller.{m.strip()}" for m in re.split(r"[|:]", str(layer)))
    return names


def _top_level_modules() -> set[str]:
    package = ROOT / "controller"
    found = {f"controller.{p.stem}" for p in package.glob("*.py") if p.stem != "__init__"}
    found |= {f"controller.{p.parent.name}" for p in package.glob("*/__init__.py")}
    return found


def test_every_module_of_the_package_is_in_a_contract() -> None:
    missing = _top_level_modules() - _named(_contracts())
    assert not missing, f"name these modules in a [tool.importlinter] contract in pyproject.toml: {sorted(missing)}"


def test_the_contracts_name_no_module_that_does_not_exist() -> None:
    controller = {n for n in _named(_contracts()) if n.startswith("controller.")}
    stale = {n for n in controller if n.count(".") == 1} - _top_level_modules()
    assert not stale, f"contracts name modules that are gone: {sorted(stale)}"


def test_the_contracts_hold() -> None:
    result = subprocess.run(["lint-imports", "--no-cache"], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_every_router_and_forge_adapter_is_in_its_independence_contract() -> None:
    """A new adapter module (routers/NAME.py, forge/NAME.py) is named in the independence contract,
    or is a helper of one that is (routers/envoy_prompts.py belongs to routers/envoy.py)."""
    # budget: pure, any forge may use it; mesh: what the two Kubernetes mesh routers share (Service names, CRD schemas)
    shared = {"__init__", "base", "factory", "atomic", "gitstore", "budget", "mesh"}
    independent = {
        str(m)
        for c in _contracts()
        if c["type"] == "independence"
        for m in c["modules"]  # type: ignore[attr-defined]
    }
    for package in ("routers", "forge"):
        for path in sorted((ROOT / "controller" / package).glob("*.py")):
            if path.stem in shared:
                continue
            module = f"controller.{package}.{path.stem}"
            assert any(module == m or module.startswith(f"{m}_") for m in independent), (
                f"{module}: name it in an independence contract in pyproject.toml"
            )
