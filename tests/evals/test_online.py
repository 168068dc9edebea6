"""Online eval: `evalrun.serve` runs the golden set in rounds and exposes per-variant counters on
/metrics; a real Prometheus scrapes them and the built-in `eval_pass_rate` gate judges them."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import parser

from controller import analysis, evalrun, evals, gates, llm, load, prometheus, repo, spec
from tests.helpers import golden, openai_standin, prom


@contextmanager
def serving(root: Path, server: openai_standin.Standin, *, interval: float) -> Iterator[str]:
    """`serve` in a thread until the block ends; yields the /metrics URL once it is up."""
    tree = repo.WorkTree(root)
    loaded = load.load_repo(tree).rollout(golden.ROLLOUT)
    assert loaded is not None
    stop, ready = threading.Event(), threading.Event()
    port: list[int] = []
    client = llm.Client(server.url, retries=0)

    def on_ready(p: int) -> None:
        port.append(p)
        ready.set()

    thread = threading.Thread(
        target=evalrun.serve,
        args=(tree, loaded, evals.load_set(tree, golden.ROLLOUT), client),
        kwargs={"port": 0, "interval": interval, "stop": stop, "on_ready": on_ready},
        daemon=True,
    )
    thread.start()
    try:
        assert ready.wait(30), "serve never came up"
        yield f"http://127.0.0.1:{port[0]}/metrics"
    finally:
        stop.set()
        thread.join(timeout=30)
        client.close()


def samples(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = httpx.get(url, timeout=5).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in parser.text_string_to_metric_families(text)
        for s in family.samples
    }


def test_counters_per_variant_and_segment(repo: Path, server: openai_standin.Standin) -> None:
    with serving(repo, server, interval=3600) as url:  # one round, then waits
        found = prom.prom_poll(
            "a finished round",
            lambda: (s := samples(url)).get(("llm_eval_rounds_total", frozenset({("route", "triage")}))) and s,
        )

    def count(variant: str, result: str, queue: str) -> float:
        labels = frozenset({("route", "triage"), ("variant", variant), ("result", result), ("queue", queue)})
        return found.get(("llm_eval_results_total", labels), 0.0)

    assert count("canary", "fail", "shipping") == 2 and count("canary", "pass", "shipping") == 1
    assert count("stable", "pass", "shipping") == 3 and count("stable", "fail", "billing") == 1
    assert sum(v for (name, _), v in found.items() if name == "llm_eval_results_total") == 2 * len(golden.TICKETS)


def test_errors_are_counted_apart(repo: Path) -> None:
    def answer(model: str, messages: list[dict[str, Any]]) -> openai_standin.Reply:
        return openai_standin.Reply(fault="500") if model == golden.CANARY else golden.triage(model, messages)

    with openai_standin.standin(answer=answer) as server, serving(repo, server, interval=3600) as url:
        found = prom.prom_poll(
            "a finished round",
            lambda: (s := samples(url)).get(("llm_eval_rounds_total", frozenset({("route", "triage")}))) and s,
        )
    errors_ = frozenset({("route", "triage"), ("variant", "canary")})
    assert found[("llm_eval_errors_total", errors_)] == len(golden.TICKETS)
    assert not any(name == "llm_eval_results_total" and ("variant", "canary") in labels for (name, labels) in found)


@pytest.mark.slow
def test_prometheus_and_the_eval_pass_rate_gate(repo: Path, server: openai_standin.Standin, tmp_path: Path) -> None:
    """The counters, scraped by a real Prometheus, fail the built-in gate for the broken canary."""
    config = spec.ControllerConfig.model_validate(
        {"apiVersion": "rollouts/v1", "kind": "ControllerConfig", "routers": {"local": {"type": "file"}}}
    )
    gate = spec.Gate(use="eval_pass_rate", max_drop=0.03)
    target = analysis.Target(
        rollout=golden.ROLLOUT, route="triage", router_type="file", gates=(gate,), segments=("queue",), min_samples=1
    )
    with prom.prom_server(tmp_path, data_dir=tmp_path / "data") as server_p, serving(repo, server, interval=0.5) as url:
        server_p.set_targets([url.removeprefix("http://").removesuffix("/metrics")], metrics_path="/metrics")
        metrics = prometheus.Prometheus(server_p.url)
        try:

            def conclusive() -> gates.GateEvidence | None:
                found = analysis.evaluate(
                    [target], config=config, metrics=metrics, at=datetime.now(UTC), window=timedelta(minutes=1)
                )[golden.ROLLOUT][0]
                return found if found.verdict is not gates.Verdict.INCONCLUSIVE else None

            evidence = prom.prom_poll("a conclusive eval_pass_rate verdict", conclusive)
        finally:
            metrics.close()
    assert evidence.verdict is gates.Verdict.FAIL
    bad = {gates.segment_text(r.segment): r.verdict for r in evidence.segments}
    assert bad["queue=shipping"] is gates.Verdict.FAIL
    # the canary fixed billing: never a FAIL there (a handful of cases is too few for the
    # sequential judge to call it a PASS yet)
    assert bad["queue=billing"] in (gates.Verdict.PASS, gates.Verdict.INCONCLUSIVE)
