"""The shipped deployment files pass real linters: hadolint on the Dockerfile, kubernetes-validate
(the Kubernetes OpenAPI schemas, strict: no unknown field) on the manifests, `systemd-analyze verify`
on the unit; and each linter fails on a known-bad copy, so a test that passes means something."""

from __future__ import annotations

import fnmatch
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from controller import deploy


def shipped(name: str) -> Path:
    return Path(str(deploy.path(name)))


def tool(name: str) -> str:
    found = shutil.which(name)
    assert found, f"`{name}` is not on PATH: `bash .ci/run` installs it (pyproject.toml's test extra, or apt)"
    return found


def hadolint(dockerfile: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("hadolint"), "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=60, check=False
    )


def kubernetes_validate(*manifests: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("kubernetes-validate"), "--strict", "--quiet", *map(str, manifests)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def systemd_verify(unit: Path, tmp_path: Path) -> str:
    """`systemd-analyze verify` on a copy of `unit` whose ExecStart names this machine's `rollout` (it
    checks the program exists). It exits 0 on unknown keys and unparsable values and only prints them,
    so anything it prints is a finding: the findings, empty when clean."""
    copy = tmp_path / unit.name
    copy.write_text(unit.read_text().replace("/opt/rollout/bin/rollout", tool("rollout")))
    result = subprocess.run(
        [tool("systemd-analyze"), "verify", str(copy)], capture_output=True, text=True, timeout=60, check=False
    )
    return (result.stdout + result.stderr).strip() or ("" if result.returncode == 0 else f"exit {result.returncode}")


def test_hadolint_passes_the_dockerfile() -> None:
    clean = hadolint(shipped(deploy.DOCKERFILE))
    assert clean.returncode == 0, clean.stdout + clean.stderr


def test_hadolint_fails_an_unpinned_base(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text(
        shipped(deploy.DOCKERFILE).read_text().replace("FROM python:3.12-slim-bookworm", "FROM python:latest")
    )
    result = hadolint(bad)
    assert result.returncode != 0 and "DL3007" in result.stdout, result.stdout


def test_the_manifests_match_the_kubernetes_schemas() -> None:
    result = kubernetes_validate(*(shipped(name) for name in deploy.KUBERNETES))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("good", "bad", "named"),
    [
        ("httpGet: {path: /healthz, port: metrics}", "httpGet: {paht: /healthz, port: metrics}", "paht"),
        ("replicas: 1", 'replicas: "one"', "replicas"),
    ],
    ids=["unknown-field", "wrong-type"],
)
def test_kubernetes_validate_fails_a_wrong_field(tmp_path: Path, good: str, bad: str, named: str) -> None:
    text = shipped("kubernetes/deployment.yaml").read_text()
    assert good in text
    broken = tmp_path / "deployment.yaml"
    broken.write_text(text.replace(good, bad, 1))
    result = kubernetes_validate(broken)
    assert result.returncode != 0 and named in result.stdout, result.stdout + result.stderr


def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    assert systemd_verify(shipped(deploy.UNIT), tmp_path) == ""


@pytest.mark.parametrize(
    ("good", "bad", "named"),
    [
        ("Restart=on-failure", "Restart=sometimes", "sometimes"),
        ("ProtectSystem=strict", "ProtectSystm=strict", "Unknown key 'ProtectSystm'"),
    ],
    ids=["bad-value", "unknown-key"],
)
def test_systemd_analyze_finds_a_bad_setting(tmp_path: Path, good: str, bad: str, named: str) -> None:
    unit = tmp_path / "bad" / deploy.UNIT
    unit.parent.mkdir()
    text = shipped(deploy.UNIT).read_text()
    assert good in text
    unit.write_text(text.replace(good, bad))
    assert named in systemd_verify(unit, tmp_path)


def test_the_package_data_names_every_deployment_file() -> None:
    """Package data, so that an installed `rollout` (and `rollout init`) has them too."""
    root = Path(__file__).resolve().parents[2]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    for name in deploy.FILES:
        assert shipped(name).is_file(), name
        assert any(fnmatch.fnmatch(name, pattern) for pattern in patterns["controller.deploy"]), name
