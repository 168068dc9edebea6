"""A clock the tests move, whose sleep moves it: for budgets, pauses and retry waits without waiting."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class FakeTime:
    now: float = 1_000_000.0
    slept: list[float] = field(default_factory=list)

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
