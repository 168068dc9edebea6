"""Shard ownership on a real three-member etcd cluster (Debian's etcd-server 3.4, on loopback), through
the real `EtcdStore` and `Coordinator`: the split, the takeover after a member's lease, one etcd member
killed, a controller paused past its lease, and a controller behind a slow network. The invariant
checked throughout: no two controllers can prove the same shard theirs at once (`confirm`), which is
what every write that raises exposure or opens a PR passes."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller import coordination, errors
from controller.coordination import etcd
from tests.helpers import etcd_cluster, net
from tests.helpers.slow_proxy import slow_proxy

pytestmark = pytest.mark.skipif(
    not etcd_cluster.available(), reason="etcd-server is not installed (.ci/run installs it)"
)

TTL = 2
SHARDS = 16
_fleets = itertools.count()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[etcd_cluster.Cluster]:
    with etcd_cluster.cluster(tmp_path_factory.mktemp("etcd")) as c:
        yield c


@pytest.fixture
def fleet() -> str:
    """A fleet name of its own per test: the tests share one cluster, never each other's keys."""
    return f"t{next(_fleets)}"


def member(endpoints: list[str], fleet: str, name: str, *, timeout: float | None = None) -> coordination.Coordinator:
    store = etcd.EtcdStore(endpoints, prefix="/test", fleet=fleet, identity=name, ttl=TTL, timeout=timeout)
    return coordination.Coordinator(store, name, shards=SHARDS, ttl=TTL, margin=TTL / 3)


def balanced(*members: coordination.Coordinator) -> bool:
    for m in members:
        m.sync()
    owned = [set(m.owned) for m in members]
    return sum(map(len, owned)) == SHARDS and all(len(o) == SHARDS // len(members) for o in owned)


def proven(m: coordination.Coordinator) -> set[int]:
    return m.confirm(range(SHARDS))


def test_two_members_split_the_shards_by_compare_and_swap(cluster: etcd_cluster.Cluster, fleet: str) -> None:
    a, b = member(cluster.endpoints, fleet, "a"), member(cluster.endpoints, fleet, "b")
    try:
        net.wait_for("a and b to split the shards", lambda: balanced(a, b), deadline=30)
        assert not set(a.owned) & set(b.owned)
        assert proven(a) == set(a.owned) and proven(b) == set(b.owned)
        view = a.store.view()
        assert view.members == ("a", "b")
        assert {s: h.token for s, h in view.shards.items() if h.identity == "a"} == a.owned  # token = mod_revision
        shard = next(iter(b.owned))
        assert a.store.claim(shard) is None  # held: the compare-and-swap refuses
        assert not a.store.release(shard, b.owned[shard])  # a release names the holder's key, not its token alone
        assert b.store.view().shards[shard] == coordination.Holder("b", b.owned[shard])
    finally:
        a.close()
        b.close()


def test_a_dead_members_shards_go_to_the_survivor_after_its_lease(cluster: etcd_cluster.Cluster, fleet: str) -> None:
    a, b = member(cluster.endpoints, fleet, "a"), member(cluster.endpoints, fleet, "b")
    try:
        net.wait_for("a and b to split the shards", lambda: balanced(a, b), deadline=30)
        before = dict(b.owned)
        # b dies: it keeps nothing alive any more. Its keys vanish with its lease; a claims them.
        net.wait_for("a to own every shard", lambda: len(a.sync()) == SHARDS, deadline=TTL * 10, every=0.1)
        assert all(a.owned[s] > token for s, token in before.items())  # a later owner's token is higher
        assert proven(b) == set()  # b's deadline has passed: it proves nothing
    finally:
        a.close()
        b.close()


def test_leave_frees_the_shards_at_once(cluster: etcd_cluster.Cluster, fleet: str) -> None:
    a, b = member(cluster.endpoints, fleet, "a"), member(cluster.endpoints, fleet, "b")
    try:
        net.wait_for("a and b to split the shards", lambda: balanced(a, b), deadline=30)
        b.close()  # revokes the lease: no TTL to wait for
        assert a.store.view().members == ("a",)
        assert len(a.sync()) == SHARDS
    finally:
        a.close()


def test_one_etcd_member_killed_changes_no_ownership(cluster: etcd_cluster.Cluster, fleet: str) -> None:
    a, b = member(cluster.endpoints, fleet, "a"), member(cluster.endpoints, fleet, "b")
    victim = cluster.members[0]  # the endpoint both talk to first
    try:
        net.wait_for("a and b to split the shards", lambda: balanced(a, b), deadline=30)
        owned = (dict(a.owned), dict(b.owned))
        cluster.kill(victim)
        # over three TTLs, both keep their leases through the other members, and nothing moves
        end = time.monotonic() + 3 * TTL
        while time.monotonic() < end:
            assert (a.sync(), b.sync()) == owned
            assert a.proven and b.proven
            assert proven(a) == set(owned[0]) and proven(b) == set(owned[1])
    finally:
        a.close()
        b.close()
        if victim.process is None:
            cluster.restart(victim)


def test_a_member_paused_past_its_lease_proves_nothing_when_it_resumes(
    cluster: etcd_cluster.Cluster, fleet: str
) -> None:
    a, b = member(cluster.endpoints, fleet, "a"), member(cluster.endpoints, fleet, "b")
    try:
        net.wait_for("a and b to split the shards", lambda: balanced(a, b), deadline=30)
        lost = dict(b.owned)
        # b is paused (no code of its own runs: no keepalive, no write); a takes its shards over
        net.wait_for("a to own every shard", lambda: len(a.sync()) == SHARDS, deadline=TTL * 10, every=0.1)
        # b resumes mid-tick, still believing its shards are its own: the local deadline says no first
        assert set(b.owned) == set(lost)
        assert not b.fresh()
        assert proven(b) == set()
        # its next sync rejoins, sees a's claims, and balances again from nothing
        b.sync()
        assert not set(b.owned) & set(lost) or all(b.owned[s] > lost[s] for s in set(b.owned) & set(lost))
        net.wait_for("a and b to split the shards again", lambda: balanced(a, b), deadline=30)
        assert not proven(a) & proven(b)
    finally:
        a.close()
        b.close()


def test_a_slow_network_member_writes_less_never_twice(cluster: etcd_cluster.Cluster, fleet: str) -> None:
    first = cluster.members[1]
    with slow_proxy(("127.0.0.1", first.client_port)) as proxy:
        a = member(cluster.endpoints, fleet, "a")
        b = member([proxy.url], fleet, "b", timeout=TTL)  # b reaches etcd only through the slow link
        try:
            net.wait_for("a and b to split the shards", lambda: balanced(a, b), deadline=30)
            proxy.delay = TTL / 3  # a round trip now takes longer than b's margin: keepalives land late
            stop = threading.Event()
            overlaps: list[set[int]] = []
            b_proved: list[set[int]] = []

            def watch() -> None:
                while not stop.is_set():
                    a.sync()
                    got_b = proven(b)
                    b_proved.append(got_b)
                    overlaps.append(proven(a) & got_b)

            thread = threading.Thread(target=watch, daemon=True)
            thread.start()
            try:
                for _ in range(3):
                    b.sync()  # slow: each request waits on the link
            finally:
                stop.set()
                thread.join(timeout=30)
            assert b_proved and not any(overlaps)  # never two provers of one shard
            assert not b.fresh()  # its last keepalive took longer than TTL - margin: it writes nothing
            assert proven(b) == set()
        finally:
            proxy.delay = 0
            a.close()
            b.close()


def test_an_unreachable_cluster_is_a_coordination_error_naming_every_endpoint(tmp_path: Path) -> None:
    ports = [net.free_port(), net.free_port()]
    store = etcd.EtcdStore([f"http://127.0.0.1:{p}" for p in ports], prefix="/x", fleet="f", identity="a", ttl=TTL)
    with pytest.raises(errors.CoordinationError) as caught:
        store.join()
    assert all(str(p) in str(caught.value) for p in ports)
    c = coordination.Coordinator(store, "a", shards=SHARDS, ttl=TTL)
    assert c.sync() == {} and not c.proven  # the tick goes on, proving nothing


def test_a_hung_endpoint_costs_a_timeout_then_the_next_endpoint(cluster: etcd_cluster.Cluster, fleet: str) -> None:
    with slow_proxy(("127.0.0.1", cluster.members[0].client_port), delay=30) as hung:
        store = etcd.EtcdStore([hung.url, *cluster.endpoints[1:]], prefix="/test", fleet=fleet, identity="a", ttl=TTL)
        started = time.monotonic()
        store.join()  # the hung endpoint times out (a third of the TTL), the next one answers
        assert time.monotonic() - started < 10  # a hang bound, not a speed target
        assert store.view().members == ("a",)
        store.leave()


def test_an_answer_cut_short_or_not_json_is_a_coordination_error_then_the_next_endpoint(
    cluster: etcd_cluster.Cluster, fleet: str
) -> None:
    """Something that answers on an etcd port but not as etcd (a proxy's error page, a connection cut
    mid-answer) is a failed endpoint like a refused one: the next one answers."""
    import http.server
    import threading

    class NotEtcd(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"<html>not json")  # and the connection closes short of its length

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotEtcd)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        bad = f"http://127.0.0.1:{server.server_address[1]}"
        alone = etcd.EtcdStore([bad], prefix="/test", fleet=fleet, identity="a", ttl=TTL, timeout=2)
        with pytest.raises(errors.CoordinationError):
            alone.join()
        c = coordination.Coordinator(alone, "a", shards=SHARDS, ttl=TTL)
        assert c.sync() == {} and not c.proven  # the member goes on
        store = etcd.EtcdStore([bad, *cluster.endpoints], prefix="/test", fleet=fleet, identity="a", ttl=TTL)
        store.join()
        assert store.view().members == ("a",)
        store.leave()
    finally:
        server.shutdown()
