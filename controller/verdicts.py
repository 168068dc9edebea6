"""Gate verdicts and `worst()`: the one vocabulary of judging, shared by `judge`, `gates` and `plan`.

A leaf module (no imports of ours) so the statistics in `controller.judge` and the wiring in
`controller.gates` can both use it; `gates.Verdict` and `gates.worst` re-export it.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class Verdict(StrEnum):
    PASS = "PASS"
    INCONCLUSIVE = "INCONCLUSIVE"  # not enough data yet: hold, never promote
    ERROR = "ERROR"  # could not measure: hold, never promote, never roll back on it alone
    FAIL = "FAIL"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Verdict.PASS: 0, Verdict.INCONCLUSIVE: 1, Verdict.ERROR: 2, Verdict.FAIL: 3}


def worst(verdicts: Iterable[Verdict]) -> Verdict:
    """The worst of several verdicts; no verdict at all is INCONCLUSIVE, never PASS."""
    return max(verdicts, key=lambda v: v.rank, default=Verdict.INCONCLUSIVE)
