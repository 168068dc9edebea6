"""`rollout run` as one member of a fleet: the repository's `controller.yaml` names a `fleet:`
(docs/sharding.md). The member joins the coordinator, and each tick keeps its membership alive,
claims and releases shards towards the balance, then reconciles every repository the fleet serves for
the rollouts of its own shards. One repository's failure (unreachable, an invalid controller.yaml) is
that repository's line, never the others' stop."""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from controller import errors, redaction

log = logging.getLogger("rollout.fleet")

if TYPE_CHECKING:
    from controller import coordination, reconcile, spec, telemetry
    from controller.cli.run import Built


@dataclass
class Repository:
    """One repository as this member serves it: its controller, built at the first tick that can."""

    name: str
    remote: str
    branch: str
    built: reconcile.Controller | None = None
    said: dict[str, object] = field(default_factory=dict)  # what the loop printed last, per rollout


def holder(fleet: spec.FleetConfig) -> str:
    """The git lease's holder for every member of a fleet: they share it, so a second fleet or a lone
    controller on one of its repositories is kept out, and the members never keep each other out."""
    return f"fleet-{fleet.name}"


def identity(base: str) -> str:
    """This process's name in the coordinator: its holder, its pid and a random part, unique per
    process even where every replica is pid 1 with the same `--holder` (containers), so what the
    coordinator shows held under it is this process's own (a restart is a new member; its
    predecessor's shards expire)."""
    return f"{base}-{os.getpid()}-{secrets.token_hex(3)}"


def run(
    home: Built,
    *,
    workdir: Path,
    coordinator: coordination.Coordinator,
    build: Callable[[str, Path, str], Built],
    interval: float,
    stop: threading.Event,
    out: TextIO,
    tel: telemetry.Telemetry,
    lines: Callable[[reconcile.Tick, dict[str, object]], list[str]],
) -> None:
    """The member's loop until `stop`. `build(remote, clone, branch)` builds another repository's
    controller, its router state where any command on that repository finds it (so a second
    terminal's `rollout abort --remote <it>` acts on the same files); `lines` says what a tick did, as
    `rollout run` prints it. A repository whose routers would write a file another repository's
    routers write is refused (its line says which), never served half."""
    from controller import coordination as coord
    from controller import spec

    fleet = home.config.fleet
    assert fleet is not None
    home.controller.holder = holder(fleet)
    home.controller.shards = coord.Shards(spec.HOME_REPOSITORY, coordinator)
    repositories = [Repository(spec.HOME_REPOSITORY, "", "", home.controller)]
    files = {path: spec.HOME_REPOSITORY for path in home.files}  # router state file -> the repository writing it
    repositories += [Repository(r.name, r.remote, r.branch) for r in fleet.repositories]
    out.write(
        f"fleet {fleet.name}: member {coordinator.identity}, {fleet.shards} shards, {_count(len(repositories), 'repository', 'repositories')}\n"
    )
    coordinator.keep_alive_in_background(stop)
    shown = ""
    try:
        while not stop.is_set():
            started = time.monotonic()
            owned = coordinator.sync()
            now = _ownership(owned, coordinator)
            if coordinator.problem is not None:
                now = f"cannot reach its coordinator ({redaction.redact(coordinator.problem)}); {now}, unproven"
            if now != shown:
                out.write(f"fleet {fleet.name}: {now}\n")
                shown = now
            for r in repositories:
                _tick(
                    r,
                    workdir=workdir,
                    files=files,
                    coordinator=coordinator,
                    build=build,
                    out=out,
                    tel=tel,
                    lines=lines,
                )
            tel.fleet_pass_seconds.set(time.monotonic() - started)
            tel.fleet_passes.inc()
            tel.fleet_shards.set(len(coordinator.owned))
            tel.fleet_members.set(coordinator.members)
            out.flush()
            stop.wait(interval)
    finally:
        last = coordinator.members <= 1  # as the last view had it: no one else keeps the git leases
        coordinator.close()
        out.write(f"fleet {fleet.name}: left, its shards free for the others\n")
        if last:
            _release_leases(repositories, out)


def _release_leases(repositories: list[Repository], out: TextIO) -> None:
    """The last member out gives each repository's git lease back, so a lone controller (or another
    fleet) need not wait for it to expire. A member that was not last leaves it to the others."""
    for r in repositories:
        if r.built is None:
            continue
        try:
            if r.built.release_lease():
                out.write(f"{r.name}: released the lease\n")
        except errors.RolloutError as exc:
            out.write(f"{r.name}: the lease expires by itself: {redaction.redact(str(exc))}\n")


def _tick(
    r: Repository,
    *,
    workdir: Path,
    files: dict[Path, str],
    coordinator: coordination.Coordinator,
    build: Callable[[str, Path, str], Built],
    out: TextIO,
    tel: telemetry.Telemetry,
    lines: Callable[[reconcile.Tick, dict[str, object]], list[str]],
) -> None:
    from controller import coordination as coord
    from controller import spec

    try:
        if r.built is None:
            built = build(r.remote, workdir / "repositories" / r.name / "clone", r.branch)
            _own_files(r.name, built.files, files)
            r.built = built.controller
            r.built.shards = coord.Shards(r.name, coordinator)
        tick = r.built.reconcile_once()
    except Exception as exc:  # one repository's fault, or a bug in serving it: never the others' stop
        if not isinstance(exc, errors.RolloutError):
            log.error("repository %s: unexpected error", r.name, exc_info=exc)
        tel.errors.labels("controller").inc()
        line = f"{r.name}: tick failed: {redaction.redact(str(exc))}"
        if r.said.get("") != line:
            out.write(line + "\n")
            r.said[""] = line
        return
    tel.record(tick, repository="" if r.name == spec.HOME_REPOSITORY else r.name)
    r.said.pop("", None)
    for line in lines(tick, r.said):
        out.write(f"{r.name}: {line}\n")


def _own_files(name: str, mine: tuple[Path, ...], files: dict[Path, str]) -> None:
    """Claim the router state files of repository `name` for it, or refuse it when another repository
    of the fleet writes one of them: two repositories' routes in one file would be one router state
    written by two masters."""
    for path in mine:
        other = files.get(path)
        if other is not None and other != name:
            raise errors.RouterError(
                f"its routers would write {path}, which {other}'s routers write: give one of the two its own "
                "router paths (or its own stateDir, with $ROLLOUT_STATE_DIR unset); it is not served until then"
            )
    files.update(dict.fromkeys(mine, name))


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _ownership(owned: dict[int, int], coordinator: coordination.Coordinator) -> str:
    members = f"{coordinator.members} member{'s' if coordinator.members != 1 else ''}"
    if not owned:
        return f"owns no shard ({members})"
    return f"owns {len(owned)} of {coordinator.shards} shards ({members}): {_ranges(sorted(owned))}"


def _ranges(shards: list[int]) -> str:
    """`0-3, 7, 9-10`."""
    out: list[str] = []
    start = prev = shards[0]
    for s in [*shards[1:], None]:
        if s is not None and s == prev + 1:
            prev = s
            continue
        out.append(str(start) if start == prev else f"{start}-{prev}")
        if s is not None:
            start = prev = s
    return ", ".join(out)
