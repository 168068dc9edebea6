"""Build a router from its validated config: the one place that maps a router type to its backend.
Called by the CLI and the demo; an unknown type cannot reach here (the config is a discriminated union).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from controller import settings, spec
from controller.routers import base, envoy, flagd, gateway_api, istio, litellm, mesh, unleash
from controller.routers import file as file_router


def build(
    name: str,
    config: spec.RouterConfig,
    *,
    root: Path,
    routes: Mapping[str, str] | None = None,
    cohorts: Mapping[str, Sequence[str]] | None = None,
    env: Mapping[str, str],
    knobs: settings.Settings | None = None,
) -> base.Router:
    """One router from its config; its state paths resolve against `root` (the state directory).

    `routes` maps each route on this router to its rollout's name (Envoy names clusters and runtime
    keys after the rollout); `load.route_rollouts()` builds it from the loaded repo. `cohorts` maps each
    of those rollouts to its cohorts' names (`load.rollout_cohorts()`), so that Envoy writes every
    cohort's keys without asking which it runs; None (not told) makes it ask. `env` is where a
    LiteLLM master key and Unleash's API tokens are read (by the variables the config names), never logged,
    and where the mesh routers find the Kubernetes API (KUBERNETES_SERVICE_HOST in a pod, else $KUBECONFIG). `knobs` gives the
    admin APIs' timeouts (`settings.Timeouts`).
    """
    timeouts = (knobs or settings.Settings()).timeouts
    match config:
        case spec.FileRouterConfig():
            log = root / config.write_log if config.write_log else None
            return file_router.FileRouter(name, root / config.path, write_log=log)
        case spec.EnvoyRouterConfig():
            return envoy.EnvoyRouter(
                name,
                config.admin,
                routes=dict(routes or {}),
                runtime_prefix=config.runtime_prefix,
                upstreams=config.upstreams,
                cds_path=root / config.cds_path if config.cds_path else None,
                prompts_path=root / config.prompts_path if config.prompts_path else None,
                cohort_headers=config.cohort_headers,
                cohorts=cohorts,
                timeout=timeouts.envoy_admin,
                cds_timeout=timeouts.envoy_clusters,
            )
        case spec.FlagdRouterConfig():
            return flagd.FlagdRouter(name, root / config.path)
        case spec.LitellmRouterConfig():
            return litellm.LitellmRouter(
                name,
                config.url,
                routes=dict(routes or {}),
                weights_file=root / config.weights_file,
                master_key=env.get(config.master_key_env),
                deployments=config.deployments,
                apply_timeout=config.apply_timeout.total_seconds(),
                timeout=timeouts.litellm_admin,
            )
        case spec.UnleashRouterConfig():
            return unleash.UnleashRouter(
                name,
                config.url,
                admin_token=env.get(config.admin_token_env),
                client_token=env.get(config.client_token_env),
                project=config.project,
                environment=config.environment,
                stickiness=config.stickiness,
                apply_timeout=config.apply_timeout.total_seconds(),
                timeout=timeouts.unleash_api,
            )
        case spec.IstioRouterConfig():
            return istio.router(
                name, config, mesh.custom_objects(env), routes=dict(routes or {}), timeout=timeouts.kubernetes_api
            )
        case spec.GatewayApiRouterConfig():
            return gateway_api.router(
                name, config, mesh.custom_objects(env), routes=dict(routes or {}), timeout=timeouts.kubernetes_api
            )
