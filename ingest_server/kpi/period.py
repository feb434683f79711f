"""The rules a report's period and its baseline keep, in one place: the API (a 422 that
names the parameter), the CLI (exit 2) and the report itself check them here.

    from <= to; baseline_from and baseline_to both or neither; baseline_from <=
    baseline_to; the baseline starts no later than the period; each at most `longest`
    days (the API's five years; none for the CLI and a production entry).
"""

from __future__ import annotations

import datetime as dt

from ingest_server.kpi.records import ReportError

MAX_PERIOD_DAYS = 1827  # five years with a leap day


class PeriodError(ReportError):
    """A period or baseline that breaks a rule; `field` names the date to change, as the
    API's parameters do (`to`, `baseline_from`, `baseline_to`)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


def check_period(
    date_from: dt.date,
    date_to: dt.date,
    baseline_from: dt.date | None = None,
    baseline_to: dt.date | None = None,
    *,
    longest: int | None = None,
) -> None:
    """Raise PeriodError for the first rule the period and baseline break."""
    if date_to < date_from:
        raise PeriodError(
            "to", f"{date_to} is before from ({date_from}): the period ends before it starts"
        )
    for name, a, b in (("to", date_from, date_to), ("baseline_to", baseline_from, baseline_to)):
        if longest is not None and a is not None and b is not None and (b - a).days >= longest:
            raise PeriodError(
                name,
                f"the period is {(b - a).days + 1} days; at most {longest} (five years): ask "
                "for a shorter period, or several",
            )
    if (baseline_from is None) != (baseline_to is None):
        raise PeriodError("baseline_to", "give both baseline_from and baseline_to, or neither")
    if baseline_from is not None and baseline_to is not None:
        if baseline_to < baseline_from:
            raise PeriodError(
                "baseline_to", f"{baseline_to} is before baseline_from ({baseline_from})"
            )
        if baseline_from > date_from:
            raise PeriodError(
                "baseline_from",
                f"{baseline_from} is after from ({date_from}): the baseline period must start "
                "before the reported period",
            )
