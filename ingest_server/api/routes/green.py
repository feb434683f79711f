"""The green-factory and GHG entries of a period (绿色工厂 / 温室气体), for the console:
what the enterprise entered, who entered it and when, and the indicator sheet and GHG
summary its figures give (docs/green-ghg.md).

    GET /api/v1/enterprises/{e}/green?from&to   the entries in force, their trail, the sheet
    PUT /api/v1/enterprises/{e}/green           enter the period's values (a new row)

The body of PUT is the file of `ingest-server green set` (cli/green.py) with the period
and a note: checked the same way (the models and `entry_problems` of evidence/green.py),
a 422 naming the field before anything is stored. Entering needs an enterprise or admin
account; a verifier reads. The sheet and the summary are those the signed report would
carry (its `green` and `ghg` blocks), computed from the unsigned report of the period.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from ingest_server.api.auth import ApiError
from ingest_server.api.deps import Enterprise, Reading, writing
from ingest_server.api.params import Day, check_period
from ingest_server.evidence.green import GreenEntries, PeriodEntries, entry_problems
from ingest_server.evidence.report import Request as ReportRequest
from ingest_server.evidence.report import make_report
from ingest_server.repo import green as green_repo

router = APIRouter(prefix="/api/v1", tags=["green"])

Entering = Annotated[Enterprise, Depends(writing("enter green-factory values of"))]


class GreenIn(PeriodEntries):
    """The values of a period: `ingest-server green set`'s file, its period and a note."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    date_from: Day = Field(alias="from")
    date_to: Day = Field(alias="to")
    note: str = Field(default="", max_length=2000)


class GreenEntryPublic(BaseModel):
    """A row of the trail: what was entered for the period, by whom and when."""

    id: int
    period_from: dt.date
    period_to: dt.date
    entries: dict[str, Any]
    process: list[dict[str, Any]]
    note: str
    entered_at: dt.datetime
    entered_by: str


class GreenPublic(BaseModel):
    enterprise: str
    period_from: dt.date = Field(serialization_alias="from")
    period_to: dt.date = Field(serialization_alias="to")
    current: GreenEntryPublic | None  # the newest row: the one in force
    history: list[GreenEntryPublic]  # every row of the period, oldest first
    green: dict[str, Any]  # the report's `green` block (evidence/green.py `green_block`)
    ghg: dict[str, Any]  # its `ghg` block (evidence/ghg.py `ghg_block`)


def _view(e: Enterprise, date_from: dt.date, date_to: dt.date) -> GreenPublic:
    doc = make_report(e.conn, ReportRequest(e.id, date_from, date_to), key=None)
    trail = green_repo.entry_trail(e.conn, enterprise=e.id, date_from=date_from, date_to=date_to)
    history = [GreenEntryPublic.model_validate(r) for r in trail]
    return GreenPublic(
        enterprise=e.id, period_from=date_from, period_to=date_to,
        current=history[-1] if history else None, history=history,
        green=doc["green"], ghg=doc["ghg"],
    )  # fmt: skip


@router.get(
    "/enterprises/{enterprise}/green", response_model=GreenPublic, response_model_by_alias=True
)
def show(
    e: Reading,
    date_from: Annotated[Day, Query(alias="from")],
    date_to: Annotated[Day, Query(alias="to")],
) -> GreenPublic:
    """The entries in force for exactly [from, to], their trail, and the indicator sheet
    and GHG summary the period's figures give with them."""
    check_period(date_from, date_to)
    return _view(e, date_from, date_to)


@router.put(
    "/enterprises/{enterprise}/green", response_model=GreenPublic, response_model_by_alias=True
)
def enter(e: Entering, body: GreenIn) -> GreenPublic:
    """Enter the period's values: they are in force for reports of exactly that period
    made from now on; what was in force before stays on the trail. The view after."""
    check_period(body.date_from, body.date_to)
    problems = entry_problems(body)
    if problems:
        raise ApiError(422, "invalid_parameter", "; ".join(f"indicators: {p}" for p in problems))
    entries = GreenEntries(indicators=body.indicators, pv=body.pv).model_dump(mode="json")
    process = [p.model_dump(mode="json") for p in body.process_emissions]
    green_repo.add_entries(e.conn, green_repo.NewGreenEntries(
        e.id, body.date_from, body.date_to, entries, process, body.note, e.caller.name,
    ))  # fmt: skip
    e.conn.commit()
    return _view(e, body.date_from, body.date_to)
