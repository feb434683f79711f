"""Output and value added, entered by people: the figures energy and carbon intensities
divide by.

    GET  /api/v1/enterprises/{e}/production    output / value added entries
    POST /api/v1/enterprises/{e}/production    enter one (an unknown site: 422)
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from ingest_server.api.auth import ApiError
from ingest_server.api.deps import Enterprise, Reading, writing
from ingest_server.api.models import CreatedPublic, ProductionEntryPublic, ProductionIn
from ingest_server.api.params import check_period
from ingest_server.repo import production as production_repo

router = APIRouter(prefix="/api/v1", tags=["production"])

Entering = Annotated[Enterprise, Depends(writing("enter figures for"))]


@router.get("/enterprises/{enterprise}/production", response_model=list[ProductionEntryPublic])
def production(e: Reading) -> list[dict[str, Any]]:
    return production_repo.list_entries(e.conn, enterprise=e.id)


@router.post("/enterprises/{enterprise}/production", status_code=201)
def add_production(e: Entering, entry: ProductionIn) -> CreatedPublic:
    check_period(entry.period_from, entry.period_to, longest=None)
    if entry.output is None and entry.value_added_10k_cny is None:
        raise ApiError(
            422, "invalid_parameter", "give output, value_added_10k_cny, or both",
            "请填写产量 (output) 或工业增加值 (value_added_10k_cny), 或两者都填",
        )  # fmt: skip
    new = production_repo.NewEntry(
        e.id, entry.site, entry.period_from, entry.period_to, entry.output,
        entry.output_unit, entry.value_added_10k_cny, entry.note,
        entry.entered_by or e.caller.name,
    )  # fmt: skip
    # an unknown enterprise (404) or site (422 naming `site`): the app's handlers answer
    return CreatedPublic(id=production_repo.add_entry(e.conn, new))
