"""The deployment files' command lines are the real `rollout` command's: the Dockerfile's ENTRYPOINT and
CMD, the systemd unit's ExecStart and the Kubernetes container's args parse with the real argument parser
(a renamed flag breaks these tests), and the probes and health check ask the port and path that
`rollout run --metrics-port` serves; run with the manifest's own arguments, it answers them."""

from __future__ import annotations

import configparser
import contextlib
import json
import os
import re
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import git
import httpx
import pytest
from ruamel.yaml import YAML

from controller import cli, deploy
from controller.cli import run
from tests.helpers import net, procs

ROOT = Path(__file__).resolve().parents[2]
IDENTITY = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.invalid",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.invalid",
}


def shipped(name: str) -> str:
    return deploy.path(name).read_text()


def dockerfile_instructions() -> dict[str, str]:
    """Each instruction of the Dockerfile (the last of each kind), continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", shipped(deploy.DOCKERFILE))
    found: dict[str, str] = {}
    for line in joined.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keyword, _, rest = line.strip().partition(" ")
            found[keyword.upper()] = rest.strip()
    return found


def unit() -> configparser.ConfigParser:
    parsed = configparser.ConfigParser(interpolation=None, strict=False)
    parsed.optionxform = str  # type: ignore[assignment,method-assign]  # systemd's keys are case-sensitive
    parsed.read_string(shipped(deploy.UNIT))
    return parsed


def deployment() -> dict[str, Any]:
    loaded: dict[str, Any] = YAML(typ="safe").load(shipped("kubernetes/deployment.yaml"))
    return loaded


def container(name: str) -> dict[str, Any]:
    [found] = [c for c in deployment()["spec"]["template"]["spec"]["containers"] if c["name"] == name]
    return found


def parsed_run(argv: list[str]) -> Any:
    """`rollout ARGV` through the real parser; it must be `rollout run`."""
    args = cli.parser().parse_args(argv)
    assert args.func is run.cmd_run, argv
    return args


def test_the_dockerfile_runs_the_loop_and_checks_its_healthz() -> None:
    found = dockerfile_instructions()
    assert json.loads(found["ENTRYPOINT"]) == ["rollout"]
    args = parsed_run(json.loads(found["CMD"]))
    assert args.metrics_port == int(found["EXPOSE"]) and args.metrics_host == "0.0.0.0"
    check = re.search(r"'(http://[^']+)'", found["HEALTHCHECK"])
    assert check, found["HEALTHCHECK"]
    url = urlsplit(check[1])
    assert (url.hostname, url.port, url.path) == ("127.0.0.1", args.metrics_port, "/healthz")
    assert found["USER"].split(":")[0] not in ("0", "root")
    assert "RUN python -m venv /opt/rollout" in shipped(deploy.DOCKERFILE)  # pip installs into it, not the system


def test_the_unit_runs_the_loop_as_an_unprivileged_user_in_its_own_directories() -> None:
    service = unit()["Service"]
    argv = shlex.split(service["ExecStart"])
    assert argv[0] == "/opt/rollout/bin/rollout"
    args = parsed_run(argv[1:])
    assert args.metrics_port == 9464 and args.metrics_host == "127.0.0.1"  # on the host: loopback only
    assert args.workdir == f"/var/cache/{service['CacheDirectory']}"
    assert service["User"] not in ("root", "0") and service["EnvironmentFile"] == "/etc/rollout/rollout.env"
    assert service["Restart"] == "on-failure" and service["KillMode"] == "mixed"


def test_the_controller_container_is_probed_where_rollout_run_serves_healthz() -> None:
    rollout = container("rollout")
    args = parsed_run(rollout["args"])
    ports = {p["name"]: p["containerPort"] for p in rollout["ports"]}
    assert ports["metrics"] == args.metrics_port
    assert args.metrics_host == "0.0.0.0"  # the kubelet probes the pod's address, not its loopback
    for probe in ("startupProbe", "livenessProbe"):
        get = rollout[probe]["httpGet"]
        assert get["path"] == "/healthz" and ports.get(get["port"], get["port"]) == args.metrics_port, probe
    assert "readinessProbe" not in rollout  # a controller that cannot reach GitHub must not take Envoy out
    env = {e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in rollout["env"]}
    assert env == {"ROLLOUT_REMOTE": "rollout", "GITHUB_TOKEN": "rollout"}


def test_the_deployment_is_one_non_root_pod_with_a_read_only_root() -> None:
    spec = deployment()["spec"]
    assert spec["replicas"] == 1 and spec["strategy"]["type"] == "Recreate"
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    for c in [*pod["initContainers"], *pod["containers"]]:
        context = c["securityContext"]
        assert context["readOnlyRootFilesystem"] is True and context["allowPrivilegeEscalation"] is False, c["name"]
        assert context["capabilities"]["drop"] == ["ALL"] and c["resources"]["limits"], c["name"]
    envoy_ports = {p["containerPort"] for p in container("envoy")["ports"]}
    assert 9901 not in envoy_ports  # Envoy's admin API stays on the pod's loopback


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    """The smallest rollouts repository: a controller.yaml with a file router and no rollout."""
    work = tmp_path / "src"
    (work / "rollouts").mkdir(parents=True)
    (work / "rollouts" / "controller.yaml").write_text(
        "apiVersion: rollouts/v1\nkind: ControllerConfig\nrouters:\n  local: {type: file, path: routes.json}\n"
        f"forge: {{type: local}}\nstateDir: {tmp_path / 'state'}\n"
    )
    repo = git.Repo.init(work, initial_branch="main")
    repo.git.add("-A")
    repo.git.commit("-m", "controller.yaml", env={**os.environ, **IDENTITY})
    bare = tmp_path / "remote.git"
    git.Repo.clone_from(work, bare, bare=True)
    return bare


def replaced(argv: list[str], **values: str) -> list[str]:
    """`argv` with the value of each `--flag` given in `values` (as flag_name=value) replaced."""
    out = list(argv)
    for flag, value in values.items():
        option = "--" + flag.replace("_", "-")
        out[out.index(option) + 1] = value
    return out


@contextlib.contextmanager
def looping(argv: list[str], *, log: Path) -> Iterator[None]:
    """`rollout ARGV` (this checkout's) as a real process for the block; SIGTERM, then its exit code 0."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with procs.running([sys.executable, "-m", "controller", *argv], log=log, env=env) as process:
        yield
        process.terminate()
        assert process.wait(timeout=60) == 0, procs.tail(log)


@pytest.mark.parametrize(
    ("host", "asked", "refused"),
    [("0.0.0.0", "127.0.0.1", None), ("127.0.0.2", "127.0.0.2", "127.0.0.1")],
    ids=["the-manifest's-0.0.0.0", "one-address-only"],
)
def test_rollout_run_with_the_manifests_arguments_answers_its_probes(
    tmp_path: Path, remote: Path, host: str, asked: str, refused: str | None
) -> None:
    rollout = container("rollout")
    port = net.free_port()
    argv = replaced(
        rollout["args"], interval="1s", metrics_port=str(port), metrics_host=host, workdir=str(tmp_path / "work")
    )
    path = rollout["livenessProbe"]["httpGet"]["path"]
    with looping([*argv, "--remote", str(remote)], log=tmp_path / "run.log"):
        url = f"http://{asked}:{port}{path}"
        net.wait_for(
            f"{url} to answer 200",
            lambda: httpx.get(url, timeout=2).status_code == 200,
            deadline=60,
            tolerate=(httpx.TransportError,),
        )
        if refused:
            with pytest.raises(httpx.ConnectError):
                httpx.get(f"http://{refused}:{port}{path}", timeout=2)


def test_the_scheduled_workflow_runs_where_rollout_runner_says() -> None:
    """A hosted runner cannot reach loopback routers: `vars.ROLLOUT_RUNNER` (JSON labels) picks a
    self-hosted one, and without it the job stays on a hosted runner (actionlint checks the expression:
    tests/github/test_workflows.py)."""
    job = YAML(typ="safe").load((ROOT / ".github/workflows/rollout-controller.yml").read_text())["jobs"]["reconcile"]
    assert job["runs-on"] == "${{ vars.ROLLOUT_RUNNER && fromJSON(vars.ROLLOUT_RUNNER) || 'ubuntu-latest' }}"
