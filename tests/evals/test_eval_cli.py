"""`rollout eval` end to end against the stand-in: the done-when (a canary that breaks a JSON-schema
case is caught, the flipped cases are shown, the offline gate fails and blocks the ramp), recording,
partial results, and the request each variant sends."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from controller import cli, evals, gates, load, plan, repo
from tests.helpers import golden, openai_standin


def run_eval(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = cli.main(["eval", *argv], out=out)
    return code, out.getvalue()


def loaded_rollout(root: Path) -> load.LoadedRollout:
    found = load.load_repo(repo.WorkTree(root)).rollout(golden.ROLLOUT)
    assert found is not None
    return found


def verdict(tree: load.Tree, loaded: load.LoadedRollout) -> gates.Verdict | None:
    """The offline gate's verdict, as the reconciler asks it before a ramp (None: no gate applies)."""
    judged = evals.offline_status(tree, loaded)
    return None if judged is None else judged.verdict


def test_a_canary_that_breaks_a_json_schema_case_is_caught(repo: Path, server: openai_standin.Standin) -> None:
    code, text = run_eval(golden.ROLLOUT, "--endpoint", server.url, "--repo", str(repo), "--format", "json")
    assert code == 1
    doc = json.loads(text)
    flips = {f["id"]: f for f in doc["flipped"]}
    assert {k for k, f in flips.items() if f["direction"] == "regressed"} == {"lost-parcel", "damaged-parcel"}
    assert {k for k, f in flips.items() if f["direction"] == "fixed"} == {"unknown-charge"}
    assert "schema: urgent" in flips["lost-parcel"]["detail"]
    assert doc["offlineGate"]["verdict"] == "FAIL"
    assert doc["partial"] is False
    report = evals.parse_report(text)
    gate = loaded_rollout(repo).rollout.spec.offline_eval
    assert gate is not None
    assert evals.offline_judgement(report, gate).verdict is gates.Verdict.FAIL
    assert report.variants["stable"].count(evals.CaseStatus.PASS) == 9
    assert report.variants["canary"].count(evals.CaseStatus.PASS) == 8


def test_the_markdown_report_lists_the_flipped_cases(repo: Path, server: openai_standin.Standin) -> None:
    code, text = run_eval(golden.ROLLOUT, "--endpoint", server.url, "--repo", str(repo), "--format", "markdown")
    assert code == 1
    assert "| stable | acme/triage-2025-01-01 |" in text and "90.0%" in text and "80.0%" in text
    assert "### Flipped cases (3)" in text
    assert "- regressed: lost-parcel — `schema: urgent: 'no' is not of type 'boolean'`" in text
    assert "- fixed: unknown-charge" in text
    assert text.index("regressed: damaged-parcel") < text.index("fixed: unknown-charge")
    assert "**Offline gate: FAIL**" in text


def test_recorded_failure_blocks_the_ramp_and_a_good_canary_passes(
    tmp_path: Path, server: openai_standin.Standin
) -> None:
    bad = golden.write_repo(tmp_path / "bad")
    assert verdict(repo.WorkTree(bad), loaded_rollout(bad)) is gates.Verdict.INCONCLUSIVE  # nothing yet
    code, _ = run_eval(golden.ROLLOUT, "--endpoint", server.url, "--repo", str(bad), "--record")
    assert code == 1
    loaded = loaded_rollout(bad)
    recorded = bad / evals.result_path(golden.ROLLOUT, loaded.revisions["canary"])
    assert recorded.is_file()
    assert verdict(repo.WorkTree(bad), loaded) is gates.Verdict.FAIL
    # without the offline gate the first tick would start the ramp; with it, stable keeps everything
    now = datetime.now(UTC)
    started = plan.decide(loaded, plan.Facts(now=now, live=None))
    assert started.kind is plan.Kind.APPLY and started.route is not None and started.route.weights["canary"] == 5
    blocked = evals.before_ramp(loaded, live=None, judged=evals.offline_status(repo.WorkTree(bad), loaded))
    assert blocked is not None and blocked.kind is plan.Kind.APPLY
    assert blocked.route is not None and dict(blocked.route.weights) == {"stable": 100, "canary": 0}
    assert blocked.reason.startswith("offline eval FAIL: drop 10 points > maxDrop 5")

    good = golden.write_repo(tmp_path / "good", canary="acme/triage-2025-07-01")
    code, text = run_eval(golden.ROLLOUT, "--endpoint", server.url, "--repo", str(good), "--record")
    assert code == 0, text
    assert verdict(repo.WorkTree(good), loaded_rollout(good)) is gates.Verdict.PASS
    # a changed golden set makes the recorded result stale
    with (good / "rollouts" / golden.ROLLOUT / "evals" / "triage.jsonl").open("a") as f:
        f.write(golden.golden_lines()[0].replace("cancel-order", "cancel-order-2") + "\n")
    assert verdict(repo.WorkTree(good), loaded_rollout(good)) is gates.Verdict.INCONCLUSIVE


def test_no_offline_gate_means_no_verdict(tmp_path: Path) -> None:
    root = golden.write_repo(tmp_path / "r", offline="")
    assert verdict(repo.WorkTree(root), loaded_rollout(root)) is None


def test_one_variant_only(repo: Path, server: openai_standin.Standin) -> None:
    code, text = run_eval(golden.ROLLOUT, "--endpoint", server.url, "--repo", str(repo), "--variant", "canary")
    assert code == 0  # no comparison, so no gate; every case answered
    assert "canary" in text and "Offline gate" not in text
    assert server.calls(golden.STABLE) == 0 and server.calls(golden.CANARY) == len(golden.TICKETS)


def test_the_request_renders_the_variant(repo: Path, server: openai_standin.Standin) -> None:
    run_eval(golden.ROLLOUT, "--endpoint", server.url, "--repo", str(repo), "--variant", "stable")
    body = server.seen()[0].body
    assert body["model"] == golden.STABLE
    assert body["temperature"] == 0 and body["max_tokens"] == 50
    assert body["messages"][0] == {"role": "system", "content": golden.PROMPT}
    assert body["messages"][1]["role"] == "user" and len(body["messages"]) == 2


def test_the_api_key_is_sent_and_never_printed(
    repo: Path, server: openai_standin.Standin, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EVAL_KEY", "sk-very-secret")
    _code, text = run_eval(
        golden.ROLLOUT,
        "--endpoint",
        server.url,
        "--repo",
        str(repo),
        "--api-key-env",
        "EVAL_KEY",
        "--variant",
        "stable",
    )
    assert server.seen()[0].headers["authorization"] == "Bearer sk-very-secret"
    assert "sk-very-secret" not in text + capsys.readouterr().err


def test_a_key_echoed_by_the_server_is_redacted(
    repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EVAL_KEY", "sk-very-secret")
    with openai_standin.standin(answer=lambda _m, _msgs: openai_standin.Reply(fault="401-echo")) as server:
        code, text = run_eval(
            golden.ROLLOUT, "--endpoint", server.url, "--repo", str(repo), "--api-key-env", "EVAL_KEY",
            "--format", "json", "--retries", "0",
        )  # fmt: skip
    assert code == 1 and "HTTP 401: bad key Bearer ***" in text
    assert "sk-very-secret" not in text + capsys.readouterr().err


def flaky(fault: str, *, times: int = 0) -> Any:
    """The canary's answer to the `login` case is a fault; everything else as usual."""

    def answer(model: str, messages: list[dict[str, Any]]) -> openai_standin.Reply:
        if model == golden.CANARY and golden.ticket_of(messages) == "login":
            return openai_standin.Reply(golden.triage(model, messages).content, fault=fault, times=times)
        return golden.triage(model, messages)

    return answer


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("timeout", "timed out (ReadTimeout) after 2 attempts"),
        ("429", "HTTP 429 after 2 attempts"),
        ("500", "HTTP 500 after 2 attempts"),
        ("malformed", "the response is not JSON"),
        ("no-choices", "malformed response, no choices[0].message"),
        ("400", "HTTP 400: unknown parameter: temperatur"),
    ],
    ids=["timeout", "429", "500", "malformed", "no-choices", "400"],
)
def test_a_case_without_an_answer_is_kept_and_marked(repo: Path, fault: str, message: str) -> None:
    with openai_standin.standin(answer=flaky(fault)) as server:
        code, text = run_eval(
            golden.ROLLOUT, "--endpoint", server.url, "--repo", str(repo), "--format", "json",
            "--timeout", "0.5", "--retries", "1",
        )  # fmt: skip
    doc = json.loads(text)
    assert code == 1 and doc["partial"] is True
    login = next(c for c in doc["variants"]["canary"]["cases"] if c["id"] == "login")
    assert login["status"] == "error" and message in login["error"]
    assert "model 'acme/triage-2025-06-01'" in login["error"]
    # every other case is still scored, and the gate judges the answered ones: still a FAIL
    assert sum(c["status"] != "error" for c in doc["variants"]["canary"]["cases"]) == len(golden.TICKETS) - 1
    assert doc["offlineGate"]["verdict"] == "FAIL"


def test_a_retried_429_recovers(repo: Path) -> None:
    with openai_standin.standin(answer=flaky("429", times=1)) as server:
        code, text = run_eval(golden.ROLLOUT, "--endpoint", server.url, "--repo", str(repo), "--format", "json")
        retried = sum(
            1 for r in (s.body for s in server.seen()) if r["messages"][-1]["content"] == golden.TICKETS["login"][0]
        )
    doc = json.loads(text)
    assert code == 1 and doc["partial"] is False  # 1: the parcel cases still fail the gate
    assert retried == 3  # stable once, canary twice


def test_text_report_marks_partial_results(repo: Path) -> None:
    with openai_standin.standin(answer=flaky("500")) as server:
        code, text = run_eval(golden.ROLLOUT, "--endpoint", server.url, "--repo", str(repo), "--retries", "0")
    assert code == 1
    assert "PARTIAL: some cases got no answer" in text
    assert "No answer (1): not scored" in text and "canary login — chat completion" in text


def test_usage_errors(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROLLOUT_EVAL_ENDPOINT", raising=False)
    assert run_eval(golden.ROLLOUT, "--repo", str(repo))[0] == 2
    assert run_eval("nope", "--repo", str(repo), "--endpoint", "http://127.0.0.1:9/v1")[0] == 2
    assert (
        run_eval(
            golden.ROLLOUT,
            "--repo",
            str(repo),
            "--endpoint",
            "http://127.0.0.1:9/v1",
            "--record",
            "--variant",
            "stable",
        )[0]
        == 2
    )


def test_an_unreachable_endpoint_is_a_clear_error(repo: Path) -> None:
    code, text = run_eval(
        golden.ROLLOUT,
        "--endpoint",
        "http://127.0.0.1:9/v1",
        "--repo",
        str(repo),
        "--retries",
        "0",
        "--format",
        "json",
    )
    doc = json.loads(text)
    assert code == 1 and doc["partial"] is True
    assert all(c["status"] == "error" for v in doc["variants"].values() for c in v["cases"])
    assert "could not connect (ConnectError)" in doc["variants"]["stable"]["cases"][0]["error"]
    assert doc["offlineGate"]["verdict"] == "ERROR"


def test_reuse_recorded_shows_the_record_without_calling(repo: Path, server: openai_standin.Standin) -> None:
    run_eval(golden.ROLLOUT, "--endpoint", server.url, "--repo", str(repo), "--record")
    before = server.requests
    code, text = run_eval(golden.ROLLOUT, "--endpoint", server.url, "--repo", str(repo), "--reuse-recorded")
    assert code == 1 and server.requests == before
    assert "not re-run" in text and "regressed: lost-parcel" in text and "Offline gate: FAIL" in text


def test_no_canary_nothing_to_compare(tmp_path: Path) -> None:
    root = golden.write_repo(tmp_path / "r")
    path = root / "rollouts" / golden.ROLLOUT / "rollout.yaml"
    path.write_text("\n".join(ln for ln in path.read_text().splitlines() if "canary:" not in ln) + "\n")
    code, text = run_eval(golden.ROLLOUT, "--endpoint", "http://127.0.0.1:9/v1", "--repo", str(root))
    assert code == 0 and "has no canary: nothing to compare" in text


@pytest.mark.parametrize(
    "argv",
    [
        ["--endpoint", "ftp://127.0.0.1/v1"],
        ["--endpoint", "http://127.0.0.1:9/v1", "--concurrency", "0"],
        ["--endpoint", "http://127.0.0.1:9/v1", "--timeout", "0"],
    ],
    ids=["scheme", "concurrency", "timeout"],
)
def test_bad_arguments_are_usage_errors(repo: Path, argv: list[str]) -> None:
    assert run_eval(golden.ROLLOUT, "--repo", str(repo), *argv)[0] == 2


def test_no_httpx_exception_escapes_the_client() -> None:
    from controller import errors, llm

    with llm.Client("http://exa mple.invalid/v1", retries=0) as client, pytest.raises(errors.EvalError):
        client.chat({"model": "m", "messages": []})


def test_a_broken_golden_set_after_recording_is_an_error(repo: Path, server: openai_standin.Standin) -> None:
    run_eval(golden.ROLLOUT, "--endpoint", server.url, "--repo", str(repo), "--record")
    (repo / "rollouts" / golden.ROLLOUT / "evals" / "triage.jsonl").write_text("{oops\n")
    judged = evals.offline_status(repo_tree(repo), loaded_rollout(repo))
    assert judged is not None and judged.verdict is gates.Verdict.ERROR
    assert "rollouts/shop-triage/evals/triage.jsonl:1" in judged.reason


def repo_tree(root: Path) -> repo.WorkTree:
    return repo.WorkTree(root)


def test_check_loads_the_set_without_an_endpoint(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROLLOUT_EVAL_ENDPOINT", raising=False)
    code, text = run_eval(golden.ROLLOUT, "--repo", str(repo), "--check")
    assert code == 0 and text.startswith("shop-triage: 10 golden cases in 1 file(s), set ")
    (repo / "rollouts" / golden.ROLLOUT / "evals" / "more.jsonl").write_text('\n{"id": "x"}\n')
    assert run_eval(golden.ROLLOUT, "--repo", str(repo), "--check")[0] == 1
