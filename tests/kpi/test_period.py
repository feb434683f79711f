"""The period rules, written once (kpi/period.py) and asked by the API, the CLI and the
report: each broken rule names the date to change."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest

from ingest_server.kpi.period import MAX_PERIOD_DAYS, PeriodError, check_period
from ingest_server.kpi.records import ReportError

D = dt.date


@pytest.mark.parametrize(
    ("args", "longest", "field", "words"),
    [
        ((D(2026, 3, 2), D(2026, 3, 1)), None, "to", "ends before it starts"),
        ((D(2026, 3, 1), D(2026, 3, 31), D(2026, 2, 1), None), None, "baseline_to", "neither"),
        ((D(2026, 3, 1), D(2026, 3, 31), None, D(2026, 2, 1)), None, "baseline_to", "neither"),
        ((D(2026, 3, 1), D(2026, 3, 31), D(2026, 2, 9), D(2026, 2, 1)), None, "baseline_to",
         "is before baseline_from"),
        ((D(2026, 3, 1), D(2026, 3, 31), D(2026, 3, 2), D(2026, 3, 9)), None, "baseline_from",
         "must start before"),
        ((D(2020, 1, 1), D(2025, 1, 1)), MAX_PERIOD_DAYS, "to", "at most 1827"),
        ((D(2026, 1, 1), D(2026, 1, 2), D(2020, 1, 1), D(2025, 1, 1)), MAX_PERIOD_DAYS,
         "baseline_to", "at most 1827"),
    ],
)  # fmt: skip
def test_each_rule_names_the_date_to_change(
    args: tuple[dt.date, ...], longest: int | None, field: str, words: str
) -> None:
    with pytest.raises(PeriodError) as caught:
        check_period(*args, longest=longest)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")
    assert words in str(caught.value)
    assert isinstance(caught.value, ReportError)  # API 422, CLI exit 2


def test_periods_that_keep_the_rules_pass() -> None:
    check_period(D(2026, 3, 1), D(2026, 3, 1))
    check_period(D(2026, 3, 1), D(2026, 3, 31), D(2026, 2, 1), D(2026, 2, 28))
    check_period(D(2026, 3, 1), D(2026, 3, 31), D(2026, 3, 1), D(2026, 3, 31))
    check_period(D(2020, 1, 1), D(2025, 1, 1))  # no limit unless one is asked for


def test_the_cli_refuses_half_a_baseline_before_it_touches_a_database(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "ingest_server.cli.main", "report", "--enterprise", "e",
         "--from", "2026-03-01", "--to", "2026-03-31", "--baseline-from", "2026-02-01",
         "--dsn", "postgresql://127.0.0.1:1/nothing-listens-here", "--unsigned"],
        check=False, capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert "baseline_to: give both baseline_from and baseline_to, or neither" in r.stderr
