"""A fixed polling schedule: tick k is due at start + k x period_s, whatever reads cost.

    PollSchedule(period_s, start) -> read tick 0 -> finished(now) -> sleep until due
                                  -> read tick k -> finished(now) -> ...

A loop that sleeps the period after each read polls every period + read time and drifts:
at 1 s with 1,000 OPC UA nodes it missed about one value change in twenty. Here the
ticks stay on the grid the first read set, so a read's time is absorbed, not added.

Overrun policy: when a read ends after the next tick was due (it took longer than the
period, or the loop was starved), every tick already past is skipped and counted, and
the loop waits for the first tick still ahead: the phase is kept and missed polls are
never made up back to back. A burst would put several reads on a device that is already
slow, and their samples would carry nearly the same time: more load, no more
information. The first overrun after on-time polls is logged, then quietly counted
(`skipped`) until polls are back on time, which is logged with the streak's count.

Pure apart from those log lines: the caller gives the clock (a monotonic one).
"""

from __future__ import annotations

import logging
import math

logger = logging.getLogger(__name__)

# a read ending a rounding error after a tick was due has not missed it
_EPSILON = 1e-9


def next_tick(done: int, elapsed_s: float, period_s: float) -> int:
    """The tick to run after tick `done`'s read ended `elapsed_s` after tick 0's time.

    ``done + 1`` when its time has not passed; else the first tick not yet past (a tick
    due exactly now runs now).
    """
    if not period_s > 0:
        raise ValueError(f"the poll period must be positive, not {period_s!r}")
    return max(done + 1, math.ceil(elapsed_s / period_s - _EPSILON))


class PollSchedule:
    """Ticks at ``start + k * period_s``; after each read, `finished` says which is next."""

    def __init__(self, period_s: float, start: float, *, name: str = "poll") -> None:
        if not period_s > 0:
            raise ValueError(f"{name}: poll_interval_s must be positive, not {period_s!r}")
        self.period_s = period_s
        self.start = start
        self.name = name  # for the log lines: the device id
        self.tick = 0  # the tick being read, then the one waited for
        self.skipped = 0  # ticks passed over since start
        self._streak = 0  # ticks skipped since polls were last on time

    @property
    def due(self) -> float:
        """When the current tick is due (on the caller's clock)."""
        return self.start + self.tick * self.period_s

    def finished(self, now: float) -> int:
        """The current tick's read ended at `now`: move on; returns the ticks skipped."""
        following = next_tick(self.tick, now - self.start, self.period_s)
        skipped = following - self.tick - 1
        if skipped and not self._streak:
            logger.warning(
                "%s: a poll took %.3g s, longer than poll_interval_s %g s: skipping %d "
                "missed poll(s); polls stay on schedule, missed ones are counted "
                "(skipped_polls), not made up",
                self.name,
                now - self.due,
                self.period_s,
                skipped,
            )
        elif not skipped and self._streak:
            logger.info("%s: polls are back on time after skipping %d", self.name, self._streak)
        self._streak = self._streak + skipped if skipped else 0
        self.skipped += skipped
        self.tick = following
        return skipped
