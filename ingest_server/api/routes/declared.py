"""The enterprise's declarations as a report would state them, for the console to show
before a report is issued: which meters' calibration is expired, expiring or missing, and
whether a declaration (承诺) is entered.

    GET /api/v1/enterprises/{e}/meter-register?from&to   the report's `meter_register`
    GET /api/v1/enterprises/{e}/declaration              the report's `declaration`

Both are the blocks evidence/report.py adds to a report (evidence/declared.py, read by
repo/declarations.py), so what the console shows is what a report of the period says.
Every role that reads the enterprise reads them; the registry's import writes them.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from ingest_server.api.deps import Enterprise, KnownEnterprise
from ingest_server.api.params import Day, check_period
from ingest_server.evidence.declared import declaration_block, meter_register_block
from ingest_server.repo import declarations
from ingest_server.repo import enterprises as enterprises_repo

router = APIRouter(prefix="/api/v1", tags=["declared"])

# as the report names it (kpi/engine.py): the default declaration's text says so
SOFTWARE = "factory-evidence"
CalibrationState = Literal["valid", "expires_in_period", "expired", "missing"]


class MeterRowPublic(BaseModel):
    model_config = ConfigDict(protected_namespaces=())  # a column is called `model`

    id: str
    site: str
    name: str
    name_en: str | None
    carrier: str
    serial: str | None
    model: str | None
    accuracy_class: str | None
    certificate: str | None
    issued_by: str | None
    calibrated_on: dt.date | None
    valid_until: dt.date | None
    status: CalibrationState = Field(description="the certificate's state at the period's end")
    warning: str | None = Field(description="what the state means, in Chinese (null: valid)")
    warning_en: str | None


class MeterSummaryPublic(BaseModel):
    valid: int
    expires_in_period: int
    expired: int
    missing: int


class MeterRegisterPublic(BaseModel):
    version: int
    as_of: dt.date = Field(description="the period's last day, the states' date")
    basis: str = Field(description="GB 17167's requirement, in Chinese")
    basis_en: str
    meters: list[MeterRowPublic]
    summary: MeterSummaryPublic = Field(description="the meters by state")


class DeclarationPublic(BaseModel):
    version: int
    text: str
    text_en: str
    default: bool = Field(description="true: the enterprise entered none, the default text")
    signatory: str | None = Field(description="null: the report leaves the line to sign by hand")
    position: str | None
    date: dt.date = Field(description="today at the enterprise's first site: a report's date")


def _sites(e: Enterprise) -> list[dict[str, Any]]:
    found = enterprises_repo.get_enterprise(e.conn, enterprise=e.id) or {}
    sites: list[dict[str, Any]] = found.get("sites", [])
    return sites


@router.get("/enterprises/{enterprise}/meter-register", response_model=MeterRegisterPublic)
def meter_register(
    e: KnownEnterprise,
    date_from: Annotated[Day, Query(alias="from")],
    date_to: Annotated[Day, Query(alias="to")],
) -> dict[str, Any]:
    """The meter register a report of [from, to] would carry: each meter of the
    enterprise's sites with its nameplate, certificate and the certificate's state on
    `to`, and a count by state."""
    check_period(date_from, date_to)
    sites = [s["id"] for s in _sites(e)]
    meters = declarations.meter_register(e.conn, enterprise=e.id, sites=sites)
    return meter_register_block(meters, date_from, date_to)


@router.get("/enterprises/{enterprise}/declaration", response_model=DeclarationPublic)
def declaration(e: KnownEnterprise) -> dict[str, Any]:
    """The declaration a report issued today would end with: the enterprise's own or the
    default text (`default` true), and its signatory and position (null: none entered)."""
    sites = _sites(e)
    tz = ZoneInfo(sites[0]["timezone"]) if sites else dt.UTC
    declared = declarations.declaration(e.conn, enterprise=e.id)
    return declaration_block(declared, dt.datetime.now(tz).date(), SOFTWARE)
