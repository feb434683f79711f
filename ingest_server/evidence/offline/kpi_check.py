"""What the parts of the `kpis` check share: the findings they collect (`KpiCheck`, which
check.py turns into the verdict's check) and the report's dates and times as they read
them (`Z` or no zone: UTC).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any


@dataclass
class KpiCheck:
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # code, zh, en
    details: dict[str, Any] = field(default_factory=dict)

    def fail(self, code: str, zh: str, en: str) -> None:
        self.failures.append((code, zh, en))


def _when(text: Any) -> dt.datetime:
    t = dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.UTC)


def _day(text: Any) -> dt.date:
    return dt.date.fromisoformat(str(text))
