"""Capped exponential backoff with full jitter, for every reconnect and retry loop of the
agent and the server.

Jitter keeps a gateway's devices (and a plant's gateways) from reconnecting in lockstep
after a shared outage: each delay is drawn uniformly from [base/2, base], and base
doubles from ``min_s`` up to ``max_s``.
"""

from __future__ import annotations

import random


class Backoff:
    def __init__(self, min_s: float, max_s: float, *, rng: random.Random | None = None) -> None:
        if min_s <= 0 or max_s < min_s:
            raise ValueError("backoff needs 0 < min_s <= max_s")
        self.min_s = min_s
        self.max_s = max_s
        self._base = min_s
        self._rng = rng or random.Random()
        self.attempts = 0

    def next(self) -> float:
        """The delay before the next attempt."""
        delay = self._rng.uniform(self._base / 2, self._base)
        self._base = min(self.max_s, self._base * 2)
        self.attempts += 1
        return delay

    def reset(self) -> None:
        self._base = self.min_s
        self.attempts = 0
