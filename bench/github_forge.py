"""How many GitHub API requests, and how long, each forge operation costs (against the stand-in).

Run: python bench/github_forge.py [ROUNDS]. Requests matter more than time: a token has 5,000
requests an hour (an App installation at least as many), and every tick spends some of them.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controller.forge import base, github
from tests.helpers import github_standin as standin_mod

TOKEN = "ghs_bench"


def main(rounds: int) -> int:
    server = standin_mod.StandIn(token=TOKEN).start()
    rows: list[tuple[str, int, float]] = []
    try:
        forge = github.GithubForge("acme/rollouts", token=TOKEN, api_url=server.api_url)
        forge.find("warm-up")  # the repository object is fetched once per forge

        def measure(name: str, op: Callable[[int], object]) -> None:
            times, counts = [], []
            for i in range(rounds):
                before = len(server.records)
                start = time.perf_counter()
                op(i)
                times.append(time.perf_counter() - start)
                counts.append(len(server.records) - before)
            rows.append((name, max(counts), statistics.median(times) * 1000))

        def change(i: int, step: int = 1) -> base.Change:
            return base.Change(
                branch=f"rollout/r{i}/advance-{step}",
                title=f"advance r{i}",
                body="| gate | verdict |\n|---|---|\n| error_rate | PASS |",
                message=f"advance r{i}",
                files={f"rollouts/r{i}/rollout.yaml": f"status: {{step: {step}}}\n".encode()},
                labels=("rollout",),
            )

        measure("propose (new PR)", lambda i: forge.propose(change(i), base="main"))
        measure("propose (unchanged, tick 2)", lambda i: forge.propose(change(i), base="main"))
        measure("propose (new files)", lambda i: forge.propose(change(i, step=2), base="main"))
        measure("find", lambda i: forge.find(f"rollout/r{i}/advance-1"))
        measure("comment (create)", lambda i: forge.comment(i + 1, "evidence", key="evidence"))
        measure("comment (edit)", lambda i: forge.comment(i + 1, "evidence 2", key="evidence"))
        measure(
            "set_check",
            lambda i: forge.set_check(i + 1, state=base.CheckState.SUCCESS, summary="ok", context="rollout/gates"),
        )
        measure(f"list ({2 * rounds} open PRs)", lambda i: forge.list(prefix="rollout/"))
        measure("merge", lambda i: forge.merge(i + 1, message=f"advance r{i}"))
    finally:
        server.stop()
    print(f"{'operation':<30} {'requests':>8} {'median ms':>10}")
    for name, count, ms in rows:
        print(f"{name:<30} {count:>8} {ms:>10.1f}")
    print(f"contract violations: {len(server.violations)}")
    return 1 if server.violations else 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 10))
