"""`bench/judge.py` still runs and prints its tables (the gates' judges, the traffic-split check, the real
shapes) and targets: a smoke test on a few rollouts (the figures themselves come from the full run, not
from here)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SMALL = ("--aa", "40", "--ab", "6", "--weights", "0.25", "--seed", "7", "--split-steps", "100", "--split-ab", "10")
SHAPES_SMALL = ("--shapes-aa", "4", "--shapes-ab", "2")


@pytest.mark.slow
def test_the_judge_bench_prints_every_judge_and_the_targets() -> None:
    run = subprocess.run(
        [sys.executable, "bench/judge.py", *SMALL, *SHAPES_SMALL],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    table, _, targets = run.stdout.partition("\ntargets:\n")
    rows = [line for line in table.splitlines() if line.startswith("25%")]
    judges = [re.split(r"\s{2,}", row)[1] for row in rows if "A/A: PASS reached" not in row]
    assert judges[0] == "ours (mixture SPRT)"
    assert any(name.startswith("ours alpha=") and name.endswith("calibrated on A/A") for name in judges)
    assert sum(name.startswith("flagger N=") for name in judges) == 3
    assert sum(name.startswith("kayenta MWU") for name in judges) == 3
    # one line per target: false rollbacks at the defaults, and one comparison per calibrated baseline;
    # then the traffic-split check's: false alarms per case and pooled, and one per wrong split;
    # then the real shapes': four per gate and the coarse-bucket check
    lines = [line.strip() for line in targets.strip().splitlines()]
    gates_lines = [line for line in lines if line.startswith("25%:")]
    split_lines = [line for line in lines if line.startswith("split:")]
    shapes_lines = [line for line in lines if line.startswith("shapes:")]
    assert len(gates_lines) == 3 and len(split_lines) == 5 and len(shapes_lines) == 10, targets
    assert len(lines) == 18, targets
    assert gates_lines[0].startswith("25%: ours at defaults: A/A false rollbacks")
    assert split_lines[0].startswith("split: A/A false alarms per step <= 0.1%")
    assert shapes_lines[0].startswith("shapes: latency_p95: A/A false rollbacks <= 1%")
    assert shapes_lines[-2].startswith("shapes: latency_p95 on LiteLLM's buckets")
    assert shapes_lines[-1].startswith("shapes: the pre-filter ruled out no look the judge decided")
    assert all(line.rsplit(": ", 1)[1] in ("yes", "NO") for line in lines)
    split_rows = [line for line in table.splitlines() if line.startswith("split ")]
    assert sum(row.startswith("split A/A") for row in split_rows) == 12  # 4 weights x 3 traffic levels
    assert sum(row.startswith("split wrong") for row in split_rows) == 9  # 3 wrong splits x 3 traffic levels
    # the real shapes: 12 latency cases (2 shapes x 2 layouts x 3 traffics) and 9 error cases, five judges each
    shape_rows = [
        re.split(r"\s{2,}", line) for line in table.splitlines() if line.startswith(("latency_p95", "error_rate"))
    ]
    assert len(shape_rows) == 21 * 5
    assert sum(row[4] == "ours (mixture SPRT)" for row in shape_rows) == 21
    assert sum(row[4].startswith("flagger N=") for row in shape_rows) == 42
    assert sum(row[4].startswith("kayenta MWU") for row in shape_rows) == 42
    assert {row[2] for row in shape_rows if row[0] == "latency_p95"} == {"envoy", "litellm"}
