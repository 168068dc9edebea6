"""The live mesh routers (routers.mesh.KubeRouter with routers.istio and routers.gateway_api) through the
official `kubernetes` client against a stand-in API server that checks every request and response
against the upstream schemas (tests/helpers/k8s_mesh_standin.py): a write is a server-side apply under
the controller's field manager that changes only the weights and the canary's mirror, read back."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controller import errors, spec, traffic
from controller.routers import base, factory, gateway_api, istio
from tests.helpers import k8s_standin, net
from tests.helpers.k8s_mesh_standin import APPLY, MeshServer, object_errors

ISTIO = spec.IstioRouterConfig.model_validate({"type": "istio", "manifests": "deploy/istio", "namespace": "llm"})
GATEWAY = spec.GatewayApiRouterConfig.model_validate(
    {"type": "gateway-api", "manifests": "deploy/gw", "namespace": "llm", "parentRefs": [{"name": "edge"}]}
)
SHADOW_THEN_5 = traffic.RouteState({"stable": 95, "canary": 5}, shadow=20)
ROUTES = {"support-chat": "support-bot"}


@pytest.fixture
def api(tmp_path: Path) -> Iterator[MeshServer]:
    with MeshServer(port=net.free_port()) as server:
        yield server
    assert server.violations == []
    # every write asks the API server to refuse, not drop, a field its CRD does not know
    assert all(r.query.get("fieldValidation") == ["Strict"] for r in server.patch_requests())


def build(api: MeshServer, tmp_path: Path, config: Any) -> base.Router:
    kubeconfig = k8s_standin.write_kubeconfig(tmp_path / "kubeconfig", server=api.url, token=api.token, namespace=None)
    return factory.build("mesh", config, root=tmp_path, routes=ROUTES, env={"KUBECONFIG": str(kubeconfig)})


KINDS = [
    pytest.param(ISTIO, istio, "virtualservices", id="istio"),
    pytest.param(GATEWAY, gateway_api, "httproutes", id="gateway-api"),
]


def ours(module: Any, config: Any, state: traffic.RouteState) -> dict[str, Any]:
    """The manifest `module` (istio or gateway_api) renders for the support-bot rollout's route at `state`."""
    return module.manifest("mesh", config, route="support-chat", rollout="support-bot", state=state)


def _without_split(obj: dict[str, Any]) -> dict[str, Any]:
    """The object less what a live write may change: weights, the canary's mirror, and the server's metadata."""
    out = copy.deepcopy(obj)
    for http in out["spec"].get("http") or []:
        http.pop("mirror", None)
        http.pop("mirrorPercentage", None)
        for r in http.get("route") or []:
            r.pop("weight", None)
    for rule in out["spec"].get("rules") or []:
        rule.pop("filters", None)
        for r in rule.get("backendRefs") or []:
            r.pop("weight", None)
    out["metadata"] = {k: v for k, v in out["metadata"].items() if k in ("name", "namespace", "labels")}
    return out


@pytest.mark.parametrize(("config", "module", "plural"), KINDS)
def test_a_rollback_is_applied_at_once_touching_only_weights_and_mirror(
    api: MeshServer, tmp_path: Path, config: Any, module: Any, plural: str
) -> None:
    manifest = ours(module, config, SHADOW_THEN_5)
    if module is istio:
        manifest["spec"]["http"][0]["timeout"] = "30s"  # a field of git's that the write must keep as it is
    api.seed(manifest)  # Argo CD applies git's manifest
    before = api.object(plural, "llm", "support-chat")
    router = build(api, tmp_path, config)
    assert router.read(["support-chat", "other"]) == {"support-chat": SHADOW_THEN_5, "other": None}

    lowered = SHADOW_THEN_5.lowered()  # what a rollback writes: canary 0, shadow off
    applied = base.apply(router, {"support-chat": lowered})
    assert applied.failed == {}
    assert applied.state("support-chat").describe() == "stable 100%, canary 0%"
    after = api.object(plural, "llm", "support-chat")
    assert before is not None and after is not None
    assert _without_split(after) == _without_split(before)  # every other field as git has it
    # one server-side apply under our field manager, forced (the GitOps tool owns the atomic list)
    [patch] = api.patch_requests()
    assert patch.content_type == APPLY
    assert patch.query["fieldManager"] == ["llm-rollouts"] and patch.query["force"] == ["true"]
    assert patch.body["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert set(patch.body) == {"apiVersion", "kind", "metadata", "spec"}
    listed = "http" if module is istio else "rules"
    assert set(patch.body["spec"]) == {listed}
    owners = api.owners(plural, "llm", "support-chat")
    assert owners["llm-rollouts"] == {("spec", listed)}
    assert ("spec", listed) not in owners["argocd-controller"] and owners["argocd-controller"]


@pytest.mark.parametrize(("config", "module", "plural"), KINDS)
def test_a_route_not_on_the_cluster_is_never_created(
    api: MeshServer, tmp_path: Path, config: Any, module: Any, plural: str
) -> None:
    router = build(api, tmp_path, config)
    with pytest.raises(errors.RouterError, match=r"never creates one; .*nothing was written"):
        router.write({"support-chat": traffic.RouteState({"stable": 100, "canary": 0})})
    assert api.object(plural, "llm", "support-chat") is None and list(api.patch_requests()) == []


def test_a_live_split_that_is_no_whole_percent_is_that_routes_error(api: MeshServer, tmp_path: Path) -> None:
    manifest = ours(gateway_api, GATEWAY, traffic.RouteState({"stable": 50, "canary": 50}))
    manifest["spec"]["rules"][0]["backendRefs"][1]["weight"] = 100  # 50:100 by hand: 33.3% / 66.7%
    api.seed(manifest, manager="kubectl")
    found = build(api, tmp_path, GATEWAY).read(["support-chat"])["support-chat"]
    # a RouterSplitError: the tick writes main's split over it, so a hand edit is healed
    assert isinstance(found, errors.RouterSplitError) and "not a whole percent" in str(found)


@pytest.mark.parametrize(("config", "module", "plural"), KINDS)
@pytest.mark.parametrize("hotfix", [False, True], ids=["ours-only", "with-unmanaged"])
def test_hand_edited_weights_of_our_entry_are_a_split_error_to_heal_unless_unmanaged_share_it(
    api: MeshServer, tmp_path: Path, config: Any, module: Any, plural: str, hotfix: bool
) -> None:
    manifest = ours(module, config, traffic.RouteState({"stable": 50, "canary": 50}))
    if module is istio:
        routes = manifest["spec"]["http"][0]["route"]
        routes[0]["weight"], routes[1]["weight"] = 1, 2  # 33.3% / 66.7%
        if hotfix:
            routes.append({"destination": {"host": "hotfix"}, "weight": 3})
    else:
        refs = manifest["spec"]["rules"][0]["backendRefs"]
        refs[0]["weight"], refs[1]["weight"] = 1, 2
        if hotfix:
            refs.append({"name": "hotfix", "port": 80, "weight": 3})
    api.seed(manifest, manager="kubectl")
    found = build(api, tmp_path, config).read(["support-chat"])["support-chat"]
    assert isinstance(found, errors.RouterStateError) and "not a whole percent" in str(found)
    # with a backend no rollout manages there, what our weights mean is not ours to say: only reported
    assert isinstance(found, errors.RouterSplitError) is not hotfix


def test_a_concurrent_edit_is_kept_and_the_split_applied_on_top_of_it(api: MeshServer, tmp_path: Path) -> None:
    manifest = ours(istio, ISTIO, SHADOW_THEN_5)
    api.seed(manifest)
    edited = copy.deepcopy(manifest)
    edited["spec"]["http"][0]["timeout"] = "5s"  # someone edits the same atomic list between our read and apply
    api.before_apply = lambda: (setattr(api, "before_apply", None), api.seed(edited, manager="kubectl"))
    router = build(api, tmp_path, ISTIO)
    router.write({"support-chat": SHADOW_THEN_5.lowered()})
    live = api.object("virtualservices", "llm", "support-chat")
    assert live is not None and live["spec"]["http"][0]["timeout"] == "5s"
    assert istio.state_of(live, rollout="support-bot").describe() == "stable 100%, canary 0%"
    first = next(api.patch_requests())
    assert first.body["metadata"]["resourceVersion"] != live["metadata"]["resourceVersion"]
    assert len(list(api.patch_requests())) == 2  # the stale apply (409), then one built from the object as it was


def test_an_object_that_keeps_changing_is_left_to_the_next_tick(api: MeshServer, tmp_path: Path) -> None:
    manifest = ours(istio, ISTIO, SHADOW_THEN_5)
    api.seed(manifest)
    hosts = iter(range(100))
    api.before_apply = lambda: api.seed(
        {**manifest, "spec": {**manifest["spec"], "hosts": [f"h{next(hosts)}.example.com"]}}, manager="kubectl"
    )
    router = build(api, tmp_path, ISTIO)
    with pytest.raises(
        errors.RouterUnavailable, match=r"409 \(changed meanwhile, 5 times: the next tick writes it again\)"
    ):
        router.write({"support-chat": SHADOW_THEN_5.lowered()})
    live = api.object("virtualservices", "llm", "support-chat")
    assert live is not None and istio.state_of(live, rollout="support-bot") == SHADOW_THEN_5  # nothing written


def test_an_unreachable_api_server_is_router_unavailable_and_no_client_exception_escapes(
    api: MeshServer, tmp_path: Path
) -> None:
    router = build(api, tmp_path, ISTIO)
    api.fail_with = 503
    with pytest.raises(errors.RouterUnavailable, match="HTTP 503"):
        router.read(["support-chat"])
    api.fail_with = None
    kubeconfig = k8s_standin.write_kubeconfig(
        tmp_path / "gone", server=f"http://127.0.0.1:{net.free_port()}", token="t", namespace=None
    )
    gone = factory.build("mesh", ISTIO, root=tmp_path, routes=ROUTES, env={"KUBECONFIG": str(kubeconfig)})
    with pytest.raises(errors.RouterUnavailable):
        gone.read(["support-chat"])


def test_a_rollback_is_never_refused_by_another_entrys_relative_weights(api: MeshServer, tmp_path: Path) -> None:
    # Istio >= 1.15 takes relative weights (istio/istio#39544): another team's 1:1 entry is valid, and must
    # not make the rollback of our entry fail
    manifest = ours(istio, ISTIO, traffic.RouteState({"stable": 75, "canary": 25}))
    legacy = {
        "name": "legacy",
        "match": [{"uri": {"prefix": "/v0"}}],
        "route": [
            {"destination": {"host": "legacy-a"}, "weight": 1},
            {"destination": {"host": "legacy-b"}, "weight": 1},
        ],
    }
    manifest["spec"]["http"].insert(0, legacy)
    api.seed(manifest)
    router = build(api, tmp_path, ISTIO)
    live = router.read(["support-chat"])["support-chat"]
    assert isinstance(live, traffic.RouteState) and live.describe() == "stable 75%, canary 25%"
    applied = base.apply(router, {"support-chat": live.lowered()})
    assert applied.failed == {} and applied.state("support-chat").describe() == "stable 100%, canary 0%"
    after = api.object("virtualservices", "llm", "support-chat")
    assert after is not None and after["spec"]["http"][0] == legacy


def test_a_rollback_is_written_in_raw_units_when_an_unmanaged_backend_shares_the_rule(
    api: MeshServer, tmp_path: Path
) -> None:
    manifest = ours(gateway_api, GATEWAY, traffic.RouteState({"stable": 75, "canary": 25}))
    manifest["spec"]["rules"][0]["backendRefs"].append({"name": "hotfix", "port": 80, "weight": 1})  # by hand
    api.seed(manifest, manager="kubectl")
    router = build(api, tmp_path, GATEWAY)
    found = router.read(["support-chat"])["support-chat"]
    assert isinstance(found, errors.RouterStateError) and "not a whole percent" in str(found)
    # the read cannot say the split in whole percents, but the rollback is still written, exactly
    router.write({"support-chat": traffic.RouteState({"stable": 100, "canary": 0})})
    live = api.object("httproutes", "llm", "support-chat")
    assert live is not None
    assert [(r["name"], r["weight"]) for r in live["spec"]["rules"][0]["backendRefs"]] == [
        ("support-bot-stable", 100),
        ("support-bot-canary", 0),
        ("hotfix", 1),
    ]


def test_a_lowering_with_an_unmanaged_backend_reads_back_exactly(api: MeshServer, tmp_path: Path) -> None:
    manifest = ours(gateway_api, GATEWAY, traffic.RouteState({"stable": 50, "canary": 50}))
    refs = manifest["spec"]["rules"][0]["backendRefs"]
    refs[0]["weight"], refs[1]["weight"] = 3, 1
    refs.append({"name": "hotfix", "port": 80, "weight": 1})
    api.seed(manifest, manager="kubectl")
    router = build(api, tmp_path, GATEWAY)
    live = router.read(["support-chat"])["support-chat"]
    assert isinstance(live, traffic.RouteState)
    assert live.describe() == "stable 60%, canary 20%; unmanaged: hotfix (weight 20)"
    applied = base.apply(router, {"support-chat": live.lowered()})
    assert applied.failed == {}
    assert applied.state("support-chat").describe() == "stable 80%, canary 0%; unmanaged: hotfix (weight 20)"
    after = api.object("httproutes", "llm", "support-chat")
    assert after is not None and [r["weight"] for r in after["spec"]["rules"][0]["backendRefs"]] == [4, 0, 1]


def test_a_field_an_older_crd_does_not_know_is_refused_not_silently_dropped(tmp_path: Path) -> None:
    # RequestMirror's `percent` is in the Gateway API's standard channel from v1.3 only: an older CRD would
    # drop it under the API server's default fieldValidation (Warn), leaving a mirror of every request
    older = {"HTTPRoute": ("spec.rules.filters.requestMirror.percent",)}
    with MeshServer(port=net.free_port(), without=older) as api:
        api.seed(ours(gateway_api, GATEWAY, traffic.RouteState({"stable": 100, "canary": 0})))
        router = build(api, tmp_path, GATEWAY)
        with pytest.raises(errors.RouterError, match=r"strict decoding error: .*requestMirror\.percent"):
            router.write({"support-chat": traffic.RouteState({"stable": 100, "canary": 0}, shadow=20)})
        live = api.object("httproutes", "llm", "support-chat")
        assert live is not None and "filters" not in live["spec"]["rules"][0]  # nothing mirrored
        [patch] = api.patch_requests()
        assert patch.query["fieldValidation"] == ["Strict"]
        # what the API server does without Strict, as the stand-in does too: the field is dropped
        body = {**patch.body, "metadata": {k: v for k, v in patch.body["metadata"].items() if k != "resourceVersion"}}
        warnings: list[str] = []
        code, answer = api.apply(
            "gateway.networking.k8s.io",
            "httproutes",
            "llm",
            "support-chat",
            body,
            manager="someone",
            force=True,
            validation="Warn",
            warnings=warnings,
        )
        assert code == 200 and answer["spec"]["rules"][0]["filters"][0]["requestMirror"] == {
            "backendRef": {"name": "support-bot-canary", "port": 80}
        }
        assert warnings and "requestMirror.percent" in warnings[0]


@pytest.mark.parametrize("theirs", ["mirror", "mirrors"])
def test_another_teams_mirror_is_kept_through_a_shadow_step_and_its_end(
    api: MeshServer, tmp_path: Path, theirs: str
) -> None:
    manifest = ours(istio, ISTIO, traffic.RouteState({"stable": 100, "canary": 0}))
    audit = {"host": "audit-log", "port": {"number": 9000}}
    if theirs == "mirror":
        manifest["spec"]["http"][0].update(mirror=audit, mirrorPercentage={"value": 50})
    else:
        manifest["spec"]["http"][0]["mirrors"] = [{"destination": audit, "percentage": {"value": 50}}]
    api.seed(manifest)
    router = build(api, tmp_path, ISTIO)
    shadow = traffic.RouteState({"stable": 100, "canary": 0}, shadow=20)
    applied = base.apply(router, {"support-chat": shadow})
    assert applied.failed == {} and applied.state("support-chat") == shadow
    live = api.object("virtualservices", "llm", "support-chat")
    assert live is not None
    http = live["spec"]["http"][0]
    assert "mirror" not in http and "mirrorPercentage" not in http  # istiod refuses mirror and mirrors both set
    assert http["mirrors"] == [
        {"destination": audit, "percentage": {"value": 50}},
        {"destination": {"host": "support-bot-canary", "port": {"number": 80}}, "percentage": {"value": 20}},
    ]
    applied = base.apply(router, {"support-chat": shadow.lowered()})
    assert applied.failed == {} and applied.state("support-chat").shadow == 0
    live = api.object("virtualservices", "llm", "support-chat")
    assert live is not None
    assert live["spec"]["http"][0]["mirrors"] == [{"destination": audit, "percentage": {"value": 50}}]


def test_the_standin_refuses_mirror_and_mirrors_both_set_as_istiod_does() -> None:
    vs = istio.manifest(
        "mesh", ISTIO, route="r", rollout="r", state=traffic.RouteState({"stable": 100, "canary": 0}, shadow=5)
    )
    vs["spec"]["http"][0]["mirrors"] = [{"destination": {"host": "audit-log"}}]
    assert "spec.http[0]: cannot contain both mirror and mirrors (istiod's webhook)" in object_errors(
        "VirtualService", istio.SCHEMA, vs
    )


def _with_a_side_door(module: Any, config: Any) -> dict[str, Any]:
    """Our route at canary 25%, and before it an entry of someone's that sends a header's requests to the
    canary's Service, and one that mirrors to it."""
    manifest = ours(module, config, traffic.RouteState({"stable": 75, "canary": 25}))
    if module is istio:
        manifest["spec"]["http"][:0] = [
            {
                "name": "beta",
                "match": [{"headers": {"x-beta": {"exact": "1"}}}],
                "route": [{"destination": {"host": "support-bot-canary", "port": {"number": 80}}}],
            },
            {
                "name": "audit",
                "match": [{"uri": {"prefix": "/audit"}}],
                "route": [{"destination": {"host": "support-bot-stable", "port": {"number": 80}}}],
                "mirror": {"host": "support-bot-canary.llm.svc.cluster.local"},
            },
        ]
    else:
        canary = {"name": "support-bot-canary", "port": 80}
        manifest["spec"]["rules"][:0] = [
            {
                "name": "beta",
                "matches": [{"headers": [{"name": "x-beta", "value": "1"}]}],
                "backendRefs": [canary],
            },
            {
                "name": "audit",
                "matches": [{"path": {"type": "PathPrefix", "value": "/audit"}}],
                "backendRefs": [{"name": "support-bot-stable", "port": 80}],
                "filters": [{"type": "RequestMirror", "requestMirror": {"backendRef": canary}}],
            },
        ]
    return manifest


@pytest.mark.parametrize(("config", "module", "plural"), KINDS)
def test_a_rollback_takes_the_canary_out_of_every_entry_and_the_read_names_one_that_reaches_it(
    api: MeshServer, tmp_path: Path, config: Any, module: Any, plural: str
) -> None:
    api.seed(_with_a_side_door(module, config))
    router = build(api, tmp_path, config)
    found = router.read(["support-chat"])["support-chat"]
    assert isinstance(found, errors.RouterStateError)
    assert "[0] ('beta') routes to support-bot-canary" in str(found)
    assert "[1] ('audit') mirrors to support-bot-canary" in str(found)
    applied = base.apply(router, {"support-chat": traffic.RouteState({"stable": 100, "canary": 0})})
    assert applied.failed == {}, applied.failed  # confirmed only because the canary is out everywhere
    live = api.object(plural, "llm", "support-chat")
    assert live is not None
    if module is istio:
        beta, audit = live["spec"]["http"][:2]
        assert [(r["destination"]["host"], r["weight"]) for r in beta["route"]] == [
            ("support-bot-canary", 0),
            ("support-bot-stable", 100),
        ]
        assert "mirror" not in audit and "mirrors" not in audit
    else:
        beta, audit = live["spec"]["rules"][:2]
        assert [(r["name"], r["weight"]) for r in beta["backendRefs"]] == [
            ("support-bot-canary", 0),
            ("support-bot-stable", 1),
        ]
        assert "filters" not in audit
