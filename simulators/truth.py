"""Ground truth: what really happened in a simulated run, as JSON Lines.

One record per line, each with a ``type``:

- ``run``: scenario name, seed, start, time zone (first line)
- ``state``: one span of one machine (start, end, seconds, state, parts completed and
  good, energy/water/gas used, power, program); spans of a machine tile the run;
  ``truncated`` marks a span cut by the end of the run
- ``meter_hour``: true consumption through a meter in a clock hour (``partial`` at the
  edges of the run)
- ``rollover``: an unsigned counter register wrapped to zero (register, time, modulus)
- ``fault``: ``offline``/``freeze`` with start and end, ``counter_reset`` with ``ts``,
  ``server_restart`` with start and end
- ``summary``: totals per equipment and meter (last line)

Times are ISO 8601 UTC with a ``Z``; quantities are in kWh, m3 and seconds.
Documented for users in docs/simulators.md.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any


def iso(t: float) -> str:
    """Epoch seconds to ISO 8601 UTC; whole seconds print without a fraction."""
    stamp = dt.datetime.fromtimestamp(t, dt.UTC)
    if t == int(t):
        return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(s: str) -> float:
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


class TruthWriter:
    """Appends truth records to a JSONL file, flushing each batch so a crash keeps them."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] | None = open(self.path, "w", encoding="utf-8")  # noqa: SIM115
        self.count = 0

    def write(self, records: Iterable[dict[str, Any]]) -> None:
        if self._file is None:
            raise ValueError(f"truth file {self.path} is already closed")
        for r in records:
            self._file.write(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n")
            self.count += 1
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_truth(path: str | Path) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)
