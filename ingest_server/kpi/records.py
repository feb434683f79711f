"""The typed records a KPI computation reads, and the errors of asking for one.

`Inputs` holds a report's inputs: the declared plant (sites with their period, equipment,
meters, production entries) and what was measured over the period (state intervals,
counter sums, tag coverage, counter anomalies, the samples' origin per series and the
gateways they came through); `Inputs.digest` is the input digest a report signs.
kpi/plant.py and kpi/fetch.py fill these from the database; engine.py computes every
figure from them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field

from ingest_server.errors import InvalidInputError
from ingest_server.kpi.timemodel import Interval
from ingest_server.repo.registry_model import CalendarDef, EnterpriseNotFoundError

DeviceKey = tuple[int, str]
# the agent's default heartbeat: tag coverage expects one sample per heartbeat
HEARTBEAT_S = 300.0


@dataclass(frozen=True, slots=True)
class Site:
    id: str
    name: str
    name_en: str
    timezone: str
    grid_region: str
    calendar: CalendarDef | None
    start: dt.datetime  # the period in this site's time zone, UTC instants
    end: dt.datetime  # min(period end, as_of)


@dataclass(frozen=True, slots=True)
class Equipment:
    id: str
    name: str
    name_en: str
    site: str
    process: str | None
    process_name: str
    process_name_en: str
    key_process: bool
    nc: bool
    production: bool
    interface: str | None
    ideal_cycle_time_s: float | None
    device: DeviceKey | None


@dataclass(frozen=True, slots=True)
class Meter:
    id: str
    name: str
    name_en: str
    site: str
    carrier: str
    unit: str
    parent: str | None
    device: DeviceKey | None
    # "generation": on-site generation (PV), kept out of consumption, tce and CO2
    role: str = "consumption"


@dataclass(slots=True)
class CounterSum:
    quantity: float = 0.0
    deltas: int = 0
    rollovers: int = 0
    resets: int = 0


@dataclass(frozen=True, slots=True)
class TagCoverage:
    device: DeviceKey
    tag: str
    role: str
    received: int  # samples in the period
    counted: float  # heartbeats they cover: at most those each hour (or piece) holds
    expected: float  # one per heartbeat of the period


@dataclass(frozen=True, slots=True)
class Anomaly:
    device: DeviceKey
    tag: str
    ts: dt.datetime
    flag: str
    prev_value: float
    value: float
    delta: float


@dataclass(frozen=True, slots=True)
class SeriesOrigin:
    """A series' samples in the period, and how many of them came in a batch its gateway
    signed (contract v2; the rest came by v1 HMAC, which the server could have made)."""

    device: DeviceKey
    tag: str
    role: str
    samples: int
    attested: int


@dataclass(frozen=True, slots=True)
class GatewayRef:
    gid: int
    site: str
    id: str
    contract: int  # what the registry holds when the report is made: 1 HMAC, 2 Ed25519


@dataclass(frozen=True, slots=True)
class ProductionEntry:
    id: int
    site: str | None
    period_from: dt.date
    period_to: dt.date
    output: float | None
    output_unit: str
    value_added_10k_cny: float | None
    note: str
    # who entered it and when: shown with the figures, not an input row (not in `rows()`)
    entered_at: dt.datetime | None = None
    entered_by: str = ""


@dataclass(slots=True)
class Inputs:
    enterprise: dict[str, str | None]
    industry: str
    date_from: dt.date
    date_to: dt.date
    as_of: dt.datetime
    sites: list[Site]
    equipment: list[Equipment]
    meters: list[Meter]
    intervals: dict[DeviceKey, list[Interval]] = field(default_factory=dict)
    counters: dict[tuple[DeviceKey, str], CounterSum] = field(default_factory=dict)
    tags: list[TagCoverage] = field(default_factory=list)
    anomalies: list[Anomaly] = field(default_factory=list)
    production: list[ProductionEntry] = field(default_factory=list)
    device_names: dict[DeviceKey, str] = field(default_factory=dict)
    # not input rows (not in `rows()`, so the digest of reports made before they existed
    # stays theirs): counted from the raw samples both ways, recomputed at verification
    origins: list[SeriesOrigin] = field(default_factory=list)
    gateways: dict[int, GatewayRef] = field(default_factory=dict)
    # the registry's edit trails as it was read (kpi/columnar.py audit_block: the
    # equipment trail, and from version 2 the other one, `registry`): signed as the
    # report's `registry_audit`, not an input row either
    registry_audit: dict[str, object] | None = None

    def site(self, site_id: str) -> Site:
        return next(s for s in self.sites if s.id == site_id)

    def rows(self) -> Iterator[str]:
        """Every input row as one canonical text line (what the digest covers)."""
        for s in self.sites:
            cal = None if s.calendar is None else s.calendar.model_dump(mode="json")
            yield _line("site", s.id, s.timezone, s.grid_region, _iso(s.start), _iso(s.end), cal)
        for e in self.equipment:
            yield _line("equipment", e.id, e.site, e.process, e.key_process, e.nc, e.production,
                        e.interface, _num(e.ideal_cycle_time_s), e.device)  # fmt: skip
        for m in self.meters:
            # a role only when not the default, so the lines of reports made before roles
            # existed stay theirs
            roles = () if m.role == "consumption" else (m.role,)
            yield _line("meter", m.id, m.site, m.carrier, m.unit, m.parent, m.device, *roles)
        for dev in sorted(self.intervals):
            head = '["interval",' + json.dumps(dev, ensure_ascii=False, separators=(",", ":"))
            for iv in self.intervals[dev]:  # the bulk of the rows: written the quick way
                yield f'{head},{round(iv.start * 1000)},{round(iv.end * 1000)},"{iv.state}"]'
        for (dev, role), c in sorted(self.counters.items()):
            yield _line("counter", dev, role, _num(c.quantity), c.deltas, c.rollovers, c.resets)
        for t in sorted(self.tags, key=lambda t: (t.device, t.tag)):
            yield _line("tag", t.device, t.tag, t.role, t.received, _count(t.counted),
                        _num(t.expected))  # fmt: skip
        for a in sorted(self.anomalies, key=lambda a: (a.device, a.tag, a.ts)):
            yield _line("anomaly", a.device, a.tag, _iso(a.ts), a.flag, _num(a.prev_value),
                        _num(a.value), _num(a.delta))  # fmt: skip
        for p in sorted(self.production, key=lambda p: p.id):
            yield _line("production", p.id, p.site, p.period_from.isoformat(),
                        p.period_to.isoformat(), _num(p.output), p.output_unit,
                        _num(p.value_added_10k_cny))  # fmt: skip

    def digest(self) -> tuple[int, str]:
        h = hashlib.sha256()
        n = 0
        for line in self.rows():
            h.update(line.encode())
            h.update(b"\n")
            n += 1
        return n, h.hexdigest()


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _num(x: float | None) -> str | None:
    # rounded: the same rows summed in another order must give the same line
    return None if x is None else f"{x:.6f}"


def _count(x: float) -> int | str | None:
    # whole heartbeats as the integer they were before fractions could occur, so the
    # input digest of a report without any stays what it was
    return int(x) if float(x).is_integer() else _num(x)


def _line(*fields: object) -> str:
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":"), default=list)


class ReportError(InvalidInputError, ValueError):
    """The report cannot be made as asked; the message says what to change."""


class UnknownEnterpriseError(EnterpriseNotFoundError, ReportError):
    """The report is asked for an enterprise the registry does not hold (API: 404)."""
