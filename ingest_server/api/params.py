"""The API's date and time parameters and the checks of the periods and windows they make.

Every date and time parameter of the API (`Day`, `Instant`) lies in 1970-01-01 ..
2999-12-31 (stated in the OpenAPI schema); anything else is a 422 that names the
parameter and the range, never an overflow deep in a query. A report's period is at most
five years (`check_period`); a window of data views at most 92 days (`time_window`).
Their refusals say what is wrong in English and in Chinese (`InvalidDatesError`).
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


class InvalidDatesError(ApiError):
    """A period or window refused: a 422 naming the parameter, its `message_zh` the same
    in Chinese (kpi/period.py words its rules in English; the console shows the user's
    language)."""

    def __init__(self, message: str, message_zh: str) -> None:
        super().__init__(422, "invalid_parameter", message, message_zh)


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
        zh = _period_zh(
            exc.field, date_from=date_from, date_to=date_to, baseline_from=baseline_from,
            baseline_to=baseline_to, longest=longest,
        )  # fmt: skip
        raise InvalidDatesError(str(exc), zh) from None


def _period_zh(
    field: str,
    *,
    date_from: dt.date,
    date_to: dt.date,
    baseline_from: dt.date | None,
    baseline_to: dt.date | None,
    longest: int | None,
) -> str:
    """The rule of kpi/period.py that `field` broke, in Chinese."""
    if field == "to" and date_to < date_from:
        return f"止日期 {date_to} 早于起日期 {date_from}: 统计期的结束早于开始"
    a, b, name = (
        (baseline_from, baseline_to, "基期")
        if field == "baseline_to"
        else (date_from, date_to, "统计期")
    )
    if longest is not None and a is not None and b is not None and (b - a).days >= longest:
        return f"{name}为 {(b - a).days + 1} 天, 最长 {longest} 天 (五年): 请缩短, 或分几段查询"
    if field == "baseline_to" and (baseline_from is None) != (baseline_to is None):
        return "基期的起止日期须同时填写, 或都不填"
    if field == "baseline_to":
        return f"基期止日期 {baseline_to} 早于基期起日期 {baseline_from}"
    return f"基期起日期 {baseline_from} 晚于统计期起日期 {date_from}: 基期须在统计期之前开始"


def time_window(
    start: dt.datetime | None, end: dt.datetime | None, limit: dt.timedelta = MAX_RANGE
) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of the `Instant`s given, by default the day before end (or now)."""
    end = end or dt.datetime.now(dt.UTC)
    start = start or max(end - dt.timedelta(days=1), FIRST_INSTANT)
    if end <= start:
        raise InvalidDatesError(
            f"end: {end.isoformat()} must be after start ({start.isoformat()})",
            f"结束时间 {end.isoformat()} 须晚于开始时间 ({start.isoformat()})",
        )
    if end - start > limit:
        raise InvalidDatesError(
            f"end: at most {limit.days} days after start",
            f"结束时间最多在开始时间之后 {limit.days} 天",
        )
    return start, end
