"""A LiteLLM proxy callback that applies the controller's weights file to the proxy's live router.

Runs INSIDE the LiteLLM proxy (listed under `litellm_settings.callbacks`), never in the controller;
it imports nothing from `controller`, so it can also be copied next to the proxy's config.yaml.
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

FORMAT_VERSION = 1
ENV_PATH = "ROLLOUT_WEIGHTS_FILE"
ENV_INTERVAL = "ROLLOUT_WEIGHTS_INTERVAL"
#: Re-apply an unchanged file this often (seconds), healing a model list changed behind our back.
HEAL_EVERY = 5.0

log = logging.getLogger("rollout.weights")


def apply_groups(
    router: Any, groups: Mapping[str, Mapping[str, int]], withdrawn: dict[str, dict[str, Any]]
) -> list[str]:
    """Set each listed deployment's `litellm_params.weight`; a weight of 0 takes the deployment out of
    the model list (kept in `withdrawn` to be put back later), because LiteLLM splits evenly over
    deployments whose weights are all 0, which is what it would see if stable went into cooldown.

    Synchronous on purpose: it runs on the proxy's event loop with no await, so no request ever sees
    a half-applied group. Returns the problems it skipped (a group is applied whole or not at all).
    """
    from litellm.types.router import Deployment

    problems: list[str] = []
    for group, weights in groups.items():
        if not weights or not all(isinstance(w, int) and not isinstance(w, bool) and w >= 0 for w in weights.values()):
            problems.append(f"group {group!r}: weights must be whole numbers >= 0, got {dict(weights)}")
            continue
        if sum(weights.values()) <= 0:
            problems.append(f"group {group!r}: every weight is 0 (LiteLLM would split evenly); ignored")
            continue
        current = {dep_id: _raw(router, dep_id) for dep_id in weights}
        missing = [d for d, w in weights.items() if w > 0 and current[d] is None and d not in withdrawn]
        foreign = [d for d, raw in current.items() if raw is not None and raw.get("model_name") != group]
        if missing or foreign:
            problems.append(f"group {group!r}: unknown deployments {missing}, deployments of another group {foreign}")
            continue
        # additions and increases first, removals last: the group is never empty, even between statements
        for dep_id, weight in sorted(weights.items(), key=lambda item: -item[1]):
            raw = current[dep_id]
            if weight > 0:
                source = raw if raw is not None else withdrawn.pop(dep_id)
                if raw is None or (raw.get("litellm_params") or {}).get("weight") != weight:
                    updated = copy.deepcopy(source)
                    updated.setdefault("litellm_params", {})["weight"] = weight
                    router.upsert_deployment(Deployment(**updated))
            elif raw is not None:
                withdrawn[dep_id] = copy.deepcopy(raw)
                router.delete_deployment(id=dep_id)
    return problems


def _raw(router: Any, dep_id: str) -> dict[str, Any] | None:
    index = router.model_id_to_deployment_index_map.get(dep_id)
    if index is None:
        return None
    entry = router.model_list[index]
    found: dict[str, Any] = entry if isinstance(entry, dict) else entry.model_dump(exclude_none=True)
    return found


def read_groups(path: str) -> dict[str, dict[str, int]]:
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION or not isinstance(data.get("groups"), dict):
        raise ValueError(f"{path}: expected {{'version': {FORMAT_VERSION}, 'groups': {{...}}}}")
    groups: dict[str, dict[str, int]] = data["groups"]
    return groups


class WeightsWatcher(CustomLogger):  # type: ignore[misc]
    """Polls the weights file (by mtime and size) on the proxy's event loop and applies changes; an
    unchanged file is applied again every `heal_every` seconds (a no-op when nothing drifted)."""

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
        if self._task is None and self.path:
            self._task = loop.create_task(self._run(), name="rollout-weights")

    async def async_pre_call_hook(self, *args: Any, **kwargs: Any) -> None:
        self.start(asyncio.get_running_loop())

    async def _run(self) -> None:
        while True:
            try:
                self.tick()
            except Exception:  # never let the watcher die
                log.exception("rollout weights: applying %s failed", self.path)
            await asyncio.sleep(self.interval)

    def tick(self, router: Any = None) -> bool:
        """Apply the file if it changed or is due for healing; True when it was applied."""
        if router is None:
            from litellm.proxy import proxy_server

            router = proxy_server.llm_router
        if router is None:
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
