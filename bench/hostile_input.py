"""Time and peak memory of `rollout validate` and `rollout plan` on each hostile input of the corpus.

Run: python bench/hostile_input.py [--only SUBSTRING]. Each case and command runs in a process of its own
(tests/helpers/hostile.py), as a user runs it: the wall time includes starting Python and importing the
controller, which the first row (the valid corpus repository) shows alone. Targets (issue 19): under
2 s and 200 MB each. tests/corpus/test_hostile.py asserts the memory and the messages, not the time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # a script: import the checkout it sits in

from tests.helpers import corpus, hostile

TARGET_S, TARGET_MB = 2.0, 200


def measure(case: corpus.Case | corpus.FileCase | None, command: str) -> tuple[float, float, float, str]:
    """(wall seconds, seconds in the command, peak MB, first line of what it said) for one run."""
    with tempfile.TemporaryDirectory(prefix="hostile-") as tmp:
        root = corpus.make_repo(Path(tmp))
        if case is not None:
            hostile.build(root, case)
        started = time.perf_counter()
        done = subprocess.run(
            hostile.subprocess_argv(root, (command,)),
            env=hostile.subprocess_env(Path(tmp) / "state"),
            cwd=hostile.ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        wall = time.perf_counter() - started
    if done.returncode != 0:
        return wall, 0.0, 0.0, "harness failed: " + done.stderr.strip().splitlines()[-1]
    report = json.loads(done.stdout)
    ran = report[command]
    said = "raised: " + ran["raised"].strip().splitlines()[-1] if ran["raised"] else (ran["out"] + ran["err"])
    if command == "validate" and not ran["raised"]:
        found = json.loads(ran["out"])["findings"]
        said = f"{found[0]['line']}:{found[0]['column']} {found[0]['message']}" if found else "valid"
    return wall, ran["seconds"], report["peak_mb"], " ".join(said.split())[:70]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="run the cases whose id contains this")
    args = parser.parse_args()
    cases: list[corpus.Case | corpus.FileCase | None] = [None, *corpus.HOSTILE, *corpus.FILES]
    cases += [c for c in corpus.CASES if c not in corpus.HOSTILE and len(c.data) > 50_000]
    cases = [c for c in cases if c is None or args.only in c.id]
    print(f"{'case':40} {'command':8} {'wall s':>7} {'in cmd s':>8} {'peak MB':>8}  first problem")
    worst = {"wall": 0.0, "mb": 0.0}
    for case in cases:
        for command in ("validate", "plan"):
            wall, inside, mb, said = measure(case, command)
            name = "(valid corpus repository)" if case is None else case.id
            print(f"{name:40} {command:8} {wall:7.2f} {inside:8.2f} {mb:8.0f}  {said}", flush=True)
            worst["wall"], worst["mb"] = max(worst["wall"], wall), max(worst["mb"], mb)
    print(f"\nworst: {worst['wall']:.2f} s (target {TARGET_S} s), {worst['mb']:.0f} MB (target {TARGET_MB} MB)")
    return 0 if worst["wall"] < TARGET_S and worst["mb"] < TARGET_MB else 1


if __name__ == "__main__":
    sys.exit(main())
