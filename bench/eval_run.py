"""Wall time of `rollout eval` (both variants) against a stand-in endpoint with a fixed latency,
as concurrency grows; and the cost of retrying 429s.

Run from the repository root: `python bench/eval_run.py [--cases 50] [--latency 0.05]`. The
stand-in is the tests' OpenAI-compatible server (`tests/helpers/openai_standin.py`) on port 0.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # a script: import the checkout it sits in

from controller import evalrun, evals, llm, load, repo
from tests.helpers import golden, openai_standin


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--cases", type=int, default=50)
    p.add_argument("--latency", type=float, default=0.05, help="seconds per answer")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = golden.write_repo(Path(tmp) / "repo")
        lines = golden.golden_lines()
        cases = [json.loads(lines[i % len(lines)]) for i in range(args.cases)]
        for i, case in enumerate(cases):
            case["id"] = f"{case['id']}-{i}"
        (root / "rollouts" / golden.ROLLOUT / "evals" / "triage.jsonl").write_text(
            "\n".join(json.dumps(c) for c in cases) + "\n"
        )
        tree = repo.WorkTree(root)
        loaded = load.load_repo(tree).rollout(golden.ROLLOUT)
        assert loaded is not None
        golden_set = evals.load_set(tree, golden.ROLLOUT)

        def slow(fault: str | None) -> Any:
            def answer(model: str, messages: list[dict[str, Any]]) -> openai_standin.Reply:
                reply = golden.triage(model, messages)
                return openai_standin.Reply(reply.content, fault=fault, times=1 if fault else 0, delay=args.latency)

            return answer

        print(f"{args.cases} cases x 2 variants, {args.latency * 1000:.0f} ms per answer")
        print(f"{'scenario':<28} {'concurrency':>11} {'requests':>9} {'wall s':>8} {'cases/s':>8}")
        for fault, label in ((None, "all answered"), ("429", "each request 429 once")):
            for concurrency in (1, 4, 16):
                with (
                    openai_standin.standin(answer=slow(fault)) as server,
                    llm.Client(server.url, backoff=0.05) as client,
                ):
                    start = time.perf_counter()
                    report = evalrun.run(tree, loaded, golden_set, client, concurrency=concurrency)
                    wall = time.perf_counter() - start
                    assert not report.partial
                    requests = server.requests
                rate = 2 * args.cases / wall
                print(f"{label:<28} {concurrency:>11} {requests:>9} {wall:>8.2f} {rate:>8.1f}")


if __name__ == "__main__":
    main()
