"""Router configuration generated from a valid rollouts repository: the Envoy bootstrap (with the
clusters file and prompt bundle it needs at start), LiteLLM's model_list or weights file, and the mesh
routes (Istio VirtualServices, Gateway API HTTPRoutes) that live in the repository itself.

Called by `rollout render` and the demo. It writes only the state files a router starts from, through
`routers.atomic`; the document itself is returned for the caller to print or save.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import LiteralScalarString

from controller import edits, errors, load, plan, spec, traffic
from controller.routers import atomic, envoy, gateway_api, istio, litellm


@dataclass(frozen=True)
class Rendered:
    text: str  # the document, with a header that says what rendered it
    wrote: tuple[tuple[Path, str], ...] = ()  # state files written beside it, each with what it is


def envoy_bootstrap(
    result: load.RepoSpec,
    name: str,
    config: spec.EnvoyRouterConfig,
    *,
    state: Path,
    split_header: str | None = None,
) -> Rendered:
    """The bootstrap of Envoy router `name`, and (when configured) its clusters file (`cdsPath`) and
    prompt bundle (`promptsPath`) written under `state`."""
    mine = [r for r in result.rollouts if r.rollout.spec.router == name]
    # A rollout with no canary yet still gets its canary cluster, route entry and mirror, serving what
    # stable serves at weight 0 and shadow 0: Envoy's static route cannot gain a cluster without a
    # restart, and the first canary must reach it through the CDS file like every later one.
    rollouts = [
        (
            r.name,
            r.rollout.spec.route,
            {
                traffic.STABLE: r.rollout.spec.stable.model,
                traffic.CANARY: (r.rollout.spec.canary or r.rollout.spec.stable).model,
            },
        )
        for r in mine
    ]
    served = {r.name: (r.rollout.spec.route, _with_canary_slot(plan.served(r))) for r in mine}
    # With a prompt bundle, each role's cluster tags its requests with the revision it serves.
    revisions = {rollout: {role: s.revision for role, s in roles.items()} for rollout, (_, roles) in served.items()}
    # Every cohort the spec names gets its entries, open or not: the static route config cannot gain one
    # without a restart, and one not open yet carries everyone's weights (the router writes them so).
    cohorts = {
        r.name: [
            envoy.CohortMatch(c.name, c.key, config.cohort_header(c.key), tuple(c.values))
            for c in r.rollout.spec.cohorts
        ]
        for r in mine
    }
    specs = envoy.route_specs(
        rollouts, upstreams=config.upstreams, revisions=revisions if config.prompts_path else None, cohorts=cohorts
    )
    cds_path = state / config.cds_path if config.cds_path else None
    document = envoy.bootstrap(
        specs,
        admin=config.admin,
        listen=config.listen,
        runtime_prefix=config.runtime_prefix,
        split_header=split_header,
        cds_path=str(cds_path) if cds_path else None,
    )
    # Envoy needs the clusters file (and the applier the prompt bundle) at start. Once they exist they are
    # live state, the router's alone: it rewrites them as roles change, lowering the canary first. A render
    # (of a branch, say) that rewrote them would put what it read live with no merged commit.
    files = []
    if cds_path is not None:
        files.append((cds_path, envoy.cds(specs), "the clusters Envoy loads and watches: cdsPath"))
    if config.prompts_path:  # what each revision serves, for the component behind Envoy (routers.envoy_prompts)
        files.append((state / config.prompts_path, envoy.bundle_update(None, served), "the prompt bundle: promptsPath"))
    wrote: list[tuple[Path, str]] = []
    for path, content, what in files:
        if path.exists():
            wrote.append((path, f"kept: {what}, live state the controller keeps; remove it to start afresh"))
            continue
        _write(path, content)
        wrote.append((path, what))
    text = f"# Envoy bootstrap for router {name!r}, rendered by `rollout render envoy`; do not edit.\n"
    return Rendered(text + atomic.to_yaml(document), tuple(wrote))


def litellm_config(
    result: load.RepoSpec,
    name: str,
    config: spec.LitellmRouterConfig,
    *,
    weights: bool = False,
    into: load.Document | None = None,
) -> Rendered:
    """LiteLLM router `name`'s model_list, router_settings and litellm_settings, or (`weights`) the
    callback's weights file. Given `into` (the proxy's config as it is), the result is that config
    with only what the render owns replaced (`merge_proxy_config`). Raises RouterError when the
    deployments cannot carry the rollouts."""
    groups = []
    for r in result.rollouts:
        if r.rollout.spec.router != name:
            continue
        desired = plan.desired_state(r)
        variants = ((traffic.STABLE, r.rollout.spec.stable), (traffic.CANARY, r.rollout.spec.canary))
        groups.append(
            litellm.GroupSpec(
                rollout=r.name,
                route=r.rollout.spec.route,
                models={role: v.model for role, v in variants if v},
                weights=dict(desired.weights),
                served={role: s for role, s in desired.served.items() if role in litellm.ROLES},
                shadow=desired.shadow,
            )
        )
    document: dict[str, Any] = {
        "model_list": litellm.model_list(groups, deployments=config.deployments),
        "router_settings": litellm.proxy_settings(),
        "litellm_settings": litellm.metrics_settings(),
    }
    if weights:
        return Rendered(
            json.dumps(litellm.weights_document(groups, deployments=config.deployments), indent=2, sort_keys=True)
            + "\n"
        )
    litellm.weights_document(groups, deployments=config.deployments)  # the same refusals as the weights file
    text = (
        f"# LiteLLM proxy config for router {name!r}. `rollout render litellm --out FILE` replaces our deployments,\n"
        f"# router_settings.routing_strategy and litellm_settings' metrics settings, and keeps every other key.\n"
        f"# litellm_settings loads the callback and LiteLLM's Prometheus metrics, with latency buckets fine\n"
        f"# enough for the latency gates (before `callbacks`, which builds the histograms). Start the proxy\n"
        f"# with $ROLLOUT_WEIGHTS_FILE set to the router's weightsFile ({config.weights_file}, relative to stateDir).\n"
        f"# router_settings.routing_strategy must stay {litellm.WEIGHTED}: no other strategy honours weights.\n"
    )
    if into is None:
        return Rendered(text + atomic.to_yaml(document))
    return Rendered(text + _without_header(edits.dump_yaml(merge_proxy_config(into, document))))


#: How the header of a rendered proxy config begins (and began before it said more), and how it ends.
HEADERS = ("# LiteLLM proxy config for router", "# LiteLLM model_list for router")
HEADER_END = "# router_settings.routing_strategy must stay"


def _without_header(text: str) -> str:
    """`text` without the header an earlier render wrote; comments of the config's own stay."""
    lines = text.splitlines(keepends=True)
    if not text.startswith(HEADERS):
        return text
    end = next((i for i, line in enumerate(lines) if line.startswith(HEADER_END)), -1)
    return "".join(lines[end + 1 :])


def merge_proxy_config(into: load.Document, rendered: dict[str, Any]) -> Any:
    """The proxy config `into` with the rendered document merged in: our deployments (by id) replaced
    where they stood (or appended), `router_settings.routing_strategy`, and in `litellm_settings` the
    latency buckets (kept before `callbacks`), our two callbacks added to the others, and
    `require_auth_for_metrics_endpoint` where the config does not say. Every other key (the master
    key, other model groups, a deployment no rollout manages) stays, comments and all."""
    doc = into.data
    if not isinstance(doc, CommentedMap):
        raise errors.RouterError(f"{into.path}: a LiteLLM proxy config is a mapping, got {type(doc).__name__}")
    for key in ("model_list", "router_settings", "litellm_settings"):
        found = doc.get(key)
        if found is None:
            doc[key] = CommentedSeq() if key == "model_list" else CommentedMap()
        elif not isinstance(found, list if key == "model_list" else dict):
            line = doc.lc.key(key)[0] + 1
            raise errors.RouterError(
                f"{into.path}:{line}: {key} must be a {'list' if key == 'model_list' else 'mapping'}"
            )
    ours = {d["model_info"]["id"] for d in rendered["model_list"]}
    models = doc["model_list"]
    at = [i for i, d in enumerate(models) if isinstance(d, dict) and (d.get("model_info") or {}).get("id") in ours]
    for i in reversed(at):
        del models[i]
    start = at[0] if at else len(models)
    for offset, deployment in enumerate(rendered["model_list"]):
        record = deployment["model_info"][litellm.INFO_KEY]
        if isinstance(record.get("system_prompt"), str) and "\n" in record["system_prompt"]:
            record["system_prompt"] = LiteralScalarString(record["system_prompt"])  # readable, as written
        models.insert(start + offset, deployment)
    doc["router_settings"].update(rendered["router_settings"])
    settings = doc["litellm_settings"]
    wanted = rendered["litellm_settings"]
    for key, value in wanted.items():
        if key == "callbacks":
            found = settings.get("callbacks")
            have = list(found) if isinstance(found, list) else ([found] if found else [])
            settings[key] = have + [c for c in value if c not in have]
        elif key == "prometheus_latency_buckets" and key not in settings and "callbacks" in settings:
            settings.insert(list(settings).index("callbacks"), key, value)
        elif key != litellm.METRICS_AUTH or key not in settings:
            settings[key] = value
    return doc


def _write(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic.locked(path):
        atomic.replace_json(path, data)


def _with_canary_slot(roles: dict[str, traffic.Served]) -> dict[str, traffic.Served]:
    """What each role serves, the canary's slot filled with stable's variant when there is no canary."""
    return {**roles, traffic.CANARY: roles.get(traffic.CANARY) or roles[traffic.STABLE]}


# -- mesh routes: manifests kept in the repository ----------------------------------------------

MeshConfig = spec.IstioRouterConfig | spec.GatewayApiRouterConfig


@dataclass(frozen=True)
class Manifest:
    """One mesh route's manifest as the repository must hold it."""

    path: str  # relative to the repository root: `<manifests>/<route>.yaml`
    source: str  # the rollout file it is rendered from
    route: str
    text: str  # the YAML, with a header that says what rendered it


def mesh_manifest(
    name: str, config: MeshConfig, loaded: load.LoadedRollout, state: traffic.RouteState | None = None
) -> Manifest:
    """The manifest of `loaded`'s route on mesh router `name` serving `state` (by default what the
    rollout file says: `plan.desired_state`). Raises RouterError, naming the route, when the split cannot
    be expressed exactly or the object fails the upstream CRD schema: nothing is rounded or half written."""
    route = loaded.rollout.spec.route
    state = state if state is not None else plan.desired_state(loaded)
    kind, obj, found = _mesh_object(name, config, loaded.name, route, state)
    if found:
        raise errors.RouterError(
            f"router {name!r} ({config.type}) route {route!r}: the rendered {kind} fails the upstream CRD schema: "
            + "; ".join(found[:5])
        )
    header = (
        f"# {kind} of route {route!r} on router {name!r}, rendered from {loaded.path} by `rollout render "
        f"{config.type}`;\n# the controller's pull requests keep it in step with the rollout. Do not edit by hand.\n"
    )
    return Manifest(f"{config.manifests.rstrip('/')}/{route}.yaml", loaded.path, route, header + atomic.to_yaml(obj))


def _mesh_object(
    name: str, config: MeshConfig, rollout: str, route: str, state: traffic.RouteState
) -> tuple[str, dict[str, Any], list[str]]:
    match config:
        case spec.IstioRouterConfig():
            obj = istio.manifest(name, config, route=route, rollout=rollout, state=state)
            return istio.KIND, obj, istio.problems(obj)
        case spec.GatewayApiRouterConfig():
            obj = gateway_api.manifest(name, config, route=route, rollout=rollout, state=state)
            return gateway_api.KIND, obj, gateway_api.problems(obj)


def mesh_manifests(result: load.RepoSpec, name: str, config: MeshConfig) -> list[Manifest]:
    """Every rollout's manifest on mesh router `name`, in file order; raises the first RouterError."""
    return [mesh_manifest(name, config, r) for r in result.rollouts if r.rollout.spec.router == name]


def mesh_problems(result: load.RepoSpec, read: Callable[[str], bytes | None]) -> list[errors.Problem]:
    """For `rollout validate`: each rollout on a mesh router whose manifest cannot be rendered (at its
    spec.route), and each manifest the repository holds that is not what its rollout renders (`read`
    gives a repository file's bytes, None when it is missing): the GitOps tool would apply other weights
    than the rollout file says."""
    assert result.config is not None
    out: list[errors.Problem] = []
    for name, config in result.config.routers.items():
        if not isinstance(config, MeshConfig):
            continue
        for r in result.rollouts:
            if r.rollout.spec.router != name:
                continue
            try:
                m = mesh_manifest(name, config, r)
            except errors.RouterError as exc:
                out.append(_at(r, ("spec", "route"), str(exc), "E009", read))
                continue
            held = read(m.path)
            if held is None or held.decode("utf-8", "replace") != m.text:
                what = "is missing" if held is None else "differs from what the rollout renders"
                out.append(
                    errors.Problem(
                        m.path,
                        0,
                        0,
                        "",
                        f"the {config.type} manifest of route {m.route!r} {what}: run `rollout render {config.type} "
                        f"{name}` and commit it with {m.source}",
                        "E010",
                    )
                )
    return out


def _at(
    r: load.LoadedRollout, loc: tuple[str, ...], message: str, code: str, read: Callable[[str], bytes | None]
) -> errors.Problem:
    data = read(r.path)
    line, column, found = load.locate(load.parse_yaml(r.path, data).data, loc) if data else (0, 0, list(loc))
    return errors.Problem(r.path, line, column, load.field_path(found), message, code)
