"""The typed inputs of a KPI report, and the two ways to fetch them.

`fetch_inputs` reads the derived data the server keeps (state intervals, hourly counter
sums, hourly sample counts): fast, what `ingest-server report` uses. `fetch_inputs(raw=True)`
rebuilds the same records from the raw samples alone (intervals through the same
run rules, counter deltas with the same wrap rule): what `ingest-server verify` uses to
recompute a report independently of the derived tables. SQL here only fetches; every
figure is computed in engine.py from these records.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from zoneinfo import ZoneInfo

import psycopg

from ingest_server.derive.intervals import GAP_AFTER, NO_DATA, OFFLINE, Event, runs
from ingest_server.errors import InvalidInputError, NotFoundError
from ingest_server.kpi.timemodel import Interval
from ingest_server.repo.registry import CalendarDef

DeviceKey = tuple[int, str]
_GAP_S = GAP_AFTER.total_seconds()
HEARTBEAT_S = 300.0
# counters whose quantity flows continuously: a reading interval cut by the period's
# edge is shared pro rata; part counters count whole parts at the time they are seen
PRORATED_ROLES = frozenset({"energy_kwh", "water_m3", "gas_m3", "steam_t", "air_m3"})
PART_ROLES = ("part_count_total", "part_count_good", "part_count_scrap")


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
class ProductionEntry:
    id: int
    site: str | None
    period_from: dt.date
    period_to: dt.date
    output: float | None
    output_unit: str
    value_added_10k_cny: float | None
    note: str


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
            yield _line("meter", m.id, m.site, m.carrier, m.unit, m.parent, m.device)
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


# -- the registry and the period --------------------------------------------------------


class ReportError(InvalidInputError, ValueError):
    """The report cannot be made as asked; the message says what to change."""


class UnknownEnterpriseError(NotFoundError, ReportError):
    """The report is asked for an enterprise the registry does not hold (API: 404)."""


def local_period(
    date_from: dt.date, date_to: dt.date, timezone: str, as_of: dt.datetime
) -> tuple[dt.datetime, dt.datetime, bool]:
    """[start, end) UTC of local dates from..to inclusive, end cut at as_of; partial?"""
    tz = ZoneInfo(timezone)
    start = dt.datetime.combine(date_from, dt.time(), tzinfo=tz).astimezone(dt.UTC)
    end = dt.datetime.combine(date_to + dt.timedelta(days=1), dt.time(), tzinfo=tz).astimezone(
        dt.UTC
    )
    partial = as_of < end
    return start, min(end, max(as_of, start)), partial


def load_registry(
    conn: psycopg.Connection,
    enterprise: str,
    date_from: dt.date,
    date_to: dt.date,
    as_of: dt.datetime,
) -> Inputs:
    if date_to < date_from:
        raise ReportError(f"the period ends ({date_to}) before it starts ({date_from})")
    row = conn.execute(
        "SELECT id, name, name_en, credit_code, industry FROM enterprises WHERE id = %s",
        (enterprise,),
    ).fetchone()
    if row is None:
        known = [r[0] for r in conn.execute("SELECT id FROM enterprises ORDER BY id")]
        raise UnknownEnterpriseError(
            f"no enterprise {enterprise!r} in the registry (known: {known}); "
            "import it with `ingest-server registry import`"
        )
    ent = {"id": row[0], "name": row[1], "name_en": row[2], "credit_code": row[3]}
    sites = []
    for sid, name, name_en, tz, region, cal in conn.execute(
        "SELECT s.id, s.name, s.name_en, s.timezone, s.grid_region, c.definition "
        "FROM sites s LEFT JOIN shift_calendars c "
        "ON c.enterprise_id = s.enterprise_id AND c.id = s.calendar_id "
        "WHERE s.enterprise_id = %s ORDER BY s.id",
        (enterprise,),
    ):
        start, end, _ = local_period(date_from, date_to, tz, as_of)
        calendar = None if cal is None else CalendarDef.model_validate({"id": "c", **cal})
        sites.append(Site(sid, name, name_en or "", tz, region, calendar, start, end))
    equipment = [
        Equipment(
            id=r[0],
            name=r[1],
            name_en=r[2] or "",
            site=r[3],
            process=r[4],
            process_name=r[5] or "",
            process_name_en=r[6] or "",
            key_process=bool(r[7]),
            nc=r[8],
            production=r[9],
            interface=r[10],
            ideal_cycle_time_s=r[11],
            device=None if r[12] is None or r[13] is None else (r[12], r[13]),
        )
        for r in conn.execute(
            """
            SELECT e.id, e.name, e.name_en, e.site_id, e.process_id, p.name, p.name_en,
                   coalesce(p.key_process, false), e.nc, e.production, e.interface,
                   e.ideal_cycle_time_s, g.gid, e.device
            FROM equipment e
            LEFT JOIN processes p ON p.enterprise_id = e.enterprise_id AND p.id = e.process_id
            LEFT JOIN gateways g ON g.enterprise_id = e.enterprise_id
                 AND g.site_id = e.site_id AND g.id = e.gateway_id
            WHERE e.enterprise_id = %s ORDER BY e.id
            """,
            (enterprise,),
        )
    ]
    meters = [
        Meter(
            r[0],
            r[1] or "",
            r[2] or "",
            r[3],
            r[4],
            r[5],
            r[6],
            None if r[7] is None or r[8] is None else (r[7], r[8]),
        )
        for r in conn.execute(
            """
            SELECT m.id, m.name, m.name_en, m.site_id, m.carrier, m.unit, m.parent_id,
                   g.gid, m.device
            FROM meters m
            LEFT JOIN gateways g ON g.enterprise_id = m.enterprise_id
                 AND g.site_id = m.site_id AND g.id = m.gateway_id
            WHERE m.enterprise_id = %s ORDER BY m.id
            """,
            (enterprise,),
        )
    ]
    production = [
        ProductionEntry(*r)
        for r in conn.execute(
            "SELECT id, site_id, period_from, period_to, output, output_unit, "
            "value_added_10k_cny, note FROM production_entries WHERE enterprise_id = %s "
            "AND period_from <= %s AND period_to >= %s ORDER BY id",
            (enterprise, date_to, date_from),
        )
    ]
    inputs = Inputs(ent, row[4], date_from, date_to, as_of, sites, equipment, meters)
    inputs.production = production
    gw_names: dict[int, str] = dict(conn.execute("SELECT gid, id FROM gateways").fetchall())
    for dev in _devices(inputs):
        inputs.device_names[dev] = f"{gw_names.get(dev[0], dev[0])}/{dev[1]}"
    return inputs


def _devices(inputs: Inputs) -> list[DeviceKey]:
    devs = {e.device for e in inputs.equipment if e.device} | {
        m.device for m in inputs.meters if m.device
    }
    return sorted(d for d in devs if d is not None)


@dataclass(frozen=True, slots=True)
class SeriesRef:
    series_id: int
    device: DeviceKey
    tag: str
    role: str
    wrap: float | None


def _series(conn: psycopg.Connection, devices: Sequence[DeviceKey]) -> list[SeriesRef]:
    if not devices:
        return []
    return [
        SeriesRef(r[0], (r[1], r[2]), r[3], r[4], r[5])
        for r in conn.execute(
            "SELECT series_id, gid, device, tag, role, wrap FROM series "
            "WHERE (gid, device) IN (SELECT * FROM unnest(%s::int[], %s::text[])) "
            "ORDER BY gid, device, tag",
            ([d[0] for d in devices], [d[1] for d in devices]),
        )
    ]


def _site_of(inputs: Inputs) -> dict[DeviceKey, Site]:
    out: dict[DeviceKey, Site] = {}
    for e in inputs.equipment:
        if e.device:
            out[e.device] = inputs.site(e.site)
    for m in inputs.meters:
        if m.device:
            out.setdefault(m.device, inputs.site(m.site))
    return out


def _hour_floor(t: dt.datetime) -> dt.datetime:
    return t.replace(minute=0, second=0, microsecond=0)


def _hour_ceil(t: dt.datetime) -> dt.datetime:
    f = _hour_floor(t)
    return f if f == t else f + dt.timedelta(hours=1)


def _by_window(
    refs: Iterable[SeriesRef], sites: dict[DeviceKey, Site]
) -> dict[tuple[dt.datetime, dt.datetime], list[SeriesRef]]:
    groups: dict[tuple[dt.datetime, dt.datetime], list[SeriesRef]] = defaultdict(list)
    for r in refs:
        s = sites[r.device]
        groups[(s.start, s.end)].append(r)
    return groups


# -- fetching: derived data (fast), or raw samples (verify) ---------------------------------


def fetch_inputs(
    conn: psycopg.Connection,
    enterprise: str,
    date_from: dt.date,
    date_to: dt.date,
    as_of: dt.datetime,
    *,
    heartbeat_s: float = HEARTBEAT_S,
    raw: bool = False,
) -> Inputs:
    """The report's inputs from the derived data; with `raw`, the same records rebuilt
    from `samples` alone (slower: reads every raw sample of the period)."""
    inputs = load_registry(conn, enterprise, date_from, date_to, as_of)
    refs = _series(conn, _devices(inputs))
    sites = _site_of(inputs)
    for (start, end), group in _by_window(refs, sites).items():
        if raw:
            _raw_intervals(conn, inputs, group, start, end)
            _raw_counters(conn, inputs, group, start, end)
        else:
            _fetch_intervals(conn, inputs, group, start, end)
            _fetch_counters(conn, inputs, group, start, end)
            _fetch_anomalies(conn, inputs, group, start, end)
        _fetch_tags(conn, inputs, group, start, end, heartbeat_s, raw=raw)
    return inputs


def _state_devices(group: Sequence[SeriesRef]) -> dict[DeviceKey, list[int]]:
    """Devices with a machine state -> their state and status series."""
    with_state = {r.device for r in group if r.role == "machine_state"}
    out: dict[DeviceKey, list[int]] = defaultdict(list)
    for r in group:
        if r.device in with_state and r.role in ("machine_state", "device_status"):
            out[r.device].append(r.series_id)
    return out


def _fetch_intervals(
    conn: psycopg.Connection,
    inputs: Inputs,
    group: Sequence[SeriesRef],
    start: dt.datetime,
    end: dt.datetime,
) -> None:
    devices = _state_devices(group)
    if not devices or end <= start:
        for dev in devices:
            inputs.intervals[dev] = []
        return
    keys = sorted(devices)
    rows = conn.execute(
        """
        SELECT d.i, extract(epoch FROM x.start)::float8, extract(epoch FROM x."end")::float8,
               x.state
        FROM unnest(%(gids)s::int[], %(devs)s::text[]) WITH ORDINALITY AS d(gid, device, i)
        CROSS JOIN LATERAL (
            (SELECT s.start, s."end", s.state FROM state_intervals s
             WHERE s.gid = d.gid AND s.device = d.device AND s.start < %(start)s
             ORDER BY s.start DESC LIMIT 1)
            UNION ALL
            (SELECT s.start, s."end", s.state FROM state_intervals s
             WHERE s.gid = d.gid AND s.device = d.device
               AND s.start >= %(start)s AND s.start < %(end)s)
        ) x
        ORDER BY 1, 2, 3
        """,
        {"gids": [k[0] for k in keys], "devs": [k[1] for k in keys], "start": start, "end": end},
    ).fetchall()
    raw: dict[int, list[tuple[float, float | None, str]]] = defaultdict(list)
    for i, a, b, state in rows:
        raw[i].append((a, b, state))
    last_seen: dict[int, float | None] = dict(
        conn.execute(
            """
            SELECT d.sid,
                   extract(epoch FROM (SELECT max(ts) FROM samples s WHERE s.series_id = d.sid))
                   ::float8
            FROM unnest(%s::int[]) AS d(sid)
            """,
            ([sid for k in keys for sid in devices[k]],),
        ).fetchall()
    )
    a, b = start.timestamp(), end.timestamp()
    for i, dev in enumerate(keys, 1):
        seen = [t for sid in devices[dev] if (t := last_seen.get(sid)) is not None]
        inputs.intervals[dev] = clip_intervals(raw.get(i, []), a, b, max(seen) if seen else None)


def clip_intervals(
    rows: Sequence[tuple[float, float | None, str]],
    start: float,
    end: float,
    last_seen: float | None,
) -> list[Interval]:
    """Intervals clipped to [start, end). The open last interval lasts while samples keep
    coming: more than GAP_AFTER after the last one heard, NO_DATA (unless the device is
    offline: then nothing is expected)."""
    out: list[Interval] = []
    for a, b, state in rows:
        if b is not None:
            _push(out, a, b, state, start, end)
        elif state != OFFLINE and last_seen is not None and end - last_seen > _GAP_S:
            if last_seen > a:
                _push(out, a, min(last_seen, end), state, start, end)
            _push(out, max(a, last_seen), end, NO_DATA, start, end)
        else:
            _push(out, a, end, state, start, end)
    return out


def _push(  # noqa: PLR0917
    out: list[Interval],
    a: float,
    b: float,
    state: str,
    start: float,
    end: float,
) -> None:
    a, b = max(a, start), min(b, end)
    if b <= a:
        return
    if out and out[-1].state == state and out[-1].end == a:
        out[-1] = Interval(out[-1].start, b, state)
    else:
        out.append(Interval(a, b, state))


def _fetch_counters(
    conn: psycopg.Connection,
    inputs: Inputs,
    group: Sequence[SeriesRef],
    start: dt.datetime,
    end: dt.datetime,
) -> None:
    counters = [r for r in group if r.role in PRORATED_ROLES or r.role in PART_ROLES]
    for r in counters:
        inputs.counters.setdefault((r.device, r.role), CounterSum())
    if not counters or end <= start:
        return
    sids = [r.series_id for r in counters]
    by_sid = {r.series_id: r for r in counters}
    h1, h2 = _hour_ceil(start), _hour_floor(end)
    sums: dict[int, CounterSum] = defaultdict(CounterSum)
    if h1 < h2:
        hourly = conn.execute(
            "SELECT series_id, sum(delta), sum(n), sum(rollovers), sum(resets) "
            "FROM counter_hourly WHERE series_id = ANY(%s) AND bucket >= %s AND bucket < %s "
            "GROUP BY 1",
            (sids, h1, h2),
        ).fetchall()
        edges = [(start, h1), (h2, end)]
    else:
        hourly = []
        edges = [(start, end)]
    for sid, q, n, ro, rs in hourly:
        _add(sums[sid], q, n, ro, rs)
    for a, b in edges:
        if b <= a:
            continue
        for sid, q, n, ro, rs in conn.execute(
            "SELECT series_id, sum(delta), count(*), count(*) FILTER (WHERE flag = 'rollover'), "
            "count(*) FILTER (WHERE flag = 'reset') FROM counter_deltas "
            "WHERE series_id = ANY(%s) AND ts >= %s AND ts < %s GROUP BY 1",
            (sids, a, b),
        ):
            _add(sums[sid], q, n, ro, rs)
    prorated = [sid for sid in sids if by_sid[sid].role in PRORATED_ROLES]
    if prorated:
        straddling = conn.execute(
            """
            SELECT DISTINCT d.sid, x.ts, x.prev_ts, x.delta
            FROM unnest(%(sids)s::int[]) AS d(sid)
            CROSS JOIN unnest(ARRAY[%(start)s, %(end)s]::timestamptz[]) AS e(edge)
            CROSS JOIN LATERAL (
                SELECT c.ts, c.prev_ts, c.delta FROM counter_deltas c
                WHERE c.series_id = d.sid AND c.ts >= e.edge ORDER BY c.ts LIMIT 1
            ) x
            WHERE x.prev_ts < e.edge
            """,
            {"sids": prorated, "start": start, "end": end},
        ).fetchall()
        for sid, ts, prev_ts, delta in straddling:
            sums[sid].quantity += _straddle(ts, prev_ts, delta, start, end)
    for sid, s in sums.items():
        c = inputs.counters[(by_sid[sid].device, by_sid[sid].role)]
        _add(c, s.quantity, s.deltas, s.rollovers, s.resets)


def _add(c: CounterSum, q: float | None, n: int, ro: int, rs: int) -> None:
    c.quantity += q or 0.0
    c.deltas += int(n)
    c.rollovers += int(ro)
    c.resets += int(rs)


def _straddle(
    ts: dt.datetime, prev_ts: dt.datetime, delta: float, start: dt.datetime, end: dt.datetime
) -> float:
    """The correction for a delta whose reading interval the period cuts: its share
    inside the period, minus what the sum by `ts` already counted."""
    length = (ts - prev_ts).total_seconds()
    inside = (min(ts, end) - max(prev_ts, start)).total_seconds()
    share = delta * max(inside, 0.0) / length if length > 0 else 0.0
    counted = delta if start <= ts < end else 0.0
    return share - counted


# Hourly sample counts per series over the period's whole UTC hours, from the rollups
# (fast) or from the raw samples: each hour credits up to the heartbeats it holds.
_TAGS_FROM_ROLLUPS = """
    SELECT series_id, sum(n), sum(least(n, %(cap)s)) FROM samples_hourly
    WHERE series_id = ANY(%(sids)s) AND bucket >= %(a)s AND bucket < %(b)s GROUP BY 1
"""
_TAGS_FROM_SAMPLES = """
    SELECT series_id, sum(n), sum(least(n, %(cap)s)) FROM (
        SELECT series_id, date_trunc('hour', ts, 'UTC'), count(*) AS n FROM samples
        WHERE series_id = ANY(%(sids)s) AND ts >= %(a)s AND ts < %(b)s GROUP BY 1, 2) h
    GROUP BY 1
"""
# A piece of an hour at the period's edge [a, b), from the raw samples whichever the
# path: each sample vouches for the time until the next one, at most one heartbeat; the
# last one before `a` (from `lo`: the period's own samples only) for what of that
# reaches into the piece. Samples in the piece, and the seconds covered.
_TAGS_AT_EDGE = """
    SELECT series_id, count(*) FILTER (WHERE ts >= %(a)s),
           sum(greatest(0.0, extract(epoch FROM
               least(ts + %(hb)s, nxt, %(b)s) - greatest(ts, %(a)s))::float8))
    FROM (SELECT series_id, ts, lead(ts) OVER (PARTITION BY series_id ORDER BY ts) AS nxt
          FROM samples
          WHERE series_id = ANY(%(sids)s) AND ts >= %(lo)s AND ts < %(b)s) x
    GROUP BY 1
"""


def hour_pieces(
    start: dt.datetime, end: dt.datetime
) -> tuple[tuple[dt.datetime, dt.datetime] | None, list[tuple[dt.datetime, dt.datetime]]]:
    """[start, end) cut on UTC hours: the whole hours as one span (None if there is
    none), and the pieces of hours at either edge (the hour holding `as_of`, a start or
    end off the hour)."""
    if end <= start:
        return None, []
    h1, h2 = _hour_ceil(start), _hour_floor(end)
    if h1 > h2:  # inside one hour
        return None, [(start, end)]
    edges = [(a, b) for a, b in ((start, h1), (h2, end)) if b > a]
    return ((h1, h2) if h1 < h2 else None), edges


def _fetch_tags(  # noqa: PLR0917
    conn: psycopg.Connection,
    inputs: Inputs,
    group: Sequence[SeriesRef],
    start: dt.datetime,
    end: dt.datetime,
    heartbeat_s: float,
    *,
    raw: bool = False,
) -> None:
    """Samples received per tag in [start, end), and the heartbeats they cover against
    one per heartbeat expected (docs/kpi.md, "Data coverage"). A whole hour credits up to
    the heartbeats it holds, from its sample count; a piece of an hour at the period's
    edge credits only the time its samples cover, so the hour holding `as_of` is never
    credited heartbeats it has not yet had."""
    refs = [r for r in group if r.role != "device_status"]
    if not refs:
        return
    sids = [r.series_id for r in refs]
    received: dict[int, int] = defaultdict(int)
    counted: dict[int, float] = defaultdict(float)
    whole, edges = hour_pieces(start, end)
    if whole is not None:
        sql = _TAGS_FROM_SAMPLES if raw else _TAGS_FROM_ROLLUPS
        args = {"cap": 3600.0 / heartbeat_s, "sids": sids, "a": whole[0], "b": whole[1]}
        for sid, n, c in conn.execute(sql, args):
            received[sid] += int(n)
            counted[sid] += float(c)
    hb = dt.timedelta(seconds=heartbeat_s)
    for a, b in edges:
        for sid, n, covered_s in conn.execute(
            _TAGS_AT_EDGE, {"sids": sids, "a": a, "b": b, "hb": hb, "lo": max(a - hb, start)}
        ):
            received[sid] += int(n)
            counted[sid] += float(covered_s or 0.0) / heartbeat_s
    expected = max(0.0, (end - start).total_seconds()) / heartbeat_s
    for r in refs:
        sid = r.series_id
        inputs.tags.append(
            TagCoverage(r.device, r.tag, r.role, received[sid], counted[sid], expected)
        )


def _fetch_anomalies(
    conn: psycopg.Connection,
    inputs: Inputs,
    group: Sequence[SeriesRef],
    start: dt.datetime,
    end: dt.datetime,
) -> None:
    counters = {r.series_id: r for r in group if r.role in PRORATED_ROLES or r.role in PART_ROLES}
    if not counters:
        return
    for sid, ts, flag, pv, v, d in conn.execute(
        # through the partial index counter_deltas_flagged
        "SELECT series_id, ts, flag, prev_value, value, delta FROM counter_deltas "
        "WHERE series_id = ANY(%s) AND ts >= %s AND ts < %s AND flag IS NOT NULL "
        "ORDER BY 1, 2",
        (list(counters), start, end),
    ):
        r = counters[sid]
        inputs.anomalies.append(Anomaly(r.device, r.tag, ts, flag, pv, v, d))


# -- independent path: raw samples ------------------------------------------------------


def _raw_intervals(
    conn: psycopg.Connection,
    inputs: Inputs,
    group: Sequence[SeriesRef],
    start: dt.datetime,
    end: dt.datetime,
) -> None:
    for dev, sids in sorted(_state_devices(group).items()):
        kinds = {r.series_id: r.role for r in group if r.series_id in sids}
        rows = conn.execute(
            """
            (SELECT series_id, ts, CASE WHEN quality < 2 THEN text END FROM samples
             WHERE series_id = ANY(%(sids)s) AND ts >= %(start)s AND ts < %(end)s)
            UNION ALL
            (SELECT DISTINCT ON (series_id) series_id, ts, CASE WHEN quality < 2 THEN text END
             FROM samples WHERE series_id = ANY(%(sids)s) AND ts < %(start)s
             ORDER BY series_id, ts DESC)
            UNION ALL
            (SELECT series_id, ts, NULL FROM samples
             WHERE series_id = ANY(%(sids)s) AND ts >= %(end)s ORDER BY ts LIMIT 1)
            """,
            {"sids": sids, "start": start, "end": end},
        ).fetchall()
        after = [r for r in rows if r[1] >= end]
        events = sorted(
            (
                Event(ts, "state" if kinds[sid] == "machine_state" else "status", v)
                for sid, ts, v in rows
                if ts < end
            ),
            key=lambda e: (e.ts, e.kind),
        )
        # the earlier of the two "last before start" samples only sets a value: the
        # silence before the later one says nothing about the period
        pre = [e for e in events if e.ts < start]
        if len(pre) == 2:
            pre[0] = Event(pre[1].ts, pre[0].kind, pre[0].value)
            events = sorted([*pre, *(e for e in events if e.ts >= start)], key=lambda e: e.ts)
        result = [(t.timestamp(), state) for t, state in runs(events)]
        nxt = after[0][1].timestamp() if after else None
        rows_iv: list[tuple[float, float | None, str]] = []
        for i, (a, state) in enumerate(result):
            b = result[i + 1][0] if i + 1 < len(result) else None
            rows_iv.append((a, b, state))
        if rows_iv and nxt is not None:
            last_event = events[-1].ts.timestamp()
            if rows_iv[-1][2] != OFFLINE and nxt - last_event > _GAP_S:
                a, _, state = rows_iv[-1]
                if a == last_event:
                    rows_iv[-1] = (a, None, NO_DATA)
                else:
                    rows_iv[-1] = (a, last_event, state)
                    rows_iv.append((last_event, None, NO_DATA))
            a, _, state = rows_iv[-1]
            rows_iv[-1] = (a, nxt, state)
        last_seen = events[-1].ts.timestamp() if events and nxt is None else None
        inputs.intervals[dev] = clip_intervals(
            rows_iv, start.timestamp(), end.timestamp(), last_seen
        )


def _raw_counters(
    conn: psycopg.Connection,
    inputs: Inputs,
    group: Sequence[SeriesRef],
    start: dt.datetime,
    end: dt.datetime,
) -> None:
    for r in group:
        if not (r.role in PRORATED_ROLES or r.role in PART_ROLES):
            continue
        c = inputs.counters.setdefault((r.device, r.role), CounterSum())
        if end <= start:
            continue
        rows = conn.execute(
            """
            (SELECT ts, value FROM samples WHERE series_id = %(sid)s AND ts < %(start)s
               AND value IS NOT NULL AND quality < 2 ORDER BY ts DESC LIMIT 1)
            UNION ALL
            (SELECT ts, value FROM samples WHERE series_id = %(sid)s
               AND ts >= %(start)s AND ts < %(end)s AND value IS NOT NULL AND quality < 2)
            UNION ALL
            (SELECT ts, value FROM samples WHERE series_id = %(sid)s AND ts >= %(end)s
               AND value IS NOT NULL AND quality < 2 ORDER BY ts LIMIT 1)
            ORDER BY 1
            """,
            {"sid": r.series_id, "start": start, "end": end},
        ).fetchall()
        for (t0, v0), (t1, v1) in pairwise(rows):
            delta, flag = counter_delta(v0, v1, r.wrap)
            if r.role in PRORATED_ROLES:
                length = (t1 - t0).total_seconds()
                inside = (min(t1, end) - max(t0, start)).total_seconds()
                if inside > 0 and length > 0:
                    c.quantity += delta * inside / length
            elif start <= t1 < end:
                c.quantity += delta
            if start <= t1 < end:
                c.deltas += 1
                if flag == "rollover":
                    c.rollovers += 1
                elif flag == "reset":
                    c.resets += 1
                if flag is not None:
                    inputs.anomalies.append(Anomaly(r.device, r.tag, t1, flag, v0, v1, delta))


def counter_delta(prev: float, value: float, wrap: float | None) -> tuple[float, str | None]:
    """The increase from prev to value; the rule of derive.COUNTER_DELTAS_SQL."""
    if value >= prev:
        return value - prev, None
    if wrap is not None and prev - value > wrap / 2:
        return value + wrap - prev, "rollover"
    return value, "reset"
