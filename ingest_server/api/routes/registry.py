"""The registry as the caller may see it, and the audited edits of declared attributes.

    GET   /api/v1/enterprises                          the caller's enterprises
    GET   /api/v1/enterprises/{e}                      sites, processes
    GET   /api/v1/enterprises/{e}/equipment            declared attributes + live state
    PATCH /api/v1/enterprises/{e}/equipment/{id}       edit declared attributes (audited)
    GET   /api/v1/enterprises/{e}/equipment/{id}/audit who changed what, when

Edits need an enterprise or admin account (ingest_server/api/auth.py). A later `registry
import` of a file that says otherwise sets the attributes back, and the audit trail shows
the edit it undid.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from ingest_server.api.auth import ApiError, Caller
from ingest_server.api.deps import Conn, Enterprise, KnownEnterprise, Reading, writing
from ingest_server.api.models import (
    AuditEntryPublic,
    EnterpriseDetailPublic,
    EnterprisePublic,
    EquipmentPatchIn,
    EquipmentPublic,
    EquipmentRecordPublic,
)
from ingest_server.repo import enterprises as enterprises_repo
from ingest_server.repo import equipment as equipment_repo

router = APIRouter(prefix="/api/v1", tags=["registry"])

EditingEquipment = Annotated[Enterprise, Depends(writing("edit equipment of"))]


@router.get("/enterprises", response_model=list[EnterprisePublic])
def enterprises(caller: Caller, conn: Conn) -> list[dict[str, Any]]:
    rows = enterprises_repo.list_enterprises(conn)
    return [r for r in rows if caller.may_read(r["id"])]


@router.get("/enterprises/{enterprise}", response_model=EnterpriseDetailPublic)
def enterprise(e: Reading) -> dict[str, Any]:
    found = enterprises_repo.get_enterprise(e.conn, enterprise=e.id)
    if found is None:
        raise ApiError(404, "not_found", f"no enterprise {e.id!r}", f"没有企业 {e.id!r}")
    return found


@router.get("/enterprises/{enterprise}/equipment", response_model=list[EquipmentPublic])
def equipment(e: KnownEnterprise) -> list[dict[str, Any]]:
    """Declared attributes beside the live state: the latest state interval of its
    device, since when, and whether its gateway is online."""
    return equipment_repo.list_equipment(e.conn, enterprise=e.id)


@router.patch("/enterprises/{enterprise}/equipment/{eid}", response_model=EquipmentRecordPublic)
def edit_equipment(e: EditingEquipment, eid: str, patch: EquipmentPatchIn) -> dict[str, Any]:
    changes = patch.model_dump(exclude_unset=True, exclude={"note"})
    if not changes:
        editable = sorted(equipment_repo.EDITABLE)
        raise ApiError(
            422, "invalid_parameter", f"give at least one of {editable}",
            f"请至少修改其中一项: {editable}",
        )  # fmt: skip
    return equipment_repo.edit_equipment(
        e.conn, enterprise=e.id, equipment=eid, changes=changes, account=e.caller.name,
        note=patch.note,
    )  # fmt: skip


@router.get(
    "/enterprises/{enterprise}/equipment/{eid}/audit", response_model=list[AuditEntryPublic]
)
def equipment_audit(e: Reading, eid: str) -> list[dict[str, Any]]:
    equipment_repo.equipment_record(e.conn, enterprise=e.id, equipment=eid)  # or 404
    return equipment_repo.audit_trail(e.conn, enterprise=e.id, equipment=eid)
