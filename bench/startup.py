"""Start-up time of the `rollout` command: the median wall time of `--help`, `validate` on one rollout
and `plan` (the examples on file routers), beside `python -c pass` measured in the same run.

Run: python bench/startup.py [--runs N]. Each run is a fresh process, stdout a pipe (no colour, so no
rich), with a bytecode cache as an installed package has one (warmed once, in a temporary directory).
Target (issue 22): `--help` and `validate` well under 0.5 s on the project's 2-core machine.
tests/cli/test_startup.py checks what they import, not the time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # a script: import the checkout it sits in

from tests.helpers.examples import ROOT, copy_examples

TARGET_S = 0.5


def median_wall(argv: list[str], *, runs: int, cwd: Path, env: dict[str, str]) -> float:
    """Median seconds of `argv` over `runs` runs, after one run that warms the bytecode cache."""
    times = []
    for _ in range(runs + 1):
        started = time.perf_counter()
        subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        times.append(time.perf_counter() - started)
    return statistics.median(times[1:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9, help="runs of each command (default: 9)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="startup-") as tmp:
        repo = copy_examples(Path(tmp))
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env |= {"PYTHONPATH": str(ROOT), "PYTHONPYCACHEPREFIX": f"{tmp}/pycache", "ROLLOUT_STATE_DIR": f"{tmp}/state"}
        rollout = [sys.executable, "-m", "controller"]
        rows = [
            ("python -c pass", [sys.executable, "-c", "pass"], None),
            ("rollout --help", [*rollout, "--help"], TARGET_S),
            ("rollout validate rollouts/support-bot", [*rollout, "validate", "rollouts/support-bot"], TARGET_S),
            ("rollout plan", [*rollout, "plan"], None),
        ]
        measured = [(name, median_wall(argv, runs=args.runs, cwd=repo, env=env), target) for name, argv, target in rows]
    baseline = measured[0][1]
    print(f"median wall time of {args.runs} runs each (stdout a pipe, bytecode cached)\n")
    print(f"{'command':<40} {'seconds':>8} {'x python':>9}  target")
    for name, seconds, target in measured:
        verdict = "" if target is None else f"< {target} s: {'met' if seconds < target else 'MISSED'}"
        print(f"{name:<40} {seconds:>8.3f} {seconds / baseline:>9.1f}  {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
