"""`rollout render envoy` and `rollout plan` against a real Envoy started from the rendered bootstrap."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from ruamel.yaml import YAML

from controller import cli, load, templates
from controller import plan as planning
from controller import repo as repo_tree
from controller.routers import base, envoy
from controller.routers import factory as router_factory
from tests.helpers import envoy_proc, examples, net, openai_standin
from tests.helpers.prom import prom_poll

EXAMPLES = examples.FIXTURE / "rollouts"
STABLE_MODEL = "acme/triage-llm-8b-2025-06-02"
CANARY_MODEL = "acme/triage-llm-8b-2025-09-15"


def set_admin(root: Path, admin: str) -> None:
    path = root / "rollouts" / "controller.yaml"
    lines = path.read_text("utf-8").splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip().startswith("admin: http"))
    lines[at] = f"    admin: {admin}"
    path.write_text("\n".join(lines) + "\n", "utf-8")


@pytest.fixture
def repo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Path, openai_standin.Standin, openai_standin.Standin]]:
    """The example repository with ticket-triage moved onto the Envoy router `edge`, whose
    upstreams are two live test servers, and whose admin and listener ports are 0; the router
    state (the CDS file) beside it."""
    root = tmp_path / "repo"
    monkeypatch.setenv("ROLLOUT_STATE_DIR", str(root))
    shutil.copytree(EXAMPLES, root / "rollouts")
    with openai_standin.standin("stable", plain=True) as stable, openai_standin.standin("canary", plain=True) as canary:
        config = root / "rollouts" / "controller.yaml"
        text = config.read_text("utf-8")
        text = text.replace("listen: 127.0.0.1:10000", "listen: 127.0.0.1:0")
        text = text.replace(f"{STABLE_MODEL}: 127.0.0.1:8001", f"{STABLE_MODEL}: {stable.address}")
        text = text.replace(f"{CANARY_MODEL}: 127.0.0.1:8002", f"{CANARY_MODEL}: {canary.address}")
        config.write_text(text, "utf-8")
        set_admin(root, "http://127.0.0.1:0")
        triage = root / "rollouts" / "ticket-triage" / "rollout.yaml"
        text = triage.read_text("utf-8").replace("router: local", "router: edge")
        text = text.replace(
            "model: acme/triage-llm-8b-2025-06-02\n    prompt: prompts/triage-v8.md",
            f"model: {CANARY_MODEL}\n    prompt: prompts/triage-v8.md",
        )
        triage.write_text(text, "utf-8")
        yield root, stable, canary


def render(root: Path) -> Path:
    out = root / "envoy.yaml"
    assert cli.main(["render", "envoy", "edge", "--repo", str(root), "--out", str(out)]) == 0
    return out


def plan(root: Path) -> dict[str, Any]:
    buffer = io.StringIO()
    cli.main(["plan", "--repo", str(root), "--format", "json"], out=buffer)
    document: dict[str, Any] = json.loads(buffer.getvalue())
    return next(r for r in document["rollouts"] if r["rollout"] == "ticket-triage")


@pytest.mark.slow
def test_rendered_bootstrap_validates(repo: tuple[Path, Any, Any]) -> None:
    path = render(repo[0])
    result = subprocess.run(
        [envoy_proc.ENVOY, "--mode", "validate", "-c", str(path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    bootstrap = YAML(typ="safe").load(path.read_text("utf-8"))
    assert bootstrap["stats_flush_interval"] == "1s"
    [route] = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"][
        "route_config"
    ]["virtual_hosts"][0]["routes"]
    assert route["match"] == {"prefix": "/triage/"}
    clusters = route["route"]["weighted_clusters"]
    assert clusters["runtime_key_prefix"] == "rollouts.ticket-triage"
    assert [c["name"] for c in clusters["clusters"]] == ["ticket-triage_stable", "ticket-triage_canary"]
    assert (
        route["route"]["request_mirror_policies"][0]["runtime_fraction"]["runtime_key"]
        == "rollouts.ticket-triage.shadow"
    )
    # The clusters come from the example's cdsPath, rendered beside the bootstrap, not from the bootstrap.
    cds_file = repo[0] / "envoy-clusters.json"
    assert "clusters" not in bootstrap["static_resources"]
    assert bootstrap["dynamic_resources"] == {
        "cds_config": {"resource_api_version": "V3", "path_config_source": {"path": str(cds_file)}}
    }
    hosts = {
        c["name"]: c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
        for c in json.loads(cds_file.read_text("utf-8"))["resources"]
    }
    assert {name: f"{a['address']}:{a['port_value']}" for name, a in hosts.items()} == {
        "ticket-triage_stable": repo[1].address,
        "ticket-triage_canary": repo[2].address,
    }


def test_render_names_an_unknown_router(repo: tuple[Path, Any, Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["render", "envoy", "local", "--repo", str(repo[0])]) == 2
    assert "not an Envoy router" in capsys.readouterr().err


@pytest.mark.slow
def test_plan_shows_drift_after_an_envoy_restart(repo: tuple[Path, Any, Any]) -> None:
    root, _, _ = repo
    bootstrap = YAML(typ="safe").load(render(root).read_text("utf-8"))
    with envoy_proc.running_envoy(bootstrap, root / "run1") as proxy:
        answer = httpx.post(f"{proxy.url}/triage/v1/chat/completions", json={}, timeout=10)
        assert (answer.text, answer.headers[envoy.VARIANT_HEADER]) == ("stable", "stable")
        # Envoy exports exactly the rendered latency bounds (two digits, 4-10% apart), once it has flushed
        bounds = prom_poll("the request's latency histogram", lambda: _latency_bounds(proxy.admin))
        assert bounds == [float(b) for b in templates.LATENCY_BUCKETS_MS]
        set_admin(root, proxy.admin)
        before = plan(root)
        assert before["drift"] and before["desired"]["shadow"] == 50 and before["live"]["shadow"] == 0
        router = router_factory.build("edge", _edge(root), root=root, routes={"triage": "ticket-triage"}, env={})
        loaded = load.load_repo(repo_tree.WorkTree(root)).rollout("ticket-triage")
        assert loaded is not None
        base.apply(router, {"triage": planning.desired_state(loaded)}).state("triage")
        assert not plan(root)["drift"]
    with envoy_proc.running_envoy(bootstrap, root / "run2") as restarted:
        set_admin(root, restarted.admin)
        after = plan(root)
        assert after["drift"]
        assert {k: after["live"][k] for k in ("weights", "shadow")} == {
            "weights": {"stable": 100, "canary": 0},
            "shadow": 0,
        }
        # With the example's promptsPath, the live state says what stable serves: its cluster's revision tag.
        assert after["live"]["served"]["stable"]["revision"] == after["desired"]["served"]["stable"]["revision"]
    set_admin(root, f"http://127.0.0.1:{net.free_port()}")
    buffer = io.StringIO()
    assert cli.main(["plan", "--repo", str(root), "--format", "json"], out=buffer) == 1  # unreachable: reported


def _edge(root: Path) -> Any:
    config = load.load_repo(repo_tree.WorkTree(root)).config
    assert config is not None
    return config.routers["edge"]


def _latency_bounds(admin: str) -> list[float] | None:
    """The `le` bounds of the stable cluster's upstream request time histogram, when Envoy has one."""
    text = httpx.get(f"{admin}/stats/prometheus", timeout=5).text
    found = re.findall(
        r'^envoy_cluster_upstream_rq_time_bucket\{envoy_cluster_name="ticket-triage_stable",le="([^"]+)"\}', text, re.M
    )
    return sorted(float(le) for le in found if le != "+Inf") or None


CANARY_BLOCK = "  canary:\n    model: {model}\n    prompt: prompts/triage-v8.md\n    params: {{temperature: 0}}\n"


@pytest.mark.slow
def test_a_first_canary_reaches_an_envoy_rendered_before_it_without_a_restart(repo: tuple[Path, Any, Any]) -> None:
    """`rollout init` leaves main with stable only, and the user renders and starts Envoy from that. The
    route must already hold the canary's slot (cluster, weight, mirror), so the first canary, merged
    later, gets its shadow traffic through the CDS file alone: no render, no restart."""
    root, _, canary = repo
    triage = root / "rollouts" / "ticket-triage" / "rollout.yaml"
    with_canary = triage.read_text("utf-8")
    block = CANARY_BLOCK.format(model=CANARY_MODEL)
    assert block in with_canary
    triage.write_text(with_canary.replace(block, ""), "utf-8")  # main before the first canary
    bootstrap = YAML(typ="safe").load(render(root).read_text("utf-8"))
    with envoy_proc.running_envoy(bootstrap, root / "run") as proxy:
        set_admin(root, proxy.admin)
        triage.write_text(with_canary, "utf-8")  # the first canary, merged
        router = router_factory.build("edge", _edge(root), root=root, routes={"triage": "ticket-triage"}, env={})
        loaded = load.load_repo(repo_tree.WorkTree(root)).rollout("ticket-triage")
        assert loaded is not None
        applied = base.apply(router, {"triage": planning.desired_state(loaded)}).state("triage")
        assert applied.shadow == 50, applied
        before = canary.requests
        for _ in range(40):
            answer = httpx.post(f"{proxy.url}/triage/v1/chat/completions", json={"messages": []}, timeout=10)
            assert answer.headers[envoy.VARIANT_HEADER] == "stable"
        prom_poll("the canary's mirrored requests", lambda: canary.requests - before >= 5 or None)


def test_a_render_never_rewrites_live_state(repo: tuple[Path, Any, Any], capsys: pytest.CaptureFixture[str]) -> None:
    """The CDS file and the prompt bundle are written once, for Envoy's start; after that they are the
    router's. A render of an unmerged change (here: a new stable prompt) keeps them as they are, so what
    it read never goes live without a merged commit."""
    root, _, _ = repo
    render(root)
    edge = _edge(root)
    live = {path: path.read_bytes() for path in (root / edge.cds_path, root / edge.prompts_path)}
    triage = root / "rollouts" / "ticket-triage" / "rollout.yaml"
    triage.write_text(triage.read_text("utf-8").replace("prompts/triage-v7.md", "prompts/triage-v8.md"), "utf-8")
    capsys.readouterr()
    render(root)
    assert {path: path.read_bytes() for path in live} == live
    assert f"kept {root / edge.cds_path}" in capsys.readouterr().err


COHORTS = "  cohorts:\n    - {name: internal, match: {user_group: internal}}\n    - {name: beta, match: {tenant_tier: [beta, trial]}}\n"
COHORT_STEP = "    - {cohort: internal, weight: 100, for: 1h}\n"


@pytest.mark.slow
def test_rendered_cohorts_route_by_header_on_a_real_envoy(repo: tuple[Path, Any, Any]) -> None:
    """A rollout whose first step opens `internal`: the render puts each cohort's header entries ahead
    of the weighted route (beta too, not open yet), Envoy starts from it, and the step's split routes
    internal users' requests to the canary while everyone else stays on stable."""
    root, _, _ = repo
    triage = root / "rollouts" / "ticket-triage" / "rollout.yaml"
    text = triage.read_text("utf-8").replace("  steps:\n", COHORTS + "  steps:\n" + COHORT_STEP)
    triage.write_text(text, "utf-8")
    config = root / "rollouts" / "controller.yaml"
    config.write_text(
        config.read_text("utf-8").replace("    cdsPath:", "    cohortHeaders: {tenant_tier: X-Tier}\n    cdsPath:"),
        "utf-8",
    )
    bootstrap = YAML(typ="safe").load(render(root).read_text("utf-8"))
    routes = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"][
        "route_config"
    ]["virtual_hosts"][0]["routes"]
    assert [(r["match"].get("headers"), r["route"]["weighted_clusters"]["runtime_key_prefix"]) for r in routes] == [
        ([{"name": "x-user-group", "string_match": {"exact": "internal"}}], "rollouts.ticket-triage.cohort.internal"),
        ([{"name": "x-tier", "string_match": {"exact": "beta"}}], "rollouts.ticket-triage.cohort.beta"),
        ([{"name": "x-tier", "string_match": {"exact": "trial"}}], "rollouts.ticket-triage.cohort.beta"),
        (None, "rollouts.ticket-triage"),
    ]
    assert all(r["match"]["prefix"] == "/triage/" for r in routes)
    # every entry, a cohort's too, mirrors `shadow` percent to the canary by the rollout's one shadow key
    mirrors = [r["route"]["request_mirror_policies"][0]["runtime_fraction"]["runtime_key"] for r in routes]
    assert mirrors == ["rollouts.ticket-triage.shadow"] * 4
    with envoy_proc.running_envoy(bootstrap, root / "run") as proxy:
        set_admin(root, proxy.admin)
        router = router_factory.build("edge", _edge(root), root=root, routes={"triage": "ticket-triage"}, env={})
        loaded = load.load_repo(repo_tree.WorkTree(root)).rollout("ticket-triage")
        assert loaded is not None
        applied = base.apply(router, {"triage": planning.desired_state(loaded)}).state("triage")
        assert [(c.name, c.canary) for c in applied.cohorts] == [("internal", 100)]
        for headers, variant in [
            ({"x-user-group": "internal"}, "canary"),
            ({}, "stable"),
            ({"x-tier": "beta"}, "stable"),  # beta is not open: it routes as everyone
            ({"X-User-Group": "Internal"}, "stable"),  # the name in any case, the value exactly
        ]:
            for _ in range(5):
                answer = httpx.post(f"{proxy.url}/triage/v1/chat/completions", headers=headers, json={}, timeout=10)
                assert (answer.text, answer.headers[envoy.VARIANT_HEADER]) == (variant, variant), headers
        assert not plan(root)["drift"]
