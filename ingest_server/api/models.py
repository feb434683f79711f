"""The API's request and response bodies (pydantic): `...In` is what a route takes,
`...Public` what it answers, so the OpenAPI schema (/docs) documents both.

A response model lists its keys in the order the answer has them. Times are ISO 8601 as
pydantic writes them (UTC as `Z`), but for the keys' `created_at`/`retired_at`, strings
written by `isoformat()` (`+00:00`). Signed documents (reports, their KPIs, verdicts) and
the KPI views stay dicts: their shape is the report format's (kpi/results.py, docs/kpi.md).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ingest_server.api.params import Day, Instant
from ingest_server.reference.targets import TargetDef

# -- sessions ---------------------------------------------------------------------------


class LoginIn(BaseModel):
    name: str
    password: str = Field(repr=False)


class SessionPublic(BaseModel):
    token: str
    expires_at: dt.datetime
    name: str
    role: str
    enterprises: list[str]


# -- the registry -----------------------------------------------------------------------


class EnterprisePublic(BaseModel):
    id: str
    name: str
    name_en: str | None
    credit_code: str | None
    industry: str


class SitePublic(BaseModel):
    id: str
    name: str
    name_en: str | None
    timezone: str
    grid_region: str
    calendar: dict[str, Any] | None = Field(description="the shift calendar's definition")


class ProcessPublic(BaseModel):
    id: str
    name: str
    name_en: str | None
    key_process: bool


class EnterpriseDetailPublic(EnterprisePublic):
    sites: list[SitePublic]
    processes: list[ProcessPublic]


class EquipmentPublic(BaseModel):
    """Declared attributes beside the live state."""

    id: str
    name: str
    name_en: str | None
    site: str
    process: str | None
    key_process: bool
    nc: bool
    production: bool
    interface: str | None
    ideal_cycle_time_s: float | None
    product: str | None
    vendor: str | None
    model: str | None
    serial: str | None
    year: int | None
    gateway: str | None
    device: str | None
    gateway_online: bool | None
    state: str | None = Field(description="of the latest state interval; None: no data")
    state_since: dt.datetime | None


class EquipmentRecordPublic(BaseModel):
    """A machine's declared attributes, as stored (column names)."""

    model_config = ConfigDict(protected_namespaces=())  # a column is called `model`

    enterprise_id: str
    id: str
    site_id: str
    name: str
    name_en: str | None
    process_id: str | None
    nc: bool
    production: bool
    interface: str | None
    ideal_cycle_time_s: float | None
    product: str | None
    vendor: str | None
    model: str | None
    serial: str | None
    year: int | None
    gateway_id: str | None
    device: str | None


class EquipmentPatchIn(BaseModel):
    """Declared attributes an enterprise may correct; omitted fields stay as they are."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1)
    name_en: str | None = None
    process: str | None = None
    nc: bool | None = None
    production: bool | None = None
    ideal_cycle_time_s: float | None = Field(default=None, gt=0)
    product: str | None = None
    note: str = Field(default="", description="why: kept in the audit trail")


class AuditEntryPublic(BaseModel):
    at: dt.datetime
    account: str
    field: str
    old: Any
    new: Any
    note: str


# -- what was measured and received -----------------------------------------------------


class IntervalPublic(BaseModel):
    start: dt.datetime
    end: dt.datetime
    state: str


class TimelinePublic(BaseModel):
    equipment: str
    name: str
    start: dt.datetime
    end: dt.datetime
    intervals: list[IntervalPublic]


class BucketPublic(BaseModel):
    t: dt.datetime
    avg: float | None
    min: float | None
    max: float | None
    samples: int


class SeriesPublic(BaseModel):
    device: str
    tag: str
    role: str | None
    unit: str | None
    step_s: float
    points: list[BucketPublic]


class GatewayPublic(BaseModel):
    site: str
    id: str
    online: bool | None
    status_at: dt.datetime | None
    boot: int | None
    agent: Any
    birth_at: dt.datetime | None
    has_key: bool


class DeadLetterPublic(BaseModel):
    id: int
    received_at: dt.datetime
    site: str
    gateway: str
    topic: str
    reason: str
    # the kind of refusal (ingest/payload.py REFUSAL_CODES; `other` before the codes)
    code: str = "other"
    payload_bytes: int


# -- production figures -----------------------------------------------------------------


class ProductionIn(BaseModel):
    site: str | None = None
    period_from: Day = Field(alias="from")
    period_to: Day = Field(alias="to")
    output: float | None = Field(default=None, ge=0)
    output_unit: str = "件"
    value_added_10k_cny: float | None = Field(default=None, gt=0)
    note: str = ""
    entered_by: str = ""


class ProductionEntryPublic(BaseModel):
    id: int
    site_id: str | None
    period_from: dt.date
    period_to: dt.date
    output: float | None
    output_unit: str
    value_added_10k_cny: float | None
    note: str
    entered_at: dt.datetime
    entered_by: str


class CreatedPublic(BaseModel):
    id: int


# -- reports and keys -------------------------------------------------------------------


class ReportIn(BaseModel):
    period_from: Day = Field(alias="from")
    period_to: Day = Field(alias="to")
    baseline_from: Day | None = None
    baseline_to: Day | None = None
    coverage_threshold: float = Field(default=0.8, gt=0, le=1)


class BundleSummaryPublic(BaseModel):
    """A report's evidence bundle as kept with it (`GET /reports/{id}/bundle` downloads it)."""

    present: bool = Field(description="false: no bundle to download (`error` says why)")
    bytes: int | None = Field(default=None, description="the zip's size")
    sha256: str | None = Field(default=None, description="the zip's SHA-256, hex")
    samples: int | None = Field(default=None, description="raw samples it holds")
    error: str | None = Field(
        default=None, description="why it is unavailable (the build failed, or the report "
        "was issued before bundles were kept)",
    )  # fmt: skip
    error_code: Literal["not_kept", "not_built", "build_failed"] | None = Field(
        default=None, description="why, as a code the console words in its language: "
        "issued before bundles were kept or with --no-bundle, not built yet, or the build "
        "failed (`error` then holds the failure's own text)",
    )  # fmt: skip


class ReportIssuedPublic(BaseModel):
    id: str
    period: dict[str, Any] = Field(description="the report's `period`")
    kpis: list[dict[str, Any]] = Field(description="the report's `kpis`")
    bundle: BundleSummaryPublic


class ReportSummaryPublic(BaseModel):
    id: str
    period_from: dt.date
    period_to: dt.date
    partial: bool
    created_at: dt.datetime
    created_by: str
    key_id: str | None
    bundle: BundleSummaryPublic


class SigningKeyPublic(BaseModel):
    key_id: str
    public_key: str = Field(description="raw Ed25519 public key, base64")
    created_at: str = Field(description="ISO 8601, with its offset")
    retired_at: str | None


# -- programme targets ------------------------------------------------------------------


class TargetTablePublic(BaseModel):
    """A version of the built-in target table (reference/targets.py): what a report cites
    in its `targets` block."""

    version: str
    title: str
    rows: list[TargetDef]


# -- downtime reasons -------------------------------------------------------------------


class DowntimeReasonPublic(BaseModel):
    """A reason of the enterprise's catalogue (the registry's `downtime_reasons`)."""

    id: str
    name: str
    name_en: str
    category: str = Field(description="planned, unplanned, or the enterprise's own grouping")
    applies_to: str = Field(description="DOWN, IDLE or both")
    active: bool = Field(description="false: retired, kept for the intervals that carry it")


class StopPublic(BaseModel):
    """A DOWN or IDLE interval of the machine and the reason attached to it, if any."""

    start: dt.datetime = Field(description="the interval's own start: the key to attach by")
    end: dt.datetime = Field(description="its end; now while `open`")
    open: bool
    state: str
    reason: str | None = Field(description="the reason's id; null: none attached")
    note: str | None
    account: str | None = Field(description="who attached the reason")
    at: dt.datetime | None


class ChangedAssignmentPublic(BaseModel):
    """A reason whose interval no longer exists as it was given to (re-derived from
    late data): shown as "interval changed", counted nowhere."""

    start: dt.datetime
    state: str
    reason: str
    note: str
    account: str
    at: dt.datetime


class StopsPublic(BaseModel):
    equipment: str
    start: dt.datetime
    end: dt.datetime
    stops: list[StopPublic]
    changed: list[ChangedAssignmentPublic]


class DowntimeReasonIn(BaseModel):
    """Attach a reason to the interval starting at `start`, change it, or clear it
    (`reason` null)."""

    model_config = ConfigDict(extra="forbid")

    start: Instant = Field(description="the interval's start, exactly as the stops list it")
    reason: str | None = Field(
        default=None, max_length=64,
        description="a catalogue id; null or omitted: clear (nothing to clear: no change)",
    )  # fmt: skip
    note: str = Field(default="", max_length=2000, description="what happened, kept with it")


class AssignmentPublic(BaseModel):
    start: dt.datetime
    state: str
    reason: str
    note: str
    account: str
    at: dt.datetime


class DowntimeAuditPublic(BaseModel):
    at: dt.datetime
    equipment: str
    start: dt.datetime
    state: str
    account: str
    old: dict[str, Any] | None = Field(description="{reason, note} before; null: none")
    new: dict[str, Any] | None = Field(description="{reason, note} after; null: cleared")


class ParetoBarPublic(BaseModel):
    reason: str | None = Field(description="null: the time no reason is attached to")
    down_s: float
    idle_s: float
    loss_s: float
    stops: int
    share: float
    cumulative_share: float


class ParetoPublic(BaseModel):
    group: str | None
    loss_s: float
    bars: list[ParetoBarPublic]


class CausePublic(BaseModel):
    reason: str | None = Field(description="null: DOWN time no reason is attached to")
    events: int
    down_s: float
    mtbf_s: float | None
    mttr_s: float | None


class LossesPublic(BaseModel):
    start: dt.datetime
    end: dt.datetime
    site: str | None
    process: str | None
    equipment: str | None
    running_s: float
    total: list[ParetoPublic] = Field(description="one Pareto of every stop (none: no loss)")
    by_process: list[ParetoPublic]
    by_equipment: list[ParetoPublic]
    by_cause: list[CausePublic] = Field(description="MTBF, MTTR per reason of DOWN")
    reasons: list[DowntimeReasonPublic] = Field(description="the catalogue, for the names")


class AlarmPublic(BaseModel):
    tag: str
    start: dt.datetime
    end: dt.datetime
    text: str | None = Field(description="the text the device published; null: a number")
    value: float | None


class AlarmsPublic(BaseModel):
    equipment: str
    start: dt.datetime
    end: dt.datetime
    alarms: list[AlarmPublic]
