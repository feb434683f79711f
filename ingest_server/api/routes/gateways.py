"""The enterprise's gateways and the messages refused from them.

GET /api/v1/enterprises/{e}/gateways        status, boot, agent
GET /api/v1/enterprises/{e}/dead-letters    refused messages of its gateways
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from ingest_server.api.deps import KnownEnterprise
from ingest_server.api.models import DeadLetterPublic, GatewayPublic
from ingest_server.repo import reception

router = APIRouter(prefix="/api/v1", tags=["gateways"])


@router.get("/enterprises/{enterprise}/gateways", response_model=list[GatewayPublic])
def gateways(e: KnownEnterprise) -> list[dict[str, Any]]:
    return reception.list_gateways(e.conn, enterprise=e.id)


@router.get("/enterprises/{enterprise}/dead-letters", response_model=list[DeadLetterPublic])
def dead_letters(
    e: KnownEnterprise, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[dict[str, Any]]:
    """The newest refused messages of the enterprise's gateways (without their payload)."""
    return reception.dead_letters(e.conn, enterprise=e.id, limit=limit)
