"""What each router type carries to the request when a rollout's variants differ: the one table.

Pure, no adapters. The loader (`controller.load`) refuses a rollout whose stable and canary (or
previous) differ in a field its router cannot carry, so that `rollout validate`, `plan` and
`reconcile` never treat a change that would never be served as a rollout (a silent A/A test).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic.alias_generators import to_snake

from controller import spec


class Difference(StrEnum):
    """What can differ between two variants, named as the spec's fields are."""

    MODEL = "model"
    PROMPT = "prompt"
    PARAMS = "params"


@dataclass(frozen=True)
class How:
    """How a router type carries one difference: `via` says how it reaches the request; `needs` names
    the router setting (as spelt in controller.yaml) without which it does not, or None: always."""

    via: str
    needs: str | None = None
    why: str = ""  # what setting `needs` does, said in the refusal


_FLAG = "the application reads the variant's model, promptText and params from the flag it evaluates"
_UNLEASH = (
    "the application reads the variant's model, promptText and params from the JSON payload of the Unleash "
    "variant its SDK is served"
)
_FILE = "the application reads the variant's model, promptText and params from the routes file"
_BUNDLE = (
    "the router writes each variant's model, prompt text and params to its prompt bundle, and the component "
    "behind Envoy (`python -m controller.routers.envoy_prompts`) applies it by the headers each cluster adds"
)
_SERVICE = (
    "each role is a Kubernetes Service of its own (`<rollout>-<role>`), and the workload behind it serves that "
    "role's model, prompt and params"
)
_BUNDLE_WHY = (
    "with cdsPath: the router then writes each variant's prompt and params to that bundle, and "
    "controller.routers.envoy_prompts applies them behind Envoy"
)

#: router type -> difference -> how it is carried (a difference missing from a row is never carried).
TABLE: Mapping[str, Mapping[Difference, How]] = {
    "file": {d: How(_FILE) for d in Difference},
    "flagd": {d: How(_FLAG) for d in Difference},
    "unleash": {d: How(_UNLEASH) for d in Difference},
    "litellm": {
        Difference.MODEL: How("each role is a deployment of its own model"),
        Difference.PROMPT: How("the proxy's callback applies each deployment's system prompt"),
        Difference.PARAMS: How("the proxy's callback applies each deployment's params"),
    },
    "istio": {d: How(_SERVICE) for d in Difference},
    "gateway-api": {d: How(_SERVICE) for d in Difference},
    "envoy": {
        Difference.MODEL: How("each role's cluster points at the upstream of its model (upstreams)"),
        Difference.PROMPT: How(_BUNDLE, needs="promptsPath", why=_BUNDLE_WHY),
        Difference.PARAMS: How(_BUNDLE, needs="promptsPath", why=_BUNDLE_WHY),
    },
}


#: router type -> how it carries cohorts (a type missing here cannot: a rollout with cohorts is refused).
COHORTS: Mapping[str, str] = {
    "file": "each route's entry lists its cohorts (match and weights); the application picks the first that "
    "matches the request's attributes (`controller.routers.file.pick`)",
    "envoy": "`rollout render envoy` puts a route entry per cohort value ahead of the rollout's weighted route, "
    "matching the attribute's request header (`x-tenant-tier` for `tenant_tier`, or the router's cohortHeaders) "
    "exactly, with the same two clusters and its own runtime keys, which a write sets",
    "flagd": "the flag's targeting is an `if`: per cohort, the evaluation context's attribute `in` its values "
    "selects the cohort's own `fractional` split; everyone else gets the last one",
    "unleash": "each cohort is a pair of flexibleRollout strategies constrained to `<key> IN <values>`, before "
    "everyone's; the SDK serves a request the variant of the first strategy that matches its context",
}

#: router type -> why it cannot carry cohorts, where the router has a mechanism a user would reach for.
NO_COHORTS: Mapping[str, str] = {
    "litellm": "LiteLLM's tag routing (`enable_tag_filtering`, deployment `tags`) sends a request whose tags "
    "match two cohorts to both cohorts' deployments at once, a blend of their splits instead of the first "
    "cohort's (only deployment `order` could pick one, and it retries a failed request on the next cohort's "
    "deployments), and keeps untagged requests off the cohorts' deployments only through the `default` tag, "
    "which also takes every other deployment of the model group out of untagged traffic",
    "istio": "a cohort would be an HTTP route matching the attribute's header ahead of everyone's, which this "
    "router does not render yet",
    "gateway-api": "a cohort would be a rule matching the attribute's header ahead of everyone's, which this "
    "router does not render yet",
}


@dataclass(frozen=True)
class Refusal:
    """One difference a rollout's router cannot carry: where it is in the spec, and why."""

    loc: tuple[str | int, ...]  # e.g. ("spec", "canary", "prompt"), ("spec", "cohorts", 0, "match", "tier")
    message: str


def differences(a: spec.Variant, b: spec.Variant, *, prompt_a: str | None, prompt_b: str | None) -> list[Difference]:
    """What differs between two variants. Prompts compare by content (`prompt_a`, `prompt_b`: a digest
    of each prompt file, None for no prompt), not by path; params as the revision compares them."""
    out = []
    if a.model != b.model:
        out.append(Difference.MODEL)
    if prompt_a != prompt_b:
        out.append(Difference.PROMPT)
    if not spec.same_params(a.params, b.params):
        out.append(Difference.PARAMS)
    return out


def refusals(
    rollout: spec.RolloutSpec, name: str, router: spec.RouterConfig, *, prompts: Mapping[str, str]
) -> list[Refusal]:
    """Every difference between stable and canary, and between stable and previous, that `router` (the
    router named `name`) cannot carry. `prompts` maps a role to a digest of its prompt file's bytes."""
    out: list[Refusal] = []
    for role in ("canary", "previous"):
        other: spec.Variant | None = getattr(rollout, role)
        if other is None:
            continue
        found = differences(rollout.stable, other, prompt_a=prompts.get("stable"), prompt_b=prompts.get(role))
        for difference in found:
            why = _cannot(router, difference, rollout.stable, other)
            if why:
                out.append(Refusal(("spec", role, difference.value), f"router {name!r} ({router.type}) {why}"))
    if rollout.cohorts and router.type not in COHORTS:
        can = ", ".join(sorted(COHORTS))
        why = f": {NO_COHORTS[router.type]}" if router.type in NO_COHORTS else ""
        out.append(
            Refusal(
                ("spec", "cohorts"),
                f"router {name!r} ({router.type}) cannot route by cohort{why}; routers that can: {can}",
            )
        )
    if isinstance(router, spec.IstioRouterConfig | spec.GatewayApiRouterConfig):
        why = mesh_route_problem(rollout.route)
        if why:
            out.append(Refusal(("spec", "route"), f"router {name!r} ({router.type}): {why}"))
    if isinstance(router, spec.EnvoyRouterConfig):
        out += _upstreams(rollout, name, router)
        out += _cohort_headers(rollout, name, router)
    if isinstance(router, spec.LitellmRouterConfig):
        for role in ("stable", "canary", "previous"):
            variant: spec.Variant | None = getattr(rollout, role)
            bad = connection_params(variant.params) if variant is not None else []
            if bad:
                out.append(
                    Refusal(
                        ("spec", role, "params"),
                        f"router {name!r} (litellm): params {bad} say where the call goes or with which "
                        "credentials; only the router's `deployments` in controller.yaml may set them",
                    )
                )
            elif variant is not None and SILENT_MODEL in variant.params:
                out.append(
                    Refusal(
                        ("spec", role, "params"),
                        f"router {name!r} (litellm): params set {SILENT_MODEL!r}, which mirrors every request to "
                        "another model; only a rollout's shadow step mirrors (to its canary)",
                    )
                )
    return out


_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def mesh_route_problem(route: str) -> str:
    """Why `route` cannot name the Kubernetes object (and manifest file) a mesh router renders, or ''."""
    if len(route) > 253 or not _DNS_SUBDOMAIN.match(route):
        return (
            f"route {route!r} names the object the router renders, so it must be a DNS subdomain "
            "(lower-case letters, digits, '-' and '.', at most 253 characters)"
        )
    return ""


def _cannot(router: spec.RouterConfig, difference: Difference, stable: spec.Variant, other: spec.Variant) -> str:
    """Why `router` cannot carry `difference`, or '' when it can."""
    how = TABLE[router.type].get(difference)
    if how is None:
        return f"cannot carry a {difference} difference: keep the variants' {difference} the same"
    if how.needs is not None and _unset(router, how.needs):
        return (
            f"cannot carry a {difference} difference without {how.needs}: set {how.needs} on the router "
            f"({how.why}), or keep the variants' {difference} the same"
        )
    if difference is Difference.MODEL and isinstance(router, spec.EnvoyRouterConfig) and router.prompts_path is None:
        host = router.upstreams.get(stable.model)
        if host is not None and host == router.upstreams.get(other.model):
            return (
                f"cannot carry a model difference: upstreams send both {stable.model} and {other.model} to {host}, "
                "so both roles' clusters reach the same server with the same request; give each model its own "
                "upstream, or set promptsPath so that the request's model is set from the prompt bundle"
            )
    return ""


def _unset(router: spec.RouterConfig, setting: str) -> bool:
    return getattr(router, to_snake(setting), None) in (None, "")


def _upstreams(rollout: spec.RolloutSpec, name: str, router: spec.EnvoyRouterConfig) -> list[Refusal]:
    """An Envoy router sends each role to `upstreams[model]`: a model without an entry has no cluster.
    (The previous variant has no cluster on Envoy: its upstream may be gone.)"""
    out = []
    for role in ("stable", "canary"):
        variant: spec.Variant | None = getattr(rollout, role)
        if variant is not None and variant.model not in router.upstreams:
            known = ", ".join(sorted(router.upstreams)) or "none"
            out.append(
                Refusal(
                    ("spec", role, "model"),
                    f"router {name!r} (envoy) has no upstream for model {variant.model!r}, so no cluster can serve "
                    f"it: add it to the router's upstreams (host:port) in controller.yaml (known: {known})",
                )
            )
    return out


def _cohort_headers(rollout: spec.RolloutSpec, name: str, router: spec.EnvoyRouterConfig) -> list[Refusal]:
    """Envoy matches each cohort on its attribute's request header: a header Envoy may rewrite, or
    one that two attributes would share (so a request's cohort would depend on the other), is refused."""
    out = []
    seen: dict[str, str] = {}  # header -> the attribute it carries
    for i, cohort in enumerate(rollout.cohorts):
        header = router.cohort_header(cohort.key)
        why = spec.envoy_header_problem(header)
        other = seen.setdefault(header, cohort.key)
        if not why and other != cohort.key:
            why = f"header {header!r} already carries attribute {other!r}: give one of them its own in cohortHeaders"
        if why:
            out.append(
                Refusal(
                    ("spec", "cohorts", i, "match", cohort.key),
                    f"router {name!r} (envoy) matches attribute {cohort.key!r} on header {header!r}: {why}",
                )
            )
    return out


# -- LiteLLM: the weights must be honoured, and a variant's params must not reroute the call ----------

#: The only LiteLLM routing strategy that honours deployment weights (LiteLLM 1.106.2's default).
WEIGHTED = "simple-shuffle"
#: The litellm_param that mirrors a deployment's requests: the router sets it for shadow steps only.
SILENT_MODEL = "silent_model"

#: litellm_params that say where a call goes and with which credentials: controller.yaml's
#: `deployments` (reviewed with the controller) sets them, never a variant's params (a rollout PR),
#: which would otherwise send the proxy's provider key wherever the PR says.
CONNECTION = frozenset(
    {"api_base", "base_url", "api_key", "api_version", "organization", "custom_llm_provider", "headers",
     "extra_headers", "litellm_credential_name", "tenant_id", "client_id", "client_secret", "azure_ad_token",
     "azure_username", "azure_password", "vertex_project", "vertex_location", "vertex_credentials",
     "region_name", "input_cost_per_token", "output_cost_per_token"}
)  # fmt: skip
_CONNECTION_PREFIXES = ("aws_", "vertex_", "azure_", "watsonx_")


def connection_params(params: Mapping[str, Any]) -> list[str]:
    """The keys of a variant's params that only a router's `deployments` may set."""
    return sorted(k for k in params if k in CONNECTION or k.startswith(_CONNECTION_PREFIXES))


def strategy_problem(config: Any, *, routes: Sequence[str]) -> tuple[tuple[str | int, ...], str] | None:
    """Where a LiteLLM proxy config (parsed YAML) makes a model group in `routes` ignore weights, and
    why: (the key path in the config, the message); None when every route is routed by simple-shuffle.
    `router_settings.routing_strategy` (default simple-shuffle) applies unless a `routing_groups`
    entry (LiteLLM 1.106.2) claims the model group with its own strategy."""
    settings = config.get("router_settings") if isinstance(config, dict) else None
    settings = settings if isinstance(settings, dict) else {}
    claimed: dict[str, tuple[tuple[str | int, ...], str]] = {}
    for i, group in enumerate(settings.get("routing_groups") or []):
        if not isinstance(group, dict) or group.get("routing_strategy") == "priority":
            continue  # a priority group routes only calls to the group's own name
        for route in group.get("models") or []:
            claimed.setdefault(
                str(route),
                (("router_settings", "routing_groups", i, "routing_strategy"), str(group.get("routing_strategy"))),
            )
    top = settings.get("routing_strategy", WEIGHTED)
    for route in routes:
        path, strategy = claimed.get(route, (("router_settings", "routing_strategy"), str(top)))
        if strategy != WEIGHTED:
            where = ".".join(str(p) for p in path)
            return path, (
                f"model group {route!r} is routed by {where}: {strategy}, which ignores weights; a rollout on "
                f"a LiteLLM router needs {WEIGHTED!r} (LiteLLM's default)"
            )
    return None
