"""Sim time: real time, accelerated time, or time a test moves by hand.

Every clock returns epoch seconds (UTC). Protocol servers stamp values with sim time,
so an accelerated run shows accelerated timestamps.
"""

from __future__ import annotations

import math
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float: ...

    @property
    def speed(self) -> float: ...


class ScaledClock:
    """Sim time = start + wall seconds elapsed x speed (speed 1 is real time)."""

    def __init__(self, start: float | None = None, speed: float = 1.0) -> None:
        if not (0 < speed <= 10_000):
            raise ValueError(f"speed must be in (0, 10000], got {speed}")
        # Whole seconds: schedules and truth files line up on second boundaries.
        self.start = float(math.floor(time.time() if start is None else start))
        self._speed = speed
        self._mono0 = time.monotonic()

    @property
    def speed(self) -> float:
        return self._speed

    def now(self) -> float:
        return self.start + (time.monotonic() - self._mono0) * self._speed


class ManualClock:
    """A clock that moves only when told to; for tests that need exact instants."""

    def __init__(self, start: float) -> None:
        self.start = float(start)
        self._now = self.start

    @property
    def speed(self) -> float:
        return 1.0

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        self._now += seconds
        return self._now
