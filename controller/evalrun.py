"""Running a golden set: offline (one report, stable and canary side by side) and online (rounds
forever, per-variant counters on /metrics for the `eval_pass_rate` gate).

Called by `rollout eval`. Combines the pure `evals` core with the `llm` adapter and
prometheus_client; it reads prompts through a `load.Tree` and prints nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import prometheus_client

from controller import errors, evals, llm, load

Progress = Callable[[int, int], None]  # (done, total)


@dataclass(frozen=True)
class _Job:
    variant: str
    case: evals.Case
    body: dict[str, Any]


def run(
    tree: load.Tree,
    loaded: load.LoadedRollout,
    golden: evals.GoldenSet,
    client: llm.Client,
    *,
    variant: str = "both",
    concurrency: int = 4,
    progress: Progress | None = None,
) -> evals.EvalReport:
    """Every case against every chosen variant, then the judge checks. A case that got no answer
    (or no judgement) is kept as an ERROR result: the report is partial, never thrown away."""
    chosen = evals.variants_of(loaded, variant)
    if not chosen:
        raise errors.EvalError(f"rollout {loaded.name!r} has no {variant} variant to evaluate")
    jobs = []
    for name, v in chosen:
        prompt = evals.prompt_text(tree, loaded, name)
        jobs += [_Job(name, case, evals.request_body(v, prompt, case)) for case in golden.cases]
    judges = sum(isinstance(c, evals.Judge) for case in golden.cases for c in case.checks) * len(chosen)
    total, done = len(jobs) + judges, 0
    lock = threading.Lock()

    def tick(_i: int, _o: llm.Reply) -> None:
        nonlocal done
        with lock:
            done += 1
            if progress is not None:
                progress(done, total)

    answers = client.chat_many([j.body for j in jobs], concurrency=concurrency, on_done=tick)
    judge_model = loaded.rollout.spec.stable.model
    asks: list[tuple[int, int]] = []  # (job index, check index)
    bodies = []
    for i, (job, answer) in enumerate(zip(jobs, answers, strict=True)):
        if isinstance(answer, evals.Answer):
            for k, check in enumerate(job.case.checks):
                if isinstance(check, evals.Judge):
                    asks.append((i, k))
                    bodies.append(evals.judge_body(check, job.case, answer, model=judge_model))
    verdicts = client.chat_many(bodies, concurrency=concurrency, on_done=tick) if bodies else []
    judged: dict[int, dict[int, tuple[bool, str]]] = {}
    judge_errors: dict[int, str] = {}
    for (i, k), verdict in zip(asks, verdicts, strict=True):
        if isinstance(verdict, errors.EvalError):
            judge_errors[i] = f"judge: {verdict}"
            continue
        try:
            judged.setdefault(i, {})[k] = evals.parse_judge(verdict.text())
        except ValueError as exc:
            judge_errors[i] = f"judge: {exc}"
    results: dict[str, list[evals.CaseResult]] = {name: [] for name, _ in chosen}
    for i, (job, answer) in enumerate(zip(jobs, answers, strict=True)):
        if isinstance(answer, errors.EvalError):
            results[job.variant].append(evals.errored(job.case, str(answer)))
        elif i in judge_errors:
            results[job.variant].append(evals.errored(job.case, judge_errors[i]))
        else:
            results[job.variant].append(evals.score_case(job.case, answer, judged=judged.get(i)))
    return evals.EvalReport(
        rollout=loaded.name,
        golden_set=golden.digest,
        cases=len(golden.cases),
        variants={
            name: evals.VariantResult(
                variant=name, model=v.model, revision=loaded.revisions.get(name, ""), cases=tuple(results[name])
            )
            for name, v in chosen
        },
    )


# -- online --------------------------------------------------------------------------------------------


class OnlineMetrics:
    """The counters `eval_pass_rate` reads: `llm_eval_results_total{route, variant, result, <segments>}`,
    plus `llm_eval_errors_total` for cases that got no answer (kept out of the pass rate)."""

    def __init__(self, route: str, segments: tuple[str, ...]) -> None:
        self.route, self.segments = route, segments
        self.registry = prometheus_client.CollectorRegistry()
        self.results = prometheus_client.Counter(
            "llm_eval_results",
            "Online eval verdicts of golden cases, per variant.",
            ["route", "variant", "result", *segments],
            registry=self.registry,
        )
        self.errors = prometheus_client.Counter(
            "llm_eval_errors",
            "Online eval cases that got no answer (timeouts, 429s, malformed responses).",
            ["route", "variant"],
            registry=self.registry,
        )
        self.failed_rounds = prometheus_client.Counter(
            "llm_eval_failed_rounds", "Rounds that could not run at all.", ["route"], registry=self.registry
        )
        self.rounds = prometheus_client.Counter(
            "llm_eval_rounds", "Completed rounds over the golden set.", ["route"], registry=self.registry
        )

    def count(self, report: evals.EvalReport, golden: evals.GoldenSet) -> None:
        by_id = {c.id: c for c in golden.cases}
        for v in report.variants.values():
            for result in v.cases:
                if result.status is evals.CaseStatus.ERROR:
                    self.errors.labels(self.route, v.variant).inc()
                    continue
                case = by_id[result.id]
                seg = [case.segments.get(s, "") for s in self.segments]
                self.results.labels(self.route, v.variant, str(result.status), *seg).inc()
        self.rounds.labels(self.route).inc()


def serve(
    tree: load.Tree,
    loaded: load.LoadedRollout,
    golden: evals.GoldenSet,
    client: llm.Client,
    *,
    port: int,
    interval: float,
    concurrency: int = 4,
    rounds: int | None = None,
    stop: threading.Event | None = None,
    on_ready: Callable[[int], None] | None = None,
    on_round: Callable[[evals.EvalReport], None] | None = None,
) -> int:
    """Evaluate both variants every `interval` seconds and expose the counters on
    `http://127.0.0.1:<port>/metrics` (port 0 picks a free one, passed to `on_ready`).
    Returns the number of rounds run when `rounds` are done or `stop` is set."""
    s = loaded.rollout.spec
    metrics = OnlineMetrics(s.route, tuple(s.analysis.segments))
    stop = stop or threading.Event()
    server, thread = prometheus_client.start_http_server(port, addr="127.0.0.1", registry=metrics.registry)
    done = 0
    try:
        if on_ready is not None:
            on_ready(int(server.server_port))
        while not stop.is_set() and (rounds is None or done < rounds):
            try:
                report = run(tree, loaded, golden, client, variant="both", concurrency=concurrency)
            except errors.RolloutError:
                metrics.failed_rounds.labels(s.route).inc()  # e.g. a prompt file vanished: try again later
            else:
                metrics.count(report, golden)
                if on_round is not None:
                    on_round(report)
            done += 1
            if rounds is not None and done >= rounds:
                break
            stop.wait(interval)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    return done
