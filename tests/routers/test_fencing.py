"""Layer 3 of the fencing (docs/sharding.md): the routers that can keep a token beside a route (file,
flagd) record the fence of each fenced write and refuse a stale owner's, under the write's own lock, so
no check-then-write gap remains. An unfenced write (one controller, or a rollback, which never waits
for ownership) is always written and never erases a newer owner's mark."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest
from openfeature.contrib.tools.flagd.core.model.flag_store import FlagStore

from controller import errors, traffic
from controller.routers import base, file, flagd
from tests.helpers.flagd_js import SCHEMA, upstream_errors

S, C = traffic.STABLE, traffic.CANARY


def state(canary: int) -> traffic.RouteState:
    return traffic.RouteState({S: 100 - canary, C: canary}, 0, {})


Make = Callable[[Path], base.Router]
ROUTERS: dict[str, Make] = {
    "file": lambda d: file.FileRouter("routes", d / "routes.json"),
    "flagd": lambda d: flagd.FlagdRouter("flags", d / "flags.json"),
}


@pytest.mark.parametrize(
    ("recorded", "fence", "written"),
    [
        (None, None, None),
        (None, traffic.Fence(3, 10), traffic.Fence(3, 10)),
        (traffic.Fence(3, 10), traffic.Fence(3, 10), traffic.Fence(3, 10)),  # the owner again
        (traffic.Fence(3, 10), traffic.Fence(3, 12), traffic.Fence(3, 12)),  # a newer owner
        (traffic.Fence(3, 10), None, traffic.Fence(3, 10)),  # unfenced: the mark stays
        (traffic.Fence(3, 10), traffic.Fence(7, 2), traffic.Fence(7, 2)),  # another shard (shards changed)
    ],
)
def test_fence_to_record(
    recorded: traffic.Fence | None, fence: traffic.Fence | None, written: traffic.Fence | None
) -> None:
    assert base.fence_to_record("r", "route", fence, recorded) == written


def test_a_lower_token_of_the_same_shard_is_refused() -> None:
    with pytest.raises(errors.RouterFenced, match=r"route 'route': shard 3 was written under token 12, newer than"):
        base.fence_to_record("r", "route", traffic.Fence(3, 10), traffic.Fence(3, 12))


@pytest.mark.parametrize("raw", [None, "x", {"shard": "3", "token": 1}, {"shard": True, "token": 1}, {"shard": 1}])
def test_an_unreadable_fence_is_none(raw: object) -> None:
    assert base.read_fence(raw) is None


@pytest.mark.parametrize("kind", sorted(ROUTERS))
def test_a_stale_owner_cannot_write_after_a_newer_one(kind: str, tmp_path: Path) -> None:
    router = ROUTERS[kind](tmp_path)
    old, new = traffic.Fence(5, 100), traffic.Fence(5, 140)
    base.apply(router, {"chat": state(10)}, {"chat": old}).state("chat")
    base.apply(router, {"chat": state(25)}, {"chat": new}).state("chat")  # the shard changed hands
    before = sorted(tmp_path.iterdir())[0].read_bytes()
    with pytest.raises(errors.RouterFenced, match="no longer owns the shard"):
        router.write({"chat": state(50)}, {"chat": old})
    assert sorted(tmp_path.iterdir())[0].read_bytes() == before  # nothing written
    live = router.read(["chat"])["chat"]
    assert isinstance(live, traffic.RouteState) and live.weight(C) == 25


@pytest.mark.parametrize("kind", sorted(ROUTERS))
def test_a_rollback_goes_through_unfenced_and_keeps_the_mark(kind: str, tmp_path: Path) -> None:
    router = ROUTERS[kind](tmp_path)
    base.apply(router, {"chat": state(25)}, {"chat": traffic.Fence(5, 140)})
    base.apply(router, {"chat": state(0)}).state("chat")  # the kill switch waits for no one
    with pytest.raises(errors.RouterFenced):
        router.write({"chat": state(50)}, {"chat": traffic.Fence(5, 100)})


@pytest.mark.parametrize("kind", sorted(ROUTERS))
def test_one_fenced_route_refused_leaves_the_batch_unwritten(kind: str, tmp_path: Path) -> None:
    router = ROUTERS[kind](tmp_path)
    base.apply(router, {"a": state(10), "b": state(10)}, {"b": traffic.Fence(1, 9)})
    with pytest.raises(errors.RouterFenced, match="route 'b'"):
        router.write({"a": state(20), "b": state(20)}, {"a": traffic.Fence(2, 1), "b": traffic.Fence(1, 4)})
    live = router.read(["a", "b"])
    assert all(isinstance(v, traffic.RouteState) and v.weight(C) == 10 for v in live.values())


def test_the_file_router_records_the_fence_in_the_entry(tmp_path: Path) -> None:
    router = file.FileRouter("routes", tmp_path / "routes.json")
    base.apply(router, {"chat": state(10)}, {"chat": traffic.Fence(5, 100)})
    entry = json.loads((tmp_path / "routes.json").read_text())["routes"]["chat"]
    assert entry["fence"] == {"shard": 5, "token": 100}
    assert file.pick(entry, user="u1", attributes={}, route="chat") in (S, C)  # the reference reader is unbothered


def test_a_fenced_flag_stays_valid_for_flagd(tmp_path: Path) -> None:
    router = flagd.FlagdRouter("flags", tmp_path / "flags.json")
    base.apply(router, {"chat": state(10)}, {"chat": traffic.Fence(5, 100)}).state("chat")
    document = json.loads((tmp_path / "flags.json").read_text("utf-8"))
    metadata = document["flags"]["chat"]["metadata"]
    assert (metadata["fenceShard"], metadata["fenceToken"]) == (5, 100)
    jsonschema.validate(document, SCHEMA)
    assert FlagStore().update(document) == ["chat"]
    assert upstream_errors([document]) == [None]


def test_the_file_routers_write_log_records_each_write_and_each_refusal_in_order(tmp_path: Path) -> None:
    log = tmp_path / "writes.jsonl"
    router = file.FileRouter("routes", tmp_path / "routes.json", write_log=log)
    router.write({"a": state(10), "b": state(0)}, {"a": traffic.Fence(3, 12)})
    with pytest.raises(errors.RouterFenced):
        router.write({"a": state(50)}, {"a": traffic.Fence(3, 10)})  # a stale owner
    router.write({"a": state(0)})  # a rollback: unfenced, never refused
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(r["route"], r["fence"], r.get("refused", False)) for r in lines] == [
        ("a", {"shard": 3, "token": 12}, False),
        ("b", None, False),
        ("a", {"shard": 3, "token": 10}, True),
        ("a", None, False),
    ]
    assert lines[0]["weights"] == {S: 90, C: 10} and lines[2]["weights"][C] == 50
    assert router.read(["a"])["a"] == state(0)  # the refused write changed nothing
