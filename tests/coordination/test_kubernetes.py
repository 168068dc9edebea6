"""The Kubernetes backend: the real `Coordinator` over `LeaseStore`, built by `from_environment` from a
real kubeconfig, against the Lease stand-in (tests/helpers/k8s_standin.py), which checks every request
and response against the upstream Lease schemas; each test ends by asserting it recorded no violation."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from controller import coordination, errors
from controller.coordination import kubernetes
from tests.helpers import net
from tests.helpers.k8s_standin import LeaseServer, write_kubeconfig

NS = "fleet-ns"
TOKEN = "s3cret-standin-token"
TTL = 2


@pytest.fixture
def api() -> Iterator[LeaseServer]:
    with LeaseServer(port=net.free_port(), token=TOKEN) as server:
        yield server
        assert server.violations == [], "the stand-in saw requests or answers off the Lease schema"


@pytest.fixture
def env(tmp_path: Path, api: LeaseServer) -> dict[str, str]:
    return {"KUBECONFIG": str(write_kubeconfig(tmp_path / "kubeconfig", server=api.url, token=TOKEN, namespace=NS))}


@pytest.fixture
def store(env: dict[str, str]) -> Callable[..., kubernetes.LeaseStore]:
    def make(identity: str, **kwargs: Any) -> kubernetes.LeaseStore:
        return kubernetes.LeaseStore.from_environment(
            fleet="prod", identity=identity, ttl=TTL, namespace=None, env=env, **kwargs
        )

    return make


def member(store: kubernetes.LeaseStore) -> coordination.Coordinator:
    return coordination.Coordinator(store, store.identity, shards=64, ttl=TTL, margin=0.5)


def shard_lease(api: LeaseServer, shard: int) -> dict[str, Any]:
    found = api.lease(NS, f"llm-rollouts-prod-shard-{shard}")
    assert found is not None
    return found


def split(a: coordination.Coordinator, b: coordination.Coordinator) -> None:
    def balanced() -> bool:
        a.sync(), b.sync()
        return len(a.owned) == len(b.owned) == 32

    net.wait_for("two members to hold 32 shards each", balanced, deadline=15)


# -- the kubeconfig and the pod's environment


def test_from_environment_reads_the_kubeconfig_and_its_namespace(
    tmp_path: Path, api: LeaseServer, env: dict[str, str]
) -> None:
    made = kubernetes.LeaseStore.from_environment(fleet="prod", identity="a", ttl=TTL, namespace=None, env=env)
    assert made.namespace == NS  # the current context's
    made.join()
    assert api.lease(NS, "llm-rollouts-prod-member-a") is not None
    named = kubernetes.LeaseStore.from_environment(fleet="prod", identity="a", ttl=TTL, namespace="other", env=env)
    assert named.namespace == "other"
    home = tmp_path / "home"
    write_kubeconfig(home / ".kube" / "config", server=api.url, token=TOKEN, namespace=None)
    default = kubernetes.LeaseStore.from_environment(
        fleet="prod", identity="a", ttl=TTL, namespace=None, env={"HOME": str(home)}
    )
    assert default.namespace == "default"
    assert default.view() == coordination.View((), {})


def test_from_environment_in_a_pod_uses_the_service_account(tmp_path: Path) -> None:
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text("pod-token")
    (account / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\nnot checked here\n-----END CERTIFICATE-----\n")
    (account / "namespace").write_text("rollouts\n")
    pod = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    made = kubernetes.LeaseStore.from_environment(
        fleet="prod", identity="pod-0", ttl=15, namespace=None, env=pod, service_account=account
    )
    assert made.namespace == "rollouts"
    assert made.api.api_client.configuration.host == "https://10.0.0.1:443"
    (account / "namespace").unlink()
    made = kubernetes.LeaseStore.from_environment(
        fleet="prod", identity="pod-0", ttl=15, namespace=None, env=pod, service_account=account
    )
    assert made.namespace == "default"


@pytest.mark.parametrize(
    "setup",
    [
        pytest.param(lambda tmp: {"KUBECONFIG": str(tmp / "absent")}, id="no-kubeconfig"),
        pytest.param(
            lambda tmp: {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}, id="no-account"
        ),
    ],
)
def test_from_environment_without_a_configuration_is_a_coordination_error(
    tmp_path: Path, setup: Callable[[Path], dict[str, str]]
) -> None:
    with pytest.raises(errors.CoordinationError, match="kubernetes: cannot load"):
        kubernetes.LeaseStore.from_environment(
            fleet="prod", identity="a", ttl=TTL, namespace=None, env=setup(tmp_path), service_account=tmp_path / "sa"
        )


def test_without_the_client_package_it_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    monkeypatch.setitem(sys.modules, "kubernetes", None)  # as if not installed
    with pytest.raises(errors.CoordinationError, match=r"pip install 'llm-rollouts\[kubernetes\]'"):
        kubernetes.LeaseStore.from_environment(fleet="prod", identity="a", ttl=TTL, namespace=None, env=env)
    # and the module itself imports without it
    code = "import sys; sys.modules['kubernetes'] = None; import controller.coordination.kubernetes"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])


# -- ownership


def test_two_coordinators_split_the_shards_and_the_tokens_are_the_leases(
    api: LeaseServer, store: Callable[..., kubernetes.LeaseStore]
) -> None:
    a, b = member(store("ctl-a")), member(store("ctl-b"))
    split(a, b)
    assert set(a.owned).isdisjoint(b.owned) and set(a.owned) | set(b.owned) == set(range(64))
    for who in (a, b):
        for shard, token in who.owned.items():
            spec = shard_lease(api, shard)["spec"]
            assert (spec["holderIdentity"], spec["leaseTransitions"]) == (who.identity, token)
    view = a.store.view()
    assert view.members == ("ctl-a", "ctl-b")
    assert a.confirm(range(64)) == set(a.owned) and b.confirm(range(64)) == set(b.owned)
    # every write carried the resourceVersion it read
    assert all(r.body["metadata"].get("resourceVersion") for r in api.requests if r.method == "PUT")


def test_a_member_that_stops_keeping_alive_loses_its_shards_after_the_ttl(
    api: LeaseServer, store: Callable[..., kubernetes.LeaseStore]
) -> None:
    a, b = member(store("ctl-a")), member(store("ctl-b"))
    split(a, b)
    lost = dict(a.owned)
    stopped = time.monotonic()

    def b_owns_all() -> bool:
        return len(b.sync()) == 64

    net.wait_for("the survivor to own every shard", b_owns_all, deadline=TTL * 5)
    assert time.monotonic() - stopped >= TTL - 0.5  # not before a's leases could have expired
    assert b.store.view().members == ("ctl-b",)
    for shard, token in lost.items():
        assert b.owned[shard] > token  # the fencing token grew across holders
        assert shard_lease(api, shard)["spec"]["holderIdentity"] == "ctl-b"


def test_a_stale_holder_is_refused(api: LeaseServer, store: Callable[..., kubernetes.LeaseStore]) -> None:
    a, b = member(store("ctl-a")), member(store("ctl-b"))
    split(a, b)
    stale = dict(a.owned)
    net.wait_for("the survivor to own every shard", lambda: len(b.sync()) == 64, deadline=TTL * 5)
    shard, token = next(iter(stale.items()))
    before = shard_lease(api, shard)
    assert a.store.release(shard, token) is False
    assert a.store.claim(shard) is None
    with pytest.raises(errors.CoordinationError, match="expired"):
        a.store.keepalive(stale)
    after = shard_lease(api, shard)
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]  # untouched
    assert a.confirm(stale) == set()
    # the old holder comes back through sync: it rejoins and shares again, with new, higher tokens
    split(a, b)
    assert all(a.owned[s] > stale[s] for s in set(a.owned) & set(stale))


@pytest.mark.parametrize("existing", [False, True], ids=["create-race", "replace-race"])
def test_two_claims_of_one_free_shard_one_wins(
    api: LeaseServer, store: Callable[..., kubernetes.LeaseStore], existing: bool
) -> None:
    first, second = store("ctl-a"), store("ctl-b")
    if existing:  # a Lease whose holder let it go: both read it, both replace with one resourceVersion
        token = first.claim(7)
        assert token is not None and first.release(7, token)
    results: list[int | None] = []
    with api.hold_writes("llm-rollouts-prod-shard-7", parties=2):
        threads = [threading.Thread(target=lambda s=s: results.append(s.claim(7))) for s in (first, second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
    assert sorted(results, key=lambda r: r is None) == [2 if existing else 1, None]
    spec = shard_lease(api, 7)["spec"]
    assert spec["leaseTransitions"] == (2 if existing else 1) and spec["holderIdentity"] in ("ctl-a", "ctl-b")


def test_release_keeps_the_lease_so_the_token_keeps_growing(
    api: LeaseServer, store: Callable[..., kubernetes.LeaseStore]
) -> None:
    a = store("ctl-a")
    tokens = []
    for _ in range(3):
        token = a.claim(5)
        assert token is not None
        tokens.append(token)
        assert a.release(5, token) is True
        assert a.release(5, token) is False  # no longer held
    assert tokens == [1, 2, 3]
    spec = shard_lease(api, 5)["spec"]
    assert "holderIdentity" not in spec and spec["leaseTransitions"] == 3
    assert a.view().shards == {}


def test_leave_frees_the_shards_at_once(api: LeaseServer, store: Callable[..., kubernetes.LeaseStore]) -> None:
    a, b = member(store("ctl-a")), member(store("ctl-b"))
    split(a, b)
    left = dict(a.owned)
    a.close()
    assert api.lease(NS, "llm-rollouts-prod-member-ctl-a") is None
    assert all("holderIdentity" not in shard_lease(api, s)["spec"] for s in left)
    assert b.store.view().members == ("ctl-b",)
    started = time.monotonic()
    net.wait_for("the other to take them", lambda: len(b.sync()) == 64, deadline=TTL * 5)
    assert time.monotonic() - started < TTL  # without waiting for any lease to expire
    assert all(b.owned[s] == left[s] + 1 for s in left)


def test_identities_that_are_no_lease_name_are_kept_apart(
    api: LeaseServer, store: Callable[..., kubernetes.LeaseStore]
) -> None:
    one, two = store("Host_1:4242"), store("host-1-4242")
    one.join(), two.join()
    assert one.member != two.member
    assert one.view().members == ("Host_1:4242", "host-1-4242")
    assert one.claim(0) == 1
    assert two.view().shards == {0: coordination.Holder("Host_1:4242", 1)}


def test_a_clock_on_a_whole_second_still_sends_a_valid_micro_time(
    api: LeaseServer, store: Callable[..., kubernetes.LeaseStore]
) -> None:
    whole = datetime.now(UTC).replace(microsecond=0)
    base = store("ctl-a")
    made = kubernetes.LeaseStore(base.api, namespace=NS, fleet="prod", identity="ctl-a", ttl=TTL, clock=lambda: whole)
    assert made.claim(3) == 1  # the stand-in parses renewTime as the API server does: .000000 must be there
    assert shard_lease(api, 3)["spec"]["renewTime"].endswith(".000001+00:00")


# -- failures


@pytest.mark.parametrize(
    ("status", "words"),
    [(403, "HTTP 403.*RBAC"), (500, "HTTP 500"), (503, "HTTP 503")],
    ids=["forbidden", "internal-error", "unavailable"],
)
def test_api_errors_become_coordination_errors(
    api: LeaseServer, store: Callable[..., kubernetes.LeaseStore], status: int, words: str
) -> None:
    made = store("ctl-a")
    api.fail_with = status
    for call in (made.join, made.view, lambda: made.claim(1), lambda: made.keepalive({}), made.leave):
        with pytest.raises(errors.CoordinationError, match=words) as caught:
            call()
        assert TOKEN not in str(caught.value)
    assert member(made).sync() == {}


def test_refused_credentials_and_refused_connections_become_coordination_errors(
    tmp_path: Path, api: LeaseServer
) -> None:
    wrong = write_kubeconfig(tmp_path / "wrong", server=api.url, token="not-the-token", namespace=NS)
    made = kubernetes.LeaseStore.from_environment(
        fleet="prod", identity="a", ttl=TTL, namespace=None, env={"KUBECONFIG": str(wrong)}
    )
    with pytest.raises(errors.CoordinationError, match=r"HTTP 401.*credentials") as caught:
        made.view()
    assert "not-the-token" not in str(caught.value)
    nobody = write_kubeconfig(
        tmp_path / "nobody", server=f"http://127.0.0.1:{net.free_port()}", token=TOKEN, namespace=NS
    )
    made = kubernetes.LeaseStore.from_environment(
        fleet="prod", identity="a", ttl=TTL, namespace=None, env={"KUBECONFIG": str(nobody)}
    )
    with pytest.raises(errors.CoordinationError, match="did not answer"):
        made.view()


def bounded(call: Callable[[], Any], seconds: float) -> Any:
    """What `call` returned or raised, failing the test (not hanging it) when it takes over `seconds`."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(call())
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still waiting after {seconds}s: a hung API server hangs the call"
    return outcome[0]


def test_a_hung_api_server_fails_the_call_within_the_timeout(
    api: LeaseServer, store: Callable[..., kubernetes.LeaseStore]
) -> None:
    made = store("ctl-a")
    assert made.timeout < TTL  # from the TTL: a third of it
    api.hang = True
    for call in (made.view, lambda: made.claim(1), lambda: made.keepalive({1: 1})):
        failed = bounded(call, made.timeout + 1.5)
        assert isinstance(failed, errors.CoordinationError) and "did not answer" in str(failed)
    assert bounded(member(made).sync, made.timeout + 1.5) == {}


# -- the stand-in can fail a test


def send(api: LeaseServer, method: str, path: str, body: Any) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        api.url + path,
        method=method,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


GOOD = {
    "apiVersion": "coordination.k8s.io/v1",
    "kind": "Lease",
    "metadata": {"name": "by-hand"},
    "spec": {"holderIdentity": "me", "leaseDurationSeconds": 2, "renewTime": "2026-01-01T00:00:00.000000Z"},
}


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (lambda b: b["spec"].update(renewTime="2026-01-01T00:00:00Z"), "RFC3339Micro"),
        (lambda b: b["spec"].update(renewTime="yesterday"), "date-time"),
        (lambda b: b["spec"].update(leaseDurationSeconds="2"), "is not of type"),
        (lambda b: b["spec"].update(holder="me"), "Additional properties"),
        (lambda b: b["spec"].update(leaseDurationSeconds=0), "greater than 0"),
        (lambda b: b["metadata"].update(name="Not_A_Name"), "DNS subdomain"),
        (lambda b: b.update(kind="ConfigMap"), "Lease"),
    ],
    ids=["micro-time-layout", "not-a-time", "wrong-type", "unknown-field", "zero-duration", "bad-name", "wrong-kind"],
)
def test_the_standin_refuses_a_malformed_lease_and_records_it(
    api: LeaseServer, change: Callable[[dict[str, Any]], None], complaint: str
) -> None:
    path = f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases"
    assert send(api, "POST", path, GOOD)[0] == 201
    assert api.violations == []
    body = json.loads(json.dumps(GOOD))
    change(body)
    code, answer = send(api, "POST", path, body)
    assert (code, answer["reason"]) == (422, "Invalid")
    assert api.violations and complaint in " ".join(api.violations)
    api.violations.clear()  # seen: this test's own mistake, on purpose


def test_the_standin_refuses_a_stale_replace(api: LeaseServer) -> None:
    path = f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases"
    code, created = send(api, "POST", path, GOOD)
    assert code == 201
    assert send(api, "POST", path, GOOD)[1]["reason"] == "AlreadyExists"
    body = json.loads(json.dumps(GOOD))
    body["metadata"]["resourceVersion"] = created["metadata"]["resourceVersion"]
    assert send(api, "PUT", f"{path}/by-hand", body)[0] == 200
    code, answer = send(api, "PUT", f"{path}/by-hand", body)  # the same resourceVersion again: stale now
    assert (code, answer["reason"]) == (409, "Conflict")
