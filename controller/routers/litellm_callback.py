"""A LiteLLM proxy callback that applies the controller's weights file to the proxy's live router, and
puts each variant's system prompt and params into the requests its deployment serves (the copies
LiteLLM mirrors to a `silent_model` too: they are that deployment's requests).

Runs INSIDE the LiteLLM proxy (listed under `litellm_settings.callbacks`), never in the controller;
it imports nothing from `controller`, so it can also be copied next to the proxy's config.yaml.

Our deployments carry `model_info.rollout`: what the variant serves (`revision`, `params`,
`system_prompt`) and the `routing_strategy` the proxy routes their model group by, which the
controller reads back from `GET /model/info` (weights mean something only under `simple-shuffle`).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import os
import time
from collections.abc import Mapping
from typing import Any

from litellm.integrations.custom_logger import CustomLogger

FORMAT_VERSION = 2  # of the weights file; version 1 (weights only) is still read
VERSIONS = (1, 2)
ENV_PATH = "ROLLOUT_WEIGHTS_FILE"
ENV_INTERVAL = "ROLLOUT_WEIGHTS_INTERVAL"
#: Re-apply an unchanged file this often (seconds), healing a model list changed behind our back.
HEAL_EVERY = 5.0
#: `model_info` key of what our deployments serve; its presence marks a deployment as ours.
INFO_KEY = "rollout"
#: The one routing strategy under which LiteLLM honours `litellm_params.weight`.
WEIGHTED = "simple-shuffle"
#: The `litellm_params` key with which LiteLLM mirrors a deployment's requests to another (by its id).
SILENT_MODEL = "silent_model"
#: The `model_info` key that, false, keeps a deployment's model group out of `/v1/models` (LiteLLM 1.106.2).
DISCOVERABLE = "discoverable"
#: litellm_params a variant's params or the controller's connection params must not set.
RESERVED = frozenset({"model", "weight", SILENT_MODEL})


def shadow_group(group: str) -> str:
    """Where a mirrored deployment at weight 0 waits: out of its group, so LiteLLM never picks it for
    a user's request (a group whose weights are all 0, as when stable cools down, is split evenly);
    `silent_model` reaches it by id (the controller's litellm.shadow_group)."""
    return f"{group}:shadow"


log = logging.getLogger("rollout.weights")


class Refused(ValueError):
    """A request this proxy cannot serve as the rollout says (no messages to carry the system prompt)."""


def apply_groups(
    router: Any, groups: Mapping[str, Mapping[str, Any]], withdrawn: dict[str, dict[str, Any]]
) -> list[str]:
    """Give each listed deployment its weight and, when the entry says what it serves, its model,
    params, connection params and `model_info.rollout`; a weight of 0 takes the deployment out of the
    model list (kept in `withdrawn`, content and all, to be put back later), because LiteLLM splits
    evenly over deployments whose weights are all 0, which is what it would see if stable went into
    cooldown. A deployment the file names with what it serves but the proxy lacks (a rollout's first
    canary, after a config that had only stable) is built from a deployment of ours in the same group.
    A deployment of ours (it carries `model_info.rollout`) in a listed group that the file does not
    name is taken out, as at weight 0. Deployments without our marker (another team's, or one added
    by hand) are never touched.

    An entry `"mirrored": true` is shadow traffic: the deployment stays in the proxy even at weight 0
    (then in `shadow_group`), and every other deployment of ours in the group that takes traffic gets
    `silent_model` set to its id, so LiteLLM sends it a copy of each request it serves and returns
    only the original's answer; without one, our deployments' `silent_model` is removed.

    Synchronous on purpose: it runs on the proxy's event loop with no await, so no request ever sees
    a half-applied group. Returns the problems it skipped: a group with a deployment LiteLLM would
    refuse is left as it is, except that what lowers exposure is still applied: the deployments the
    file takes out go, and a deployment mirroring to any but the file's mirrored one loses its
    `silent_model` (before any deployment goes).
    """
    problems: list[str] = []
    for group, raw_entries in groups.items():
        try:
            parsed = {dep_id: _entry(entry) for dep_id, entry in raw_entries.items()}
        except (TypeError, ValueError) as exc:
            problems.append(f"group {group!r}: {exc}")
            continue
        entries = {dep_id: (weight, serves) for dep_id, (weight, serves, _) in parsed.items()}
        mirrored = sorted(dep_id for dep_id, (_, _, mirror) in parsed.items() if mirror)
        if not entries:
            problems.append(f"group {group!r}: no deployments")
            continue
        if len(mirrored) > 1:
            problems.append(f"group {group!r}: more than one deployment is mirrored to {mirrored}")
            continue
        silent = mirrored[0] if mirrored else None
        if sum(weight for weight, _ in entries.values()) <= 0:
            problems.append(f"group {group!r}: every weight is 0 (LiteLLM would split evenly); ignored")
            continue
        # one of ours the file does not name is taken out: a stale or partial file never leaves it serving
        entries.update((dep_id, (0, None)) for dep_id in _ours(router, group) if dep_id not in entries)
        current = {dep_id: _raw(router, dep_id) for dep_id in entries}
        template = _template(router, group, withdrawn)
        needed = {d for d, (w, _) in entries.items() if w > 0 or d == silent}  # kept in the proxy
        missing = [
            d
            for d, (w, serves) in entries.items()
            if d in needed and current[d] is None and d not in withdrawn and (serves is None or template is None)
        ]
        foreign = [
            d
            for d, raw in current.items()
            if raw is not None and raw.get("model_name") not in (group, shadow_group(group))
        ]
        if missing or foreign:
            problems.append(f"group {group!r}: unknown deployments {missing}, deployments of another group {foreign}")
            continue
        strategies = {name: routing_strategy(router, name) for name in (group, shadow_group(group))}
        wanted: dict[str, dict[str, Any]] = {}
        refused: list[str] = []
        for dep_id, (weight, serves) in entries.items():
            source = current[dep_id] or withdrawn.get(dep_id)
            if source is None and dep_id in needed and template is not None:
                source = _sibling(template, dep_id)  # a new canary: no re-render, no restart
            if source is None:
                continue  # weight 0 and never seen: nothing to take out
            home = shadow_group(group) if weight == 0 and dep_id == silent else group
            try:
                wanted[dep_id] = _deployment(
                    source,
                    weight=weight,
                    serves=serves,
                    strategy=strategies[home],
                    group=home,
                    silent=silent if weight > 0 and dep_id != silent else None,
                    hidden=home != group,
                )
                if dep_id in needed and wanted[dep_id] != current[dep_id]:
                    _check(wanted[dep_id])
            except Exception as exc:  # LiteLLM would refuse it, or drop it on upsert
                refused.append(f"{dep_id}: {_why(exc)}")
        if refused:
            # Leave the group as it is, except that what the file takes out still goes, and a mirror the
            # file does not name stops: lowering exposure never waits on the rest of the group.
            problems.append(f"group {group!r}: cannot build {refused}; only its removals are applied")
            removed = [d for d in entries if d not in needed and current[d] is not None]
            if not _keeps_traffic(router, group, set(removed)):
                removed = []
            for dep_id, found in current.items():  # the mirrors stop first: one may name what goes next
                if found is None or dep_id in removed:
                    continue
                mirrors = (found.get("litellm_params") or {}).get(SILENT_MODEL)
                if mirrors is not None and mirrors != silent:
                    try:
                        _upsert(router, _unmirrored(found), previous=found)
                    except Exception as exc:
                        problems.append(f"group {group!r}: LiteLLM refused {dep_id} without silent_model: {_why(exc)}")
            for dep_id in removed:
                withdrawn[dep_id] = current[dep_id] or {}
                router.delete_deployment(id=dep_id)
            continue
        # the mirrored deployment first (it is there before any silent_model names it), then additions and
        # increases, removals last: the group is never empty, even between statements
        for dep_id in sorted(entries, key=lambda d: (d != silent, -entries[d][0])):
            deployment = wanted.get(dep_id)
            if deployment is None:
                continue
            if dep_id in needed:
                withdrawn.pop(dep_id, None)
                if deployment != current[dep_id]:
                    try:
                        _upsert(router, deployment, previous=current[dep_id])
                    except Exception as exc:
                        problems.append(f"group {group!r}: LiteLLM refused {dep_id}: {_why(exc)}")
            else:
                withdrawn[dep_id] = deployment  # what it serves now, for when its weight rises again
                if current[dep_id] is not None:
                    router.delete_deployment(id=dep_id)
    return problems


def _unmirrored(deployment: Mapping[str, Any]) -> dict[str, Any]:
    """`deployment` as it is, except that it mirrors to no one (its `silent_model` removed)."""
    out = copy.deepcopy(dict(deployment))
    out.setdefault("litellm_params", {}).pop(SILENT_MODEL, None)
    return out


def _ours(router: Any, group: str) -> list[str]:
    """The ids of the deployments of `group` (or waiting in its shadow group) that carry our
    `model_info.rollout` marker."""
    out = []
    for entry in router.model_list:
        raw = entry if isinstance(entry, dict) else entry.model_dump(exclude_none=True)
        info = raw.get("model_info") or {}
        if raw.get("model_name") in (group, shadow_group(group)) and isinstance(info.get(INFO_KEY), dict):
            out.append(str(info.get("id")))
    return out


def _template(router: Any, group: str, withdrawn: Mapping[str, Mapping[str, Any]]) -> dict[str, Any] | None:
    """A deployment of ours in `group` (in the model list, else withdrawn) that a deployment the file
    names but the proxy lacks can be built from: the file then says its model, params and
    connection params, and the sibling gives whatever else the proxy's config set for the group."""
    for dep_id in _ours(router, group):
        found = _raw(router, dep_id)
        if found is not None:
            return found
    for deployment in withdrawn.values():
        if deployment.get("model_name") == group:
            return dict(deployment)
    return None


def _sibling(template: Mapping[str, Any], dep_id: str) -> dict[str, Any]:
    """`template` as deployment `dep_id`: its model_info is only the id and our marker (the rest of
    it, such as cost fields, describes the sibling's model)."""
    out = copy.deepcopy(dict(template))
    out["model_info"] = {"id": dep_id, INFO_KEY: dict((template.get("model_info") or {}).get(INFO_KEY) or {})}
    return out


def _why(exc: Exception) -> str:
    """An exception in one line, without the input values a validation error would quote (an api_key)."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        with contextlib.suppress(Exception):
            found = errors(include_input=False, include_url=False)
            return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in found)
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def _entry(entry: Any) -> tuple[int, Mapping[str, Any] | None, bool]:
    """(weight, what it serves or None, mirrored) of one deployment in the file: a bare weight
    (version 1) or `{"weight": N, "serves": {...}, "mirrored": true}`."""
    serves = None
    mirrored: Any = False
    if isinstance(entry, dict):
        serves = entry.get("serves")
        mirrored = entry.get("mirrored", False)
        entry = entry.get("weight")
        if serves is not None and (not isinstance(serves, dict) or not isinstance(serves.get("model"), str)):
            raise ValueError(f"'serves' must be an object with a 'model', got {serves!r}")
        if not isinstance(mirrored, bool):
            raise ValueError(f"'mirrored' must be true or false, got {mirrored!r}")
    if not isinstance(entry, int) or isinstance(entry, bool) or entry < 0:
        raise ValueError(f"weights must be whole numbers >= 0, got {entry!r}")
    return entry, serves, mirrored


def _deployment(
    source: Mapping[str, Any],
    *,
    weight: int,
    serves: Mapping[str, Any] | None,
    strategy: str,
    group: str | None = None,
    silent: str | None = None,
    hidden: bool = False,
) -> dict[str, Any]:
    """`source` (the deployment as the proxy has it, or as it was withdrawn) with this weight, in model
    group `group` (when given), mirroring its requests to deployment `silent` (none when None) and,
    when given, what the variant serves. Params the previous revision set and this one does not are
    removed; the connection params (api_base, api_key...) of the model are the controller's where it
    names them, else the deployment keeps its own. `hidden` (a canary waiting in `shadow_group`) sets
    `model_info.discoverable: false`, which keeps the group out of `/v1/models` for keys without admin
    view (it does not refuse a call to it); leaving the shadow group for `group` takes it off again."""
    out = copy.deepcopy(dict(source))
    info: dict[str, Any] = out.setdefault("model_info", {})
    if hidden:
        info[DISCOVERABLE] = False
    elif group is not None and out.get("model_name") == shadow_group(group):
        info.pop(DISCOVERABLE, None)  # ours, set while it waited
    if group is not None:
        out["model_name"] = group
    params: dict[str, Any] = out.setdefault("litellm_params", {})
    found = info.get(INFO_KEY)
    before: dict[str, Any] = found if isinstance(found, dict) else {}
    rollout = dict(before)
    if serves is not None:
        variant = dict(serves.get("params") or {})
        connection = {k: _resolve(k, v) for k, v in dict(serves.get("litellm_params") or {}).items()}
        bad = sorted((set(variant) | set(connection)) & RESERVED)
        if bad:
            raise ValueError(f"params must not set {bad}: the rollout owns them")
        for key in before.get("params") or {}:
            params.pop(key, None)
        params.update(connection)
        params.update(variant)
        params["model"] = serves["model"]
        rollout = {
            "revision": str(serves.get("revision") or ""),
            "params": variant,
            "system_prompt": serves.get("system_prompt"),
        }
    rollout["routing_strategy"] = strategy
    info[INFO_KEY] = rollout
    params["weight"] = weight
    if silent is None:
        params.pop(SILENT_MODEL, None)
    else:
        params[SILENT_MODEL] = silent
    return out


def _resolve(key: str, value: Any) -> Any:
    """`os.environ/NAME` as the proxy reads its config.yaml; the value is never logged."""
    if isinstance(value, str) and value.startswith("os.environ/"):
        name = value.removeprefix("os.environ/")
        if name not in os.environ:
            raise ValueError(f"litellm_params.{key} names the environment variable {name}, which is not set")
        return os.environ[name]
    return value


def _check(deployment: Mapping[str, Any]) -> None:
    """Raise what LiteLLM would raise on adding this deployment (its upsert takes the old one out
    first, so a refused deployment would leave the group without it)."""
    import litellm
    from litellm.types.router import Deployment

    built = Deployment(**copy.deepcopy(dict(deployment)))
    params = built.litellm_params
    litellm.get_llm_provider(
        model=params.model, custom_llm_provider=params.custom_llm_provider, api_base=params.api_base
    )


def _keeps_traffic(router: Any, group: str, leaving: set[str]) -> bool:
    """Some deployment of `group` with a weight above 0 stays when `leaving` go."""
    for entry in router.model_list:
        raw = entry if isinstance(entry, dict) else entry.model_dump(exclude_none=True)
        dep_id = str((raw.get("model_info") or {}).get("id"))
        weight = (raw.get("litellm_params") or {}).get("weight")
        if raw.get("model_name") == group and dep_id not in leaving and isinstance(weight, (int, float)) and weight > 0:
            return True
    return False


def _upsert(router: Any, deployment: dict[str, Any], *, previous: Mapping[str, Any] | None = None) -> None:
    """`upsert_deployment`; if LiteLLM refuses the new one after taking the old one out, the old one
    goes back, and the refusal is raised."""
    from litellm.types.router import Deployment

    try:
        router.upsert_deployment(Deployment(**copy.deepcopy(deployment)))
    except Exception:
        dep_id = (deployment.get("model_info") or {}).get("id")
        if previous is not None and router.get_deployment(model_id=dep_id) is None:
            router.add_deployment(Deployment(**copy.deepcopy(dict(previous))))
        raise


def _raw(router: Any, dep_id: str) -> dict[str, Any] | None:
    index = router.model_id_to_deployment_index_map.get(dep_id)
    if index is None:
        return None
    entry = router.model_list[index]
    found: dict[str, Any] = entry if isinstance(entry, dict) else entry.model_dump(exclude_none=True)
    return found


def routing_strategy(router: Any, group: str) -> str:
    """The strategy the proxy picks a deployment of `group` by: the router's own, or that of the
    routing group that claims the model group (LiteLLM 1.106.2's `routing_groups`); the name of a
    custom strategy (such as `lar1`) that replaced the router's deployment choice for every group."""
    if "async_get_available_deployment" in vars(router) or "get_available_deployment" in vars(router):
        name = _strategy_name(getattr(router, "routing_strategy", None))
        return name if name and name != WEIGHTED else "custom"
    try:
        strategy, _selector = router._get_routing_context(group)
    except Exception:  # another LiteLLM: the router-wide setting
        strategy = getattr(router, "routing_strategy", None)
    return _strategy_name(strategy) or "unknown"


def _strategy_name(strategy: Any) -> str:
    value = getattr(strategy, "value", strategy)
    return value if isinstance(value, str) else ""


def stamp(router: Any) -> int:
    """Record in each of our deployments (`model_info.rollout`) the routing strategy of its model
    group, where it changed; the controller reads it back. Returns how many deployments changed."""
    changed = []
    strategies: dict[str, str] = {}
    for index in range(len(router.model_list)):
        entry = router.model_list[index]
        raw: dict[str, Any] = entry if isinstance(entry, dict) else entry.model_dump(exclude_none=True)
        rollout = (raw.get("model_info") or {}).get(INFO_KEY)
        if not isinstance(rollout, dict):
            continue
        group = str(raw.get("model_name"))
        strategy = strategies.setdefault(group, routing_strategy(router, group))
        if rollout.get("routing_strategy") != strategy:
            updated = copy.deepcopy(raw)
            updated["model_info"][INFO_KEY]["routing_strategy"] = strategy
            changed.append(updated)
    for deployment in changed:
        _upsert(router, deployment, previous=_raw(router, deployment["model_info"]["id"]))
    return len(changed)


def served_request(kwargs: dict[str, Any]) -> dict[str, Any] | None:
    """The request as the deployment LiteLLM chose serves it: the variant's params over the request's
    own, and its system prompt as the first message (before any the client sent, as LiteLLM's prompt
    management does). None when the deployment is not ours or serves nothing to add. Raises Refused
    when the deployment has a system prompt and the request has no messages to carry it (a call
    that is not a chat completion): serving it without the prompt would be the wrong variant."""
    rollout = _rollout_of(kwargs)
    if rollout is None:
        return None
    params = rollout.get("params")
    prompt = rollout.get("system_prompt")
    if not params and not prompt:
        return None
    out = dict(kwargs)
    if isinstance(params, dict):
        out.update(params)
    if isinstance(prompt, str) and prompt:
        messages = out.get("messages")
        if not isinstance(messages, list):
            raise Refused("this deployment serves a system prompt, which only a chat completion's messages can carry")
        out["messages"] = [{"role": "system", "content": prompt}, *messages]
    return out


def _rollout_of(kwargs: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """`model_info.rollout` of the deployment LiteLLM chose: first where the router records it (the
    request's metadata, which it overwrites), then the top-level copy."""
    metadata = [kwargs.get(key) for key in ("metadata", "litellm_metadata")]
    for info in (*(m.get("model_info") for m in metadata if isinstance(m, dict)), kwargs.get("model_info")):
        if isinstance(info, dict) and isinstance(info.get(INFO_KEY), dict):
            found: Mapping[str, Any] = info[INFO_KEY]
            return found
    return None


def read_groups(path: str) -> dict[str, dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict) or data.get("version") not in VERSIONS or not isinstance(data.get("groups"), dict):
        raise ValueError(f"{path}: expected {{'version': {FORMAT_VERSION}, 'groups': {{...}}}}")
    groups: dict[str, dict[str, Any]] = data["groups"]
    if not all(isinstance(g, dict) for g in groups.values()):
        raise ValueError(f"{path}: every group must be an object of deployments")
    return groups


class WeightsWatcher(CustomLogger):  # type: ignore[misc]
    """Polls the weights file (by mtime and size) on the proxy's event loop and applies changes; an
    unchanged file is applied again every `heal_every` seconds (a no-op when nothing drifted). Every
    poll also stamps our deployments with their group's routing strategy. As a callback, it puts
    each variant's system prompt and params into the requests its deployment serves."""

    def __init__(
        self, path: str | None = None, *, interval: float | None = None, heal_every: float = HEAL_EVERY
    ) -> None:
        super().__init__()
        self.path = path or os.environ.get(ENV_PATH, "")
        self.interval = interval or float(os.environ.get(ENV_INTERVAL, "0.2"))
        self.heal_every = heal_every
        self.withdrawn: dict[str, dict[str, Any]] = {}
        self._seen: tuple[int, int] | None = None
        self._applied = 0.0
        self._task: asyncio.Task[None] | None = None
        with contextlib.suppress(RuntimeError):  # no running loop: started by the first hook instead
            self.start(asyncio.get_running_loop())

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._task is None:
            self._task = loop.create_task(self._run(), name="rollout-weights")

    async def async_pre_call_hook(self, *args: Any, **kwargs: Any) -> None:
        self.start(asyncio.get_running_loop())

    async def async_pre_call_deployment_hook(self, kwargs: dict[str, Any], call_type: Any) -> dict[str, Any] | None:
        """Runs after LiteLLM chose the deployment, before the request is sent to it."""
        return served_request(kwargs)

    async def _run(self) -> None:
        while True:
            try:
                self.tick()
            except Exception:  # never let the watcher die
                log.exception("rollout weights: applying %s failed", self.path)
            await asyncio.sleep(self.interval)

    def tick(self, router: Any = None) -> bool:
        """Apply the file if it changed or is due for healing (True when it was applied), then stamp
        our deployments with their routing strategy."""
        if router is None:
            from litellm.proxy import proxy_server

            router = proxy_server.llm_router
        if router is None:
            return False
        try:
            return self._apply(router)
        finally:
            stamp(router)

    def _apply(self, router: Any) -> bool:
        if not self.path:
            return False
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return False
        seen = (stat.st_mtime_ns, stat.st_size)
        changed = seen != self._seen
        if not changed and time.monotonic() - self._applied < self.heal_every:
            return False
        self._seen, self._applied = seen, time.monotonic()
        try:
            groups = read_groups(self.path)
        except (OSError, ValueError) as exc:
            if changed:
                log.error("rollout weights: cannot read %s: %s", self.path, exc)
            return False
        problems = apply_groups(router, groups, self.withdrawn)
        if changed:
            for problem in problems:
                log.error("rollout weights: %s", problem)
        return True


#: The instance LiteLLM loads: `callbacks: ["controller.routers.litellm_callback.weights"]`.
weights = WeightsWatcher()
