"""The embedded file router: atomic writes, read-back, concurrent writers and malformed state."""

from __future__ import annotations

import json
import multiprocessing
import shutil
import threading
from collections.abc import Mapping
from pathlib import Path

import pytest

from controller import errors, load, plan, repo, traffic
from controller.routers import base
from controller.routers import factory as router_factory
from controller.routers import file as file_router
from tests.helpers import examples
from tests.helpers.routes import read_one


def test_route_state_invariants() -> None:
    with pytest.raises(ValueError, match="sum to 100"):
        traffic.RouteState({"stable": 0, "canary": 0})
    with pytest.raises(ValueError, match="between 0 and 100"):
        traffic.RouteState({"stable": 101, "canary": -1})
    with pytest.raises(ValueError, match="shadow"):
        traffic.RouteState({"stable": 100}, shadow=101)
    state = traffic.RouteState({"stable": 95, "canary": 5}, shadow=0)
    assert state.same_traffic(traffic.RouteState({"canary": 5, "stable": 95}))
    assert not state.same_traffic(traffic.RouteState({"stable": 95, "canary": 5}, shadow=10))
    assert traffic.RouteState({"stable": 100}).same_traffic(traffic.RouteState({"stable": 100, "canary": 0}))


def test_write_then_read_back(tmp_path: Path) -> None:
    router = file_router.FileRouter("local", tmp_path / "routes.json")
    assert read_one(router, "chat") is None
    state = traffic.RouteState(
        {"stable": 75, "canary": 25}, 0, {"canary": traffic.Served("m", "p.md", "abc", {"t": 1})}
    )
    live = base.apply(router, {"chat": state}).state("chat")
    assert live == state
    assert read_one(router, "other") is None


def test_writes_keep_other_routes(tmp_path: Path) -> None:
    router = file_router.FileRouter("local", tmp_path / "routes.json")
    router.write({"a": traffic.RouteState({"stable": 100})})
    router.write({"b": traffic.RouteState({"stable": 50, "canary": 50})})
    assert set(json.loads((tmp_path / "routes.json").read_text())["routes"]) == {"a", "b"}


def _writer(path: str, route: str, n: int) -> None:
    router = file_router.FileRouter("local", path)
    for i in range(n):
        router.write({route: traffic.RouteState({"stable": 100 - i % 100, "canary": i % 100})})


def test_two_writers_at_once_lose_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "routes.json")
    procs = [multiprocessing.Process(target=_writer, args=(path, route, 200)) for route in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    assert all(p.exitcode == 0 for p in procs)
    routes = json.loads(Path(path).read_text())["routes"]
    assert routes["a"]["weights"] == {"stable": 100 - 199 % 100, "canary": 199 % 100}
    assert set(routes) == {"a", "b"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"version": 1}', "no 'routes' object"),
        ('{"version": 9, "routes": {}}', "has version 9"),
        ('{"version": 1, "routes": {"chat": {"weights": {"stable": 60}}}}', "sum to 100"),
        (
            '{"version": 1, "routes": {"chat": {"weights": {"stable": 100}, "shadow": "x"}}}',
            "shadow must be an integer",
        ),
    ],
    ids=["syntax", "no-routes", "version", "bad-sum", "bad-shadow"],
)
def test_malformed_state_is_a_clear_error_and_no_write(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "routes.json"
    path.write_text(content)
    router = file_router.FileRouter("local", path)
    with pytest.raises(errors.RouterStateError, match=message):
        read_one(router, "chat")
    if "routes" not in content or 'version": 9' in content or "{not" in content:
        with pytest.raises(errors.RouterStateError):
            router.write({"chat": traffic.RouteState({"stable": 100})})
        assert path.read_text() == content


def test_unwritable_location_is_retryable(tmp_path: Path) -> None:
    (tmp_path / "not-a-dir").write_text("")  # root ignores permissions; a file in the path stops everyone
    router = file_router.FileRouter("local", tmp_path / "not-a-dir" / "routes.json")
    with pytest.raises(errors.RouterUnavailable) as exc:
        router.write({"chat": traffic.RouteState({"stable": 100})})
    assert exc.value.retryable


def test_read_back_mismatch_is_a_verify_error_for_that_route_only(tmp_path: Path) -> None:
    class Lossy(file_router.FileRouter):
        def write(
            self, states: Mapping[str, traffic.RouteState], fences: object = None
        ) -> None:  # drops the shadow, like a stale router
            super().write({route: traffic.RouteState(state.weights) for route, state in states.items()})

    applied = base.apply(
        Lossy("lossy", tmp_path / "r.json"),
        {
            "chat": traffic.RouteState({"stable": 100}, shadow=50),
            "calm": traffic.RouteState({"stable": 90, "canary": 10}),
        },
    )
    assert set(applied.failed) == {"chat"} and set(applied.live) == {"calm"}
    assert isinstance(applied.failed["chat"], errors.RouterVerifyError)
    with pytest.raises(errors.RouterVerifyError, match="route 'chat': wrote stable 100%, shadow 50% but read back"):
        applied.state("chat")
    assert applied.state("calm").weight("canary") == 10


def test_a_batch_sets_every_route_and_keeps_the_others(tmp_path: Path) -> None:
    router = file_router.FileRouter("local", tmp_path / "routes.json")
    router.write({"kept": traffic.RouteState({"stable": 100})})
    batch = {f"r{i}": traffic.RouteState({"stable": 100 - i, "canary": i}) for i in range(5)}
    applied = base.apply(router, batch)
    assert applied.failed == {} and dict(applied.live) == batch
    routes = json.loads((tmp_path / "routes.json").read_text())["routes"]
    assert set(routes) == {"kept", *batch}


def test_an_empty_batch_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "routes.json"
    applied = base.apply(file_router.FileRouter("local", path), {})
    assert (dict(applied.live), dict(applied.failed)) == ({}, {})
    assert not path.exists()


def test_a_batch_is_one_replace_a_reader_never_sees_half_of_it(tmp_path: Path) -> None:
    """A reader polling the file while batches of ten routes are written sees each batch whole: all ten
    routes, all with the same weights. Written route by route, it would see a file with fewer routes
    or with two weights at once."""
    path = tmp_path / "routes.json"
    router = file_router.FileRouter("local", path)
    routes = [f"route-{i}" for i in range(10)]
    stop = threading.Event()
    seen: list[set[int]] = []

    def reader() -> None:
        while not stop.is_set():
            try:
                data = json.loads(path.read_text())
            except FileNotFoundError:
                continue
            seen.append({r["weights"]["canary"] for r in data["routes"].values()} | {-len(data["routes"])})

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for canary in range(0, 101, 4):
            router.write({r: traffic.RouteState({"stable": 100 - canary, "canary": canary}) for r in routes})
    finally:
        stop.set()
        thread.join()
    assert len(seen) > 10, "the reader never ran"
    half = [s for s in seen if len(s) != 2 or -len(routes) not in s]
    assert half == [], half[:5]


def test_a_write_leaves_variants_no_rollout_manages(tmp_path: Path) -> None:
    """A hand-added variant in a route's weights is not ours: read as `others`, kept by every write."""
    path = tmp_path / "routes.json"
    router = file_router.FileRouter("local", path)
    router.write({"chat": traffic.RouteState({"stable": 90, "canary": 10})})
    document = json.loads(path.read_text())
    document["routes"]["chat"]["weights"] = {"stable": 70, "canary": 10, "hotfix": 20}
    path.write_text(json.dumps(document))
    live = read_one(router, "chat")
    assert (
        live is not None and dict(live.others) == {"hotfix": 20} and dict(live.weights) == {"stable": 70, "canary": 10}
    )
    assert base.apply(router, {"chat": live.lowered()}).state("chat").same_traffic(live.lowered())
    assert json.loads(path.read_text())["routes"]["chat"]["weights"] == {"stable": 80, "canary": 0, "hotfix": 20}
    # a write that does not know about it (a race with the hand edit) keeps it too
    router.write({"chat": traffic.RouteState({"stable": 100, "canary": 0})})
    assert json.loads(path.read_text())["routes"]["chat"]["weights"]["hotfix"] == 20


def test_a_prompt_only_rollout_reaches_the_application_through_the_file(tmp_path: Path) -> None:
    """The example's prompt-only rollout (same model, two prompts) on the file router: the routes file
    an application reads, with nothing else, holds each variant's prompt text, model and params."""
    shutil.copytree(examples.FIXTURE / "rollouts", tmp_path / "rollouts")
    result = load.load_repo(repo.WorkTree(tmp_path))
    loaded = result.rollout("ticket-triage")
    assert result.config is not None and loaded is not None, result.problems
    assert loaded.rollout.spec.router == "local"
    served = plan.served(loaded)
    assert served["stable"].model == served["canary"].model
    router = router_factory.build("local", result.config.routers["local"], root=tmp_path, env={})
    route = loaded.rollout.spec.route
    desired = traffic.RouteState({"stable": 90, "canary": 10}, 0, served)
    assert base.apply(router, {route: desired}).state(route) == desired  # prompt text read back too
    assert isinstance(router, file_router.FileRouter) and router.path.is_relative_to(tmp_path)
    entry = json.loads(router.path.read_text("utf-8"))["routes"][route]
    for role in ("stable", "canary"):
        text = (tmp_path / loaded.prompts[role]).read_text("utf-8")
        assert entry["served"][role]["promptText"] == text
        assert entry["served"][role]["model"] == served[role].model
        assert entry["served"][role]["params"] == dict(served[role].params)
    assert entry["served"]["stable"]["promptText"] != entry["served"]["canary"]["promptText"]
    assert entry["weights"] == {"stable": 90, "canary": 10}


def test_a_variant_removed_by_hand_meanwhile_is_not_written_back(tmp_path: Path) -> None:
    path = tmp_path / "routes.json"
    router = file_router.FileRouter("local", path)
    router.write({"chat": traffic.RouteState({"stable": 90, "canary": 10})})
    document = json.loads(path.read_text())
    document["routes"]["chat"]["weights"] = {"stable": 70, "canary": 10, "hotfix": 20}
    path.write_text(json.dumps(document))
    live = read_one(router, "chat")
    assert live is not None and dict(live.others) == {"hotfix": 20}
    document["routes"]["chat"]["weights"] = {"stable": 90, "canary": 10}  # the hotfix is gone again
    path.write_text(json.dumps(document))
    router.write({"chat": live.lowered()})  # the rollback decided on the earlier read
    after = read_one(router, "chat")
    assert after is not None and after.weight("canary") == 0 and after.weight("stable") == 100 and not after.others
