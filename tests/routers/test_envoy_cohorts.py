"""Envoy carries cohorts: the rendered header routes, the runtime keys a write sets, and a real Envoy
routing real requests by their headers at each cohort's weight (exactly, through the split header).
The contract every router keeps is tests/routers/test_contract_cohorts.py; the CLI's render is in
tests/routers/test_cli_envoy.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from controller import errors, load, repo, spec, traffic
from controller.routers import atomic, base, envoy, factory
from tests.helpers import envoy_proc, net, openai_standin
from tests.helpers.live_routers import ENVOY_COHORTS, ROLLOUTS, envoy_bootstrap
from tests.helpers.routes import read_one

S, C = traffic.STABLE, traffic.CANARY
ROUTE = "triage"
ROLLOUT = ROLLOUTS[ROUTE]
SPLIT = "x-test-split"
INTERNAL = traffic.CohortSplit("internal", "user_group", ("internal",), 100)
BETA = traffic.CohortSplit("beta", "tenant_tier", ("beta", "trial"), 50)


def state(canary: int, *cohorts: traffic.CohortSplit, shadow: int = 0) -> traffic.RouteState:
    return traffic.RouteState({S: 100 - canary, C: canary}, shadow, cohorts=cohorts)


def routes_of(bootstrap: dict[str, Any]) -> list[dict[str, Any]]:
    manager = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    routes: list[dict[str, Any]] = manager["route_config"]["virtual_hosts"][0]["routes"]
    return routes


def running(rollout: str = ROLLOUT) -> list[envoy.RunningCohort]:
    mirror = envoy.shadow_key("rollouts", rollout)
    return [envoy.RunningCohort(m, envoy.cohort_prefix("rollouts", rollout, m.name), mirror) for m in ENVOY_COHORTS]


# -- the rendered routes and the runtime keys, pure ---------------------------------------------------

MIRROR = {
    "default_value": {"numerator": 0, "denominator": "HUNDRED"},
    "runtime_key": "rollouts.ticket-triage.shadow",
}


def test_cohort_entries_come_first_one_per_value_on_the_same_clusters() -> None:
    config = envoy_bootstrap({ROUTE: {S: "127.0.0.1:1", C: "127.0.0.1:2"}}, cohorts=ENVOY_COHORTS)
    routes = routes_of(config)
    assert [r["name"] for r in routes] == [
        "ticket-triage/cohort/internal/0",
        "ticket-triage/cohort/beta/0",
        "ticket-triage/cohort/beta/1",
        "ticket-triage",
    ]
    assert [r["match"].get("headers") for r in routes] == [
        [{"name": "x-user-group", "string_match": {"exact": "internal"}}],
        [{"name": "x-tenant-tier", "string_match": {"exact": "beta"}}],
        [{"name": "x-tenant-tier", "string_match": {"exact": "trial"}}],
        None,
    ]
    assert {r["match"]["prefix"] for r in routes} == {"/triage/"}
    prefixes = [r["route"]["weighted_clusters"]["runtime_key_prefix"] for r in routes]
    assert prefixes == [
        "rollouts.ticket-triage.cohort.internal",
        "rollouts.ticket-triage.cohort.beta",
        "rollouts.ticket-triage.cohort.beta",
        "rollouts.ticket-triage",
    ]
    clusters = [[c["name"] for c in r["route"]["weighted_clusters"]["clusters"]] for r in routes]
    assert clusters == [["ticket-triage_stable", "ticket-triage_canary"]] * 4
    # every entry mirrors to the canary by the one shadow key: shadow is a share of every request
    mirrors = [r["route"]["request_mirror_policies"] for r in routes]
    assert mirrors == [[{"cluster": "ticket-triage_canary", "runtime_fraction": MIRROR}]] * 4
    # what a read takes from Envoy's route config gives back what was rendered
    assert envoy.running_cohorts([{"virtual_hosts": [{"routes": routes}]}]) == ({ROLLOUT: running()}, {})


@pytest.mark.parametrize(
    ("desired", "internal", "beta"),
    [
        (state(10), "10", "10"),
        (state(10, INTERNAL), "100", "10"),
        (state(5, INTERNAL, BETA), "100", "50"),
        (state(5, INTERNAL, BETA).lowered(), "0", "0"),
    ],
    ids=["none-open-follow-everyone", "internal-open", "both-open", "rollback"],
)
def test_every_cohort_named_gets_its_keys(desired: traffic.RouteState, internal: str, beta: str) -> None:
    values = envoy.runtime_values(desired, prefix="rollouts", rollout=ROLLOUT, cohorts=("internal", "beta"))
    canary = {
        name: values[f"rollouts.ticket-triage.cohort.{name}.ticket-triage_canary"] for name in ("internal", "beta")
    }
    stable = {
        name: values[f"rollouts.ticket-triage.cohort.{name}.ticket-triage_stable"] for name in ("internal", "beta")
    }
    assert canary == {"internal": internal, "beta": beta}
    assert all(int(stable[n]) + int(canary[n]) == 100 for n in canary)


def cohort_entries(name: str, stable: str, canary: str) -> dict[str, Any]:
    prefix = envoy.cohort_prefix("rollouts", ROLLOUT, name)
    return {
        f"{prefix}.ticket-triage_stable": {"final_value": stable},
        f"{prefix}.ticket-triage_canary": {"final_value": canary},
    }


def test_a_read_takes_the_match_from_envoy_and_the_weights_from_the_runtime() -> None:
    entries = {**cohort_entries("internal", "0", "100"), **cohort_entries("beta", "95", "5")}
    got = envoy.parse_state(entries, prefix="rollouts", rollout=ROLLOUT, where="t", cohorts=running())
    assert got.cohorts == (INTERNAL, traffic.CohortSplit("beta", "tenant_tier", ("beta", "trial"), 5))
    everyone = {
        envoy.weight_key("rollouts", ROLLOUT, S): {"final_value": "90"},
        envoy.weight_key("rollouts", ROLLOUT, C): {"final_value": "10"},
    }
    got = envoy.parse_state(entries | everyone, prefix="rollouts", rollout=ROLLOUT, where="t", cohorts=running())
    # beta at 5% is below everyone's 10%: read as it routes, its users get 5%
    assert got.cohorts == (INTERNAL, traffic.CohortSplit("beta", "tenant_tier", ("beta", "trial"), 5))
    fresh = envoy.parse_state({}, prefix="rollouts", rollout=ROLLOUT, where="t", cohorts=running())
    assert fresh == envoy.DEFAULTS  # no override (a restart): every cohort at the bootstrap's 100/0


def test_a_cohort_on_another_header_than_the_router_says_reads_as_another_attribute() -> None:
    entries = cohort_entries("beta", "50", "50")
    got = envoy.parse_state(
        entries, prefix="rollouts", rollout=ROLLOUT, where="t", cohorts=running(), headers={"tenant_tier": "x-tier"}
    )
    beta = got.cohorts[-1]  # internal, ahead of it, has no override: at everyone's weight
    assert beta.key == "tenant_tier (header x-tenant-tier)" and not got.same_traffic(state(0, BETA))


def test_a_cohort_split_that_is_not_one_is_the_route_s_error() -> None:
    with pytest.raises(errors.RouterStateError, match=r"cohort 'beta'.*not a split of 100"):
        envoy.parse_state(
            cohort_entries("beta", "60", "60"), prefix="rollouts", rollout=ROLLOUT, where="t", cohorts=running()
        )


def test_shadow_with_a_cohort_envoy_does_not_mirror_is_the_route_s_error() -> None:
    """A render from before cohorts were mirrored: at shadow above 0 the state would say every request
    is mirrored while Envoy mirrors everyone else's only; at shadow 0 it routes as the state says."""
    unmirrored = [envoy.RunningCohort(r.match, r.runtime_prefix) for r in running()]
    shadow = {envoy.shadow_key("rollouts", ROLLOUT): {"final_value": "100"}}
    with pytest.raises(errors.RouterStateError, match=r"mirrors none of cohort 'internal'.*render again"):
        envoy.parse_state(shadow, prefix="rollouts", rollout=ROLLOUT, where="t", cohorts=unmirrored)
    assert envoy.parse_state({}, prefix="rollouts", rollout=ROLLOUT, where="t", cohorts=unmirrored) == envoy.DEFAULTS
    got = envoy.parse_state(shadow, prefix="rollouts", rollout=ROLLOUT, where="t", cohorts=running())
    assert got == state(0, shadow=100)


def two_rollouts(*, hand_edit: bool) -> list[dict[str, Any]]:
    """Routes of `triage` (no cohorts) and `support-chat` (ENVOY_COHORTS), as `/config_dump` shows them;
    `hand_edit` adds a second header matcher to support-bot's first cohort entry."""
    specs = [
        envoy.RouteSpec(
            rollout=ROLLOUTS[route], route=route, upstreams={S: "127.0.0.1:9", C: "127.0.0.1:10"}, cohorts=c
        )
        for route, c in (("triage", ()), ("support-chat", ENVOY_COHORTS))
    ]
    config = envoy.bootstrap(specs, admin="http://127.0.0.1:0", listen="127.0.0.1:0", runtime_prefix="rollouts")
    routes = routes_of(config)
    if hand_edit:
        routes[1]["match"]["headers"].append({"name": "x-region", "string_match": {"exact": "eu"}})
    return [{"virtual_hosts": [{"routes": routes}]}]


def test_a_hand_edited_cohort_entry_is_its_rollout_s_problem_only() -> None:
    cohorts, broken = envoy.running_cohorts(two_rollouts(hand_edit=False))
    assert list(cohorts) == ["support-bot"] and broken == {}
    cohorts, broken = envoy.running_cohorts(two_rollouts(hand_edit=True))
    assert cohorts == {}
    assert list(broken) == ["support-bot"]
    assert (
        "'support-bot/cohort/internal/0'" in broken["support-bot"]
        and "matches 2 headers, not one" in broken["support-bot"]
    )


# -- a real Envoy with two real upstreams -------------------------------------------------------------


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[envoy_proc.Envoy]:
    """Envoy rendered with ENVOY_COHORTS ahead of the route, its clusters on a stable and a canary stand-in
    that answer their own name, and the split header that lets a request pick its bucket 0-99."""
    with openai_standin.standin(S, plain=True) as stable, openai_standin.standin(C, plain=True) as canary:
        config = envoy_bootstrap(
            {ROUTE: {S: stable.address, C: canary.address}}, split_header=SPLIT, cohorts=ENVOY_COHORTS
        )
        with envoy_proc.running_envoy(config, tmp_path) as running_proxy:
            yield running_proxy


def served_by_bucket(proxy: envoy_proc.Envoy, headers: dict[str, str]) -> dict[int, str]:
    """The upstream (its answer) that served one request per split bucket 0-99 with these headers."""
    with httpx.Client(base_url=proxy.url, timeout=10) as client:
        return {
            bucket: client.post(f"/{ROUTE}/v1/chat/completions", headers={SPLIT: str(bucket), **headers}, json={}).text
            for bucket in range(100)
        }


def split_at(canary: int) -> dict[int, str]:
    """What each bucket gets at this canary weight: the clusters are in order stable, canary."""
    return {bucket: S if bucket < 100 - canary else C for bucket in range(100)}


REQUESTS = {
    "no-header": ({}, "everyone"),
    "internal": ({"x-user-group": "internal"}, "internal"),
    "beta": ({"x-tenant-tier": "beta"}, "beta"),
    "trial-name-in-capitals": ({"X-Tenant-Tier": "trial"}, "beta"),  # header names match in any case
    "value-in-capitals": ({"x-tenant-tier": "Beta"}, "everyone"),  # values match exactly
    "another-group": ({"x-user-group": "external"}, "everyone"),
    "both-first-listed-wins": ({"x-tenant-tier": "beta", "x-user-group": "internal"}, "internal"),
}


@pytest.mark.slow
def test_requests_reach_the_canary_at_their_cohort_s_weight(proxy: envoy_proc.Envoy) -> None:
    router = envoy.EnvoyRouter("edge", proxy.admin, routes=ROLLOUTS)
    live = base.apply(router, {ROUTE: state(10, INTERNAL, BETA)}).state(ROUTE)
    assert live.cohorts == (INTERNAL, BETA)
    weight = {"everyone": 10, "internal": 100, "beta": 50}
    seen = {case: served_by_bucket(proxy, headers) for case, (headers, _) in REQUESTS.items()}
    assert seen == {case: split_at(weight[cohort]) for case, (_, cohort) in REQUESTS.items()}
    # a rollback takes the canary out of every cohort
    live = base.apply(router, {ROUTE: live.lowered()}).state(ROUTE)
    assert traffic.exposure_free(live)
    seen = {case: served_by_bucket(proxy, headers) for case, (headers, _) in REQUESTS.items()}
    assert seen == {case: split_at(0) for case in REQUESTS}


@pytest.mark.slow
def test_a_cohort_not_open_routes_as_everyone(proxy: envoy_proc.Envoy) -> None:
    """Only internal is open: beta's requests follow everyone's weight, whatever beta's keys held before."""
    router = envoy.EnvoyRouter("edge", proxy.admin, routes=ROLLOUTS)
    base.apply(router, {ROUTE: state(0, INTERNAL, BETA)}).state(ROUTE)
    live = base.apply(router, {ROUTE: state(25, INTERNAL)}).state(ROUTE)
    assert live.cohorts == (INTERNAL,)
    assert served_by_bucket(proxy, {"x-tenant-tier": "trial"}) == split_at(25)
    assert served_by_bucket(proxy, {"x-user-group": "internal"}) == split_at(100)


@pytest.mark.slow
def test_a_render_older_than_the_state_is_a_read_back_mismatch(tmp_path: Path) -> None:
    """Envoy runs a render from before beta was added (and before internal gained `staff`): the write
    cannot route them, the read back says so, and a rollback still confirms."""
    nowhere = "127.0.0.1:9"
    config = envoy_bootstrap({ROUTE: {S: nowhere, C: nowhere}}, cohorts=ENVOY_COHORTS[:1])
    with envoy_proc.running_envoy(config, tmp_path) as old:
        router = envoy.EnvoyRouter("edge", old.admin, routes=ROLLOUTS)
        with pytest.raises(errors.RouterVerifyError, match="read back"):
            base.apply(router, {ROUTE: state(0, INTERNAL, BETA)}).state(ROUTE)
        live = read_one(router, ROUTE)
        assert live is not None and live.cohorts == (INTERNAL,)
        wider = traffic.CohortSplit("internal", "user_group", ("internal", "staff"), 100)
        with pytest.raises(errors.RouterVerifyError, match="read back"):
            base.apply(router, {ROUTE: state(0, wider)}).state(ROUTE)
        # the router's config now carries user_group on another header than Envoy runs it on
        moved = envoy.EnvoyRouter("edge", old.admin, routes=ROLLOUTS, cohort_headers={"user_group": "x-group"})
        with pytest.raises(errors.RouterVerifyError, match=r"user_group \(header x-user-group\)"):
            base.apply(moved, {ROUTE: state(0, INTERNAL)}).state(ROUTE)
        assert traffic.exposure_free(base.apply(router, {ROUTE: state(0, INTERNAL).lowered()}).state(ROUTE))


@pytest.mark.slow
def test_a_canary_that_changes_leaves_every_cohort_first(tmp_path: Path) -> None:
    """With a CDS file, a write that repoints the canary's cluster first takes the canary to 0 in one
    call, in every cohort too: a cohort at 100% would otherwise reach the new canary before its weights."""
    specs = [
        envoy.RouteSpec(
            rollout=ROLLOUT, route=ROUTE, upstreams={S: "127.0.0.1:9", C: "127.0.0.1:10"}, cohorts=ENVOY_COHORTS
        )
    ]
    path = tmp_path / "cds" / "clusters.json"
    path.parent.mkdir()
    atomic.replace_json(path, envoy.cds(specs))
    config = envoy.bootstrap(
        specs, admin="http://127.0.0.1:0", listen="127.0.0.1:0", runtime_prefix="rollouts", cds_path=str(path)
    )
    models = {"acme/a": "127.0.0.1:9", "acme/b": "127.0.0.1:10", "acme/c": "127.0.0.1:11"}
    posts: list[httpx.Request] = []

    def record(request: httpx.Request) -> None:
        if request.url.path == "/runtime_modify":
            posts.append(request)

    with (
        envoy_proc.running_envoy(config, tmp_path / "run") as proxy,
        httpx.Client(timeout=5, event_hooks={"request": [record]}) as client,
    ):
        router = envoy.EnvoyRouter("edge", proxy.admin, routes=ROLLOUTS, upstreams=models, cds_path=path, client=client)
        served = {S: traffic.Served("acme/a"), C: traffic.Served("acme/b")}
        at = traffic.RouteState({S: 100, C: 0}, 0, served, cohorts=(INTERNAL,))
        base.apply(router, {ROUTE: at}).state(ROUTE)
        posts.clear()
        changed = traffic.RouteState({S: 100, C: 0}, 0, {**served, C: traffic.Served("acme/c")}, cohorts=(INTERNAL,))
        assert base.apply(router, {ROUTE: changed}).state(ROUTE).cohorts == (INTERNAL,)
        first = dict(httpx.QueryParams(posts[0].read().decode()))
        prefix = envoy.cohort_prefix("rollouts", ROLLOUT, "internal")
        assert first[f"{prefix}.ticket-triage_canary"] == "0" and first[f"{prefix}.ticket-triage_stable"] == "100"
        assert len(posts) == 2


@pytest.mark.slow
def test_a_cohort_s_canary_on_a_host_envoy_does_not_serve_is_refused(tmp_path: Path) -> None:
    """Without a CDS file: everyone's canary is at 0 but a cohort's is not, so the canary's cluster must
    serve the canary's model; it serves another, and nothing is written."""
    config = envoy_bootstrap({ROUTE: {S: "127.0.0.1:9", C: "127.0.0.1:10"}}, cohorts=ENVOY_COHORTS)
    models = {"acme/a": "127.0.0.1:9", "acme/b": "127.0.0.1:10", "acme/c": "127.0.0.1:11"}
    with envoy_proc.running_envoy(config, tmp_path) as proxy:
        router = envoy.EnvoyRouter("edge", proxy.admin, routes=ROLLOUTS, upstreams=models)
        served = {S: traffic.Served("acme/a"), C: traffic.Served("acme/c")}
        with pytest.raises(errors.RouterStateError, match=r"canary is now acme/c.*nothing was written"):
            router.write({ROUTE: traffic.RouteState({S: 100, C: 0}, 0, served, cohorts=(INTERNAL,))})
        assert router.overrides() == {}


@pytest.mark.slow
def test_a_hand_edited_cohort_entry_of_another_rollout_blocks_nothing_of_this_one(tmp_path: Path) -> None:
    """support-bot's first cohort entry was edited by hand (a second header matcher): its route reads as
    its own error, triage (no cohorts) reads and is written, rolled back too, whether or not the router was
    told the cohorts; only a write of support-chat by a router that must ask Envoy which it runs is refused."""
    specs = [
        envoy.RouteSpec(
            rollout=ROLLOUTS[route], route=route, upstreams={S: "127.0.0.1:9", C: "127.0.0.1:10"}, cohorts=c
        )
        for route, c in (("triage", ()), ("support-chat", ENVOY_COHORTS))
    ]
    config = envoy.bootstrap(specs, admin="http://127.0.0.1:0", listen="127.0.0.1:0", runtime_prefix="rollouts")
    routes_of(config)[1]["match"]["headers"].append({"name": "x-region", "string_match": {"exact": "eu"}})
    with envoy_proc.running_envoy(config, tmp_path) as proxy:
        told = envoy.EnvoyRouter("edge", proxy.admin, routes=ROLLOUTS, cohorts={"support-bot": ("internal", "beta")})
        asking = envoy.EnvoyRouter("edge", proxy.admin, routes=ROLLOUTS)
        for router in (told, asking):
            assert base.apply(router, {"triage": state(30)}).state("triage") == state(30)
            assert base.apply(router, {"triage": state(0)}).state("triage") == state(0)
            seen = router.read(["triage", "support-chat"])
            assert seen["triage"] == state(0)
            broken = seen["support-chat"]
            assert isinstance(broken, errors.RouterStateError) and broken.retryable is False
            assert "route 'support-chat'" in str(broken) and "matches 2 headers, not one" in str(broken)
        before = asking.overrides()
        with pytest.raises(errors.RouterStateError, match=r"route 'support-chat'.*nothing was written"):
            asking.write({"triage": state(5), "support-chat": state(0)})
        assert asking.overrides() == before
        told.write({"support-chat": state(0)})  # a rollback of the broken route needs no route listing
        key = envoy.cohort_prefix("rollouts", "support-bot", "internal") + ".support-bot_canary"
        assert told.overrides()[key] == "0"


class ConfigDumpDown(httpx.BaseTransport):
    """Envoy's admin as it answers when its config listing fails: 503 for `GET /config_dump`, every other
    call through to the real Envoy. Records each call."""

    def __init__(self) -> None:
        self.real = httpx.HTTPTransport()
        self.calls: list[tuple[str, str]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.calls.append((request.method, request.url.path))
        if request.url.path == "/config_dump":
            return httpx.Response(503, text="config dump unavailable")
        return self.real.handle_request(request)

    def close(self) -> None:
        self.real.close()


@pytest.mark.slow
def test_a_rollback_is_one_post_while_the_config_listing_fails(proxy: envoy_proc.Envoy) -> None:
    """internal at 100% and beta at 50%, then Envoy's `/config_dump` answers 503: the rollback (canary 0,
    no cohort listed) is the one `POST /runtime_modify`, and requests of every cohort reach stable only.
    The read back cannot list the cohorts, so it says Envoy is unavailable rather than confirm."""
    cohorts = {ROLLOUT: ("internal", "beta")}
    healthy = envoy.EnvoyRouter("edge", proxy.admin, routes=ROLLOUTS, cohorts=cohorts)
    base.apply(healthy, {ROUTE: state(10, INTERNAL, BETA)}).state(ROUTE)
    down = ConfigDumpDown()
    with httpx.Client(transport=down, timeout=5) as client:
        router = envoy.EnvoyRouter("edge", proxy.admin, routes=ROLLOUTS, cohorts=cohorts, client=client)
        applied = base.apply(router, {ROUTE: state(0)})
        assert down.calls[0] == ("POST", "/runtime_modify") and down.calls.count(("POST", "/runtime_modify")) == 1
        with pytest.raises(errors.RouterUnavailable, match=r"/config_dump answered 503"):
            applied.state(ROUTE)
        # a router not told the cohorts must ask Envoy which it runs: it writes nothing rather than half
        asking = envoy.EnvoyRouter("edge", proxy.admin, routes=ROLLOUTS, client=client)
        with pytest.raises(errors.RouterUnavailable, match=r"/config_dump answered 503"):
            asking.write({ROUTE: state(10, INTERNAL)})
    assert read_one(healthy, ROUTE) == state(0)
    seen = {case: served_by_bucket(proxy, headers) for case, (headers, _) in REQUESTS.items()}
    assert seen == {case: split_at(0) for case in REQUESTS}


@pytest.fixture
def mirrored(tmp_path: Path) -> Iterator[tuple[envoy_proc.Envoy, openai_standin.Standin]]:
    """Envoy rendered with ENVOY_COHORTS, and its canary stand-in (which counts what reaches it)."""
    with openai_standin.standin(S, plain=True) as stable, openai_standin.standin(C, plain=True) as canary:
        config = envoy_bootstrap({ROUTE: {S: stable.address, C: canary.address}}, cohorts=ENVOY_COHORTS)
        with envoy_proc.running_envoy(config, tmp_path) as running_proxy:
            yield running_proxy, canary


def mirrored_to(canary: openai_standin.Standin) -> list[str]:
    """The cohort header of each request mirrored to the canary (Envoy appends -shadow to its host name)."""
    return [
        seen.headers.get("x-user-group", "")
        for seen in canary.seen()
        if seen.headers["host"].rsplit(":", 1)[0].endswith("-shadow")
    ]


@pytest.mark.slow
def test_shadow_mirrors_a_cohort_s_requests_as_everyone_s(
    mirrored: tuple[envoy_proc.Envoy, openai_standin.Standin],
) -> None:
    """At shadow 100 a request in the internal cohort (its own route entry) is mirrored to the canary as
    one in no cohort is; at shadow 0 neither is (a marker request at 100 again is the only one more)."""
    proxy, canary = mirrored
    router = envoy.EnvoyRouter("edge", proxy.admin, routes=ROLLOUTS, cohorts={ROLLOUT: ("internal", "beta")})
    internal = {"x-user-group": "internal"}
    base.apply(router, {ROUTE: state(0, shadow=100)}).state(ROUTE)
    with httpx.Client(base_url=proxy.url, timeout=10) as client:
        for _ in range(5):
            assert client.get(f"/{ROUTE}/x", headers=internal).text == S
        assert client.get(f"/{ROUTE}/x").text == S
        net.wait_for("6 mirrored requests", lambda: len(mirrored_to(canary)) == 6)
        assert sorted(mirrored_to(canary)) == ["", *["internal"] * 5]
        base.apply(router, {ROUTE: state(0)}).state(ROUTE)
        for _ in range(5):
            assert client.get(f"/{ROUTE}/x", headers=internal).text == S
        base.apply(router, {ROUTE: state(0, shadow=100)}).state(ROUTE)
        client.get(f"/{ROUTE}/x", headers=internal).raise_for_status()
        net.wait_for("the marker at the canary", lambda: len(mirrored_to(canary)) >= 7)
    assert len(mirrored_to(canary)) == 7


# -- rollout validate: a rollout with cohorts on an Envoy router ---------------------------------------

CONFIG = """apiVersion: rollouts/v1
kind: ControllerConfig
routers:
  edge:
    type: envoy
    admin: http://127.0.0.1:9901
    upstreams: {{acme/a-2025: "127.0.0.1:8001", acme/b-2025: "127.0.0.1:8002"}}
{extra}"""

ROLLOUT_TEXT = """apiVersion: rollouts/v1
kind: Rollout
metadata: {{name: bot}}
spec:
  router: edge
  route: chat
  stable: {{model: acme/a-2025}}
  canary: {{model: acme/b-2025}}
  cohorts:
    - {{name: internal, match: {{user_group: internal}}}}
    - {{name: beta, match: {{{attribute}: [beta, trial]}}}}
  steps:
    - {{cohort: internal, weight: 100, for: 1d}}
    - {{weight: 100}}
"""


def load_repo(tmp_path: Path, *, extra: str = "", attribute: str = "tenant_tier") -> load.RepoSpec:
    (tmp_path / "rollouts" / "bot").mkdir(parents=True, exist_ok=True)
    (tmp_path / "rollouts" / "controller.yaml").write_text(CONFIG.format(extra=extra), "utf-8")
    (tmp_path / "rollouts" / "bot" / "rollout.yaml").write_text(ROLLOUT_TEXT.format(attribute=attribute), "utf-8")
    return load.load_repo(repo.WorkTree(tmp_path))


def test_a_rollout_with_cohorts_on_envoy_loads(tmp_path: Path) -> None:
    result = load_repo(tmp_path, extra="    cohortHeaders: {tenant_tier: X-Tier}\n")
    assert not result.problems and [r.name for r in result.rollouts] == ["bot"]
    assert result.config is not None
    edge = result.config.routers["edge"]
    assert isinstance(edge, spec.EnvoyRouterConfig)
    assert (edge.cohort_header("tenant_tier"), edge.cohort_header("user_group")) == ("x-tier", "x-user-group")


AT_HEADER = ("tenant_tier", "controller.yaml", 8, "routers.edge.cohortHeaders.tenant_tier")


@pytest.mark.parametrize(
    ("extra", "attribute", "path", "line", "field", "says"),
    [
        ("", "envoy_tier", "rollout.yaml", 11, "spec.cohorts[1].match.envoy_tier", "x-envoy-* namespace"),
        (
            "    cohortHeaders: {tenant_tier: x-user-group}\n",
            "tenant_tier",
            "rollout.yaml",
            11,
            "spec.cohorts[1].match.tenant_tier",
            "already carries attribute 'user_group'",
        ),
        ("    cohortHeaders: {tenant_tier: 'x tier'}\n", *AT_HEADER, "use an HTTP header name"),
        ("    cohortHeaders: {tenant_tier: ':path'}\n", *AT_HEADER, "use an HTTP header name"),
        ("    cohortHeaders: {tenant_tier: X-Envoy-Tier}\n", *AT_HEADER, "x-envoy-* namespace"),
    ],
    ids=["default-rule-in-envoy-namespace", "two-attributes-one-header", "space", "pseudo-header", "envoy-namespace"],
)
def test_a_header_envoy_cannot_route_by_is_refused_with_its_line(
    tmp_path: Path, extra: str, attribute: str, path: str, line: int, field: str, says: str
) -> None:
    result = load_repo(tmp_path, extra=extra, attribute=attribute)
    (problem,) = result.problems
    assert (Path(problem.file).name, problem.line) == (path, line), problem
    assert problem.field == field and says in problem.message, problem


def test_the_factory_tells_envoy_each_rollout_s_cohorts(tmp_path: Path) -> None:
    """What lets a write set every cohort's keys without asking Envoy which it runs."""
    result = load_repo(tmp_path)
    assert result.config is not None
    cohorts = load.rollout_cohorts(result, "edge")
    assert cohorts == {"bot": ("internal", "beta")}
    built = factory.build(
        "edge",
        result.config.routers["edge"],
        root=tmp_path,
        routes=load.route_rollouts(result, "edge"),
        cohorts=cohorts,
        env={},
    )
    assert isinstance(built, envoy.EnvoyRouter) and built.cohorts == cohorts
