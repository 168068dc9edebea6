"""`rollout doctor NAME` and `rollout plan`'s metrics warnings against a real Prometheus whose history
breaks the metrics contract in one way per rollout (tests/helpers/doctor.py)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller import settings, templates
from tests.helpers import doctor, net, prom
from tests.helpers.examples import run

CASES = [
    ("fine", 0, {"error_rate": "OK", "latency_p95": "OK", "eval_pass_rate": "OK", "cost_per_request": "OK"}, []),
    (
        "noeval",
        1,
        {"error_rate": "OK", "latency_p95": "OK", "eval_pass_rate": "MISSING", "cost_per_request": "OK"},
        ['llm_eval_results_total: no series with route="noeval" in the last 1h; route values seen: fine'],
    ),
    (
        "novariant",
        1,
        {"error_rate": "UNLABELLED"},
        ["llm_requests_total: 4 series without the `variant` label; no variant stable or canary (values seen: none)"],
    ),
    (
        "noseg",
        1,
        {"error_rate": "UNLABELLED"},
        ["llm_requests_total: series without the segment label `tenant_tier` (variant canary)"],
    ),
    (
        "nocanary",
        1,
        {"error_rate": "UNLABELLED"},
        ["no variant canary (values seen: stable); the canary's series appear with its first request"],
    ),
    (
        "coarse",
        1,
        {"error_rate": "OK", "latency_p95": "COARSE"},
        [
            "litellm_deployment_failure_responses_total: none yet (counted as 0 until the first one)",
            "17 buckets (s): 0.005 0.01 0.025 0.05 0.1 0.25 0.5 1 2 5 10 30 60 120 300 420 600 +Inf",
            "at 3.51s the buckets are 3s apart (2s .. 5s, +150.0%), wider than the limit +10.0%: "
            "this gate cannot pass on these buckets",
        ],
    ),
    (
        "edge-ok",
        0,
        {"error_rate": "OK", "latency_p95": "OK"},
        ["80 buckets from 0.05s to 2.36007s, 5.0% to 5.0% apart", "at 1.55s the buckets are +5.0% apart"],
    ),
]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, doctor_prom: prom.PromServer) -> Path:
    return doctor.write_repo(tmp_path_factory.mktemp("doctor"), doctor_prom.url)


@pytest.mark.parametrize(("name", "code", "statuses", "says"), CASES, ids=[c[0] for c in CASES])
def test_doctor_names_what_is_wrong(
    repo: Path, name: str, code: int, statuses: dict[str, str], says: list[str]
) -> None:
    got, text = run("doctor", name, "--repo", str(repo), "--window", "1h")
    assert got == code, text
    for gate, status in statuses.items():
        assert any(line.split() == [status, gate, f"({_source(name)}", "metrics)"] for line in text.splitlines()), text
    for line in says:
        assert line in text, text
    got, raw = run("doctor", name, "--repo", str(repo), "--window", "1h", "--format", "json")
    answer = json.loads(raw)
    assert got == code and answer["ok"] is (code == 0)
    assert {g["gate"]: g["status"] for g in answer["gates"]} == statuses


def _source(name: str) -> str:
    return {"coarse": "litellm", "edge-ok": "envoy"}.get(name, "app")


def test_doctor_json_has_the_real_bucket_layout(repo: Path) -> None:
    _, raw = run("doctor", "coarse", "--repo", str(repo), "--window", "1h", "--format", "json")
    latency = next(g for g in json.loads(raw)["gates"] if g["gate"] == "latency_p95")
    assert latency["buckets"] == list(templates.LITELLM_DEFAULT_LATENCY_BUCKETS)
    assert latency["resolution"].endswith("this gate cannot pass on these buckets")
    _, raw = run("doctor", "edge-ok", "--repo", str(repo), "--window", "1h", "--format", "json")
    latency = next(g for g in json.loads(raw)["gates"] if g["gate"] == "latency_p95")
    assert latency["buckets"] == pytest.approx(doctor.FINE_LE, rel=1e-5)  # Envoy's milliseconds, in seconds


def test_doctor_usage(repo: Path, tmp_path: Path) -> None:
    assert run("doctor", "fine", "--repo", str(repo), "--window", "soon")[0] == 2
    assert run("doctor", "nope", "--repo", str(repo))[0] == 2
    bare = doctor.write_repo(tmp_path / "bare", "http://127.0.0.1:9", names=["fine"])
    config = bare / "rollouts/controller.yaml"
    config.write_text("\n".join(ln for ln in config.read_text().splitlines() if not ln.startswith("prometheus")))
    assert run("doctor", "fine", "--repo", str(bare))[0] == 2


def test_doctor_says_prometheus_is_down_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://reader:s3cret-pw@127.0.0.1:{net.free_port()}"
    root = doctor.write_repo(tmp_path, url, names=["fine"])
    code, out = run("doctor", "fine", "--repo", str(root))
    err = capsys.readouterr().err
    assert code == 1 and out == ""
    assert err.startswith("rollout doctor: Prometheus at http://127.0.0.1:") and "query failed: ConnectionError" in err
    assert "Traceback" not in err and "s3cret-pw" not in err and len(err.splitlines()) == 1


# -- rollout plan ----------------------------------------------------------------------------------


@pytest.fixture
def planned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, doctor_prom: prom.PromServer) -> Path:
    monkeypatch.setenv("ROLLOUT_STATE_DIR", str(tmp_path / "state"))
    return doctor.write_repo(tmp_path, doctor_prom.url, names=["fine", "noeval", "noseg"])


def test_plan_warns_per_problem_gate(planned: Path) -> None:
    code, text = run("plan", "--repo", str(planned))
    assert code == 0, text  # a warning: plan's exit code is the routers' and the files'
    lines = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("metrics ")]
    assert len(lines) == 2, text
    assert lines[0].startswith('metrics  eval_pass_rate MISSING: llm_eval_results_total: no series with route="noeval"')
    assert lines[1].startswith("metrics  error_rate UNLABELLED: ") and "`tenant_tier` (variant canary)" in lines[1]

    _, raw = run("plan", "--repo", str(planned), "--format", "json")
    found = {r["rollout"]: r["metrics"] for r in json.loads(raw)["rollouts"]}
    assert {m["gate"]: m["status"] for m in found["fine"]} == {
        "error_rate": "OK",
        "latency_p95": "OK",
        "eval_pass_rate": "OK",
        "cost_per_request": "OK",
    }
    assert [m["status"] for m in found["noseg"]] == ["UNLABELLED"]

    _, md = run("plan", "--repo", str(planned), "--format", "markdown")
    assert "**Metrics contract**" in md and "- noeval: eval\\_pass\\_rate MISSING" in md


@pytest.fixture
def silent() -> Iterator[int]:
    """A port that accepts connections and never answers: a Prometheus that hangs."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield s.getsockname()[1]


def test_plan_is_not_held_up_by_a_prometheus_that_does_not_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, silent: int
) -> None:
    monkeypatch.setenv("ROLLOUT_STATE_DIR", str(tmp_path / "state"))
    root = doctor.write_repo(tmp_path, f"http://127.0.0.1:{silent}", names=["fine", "noeval"], timeout="30s")
    started = time.monotonic()
    code, text = run("plan", "--repo", str(root))
    took = time.monotonic() - started
    bound = settings.Timeouts().plan_metrics
    assert code == 0, text
    assert "! metrics contract not checked: Prometheus at" in text and "ReadTimeout" in text
    assert bound <= took < bound + 5  # one bounded wait for four templates, not 30 s, nor four waits


def test_plan_warns_once_when_prometheus_refuses_connections(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROLLOUT_STATE_DIR", str(tmp_path / "state"))
    root = doctor.write_repo(tmp_path, f"http://127.0.0.1:{net.free_port()}", names=["fine", "noeval"])
    code, text = run("plan", "--repo", str(root))
    assert code == 0
    assert text.count("metrics contract not checked") == 1 and "metrics  " not in text


def test_a_query_prometheus_refuses_is_that_gates_error(tmp_path: Path, doctor_prom: prom.PromServer) -> None:
    root = doctor.write_repo(tmp_path, doctor_prom.url, names=["fine"])
    config = root / "rollouts/controller.yaml"
    config.write_text(
        config.read_text() + "gateTemplates:\n  broken: {kind: ratio, bad: 'x_total{a=~\"(\"}', total: x_total}\n"
    )
    rollout = root / "rollouts/fine/rollout.yaml"
    rollout.write_text(rollout.read_text() + "      - {use: broken, max: 1%, onFail: rollback}\n")
    code, raw = run("doctor", "fine", "--repo", str(root), "--window", "1h", "--format", "json")
    statuses = {g["gate"]: g["status"] for g in json.loads(raw)["gates"]}
    assert code == 1 and statuses.pop("broken") == "ERROR"
    assert set(statuses.values()) == {"OK"}  # the other templates were still asked
    broken = next(g for g in json.loads(raw)["gates"] if g["gate"] == "broken")
    assert "HTTP 400, bad_data" in broken["series"][0]["detail"]
