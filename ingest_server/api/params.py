"""The API's date and time parameters and the checks of the periods and windows they make.

Every date and time parameter of the API (`Day`, `Instant`) lies in 1970-01-01 ..
2999-12-31 (stated in the OpenAPI schema); anything else is a 422 that names the
parameter and the range, never an overflow deep in a query. A report's period is at most
five years (`check_period`); a window of data views at most 92 days (`time_window`).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import AfterValidator, Field

from ingest_server.api.auth import ApiError
from ingest_server.kpi import period
from ingest_server.kpi.period import MAX_PERIOD_DAYS

MAX_RANGE = dt.timedelta(days=92)

# No sample is older than the Unix epoch (contract v1's times start there); the last
# year is far beyond any data and far enough from the calendar's end (9999) that every
# instant the server derives from a date (the next day, local midnight in any time zone,
# a month's end, a default start a day earlier) exists.
FIRST_DAY, LAST_DAY = dt.date(1970, 1, 1), dt.date(2999, 12, 31)
FIRST_INSTANT = dt.datetime.combine(FIRST_DAY, dt.time(), dt.UTC)
LAST_INSTANT = dt.datetime.combine(LAST_DAY, dt.time.max, dt.UTC)
DAYS = f"a date from {FIRST_DAY} to {LAST_DAY}"
INSTANTS = f"a time from {FIRST_DAY}T00:00:00Z to {LAST_DAY}T23:59:59Z, with its time zone"


def _day(d: dt.date) -> dt.date:
    if not FIRST_DAY <= d <= LAST_DAY:
        raise ValueError(f"{d.isoformat()} is out of range: give {DAYS}")
    return d


def _instant(t: dt.datetime) -> dt.datetime:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{t.isoformat()} has no time zone: give {INSTANTS} (Z or +08:00)")
    # aware datetimes compare without converting, so 0001-01-01T00:00+14:00 cannot overflow
    if not FIRST_INSTANT <= t <= LAST_INSTANT:
        raise ValueError(f"{t.isoformat()} is out of range: give {INSTANTS}")
    return t


# the API's date and time parameters: FastAPI answers 422 naming the parameter, and the
# OpenAPI schema (/docs) states the range
Day = Annotated[dt.date, AfterValidator(_day), Field(description=DAYS)]
Instant = Annotated[dt.datetime, AfterValidator(_instant), Field(description=INSTANTS)]


# A report's period (and its baseline): a five-year plan is the longest period a claim
# covers, and the KPI engine's cost grows faster than the period (on the test plant 0.2 s
# for a year, 6 s for ten, hours for a thousand): longer is refused, not computed.
def check_period(
    date_from: dt.date,
    date_to: dt.date,
    baseline_from: dt.date | None = None,
    baseline_to: dt.date | None = None,
    *,
    longest: int | None = MAX_PERIOD_DAYS,
) -> None:
    """A period and its baseline as kpi/period.py's rules want them, as a 422 naming the
    parameter (the dates are `Day`s already)."""
    try:
        period.check_period(date_from, date_to, baseline_from, baseline_to, longest=longest)
    except period.PeriodError as exc:
        raise ApiError(422, "invalid_parameter", str(exc)) from None


def time_window(
    start: dt.datetime | None, end: dt.datetime | None, limit: dt.timedelta = MAX_RANGE
) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of the `Instant`s given, by default the day before end (or now)."""
    end = end or dt.datetime.now(dt.UTC)
    start = start or max(end - dt.timedelta(days=1), FIRST_INSTANT)
    if end <= start:
        raise ApiError(
            422, "invalid_parameter",
            f"end: {end.isoformat()} must be after start ({start.isoformat()})",
        )  # fmt: skip
    if end - start > limit:
        raise ApiError(422, "invalid_parameter", f"end: at most {limit.days} days after start")
    return start, end
