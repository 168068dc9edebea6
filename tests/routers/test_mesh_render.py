"""The mesh routers' manifests (routers.istio, routers.gateway_api): each split renders to an object that the
upstream CRD schemas accept, both the copy vendored in controller/routers/crds/ and the npm packages'
validators; the object reads back as the same split; a split the router cannot express is refused."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from controller import errors, spec, traffic
from controller.routers import gateway_api, istio, mesh
from tests.helpers import mesh as mesh_kit

ISTIO = spec.IstioRouterConfig.model_validate(
    {"type": "istio", "manifests": "deploy/istio", "namespace": "llm", "gateways": ["llm/edge"]}
)
GATEWAY = spec.GatewayApiRouterConfig.model_validate(
    {"type": "gateway-api", "manifests": "deploy/gw", "parentRefs": [{"name": "edge", "namespace": "infra"}]}
)

STATES = [
    pytest.param(traffic.RouteState({"stable": 100, "canary": 0}, shadow=100), id="shadow-100"),
    pytest.param(traffic.RouteState({"stable": 100, "canary": 0}, shadow=7), id="shadow-7"),
    pytest.param(traffic.RouteState({"stable": 95, "canary": 5}), id="weight-5"),
    pytest.param(traffic.RouteState({"stable": 0, "canary": 100}), id="weight-100"),
    pytest.param(traffic.RouteState({"stable": 100, "canary": 0, "previous": 0}), id="completed-previous-warm"),
    pytest.param(traffic.RouteState({"stable": 100}), id="no-canary"),
]


def render_istio(state: traffic.RouteState) -> dict[str, Any]:
    return istio.manifest("mesh", ISTIO, route="support-chat", rollout="support-bot", state=state)


def render_gateway(state: traffic.RouteState) -> dict[str, Any]:
    return gateway_api.manifest("gw", GATEWAY, route="support-chat", rollout="support-bot", state=state)


@pytest.mark.parametrize("state", STATES)
def test_every_split_renders_objects_the_upstream_validators_accept(state: traffic.RouteState) -> None:
    assert mesh_kit.upstream_errors([render_istio(state), render_gateway(state)]) == [
        None,
        None,
    ]  # skipped without node


@pytest.mark.parametrize("state", STATES)
def test_every_split_renders_valid_objects_that_read_back_as_written(state: traffic.RouteState) -> None:
    vs, hr = render_istio(state), render_gateway(state)
    assert istio.problems(vs) == []
    assert gateway_api.problems(hr) == []
    for back in (istio.state_of(vs, rollout="support-bot"), gateway_api.state_of(hr, rollout="support-bot")):
        assert back.same_traffic(state), back.describe()
        assert not back.others


def test_the_shapes_istio_and_gateway_api_document() -> None:
    state = traffic.RouteState({"stable": 95, "canary": 5}, shadow=10)
    http = render_istio(state)["spec"]["http"][0]
    assert [(r["destination"]["host"], r["weight"]) for r in http["route"]] == [
        ("support-bot-stable", 95),
        ("support-bot-canary", 5),
    ]
    assert http["mirror"] == {"host": "support-bot-canary", "port": {"number": 80}}
    assert http["mirrorPercentage"] == {"value": 10}
    rule = render_gateway(state)["spec"]["rules"][0]
    assert [(r["name"], r["weight"]) for r in rule["backendRefs"]] == [
        ("support-bot-stable", 95),
        ("support-bot-canary", 5),
    ]
    assert rule["filters"] == [
        {
            "type": "RequestMirror",
            "requestMirror": {"backendRef": {"name": "support-bot-canary", "port": 80}, "percent": 10},
        }
    ]
    # no shadow: no mirror at all, so the manifest stays the same shape the GitOps tool compares
    assert "mirror" not in render_istio(traffic.RouteState({"stable": 50, "canary": 50}))["spec"]["http"][0]
    assert "filters" not in render_gateway(traffic.RouteState({"stable": 50, "canary": 50}))["spec"]["rules"][0]


COHORT = traffic.CohortSplit("internal", "tenant_tier", ("internal",), 100)
REFUSED = [
    pytest.param(
        traffic.RouteState({"stable": 100, "canary": 0}, cohorts=(COHORT,)), "cannot route by cohort", id="cohorts"
    ),
    pytest.param(
        traffic.RouteState({"stable": 60, "canary": 20}, others={"hotfix": 20}), "no rollout manages", id="unmanaged"
    ),
]


@pytest.mark.parametrize(("state", "says"), REFUSED)
@pytest.mark.parametrize("render", [render_istio, render_gateway], ids=["istio", "gateway-api"])
def test_a_split_the_router_cannot_express_is_refused_naming_the_route(
    render: Any, state: traffic.RouteState, says: str
) -> None:
    with pytest.raises(errors.RouterError, match=says) as caught:
        render(state)
    assert "route 'support-chat'" in str(caught.value)


def test_a_state_with_unmanaged_variants_is_refused_before_its_weights_and_a_bad_route_name_too() -> None:
    # RouteState itself refuses weights that are no split for our own variants; a state with unmanaged
    # variants is the one that can carry them, and it is refused before its weights are looked at
    with pytest.raises(errors.RouterError, match=r"route 'x': variants no rollout manages \(o\)"):
        istio.manifest("mesh", ISTIO, route="x", rollout="r", state=traffic.RouteState({"stable": 0}, others={"o": 3}))
    with pytest.raises(errors.RouterError, match=r"route 'Bad_Route'.*DNS subdomain"):
        gateway_api.manifest("gw", GATEWAY, route="Bad_Route", rollout="r", state=traffic.RouteState({"stable": 100}))


def test_weight_rules_are_checked_even_when_the_schema_complains_too() -> None:
    vs = render_istio(traffic.RouteState({"stable": 95, "canary": 5}))
    vs["spec"]["http"][0]["route"][0]["weight"] = 0
    vs["spec"]["http"][0]["route"][1]["weight"] = 0
    vs["spec"]["http"][0]["timeout"] = 5  # a schema complaint (a string is due)
    found = istio.problems(vs)
    assert any("timeout" in p for p in found)
    assert "spec.http[0].route: every weight is 0, and istiod requires a total above 0" in found
    hr = render_gateway(traffic.RouteState({"stable": 95, "canary": 5}))
    for ref in hr["spec"]["rules"][0]["backendRefs"]:
        ref["weight"] = 0
    hr["spec"]["rules"][0]["timeouts"] = {"request": 5}
    found = gateway_api.problems(hr)
    assert any("timeouts" in p for p in found)
    assert "spec.rules[0].backendRefs: every weight is 0, so every request would fail" in found


def test_the_deprecated_mirror_percent_is_read() -> None:
    vs = render_istio(traffic.RouteState({"stable": 100, "canary": 0}, shadow=5))
    del vs["spec"]["http"][0]["mirrorPercentage"]
    vs["spec"]["http"][0]["mirrorPercent"] = 7
    assert istio.state_of(vs, rollout="support-bot").shadow == 7  # not 100, as if unset
    vs["spec"]["http"][0]["mirrorPercentage"] = {"value": 5}  # it wins where both are set, as in istiod
    assert istio.state_of(vs, rollout="support-bot").shadow == 5


def test_a_role_service_name_too_long_for_kubernetes_is_refused() -> None:
    with pytest.raises(errors.RouterError, match="not a DNS label of 63"):
        istio.manifest(
            "mesh", ISTIO, route="r", rollout="a" * 60, state=traffic.RouteState({"stable": 100, "canary": 0})
        )


def _broken(obj: dict[str, Any], path: list[str | int], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    node: Any = out
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return out


def test_the_upstream_validators_refuse_a_wrong_weight_and_take_relative_weights() -> None:
    vs = render_istio(traffic.RouteState({"stable": 95, "canary": 5}))
    hr = render_gateway(traffic.RouteState({"stable": 95, "canary": 5}))
    bad_vs_weight = _broken(vs, ["spec", "http", 0, "route", 1, "weight"], "5")
    bad_hr_weight = _broken(hr, ["spec", "rules", 0, "backendRefs", 1, "weight"], -1)
    upstream = mesh_kit.upstream_errors([bad_vs_weight, bad_hr_weight])  # skipped without node
    assert all(e is not None and "weight" in e for e in upstream), upstream
    assert mesh_kit.upstream_errors([_broken(vs, ["spec", "http", 0, "route", 1, "weight"], 6)]) == [None]


def test_the_schema_check_catches_what_the_api_server_and_istiod_would_refuse() -> None:
    vs = render_istio(traffic.RouteState({"stable": 95, "canary": 5}))
    hr = render_gateway(traffic.RouteState({"stable": 95, "canary": 5}))
    bad_vs_weight = _broken(vs, ["spec", "http", 0, "route", 1, "weight"], "5")
    bad_hr_weight = _broken(hr, ["spec", "rules", 0, "backendRefs", 1, "weight"], -1)
    # both copies of the upstream schema refuse a wrong type and a negative weight
    assert any("weight" in p for p in istio.problems(bad_vs_weight))
    assert any("weight" in p for p in gateway_api.problems(bad_hr_weight))
    # weights are relative since Istio 1.15 (istio/istio#39544): 95:6 is valid, only a total of 0 is not
    assert istio.problems(_broken(vs, ["spec", "http", 0, "route", 1, "weight"], 6)) == []
    none = _broken(vs, ["spec", "http", 0, "route", 1, "weight"], 0)
    none["spec"]["http"][0]["route"][0]["weight"] = 0
    assert istio.problems(none) == ["spec.http[0].route: every weight is 0, and istiod requires a total above 0"]
    assert istio.problems(_broken(vs, ["spec", "http", 0, "weights"], 1)) == [
        "spec.http[0].weights: unknown field (the API server would drop it)"
    ]
    zero = _broken(hr, ["spec", "rules", 0, "backendRefs", 0, "weight"], 0)
    zero["spec"]["rules"][0]["backendRefs"][1]["weight"] = 0
    assert gateway_api.problems(zero) == ["spec.rules[0].backendRefs: every weight is 0, so every request would fail"]
    assert any("parentRefs" in p or "apiVersion" in p for p in gateway_api.problems({**hr, "apiVersion": "v1"}))


READ_BACK = [
    pytest.param([1, 3], {"stable": 25, "canary": 75}, None, id="relative-1-3"),
    pytest.param([1, 2], None, "not a whole percent", id="relative-1-2-never-rounded"),
    pytest.param([0, 0], None, "weight is 0", id="all-zero"),
    pytest.param([None, None], {"stable": 50, "canary": 50}, None, id="default-weight-1"),
]


@pytest.mark.parametrize(("weights", "expected", "error"), READ_BACK)
def test_gateway_api_relative_weights_read_back_as_whole_percents_or_are_refused(
    weights: list[int | None], expected: dict[str, int] | None, error: str | None
) -> None:
    hr = render_gateway(traffic.RouteState({"stable": 50, "canary": 50}))
    for ref, w in zip(hr["spec"]["rules"][0]["backendRefs"], weights, strict=True):
        if w is None:
            del ref["weight"]
        else:
            ref["weight"] = w
    if error:
        with pytest.raises(ValueError, match=error):
            gateway_api.state_of(hr, rollout="support-bot")
    else:
        assert dict(gateway_api.state_of(hr, rollout="support-bot").weights) == expected


def test_read_back_names_unmanaged_destinations_and_refuses_a_fractional_mirror() -> None:
    vs = render_istio(traffic.RouteState({"stable": 90, "canary": 10}, shadow=5))
    vs["spec"]["http"][0]["route"][0]["weight"] = 70
    vs["spec"]["http"][0]["route"].append({"destination": {"host": "hotfix"}, "weight": 20})
    back = istio.state_of(vs, rollout="support-bot")
    assert (dict(back.weights), dict(back.others), back.shadow) == ({"stable": 70, "canary": 10}, {"hotfix": 20}, 5)
    vs["spec"]["http"][0]["mirrorPercentage"] = {"value": 0.5}
    with pytest.raises(ValueError, match="not a whole percent"):
        istio.state_of(vs, rollout="support-bot")
    hr = render_gateway(traffic.RouteState({"stable": 100, "canary": 0}, shadow=5))
    hr["spec"]["rules"][0]["filters"][0]["requestMirror"] = {
        "backendRef": {"name": "support-bot-canary", "port": 80},
        "fraction": {"numerator": 1, "denominator": 8},
    }
    with pytest.raises(ValueError, match="not a whole percent"):
        gateway_api.state_of(hr, rollout="support-bot")
    hr["spec"]["rules"][0]["filters"][0]["requestMirror"]["fraction"] = {"numerator": 1, "denominator": 4}
    assert gateway_api.state_of(hr, rollout="support-bot").shadow == 25


def test_service_names_map_back_to_roles() -> None:
    assert mesh.service("support-bot", "canary") == "support-bot-canary"
    for host in ("support-bot-canary", "support-bot-canary.llm", "support-bot-canary.llm.svc.cluster.local"):
        assert mesh.role_of("support-bot", "llm", host) == "canary"
    # the same name in another namespace is another Service, and a longer name another one too
    for host in ("support-bot-canary.other", "support-bot-canary.other.svc.cluster.local", "support-bot-canary-2"):
        assert mesh.role_of("support-bot", "llm", host) is None


def test_a_same_named_service_of_another_namespace_is_no_role() -> None:
    vs = render_istio(traffic.RouteState({"stable": 90, "canary": 10}))
    vs["spec"]["http"][0]["route"][1]["destination"]["host"] = "support-bot-canary.other.svc.cluster.local"
    assert dict(istio.state_of(vs, rollout="support-bot").others) == {"support-bot-canary.other.svc.cluster.local": 10}
    hr = render_gateway(traffic.RouteState({"stable": 90, "canary": 10}))
    hr["spec"]["rules"][0]["backendRefs"][1]["namespace"] = "other"
    assert dict(gateway_api.state_of(hr, rollout="support-bot").others) == {"support-bot-canary": 10}


REWEIGH = [
    pytest.param([("stable", 75), ("canary", 25)], {"stable": 100, "canary": 0}, [100, 0], id="ours-only-percents"),
    pytest.param(
        [("stable", 75), ("canary", 25), (None, 1)], {"stable": 100, "canary": 0}, [100, 0, 1], id="rollback-raw"
    ),
    pytest.param([("stable", 3), ("canary", 1), (None, 1)], {"stable": 80, "canary": 0}, [4, 0, 1], id="exact"),
    pytest.param(
        [("stable", 75), ("canary", 25), (None, 1)], {"stable": 95, "canary": 5}, [95, 5, 1], id="lower-floor"
    ),
    pytest.param([("stable", 75), ("canary", 25), (None, 1)], {"stable": 50, "canary": 50}, None, id="raise-refused"),
    pytest.param([("canary", 25), (None, 1)], {"stable": 100, "canary": 0}, None, id="no-stable-to-take-it"),
]


@pytest.mark.parametrize(("entries", "weights", "expected"), REWEIGH)
def test_reweigh_lowers_in_raw_units_and_never_rounds_a_raise(
    entries: list[tuple[str | None, int]], weights: dict[str, int], expected: list[int] | None
) -> None:
    others = {"o": 1} if any(role is None for role, _ in entries) else {}
    assert mesh.reweigh(entries, traffic.RouteState(weights, others=others)) == expected
