"""Router configuration generated from a valid rollouts repository: the Envoy bootstrap (with the
clusters file and prompt bundle it needs at start) and LiteLLM's model_list or weights file.

Called by `rollout render` and the demo. It writes only the state files a router starts from, through
`routers.atomic`; the document itself is returned for the caller to print or save.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller import load, plan, spec, traffic
from controller.routers import atomic, envoy, litellm


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
    rollouts = [
        (
            r.name,
            r.rollout.spec.route,
            {
                role: v.model
                for role, v in ((traffic.STABLE, r.rollout.spec.stable), (traffic.CANARY, r.rollout.spec.canary))
                if v
            },
        )
        for r in mine
    ]
    served = {r.name: (r.rollout.spec.route, plan.served(r)) for r in mine}
    # With a prompt bundle, each role's cluster tags its requests with the revision it serves.
    revisions = {rollout: {role: s.revision for role, s in roles.items()} for rollout, (_, roles) in served.items()}
    specs = envoy.route_specs(
        rollouts, upstreams=config.upstreams, revisions=revisions if config.prompts_path else None
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
    wrote: list[tuple[Path, str]] = []
    if cds_path is not None:
        # Envoy needs the clusters file at start; the router rewrites it as roles change models.
        _write(cds_path, envoy.cds(specs))
        wrote.append((cds_path, "the clusters Envoy loads and watches: cdsPath"))
    if config.prompts_path:
        # What each revision serves, for the component behind Envoy (controller.routers.envoy_prompts).
        bundle_path = state / config.prompts_path
        _write(bundle_path, envoy.bundle_update(None, served))
        wrote.append((bundle_path, "the prompt bundle: promptsPath"))
    text = f"# Envoy bootstrap for router {name!r}, rendered by `rollout render envoy`; do not edit.\n"
    return Rendered(text + atomic.to_yaml(document), tuple(wrote))


def litellm_config(
    result: load.RepoSpec, name: str, config: spec.LitellmRouterConfig, *, state: Path, weights: bool = False
) -> Rendered:
    """LiteLLM router `name`'s model_list and router_settings, or (`weights`) the callback's weights
    file. Raises RouterError when the deployments cannot carry the rollouts."""
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
        f"# LiteLLM model_list for router {name!r}, rendered by `rollout render litellm`; do not edit.\n"
        f"# litellm_settings loads the callback and LiteLLM's Prometheus metrics, with latency buckets fine\n"
        f"# enough for the latency gates (before `callbacks`, which builds the histograms); merge, do not drop.\n"
        f"# and ROLLOUT_WEIGHTS_FILE set to the router's weightsFile ({state / config.weights_file}).\n"
        f"# router_settings.routing_strategy must stay {litellm.WEIGHTED}: no other strategy honours weights.\n"
    )
    return Rendered(text + atomic.to_yaml(document))


def _write(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic.locked(path):
        atomic.replace_json(path, data)
