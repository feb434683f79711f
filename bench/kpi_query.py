"""KPI report speed over a month of a 100-machine plant, loaded straight into the database.

    .venv/bin/python bench/kpi_query.py [--quick] [--dsn DSN] [--raw all|last] [--profile]

Full: about 5 minutes and 21 GB here (2 cores); `--quick`: 20 (10, 1) equipment for 4 days,
about 10 s. Without --dsn it runs an embedded PostgreSQL in a temporary directory; with
--dsn it makes a database `fe_bench_kpi_<pid>` on that server; both go at the end.

The data (no MQTT, no ingest server: psycopg binary COPY of rows packed here):
  registry  three enterprises in one database, each one site in Asia/Shanghai on a
            two-shift calendar (Mon-Sat, two breaks a shift, one holiday):
            `big` 100 equipment in 6 processes + 23 meters (main, 20 submeters, water,
            gas), `half` the same plant at 50 equipment + 13 meters, `one` 1 equipment
  raw       `samples` every 10 s of every machine state (text), part counter (total,
            good) and meter series, plus one `online` device status per device;
            `--raw last` keeps only the last sample of each state series (the report
            reads no other raw sample: only max(ts) of the state series)
  derived   what the server keeps for them, computed here by the server's rules:
            state_intervals (states change every few minutes in shift time,
            PLANNED_STOP in breaks, OFF outside shifts; the last one open),
            counter_deltas (one per counter sample after the first, rollovers and
            resets flagged by `counter_delta`), counter_hourly, samples_hourly
            (TimescaleDB: the continuous aggregate, refreshed after the load)

    generator (this process) --+--> COPY samples         (thread, connection 1)
                               +--> COPY counter_deltas  (thread, connection 2)
                               +--> state_intervals, counter_hourly, samples_hourly

Measured (each `--reps` times, best and median), `make_report` (unsigned):
  report_s         `big`, 30 days                                target < 2 s
  report_15d_s     `big`, first 15 days          (the period doubling: 30 d / 15 d)
  report_50eq_s    `half`, 30 days               (the plant doubling: 100 / 50 eq)
  report_1d_s      `big`, one day                (what does not grow with the period)
  equipment_day_s  `one`, one day                                target < 100 ms
and, for report_s, its three phases alone (fetch_inputs, compute, digest) and the
sequential scans of samples/counter_deltas its runs made (pg_stat_user_tables): a plan
that scans a raw table shows there. Then two reports are recomputed from the raw samples
as `ingest-server verify` does, to show the loaded rows agree with each other.
The embedded server loads with wal_level=minimal (a COPY into a table truncated in the
same transaction writes no WAL) and is restarted with default settings to measure.
The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import datetime as dt
import io
import itertools
import json
import os
import pstats
import queue
import random
import shutil
import signal
import statistics
import struct
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import psycopg  # noqa: E402

from ingest_server.db.embedded_pg import EmbeddedPostgres  # noqa: E402
from ingest_server.db.schema import migrate  # noqa: E402
from ingest_server.evidence.report import Request, make_report  # noqa: E402
from ingest_server.evidence.verify import verify  # noqa: E402
from ingest_server.ingest.copybin import SIGNATURE, TRAILER  # noqa: E402
from ingest_server.kpi.calendar import windows  # noqa: E402
from ingest_server.kpi.engine import Parameters, compute  # noqa: E402
from ingest_server.kpi.fetch import fetch_inputs  # noqa: E402
from ingest_server.kpi.raw import counter_delta  # noqa: E402
from ingest_server.kpi.timemodel import plan_segments  # noqa: E402
from ingest_server.reference.factors import emission_table, energy_table  # noqa: E402
from ingest_server.repo.registry import CalendarDef, Registry, import_registry  # noqa: E402

STEP_S = 10
STEP_US = STEP_S * 1_000_000
PER_HOUR = 3600 // STEP_S
PG_EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
TZ = "Asia/Shanghai"
FIRST_DAY = dt.date(2026, 9, 1)
WRAP = 65536.0  # unsigned 16-bit Modbus part counters
CALENDAR: dict[str, Any] = {
    "id": "two-shift",
    "workdays": ["mon", "tue", "wed", "thu", "fri", "sat"],
    "holidays": ["2026-09-25"],  # 中秋节
    "shifts": [
        {"name": "day", "start": "08:00", "end": "16:00",
         "breaks": [{"start": "10:00", "end": "10:10"}, {"start": "12:00", "end": "12:40"}]},
        {"name": "swing", "start": "16:00", "end": "24:00",
         "breaks": [{"start": "18:00", "end": "18:40"}, {"start": "21:00", "end": "21:10"}]},
    ],
}  # fmt: skip
# id, name, name_en, key process (关键工序), share of the equipment
PROCESSES = (
    ("turning", "车削", "Turning", True, 0.30),
    ("milling", "铣削", "Milling", True, 0.25),
    ("grinding", "磨削", "Grinding", True, 0.15),
    ("heat", "热处理", "Heat treatment", True, 0.05),
    ("washing", "清洗", "Washing", False, 0.10),
    ("assembly", "装配", "Assembly", False, 0.15),
)
# machine states in shift time: mean seconds, then (next state, probability)
MEAN_S = {"RUNNING": 900.0, "IDLE": 240.0, "SETUP": 600.0, "DOWN": 480.0}
NEXT = {
    "RUNNING": (("IDLE", 0.75), ("SETUP", 0.10), ("DOWN", 0.15)),
    "IDLE": (("RUNNING", 0.85), ("SETUP", 0.10), ("DOWN", 0.05)),
    "SETUP": (("RUNNING", 1.0),),
    "DOWN": (("IDLE", 0.5), ("RUNNING", 0.5)),
}
# share of a machine's running power drawn in each state
LOAD = {"RUNNING": 1.0, "SETUP": 0.35, "IDLE": 0.25, "DOWN": 0.1, "PLANNED_STOP": 0.15, "OFF": 0.02}
OUT, BREAK, WORK = 0, 1, 2  # plan segment kinds, as in kpi/timemodel.py


# -- the plant ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Machine:
    id: str
    process: str
    nc: bool
    gateway: str
    cycle_s: float
    power_kw: float


@dataclass(frozen=True, slots=True)
class MeterSpec:
    id: str
    carrier: str
    unit: str
    parent: str | None
    covers: tuple[str, ...]


@dataclass(slots=True)
class Plant:
    enterprise: str
    machines: list[Machine]
    meters: list[MeterSpec]
    gid: dict[str, int] = field(default_factory=dict)  # gateway id -> gid


def plant(enterprise: str, n: int) -> Plant:
    """n machines in the PROCESSES mix, 10 a gateway; meters: 1 per 5 machines + main."""
    rng = random.Random(f"layout:{enterprise}")
    bounds, acc = [], 0.0
    for p in PROCESSES:
        acc += p[4]
        bounds.append((acc, p))
    machines = []
    for k in range(n):
        proc = next(p for b, p in bounds if (k + 0.5) / n <= b + 1e-9)
        nc = k % 8 != 5 if proc[3] else k % 3 == 0
        machines.append(
            Machine(f"eq-{k + 1:03d}", proc[0], nc, f"gw-{k // 10 + 1:02d}",
                    rng.uniform(30, 120), rng.uniform(8, 30))
        )  # fmt: skip
    meters: list[MeterSpec] = []
    if n >= 5:
        ids = [m.id for m in machines]
        meters.append(MeterSpec("m-main", "electricity", "kWh", None, ()))
        meters += [
            MeterSpec(f"m-sub-{j + 1:02d}", "electricity", "kWh", "m-main", tuple(ids[5 * j :][:5]))
            for j in range(n // 5)
        ]
        meters.append(MeterSpec("m-water", "water", "m3", None, ()))
        meters.append(MeterSpec("m-gas", "gas", "m3", None, ()))
    return Plant(enterprise, machines, meters)


def registry(plants: Sequence[Plant]) -> Registry:
    enterprises = []
    for p in plants:
        names = {x[0]: x for x in PROCESSES}
        gateways = sorted({m.gateway for m in p.machines} | ({"gw-m"} if p.meters else set()))
        enterprises.append({
            "id": p.enterprise, "name": f"基准企业 {p.enterprise}", "name_en": p.enterprise,
            "calendars": [CALENDAR],
            "processes": [{"id": x[0], "name": x[1], "name_en": x[2], "key": x[3]}
                          for x in PROCESSES],
            "sites": [{
                "id": "p1", "name": "一厂", "timezone": TZ, "grid_region": "anhui",
                "calendar": CALENDAR["id"], "gateways": [{"id": g} for g in gateways],
                "equipment": [
                    {"id": m.id, "name": f"{names[m.process][1]}{m.id[3:]}", "process": m.process,
                     "nc": m.nc, "ideal_cycle_time_s": round(m.cycle_s * 0.9, 1),
                     "interface": "OPC UA" if m.nc else "Modbus TCP",
                     "gateway": m.gateway, "device": m.id}
                    for m in p.machines],
                "meters": [
                    {"id": m.id, "carrier": m.carrier, "unit": m.unit, "parent": m.parent,
                     "covers": list(m.covers), "gateway": "gw-m", "device": m.id}
                    for m in p.meters],
            }],
        })  # fmt: skip
    return Registry.model_validate({"enterprises": enterprises})


def series_of(p: Plant) -> list[tuple[int, str, str, str, str | None, float | None]]:
    """(gid, device, tag, role, unit, wrap) in the order the generator writes them."""
    out: list[tuple[int, str, str, str, str | None, float | None]] = []
    for m in p.machines:
        g = p.gid[m.gateway]
        out += [(g, m.id, "state", "machine_state", None, None),
                (g, m.id, "_status", "device_status", None, None),
                (g, m.id, "parts_total", "part_count_total", "pcs", WRAP),
                (g, m.id, "parts_good", "part_count_good", "pcs", WRAP)]  # fmt: skip
    for mt in p.meters:
        role = {"electricity": "energy_kwh", "water": "water_m3", "gas": "gas_m3"}[mt.carrier]
        out += [(p.gid["gw-m"], mt.id, mt.carrier, role, mt.unit, None),
                (p.gid["gw-m"], mt.id, "_status", "device_status", None, None)]  # fmt: skip
    return out


# -- behaviour: states, parts, energy, in sample indices (sample i at t0 + 10 i s) -------


def plan(t0: dt.datetime, n: int) -> list[tuple[int, int, int]]:
    """The calendar's (first, end, kind) sample ranges: outside shifts, breaks, work."""
    cal = CalendarDef.model_validate(CALENDAR)
    end = t0 + dt.timedelta(seconds=n * STEP_S)
    ws = windows(cal, TZ, t0, end)
    segments = plan_segments(
        t0, end, [(w.start, w.end) for w in ws], [b for w in ws for b in w.breaks]
    )

    def idx(t: dt.datetime) -> int:
        return int((t - t0).total_seconds()) // STEP_S

    return [(idx(a), idx(b), kind) for a, b, kind in segments]


def machine_runs(
    rng: random.Random, segments: Sequence[tuple[int, int, int]]
) -> list[tuple[int, int, str]]:
    """(first, end, state) runs of one machine: OFF outside shifts, PLANNED_STOP in
    breaks, a Markov chain of RUNNING/IDLE/SETUP/DOWN in work time."""
    runs: list[tuple[int, int, str]] = []

    def push(a: int, b: int, state: str) -> None:
        if runs and runs[-1][2] == state and runs[-1][1] == a:
            runs[-1] = (runs[-1][0], b, state)
        else:
            runs.append((a, b, state))

    for a, b, kind in segments:
        if kind != WORK:
            push(a, b, "OFF" if kind == OUT else "PLANNED_STOP")
            continue
        state, t = "IDLE", a
        while t < b:
            n = max(1, round(rng.expovariate(1.0 / MEAN_S[state]) / STEP_S))
            push(t, min(b, t + n), state)
            t += n
            x, acc = rng.random(), 0.0
            for nxt, prob in NEXT[state]:
                acc += prob
                if x < acc:
                    state = nxt
                    break
    return runs


def part_counts(
    rng: random.Random, runs: Sequence[tuple[int, int, str]], cycle_s: float
) -> tuple[list[int], list[int]]:
    """Parts made (total, good) up to each sample: one a cycle of RUNNING time, 2 % scrap."""
    total: list[int] = []
    good: list[int] = []
    ct = cg = 0
    acc = rng.uniform(0, cycle_s)
    for a, b, state in runs:
        if state != "RUNNING":
            total += [ct] * (b - a)
            good += [cg] * (b - a)
            continue
        for _ in range(b - a):
            acc += STEP_S
            while acc >= cycle_s:
                acc -= cycle_s
                ct += 1
                cg += rng.random() >= 0.02
            total.append(ct)
            good.append(cg)
    return total, good


def counter_readings(counts: Sequence[int], base: int, reset_at: int | None) -> list[float]:
    """What a 16-bit counter shows: base + count, wrapping; from reset_at on it restarted at 0."""
    if reset_at is None:
        return [float((base + c) % 65536) for c in counts]
    before = counts[reset_at - 1]
    return [float((base + c) % 65536) for c in counts[:reset_at]] + [
        float((c - before) % 65536) for c in counts[reset_at:]
    ]


def readings(steps: Sequence[tuple[int, float]], n: int, start: float, digits: int) -> list[float]:
    """A meter's readings at the given resolution; `steps` are (sample, rate per hour from
    it on), the first at sample 0; sample i adds the rate in force at i - 1."""
    vals = [round(start, digits)]
    e = start
    ends = [a for a, _ in steps[1:]] + [n - 1]
    for (a, rate), b in zip(steps, ends, strict=True):
        inc = rate * STEP_S / 3600
        length = min(b, n - 1) - a
        vals += [round(e + inc * k, digits) for k in range(1, length + 1)]
        e += inc * length
    return vals


def power_steps(
    machines: Sequence[Machine], runs: dict[str, list[tuple[int, int, str]]], base_kw: float
) -> list[tuple[int, float]]:
    changes: dict[int, float] = defaultdict(float)
    changes[0] += base_kw
    for m in machines:
        prev = 0.0
        for a, _b, state in runs[m.id]:
            p = m.power_kw * LOAD[state]
            changes[a] += p - prev
            prev = p
    out, total = [], 0.0
    for i in sorted(changes):
        total += changes[i]
        out.append((i, max(total, 0.0)))
    return out


# -- binary COPY rows --------------------------------------------------------------------

_NUM = struct.Struct(">hiiiqidiih").pack  # samples (series_id, ts, value, text, quality)
_DELTA = struct.Struct(">hiiiqiqididid" + "i").pack  # counter_deltas, flag null
_C_HOURLY = struct.Struct(">hiiiqiiidiiii").pack
_S_HOURLY = struct.Struct(">hiiiqiqiqidididiqidiqid").pack
_S_HOURLY_TEXT = struct.Struct(">hiiiqiqiqiiiiqiiqi").pack
_I4 = struct.Struct(">hii").pack
_TS = struct.Struct(">iq").pack
_LEN = struct.Struct(">i").pack


def _text_row(text: str) -> Callable[..., bytes]:
    raw = text.encode()
    return struct.Struct(f">hiiiqii{len(raw)}sih").pack


def _flagged(flag: str) -> Callable[..., bytes]:
    return struct.Struct(f">hiiiqiqidididi{len(flag)}s").pack


_TEXT = {s: _text_row(s) for s in (*LOAD, "online")}
_FLAGGED = {f: _flagged(f) for f in ("rollover", "reset")}


def _text(value: str) -> bytes:
    raw = value.encode()
    return _LEN(len(raw)) + raw


class CopyStream(threading.Thread):
    """One table's binary COPY in one transaction on a connection of its own, fed by a
    bounded queue; the table is truncated first, so the rows can go in FREEZE (and, at
    wal_level=minimal, without WAL)."""

    def __init__(self, dsn: str, table: str, columns: str, *, freeze: bool) -> None:
        super().__init__(name=f"copy-{table}", daemon=True)
        self.dsn, self.table = dsn, table
        opts = "FORMAT BINARY, FREEZE" if freeze else "FORMAT BINARY"
        self.sql = f"COPY {table} ({columns}) FROM STDIN ({opts})"
        self.q: queue.Queue[bytes | None] = queue.Queue(maxsize=3)
        self.rows = 0
        self.error: BaseException | None = None

    def put(self, chunk: bytes, rows: int) -> None:
        self.rows += rows
        self.q.put(chunk)

    def run(self) -> None:
        chunk: bytes | None = b""
        try:
            with psycopg.connect(self.dsn) as conn:
                conn.execute(f"TRUNCATE {self.table}")
                with conn.cursor().copy(self.sql) as cp:
                    cp.write(SIGNATURE)
                    while (chunk := self.q.get()) is not None:
                        cp.write(chunk)
                    cp.write(TRAILER)
                conn.commit()
        except BaseException as exc:  # reported by close(); keep draining the producer
            self.error = exc
            while chunk is not None:
                chunk = self.q.get()

    def close(self) -> None:
        self.q.put(None)
        self.join()
        if self.error is not None:
            raise RuntimeError(f"COPY into {self.table} failed: {self.error}") from self.error


class Generator:
    """Packs every table's rows, series by series: the raw samples and the counter deltas
    go to their COPY threads as they are made, the smaller derived tables collect here."""

    def __init__(
        self, n: int, t0_us: int, samples: CopyStream, deltas: CopyStream, *,
        raw_all: bool, hourly_table: bool,
    ) -> None:  # fmt: skip
        self.n = n  # samples per series
        self.ts = [t0_us + i * STEP_US for i in range(n)]
        self.samples, self.deltas = samples, deltas
        self.raw_all = raw_all
        self.hourly_table = hourly_table  # plain mode: samples_hourly is a table we write
        self.small = {
            t: bytearray() for t in ("state_intervals", "counter_hourly", "samples_hourly")
        }
        self.rows: dict[str, int] = dict.fromkeys(self.small, 0)

    def _hourly_text(self, sid: int, first: int, last: int) -> None:
        """A samples_hourly row of a text series (no values): samples first..last."""
        if self.hourly_table:
            ts, k = self.ts, last - first + 1
            self.small["samples_hourly"] += _S_HOURLY_TEXT(
                11, 4, sid, 8, ts[first], 8, k, 8, k, -1, -1, -1, 8, ts[first], -1, 8, ts[last], -1
            )
            self.rows["samples_hourly"] += 1

    def state(self, sid: int, gid: int, device: str, runs: Sequence[tuple[int, int, str]]) -> None:
        ts, n = self.ts, self.n
        if self.raw_all:
            chunk = b"".join(
                b"".join([_TEXT[s](5, 4, sid, 8, t, -1, len(s), s.encode(), 2, 0) for t in ts[a:b]])
                for a, b, s in runs
            )
            self.samples.put(chunk, n)
        else:  # what the report reads: max(ts) of the state series
            s = runs[-1][2]
            self.samples.put(_TEXT[s](5, 4, sid, 8, ts[-1], -1, len(s), s.encode(), 2, 0), 1)
        head, out = _text(device), self.small["state_intervals"]
        for a, b, s in runs:
            end = _TS(8, ts[b]) if b < n else _LEN(-1)  # the last one is open
            out += _I4(5, 4, gid) + head + _TS(8, ts[a]) + end + _text(s)
        self.rows["state_intervals"] += len(runs)
        for h in range(0, n, PER_HOUR):
            self._hourly_text(sid, h, min(n, h + PER_HOUR) - 1)

    def status(self, sid: int) -> None:
        """One `online` at the start: the device never went offline."""
        self.samples.put(_TEXT["online"](5, 4, sid, 8, self.ts[0], -1, 6, b"online", 2, 0), 1)
        self._hourly_text(sid, 0, 0)

    def counter(self, sid: int, vals: list[float], wrap: float | None) -> None:
        ts, n = self.ts, self.n
        if self.raw_all:
            rows = [_NUM(5, 4, sid, 8, t, 8, v, -1, 2, 0) for t, v in zip(ts, vals, strict=True)]
            self.samples.put(b"".join(rows), n)
        ds = [v - pv for pv, v in itertools.pairwise(vals)]
        flags: dict[int, str] = {}
        for j in [j for j, d in enumerate(ds) if d < 0]:  # a fall: the server's rule
            ds[j], flag = counter_delta(vals[j], vals[j + 1], wrap)
            flags[j] = flag or ""
        rows = [
            _DELTA(7, 4, sid, 8, t, 8, pt, 8, pv, 8, v, 8, d, -1)
            for pt, t, pv, v, d in zip(ts, ts[1:], vals, vals[1:], ds, strict=False)
        ]
        for j, f in flags.items():
            rows[j] = _FLAGGED[f](7, 4, sid, 8, ts[j + 1], 8, ts[j], 8, vals[j], 8, vals[j + 1],
                                  8, ds[j], len(f), f.encode())  # fmt: skip
        self.deltas.put(b"".join(rows), n - 1)
        by_hour: dict[tuple[int, str], int] = defaultdict(int)
        for j, f in flags.items():
            by_hour[(j + 1) // PER_HOUR * PER_HOUR, f] += 1
        for h in range(0, n, PER_HOUR):
            lo, hi = max(0, h - 1), min(n, h + PER_HOUR) - 1  # ds[j] is sample j + 1's delta
            self.small["counter_hourly"] += _C_HOURLY(
                6, 4, sid, 8, ts[h], 4, hi - lo, 8, sum(ds[lo:hi]),
                4, by_hour[h, "rollover"], 4, by_hour[h, "reset"])  # fmt: skip
            self.rows["counter_hourly"] += 1
            if self.hourly_table:
                sl = vals[h : h + PER_HOUR]
                last = h + len(sl) - 1
                self.small["samples_hourly"] += _S_HOURLY(
                    11, 4, sid, 8, ts[h], 8, len(sl), 8, len(sl), 8, sum(sl), 8, min(sl),
                    8, max(sl), 8, ts[h], 8, sl[0], 8, ts[last], 8, sl[-1])  # fmt: skip
                self.rows["samples_hourly"] += 1


# -- loading -----------------------------------------------------------------------------


@dataclass
class Load:
    rows: dict[str, int]
    load_s: float
    vacuum_s: float
    mode: str


def _copy_rows(conn: psycopg.Connection, sql: str, rows: Sequence[Sequence[Any]]) -> None:
    with conn.cursor().copy(sql) as cp:
        for r in rows:
            cp.write_row(r)


COLUMNS = {
    "samples": "series_id, ts, value, text, quality",
    "counter_deltas": "series_id, ts, prev_ts, prev_value, value, delta, flag",
    "state_intervals": 'gid, device, start, "end", state',
    "counter_hourly": "series_id, bucket, n, delta, rollovers, resets",
    "samples_hourly": "series_id, bucket, n, n_good, v_sum, v_min, v_max, first_ts, "
    "first_value, last_ts, last_value",
}


def prepare(dsn: str, plants: Sequence[Plant], t0: dt.datetime) -> tuple[str, dict[Any, int]]:
    """Schema, registry, devices and series; returns the storage mode and the series ids
    by (gid, device, tag)."""
    migrate(dsn)
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT value FROM settings WHERE key = 'storage_mode'").fetchone()
        mode = str(row[0]) if row else "plain"
        import_registry(conn, registry(plants), {})
        for gid, ent, gw in conn.execute("SELECT gid, enterprise_id, id FROM gateways"):
            for p in plants:
                if p.enterprise == ent:
                    p.gid[gw] = gid
        series = [s for p in plants for s in series_of(p)]
        _copy_rows(conn, "COPY series (series_id, gid, device, tag, role, unit, wrap) FROM STDIN",
                   [(i + 1, *s) for i, s in enumerate(series)])  # fmt: skip
        conn.execute("SELECT setval('series_series_id_seq', %s)", (len(series),))
        devices = sorted({(g, d) for g, d, *_rest in series})
        _copy_rows(conn, "COPY devices (gid, device, protocol, first_seen, birth_at) FROM STDIN",
                   [(g, d, "modbus" if d.startswith("m-") else "opcua", t0, t0)
                    for g, d in devices])  # fmt: skip
        conn.commit()
    return mode, {(g, d, t): i + 1 for i, (g, d, t, *_rest) in enumerate(series)}


def generate(
    gen: Generator, p: Plant, segments: Sequence[tuple[int, int, int]], sid: dict[Any, int]
) -> int:
    """Every series of one plant; returns the good parts of its last process (output)."""
    n = gen.n
    runs = {
        m.id: machine_runs(random.Random(f"{p.enterprise}:{m.id}"), segments) for m in p.machines
    }
    made = 0
    for k, m in enumerate(p.machines):
        g = p.gid[m.gateway]
        rng = random.Random(f"parts:{p.enterprise}:{m.id}")
        gen.state(sid[g, m.id, "state"], g, m.id, runs[m.id])
        gen.status(sid[g, m.id, "_status"])
        total, good = part_counts(rng, runs[m.id], m.cycle_s)
        # a few PLC restarts (counter reset) and, near the top, 16-bit rollovers
        reset_at = n // 3 + rng.randrange(n // 3) if k % 37 == 11 else None
        base = 65000 if len(p.machines) == 1 else rng.randrange(65536)
        gen.counter(sid[g, m.id, "parts_total"], counter_readings(total, base, reset_at), WRAP)
        gen.counter(
            sid[g, m.id, "parts_good"], counter_readings(good, rng.randrange(65536), reset_at), WRAP
        )
        if m.process == "assembly" or len(p.machines) == 1:
            made += good[-1] - good[0]
    for mt in p.meters:
        g = p.gid["gw-m"]
        if mt.carrier == "electricity":
            covered = [m for m in p.machines if m.id in mt.covers] if mt.covers else p.machines
            steps = power_steps(covered, runs, 1.5 if mt.covers else 40.0)
            vals = readings(steps, n, 10_000 + 1000 * len(mt.covers), 2)
        else:
            rate = {"water": (0.2, 1.5, 3.0), "gas": (15.0, 60.0, 60.0)}[mt.carrier]
            vals = readings([(a, rate[kind]) for a, _b, kind in segments], n, 500.0, 3)
        gen.counter(sid[g, mt.id, mt.carrier], vals, None)
        gen.status(sid[g, mt.id, "_status"])
    return made


def load(dsn: str, plants: Sequence[Plant], days: int, *, raw_all: bool) -> Load:
    """Registry, devices and series, then every sample and derived row of `days` days."""
    t0 = dt.datetime.combine(FIRST_DAY, dt.time(), tzinfo=ZoneInfo(TZ)).astimezone(dt.UTC)
    n = days * 86400 // STEP_S
    mode, sid = prepare(dsn, plants, t0)
    if mode != "plain" and not raw_all:
        raise SystemExit("--raw last needs plain mode: TimescaleDB rolls up the raw samples")
    start = time.perf_counter()
    samples = CopyStream(dsn, "samples", COLUMNS["samples"], freeze=mode == "plain")
    deltas = CopyStream(dsn, "counter_deltas", COLUMNS["counter_deltas"], freeze=True)
    samples.start()
    deltas.start()
    t0_us = int((t0 - PG_EPOCH).total_seconds()) * 1_000_000
    gen = Generator(n, t0_us, samples, deltas, raw_all=raw_all, hourly_table=mode == "plain")
    segments = plan(t0, n)
    try:
        output = {p.enterprise: generate(gen, p, segments, sid) for p in plants}
    finally:
        samples.close()
        deltas.close()
    for table, data in gen.small.items():
        if data:
            stream = CopyStream(dsn, table, COLUMNS[table], freeze=True)
            stream.start()
            stream.put(bytes(data), 0)  # counted in gen.rows
            stream.close()
    with psycopg.connect(dsn, autocommit=True) as conn:
        if mode != "plain":
            conn.execute("CALL refresh_continuous_aggregate('samples_hourly', NULL, NULL)")
        last = FIRST_DAY + dt.timedelta(days=days - 1)
        for ent, made in output.items():
            conn.execute(
                "INSERT INTO production_entries (enterprise_id, period_from, period_to, output, "
                "value_added_10k_cny, note) VALUES (%s, %s, %s, %s, %s, 'bench')",
                (ent, FIRST_DAY, last, made, max(1.0, made * 0.012)),
            )
        load_s = time.perf_counter() - start
        t = time.perf_counter()
        conn.execute("VACUUM (ANALYZE)")
        vacuum_s = time.perf_counter() - t
    rows = {"samples": samples.rows, "counter_deltas": deltas.rows, **gen.rows}
    return Load(rows, load_s, vacuum_s, mode)


# -- the server --------------------------------------------------------------------------

# only while loading; the measurements run after a restart with the server's defaults
LOAD_SETTINGS = {
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "max_wal_size": "8GB",
    "checkpoint_timeout": "30min",
    "maintenance_work_mem": "512MB",
}


@dataclass
class Database:
    admin: str
    dsn: str
    pg: EmbeddedPostgres | None

    def restart_with_defaults(self) -> None:
        if self.pg is None:
            return
        self.pg.stop("fast")
        self.pg = EmbeddedPostgres(self.pg.data_dir, port=self.pg.port)
        self.pg.start()


@contextlib.contextmanager
def database(args: argparse.Namespace) -> Iterator[Database]:
    """A fresh database on the embedded server (started here) or on --dsn's server."""
    pg = None
    if args.dsn:
        admin = args.dsn
    else:
        root = Path(tempfile.mkdtemp(prefix="fe-bench-kpi-"))
        root.chmod(0o755)
        pg = EmbeddedPostgres(root, settings=LOAD_SETTINGS)
        pg.start()
        admin = pg.dsn("postgres")
    name = f"fe_bench_kpi_{os.getpid()}"
    db = Database(admin, psycopg.conninfo.make_conninfo(admin, dbname=name), pg)
    try:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        yield db
    finally:
        with contextlib.suppress(psycopg.Error), psycopg.connect(admin, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if db.pg is not None:
            db.pg.stop("fast")
            shutil.rmtree(db.pg.data_dir, ignore_errors=True)


# -- measuring ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Case:
    key: str
    label: str
    req: Request
    target_s: float | None = None


def timed(conn: psycopg.Connection, fn: Callable[[], Any], reps: int) -> tuple[list[float], Any]:
    """Seconds of each run (each in a transaction rolled back after it), the last result."""
    times, out = [], None
    for _ in range(reps):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
        conn.rollback()
    return times, out


def seq_scans(conn: psycopg.Connection, tables: Sequence[str]) -> int:
    """Sequential scans of `tables` so far, this backend's included: a report should make
    none on the big tables (a parallel scan counts once per process)."""
    conn.execute("SELECT pg_stat_force_next_flush()")
    conn.rollback()  # idle now: the backend flushes its statistics before it answers
    row = conn.execute(
        "SELECT coalesce(sum(seq_scan), 0) FROM pg_stat_user_tables WHERE relname = ANY(%s)",
        (list(tables),),
    ).fetchone()
    conn.rollback()
    return int(row[0]) if row else 0


def profile(conn: psycopg.Connection, req: Request, as_of: dt.datetime) -> str:
    prof = cProfile.Profile()
    prof.enable()
    make_report(conn, req, key=None, as_of=as_of)
    prof.disable()
    conn.rollback()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out).strip_dirs()
    stats.sort_stats("tottime").print_stats(15)
    stats.sort_stats("cumulative").print_stats(20)
    return out.getvalue()


VERIFY_TIMES = ("verify_one_period", "verify_big_day")


def consistency(conn: psycopg.Connection, req: Request, as_of: dt.datetime) -> tuple[str, float]:
    """The report from the derived rows against the same report recomputed from the raw
    samples, as `ingest-server verify` does it: shows the loaded rows agree. Also how
    long that verification took (it reads every raw sample of the period)."""
    doc = make_report(conn, req, key=None, as_of=as_of)
    t0 = time.perf_counter()
    verdict = verify(doc, conn=conn)
    took = time.perf_counter() - t0
    conn.rollback()
    bad = [f"{c.item}: {c.claimed} vs {c.recomputed}" for c in verdict.checks if not c.ok]
    bad += verdict.problems
    what = f"`{req.enterprise}` {req.date_from}..{req.date_to}"
    if bad:
        return f"derived rows vs raw samples, {what}: {len(bad)} figures DIFFER: {bad[:3]}", took
    return (
        f"derived rows vs raw samples, {what}: every KPI, equipment and meter figure equal "
        f"when recomputed from the raw samples (as `ingest-server verify` does, {took:.2f} s)",
        took,
    )


def cases_for(n_eq: int, days: int) -> list[Case]:
    last = FIRST_DAY + dt.timedelta(days=days - 1)
    half = FIRST_DAY + dt.timedelta(days=days // 2 - 1)
    mid = half + dt.timedelta(days=1)

    def case(key: str, ent: str, n: int, a: dt.date, b: dt.date, target: float | None) -> Case:  # noqa: PLR0917
        d = (b - a).days + 1
        label = f"{ent}: {n} equipment, {d} day{'s' if d > 1 else ''}"
        return Case(key, label, Request(ent, a, b), target)

    return [
        case("report_s", "big", n_eq, FIRST_DAY, last, 2.0),
        case("report_15d_s", "big", n_eq, FIRST_DAY, half, None),
        case("report_50eq_s", "half", n_eq // 2, FIRST_DAY, last, None),
        case("report_1d_s", "big", n_eq, mid, mid, None),
        case("equipment_day_s", "one", 1, mid, mid, 0.1),
    ]


@dataclass
class Measured:
    times: dict[str, list[float]]  # case key (and the phases of report_s) -> seconds
    scans: dict[str, int]  # case key -> full scans of samples/counter_deltas in its runs
    kpis: dict[str, Any]
    input_rows: int
    intervals: int
    checks: list[str]
    profile: str


def measure(
    dsn: str, cases: Sequence[Case], as_of: dt.datetime, args: argparse.Namespace
) -> Measured:
    times: dict[str, list[float]] = {}
    scans: dict[str, int] = {}
    big_tables = ["counter_deltas", "samples"] if args.raw == "all" else ["counter_deltas"]
    with psycopg.connect(dsn) as conn:
        for c in cases:

            def report(req: Request = c.req) -> dict[str, Any]:
                return make_report(conn, req, key=None, as_of=as_of)

            before = seq_scans(conn, big_tables)
            times[c.key], doc = timed(conn, report, args.reps)
            scans[c.key] = seq_scans(conn, big_tables) - before
            if c.key == "report_s":
                kpis = {k["id"]: k["value"] for k in doc["kpis"]}
                input_rows = doc["digest"]["rows"]
        # the phases of report_s, each on its own
        req = cases[0].req
        times["fetch_inputs"], inputs = timed(
            conn, lambda: fetch_inputs(conn, "big", req.date_from, req.date_to, as_of), args.reps
        )
        energy, emission = energy_table(None), emission_table(None)
        times["compute"], _ = timed(
            conn,
            lambda: compute(
                inputs, params=Parameters(), energy=energy, emission=emission, partial=False
            ),
            args.reps,
        )
        times["digest"], _ = timed(conn, inputs.digest, args.reps)
        # one enterprise's whole period (rollovers, resets, the open last interval) and a
        # day of the big plant with its meters (prorated at the day's edges)
        checks = []
        if args.raw == "all":
            mid = cases[-1].req.date_from
            for key, r in (
                ("verify_one_period", Request("one", req.date_from, req.date_to)),
                ("verify_big_day", Request("big", mid, mid)),
            ):
                text, took = consistency(conn, r, as_of)
                checks.append(text)
                times[key] = [took]
        prof = profile(conn, req, as_of) if args.profile else ""
    n_iv = sum(len(v) for v in inputs.intervals.values())
    return Measured(times, scans, kpis, input_rows, n_iv, checks, prof)


def print_load(ld: Load, size_bytes: int) -> None:
    total = sum(ld.rows.values())
    print(f"storage mode {ld.mode}; loaded {total:,} rows in {ld.load_s:.1f} s = "
          f"{total / ld.load_s:,.0f} rows/s (rows packed in Python, binary COPY, samples and "
          f"deltas in parallel); then VACUUM ANALYZE {ld.vacuum_s:.1f} s; "
          f"database {size_bytes / 1e9:.1f} GB")  # fmt: skip
    for table, rows in ld.rows.items():
        print(f"  {table:<16} {rows:>13,}")


def print_results(m: Measured, cases: Sequence[Case], n_eq: int, days: int) -> dict[str, float]:
    t = m.times
    head = f"{'best':>8} {'median':>8} {'first':>8} {'scans':>6} {'target':>7}"
    print(f"\nmake_report (unsigned), {len(t['report_s'])} runs each, server restarted with "
          f"default settings (scans: sequential scans of the raw tables in its runs):\n"
          f"  {'':<30} {head}")  # fmt: skip
    for c in cases:
        x = t[c.key]
        ok = "" if c.target_s is None else ("PASS" if min(x) < c.target_s else "FAIL")
        target = "" if c.target_s is None else f"{c.target_s:.1f} s"
        print(f"  {c.label:<30} {min(x):>7.3f}s {statistics.median(x):>7.3f}s {x[0]:>7.3f}s "
              f"{m.scans[c.key]:>6} {target:>7} {ok}")  # fmt: skip
    for phase in ("fetch_inputs", "compute", "digest"):
        x = t[phase]
        print(f"    {days} days, {phase + ' alone':<18} {min(x):>7.3f}s "
              f"{statistics.median(x):>7.3f}s")  # fmt: skip
    ratios = {
        "scaling_period_x2": min(t["report_s"]) / min(t["report_15d_s"]),
        "scaling_equipment_x2": min(t["report_s"]) / min(t["report_50eq_s"]),
    }
    print(f"scaling (best): period doubles ({days // 2} -> {days} days) "
          f"x{ratios['scaling_period_x2']:.2f}; equipment doubles ({n_eq // 2} -> {n_eq}) "
          f"x{ratios['scaling_equipment_x2']:.2f}")  # fmt: skip
    k = m.kpis
    print(f"the {days}-day report covers {m.input_rows:,} input rows ({m.intervals:,} state "
          f"intervals); availability {k['availability']:.1f} %, OEE {k['oee']:.1f} %, NC rate "
          f"measured {k['nc_rate_measured']:.1f} %, networking {k['networking_rate']:.0f} %, "
          f"energy {k['energy_tce']:.1f} tce")  # fmt: skip
    for line in m.checks:
        print(line)
    if m.profile:
        print(f"\ncProfile of one {days}-day report of `big`:\n{m.profile}")
    return ratios


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="20 equipment x 4 days: under a minute")
    ap.add_argument("--dsn", help="a PostgreSQL/TimescaleDB server to run against")
    ap.add_argument(
        "--raw",
        choices=("all", "last"),
        default="all",
        help="raw samples: every one, or only the last of each state series",
    )
    ap.add_argument("--reps", type=int, default=5, help="runs of each measurement")
    ap.add_argument("--profile", action="store_true", help="cProfile one 30-day report")
    args = ap.parse_args()
    # stopped from outside: unwind, so the server and database it made go too
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    n_eq, days = (20, 4) if args.quick else (100, 30)
    plants = [plant("big", n_eq), plant("half", n_eq // 2), plant("one", 1)]
    cases = cases_for(n_eq, days)
    t0 = dt.datetime.combine(FIRST_DAY, dt.time(), tzinfo=ZoneInfo(TZ)).astimezone(dt.UTC)
    as_of = t0 + dt.timedelta(days=days)
    print(f"{'quick' if args.quick else 'full'} run: {n_eq} + {n_eq // 2} + 1 equipment, "
          f"{days} days from {FIRST_DAY} ({TZ}), every series every {STEP_S} s, raw samples: "
          f"{args.raw}")  # fmt: skip
    with database(args) as db:
        ld = load(db.dsn, plants, days, raw_all=args.raw == "all")
        with psycopg.connect(db.dsn) as conn:
            size = conn.execute("SELECT pg_database_size(current_database())").fetchone()
        print_load(ld, int(size[0]) if size else 0)
        db.restart_with_defaults()
        m = measure(db.dsn, cases, as_of, args)
    ratios = print_results(m, cases, n_eq, days)
    total = sum(ld.rows.values())
    best = {c.key: round(min(m.times[c.key]), 4) for c in cases}
    median = {f"{c.key[:-2]}_median_s": round(statistics.median(m.times[c.key]), 4) for c in cases}
    phases = {f"{p}_s": round(min(m.times[p]), 4) for p in ("fetch_inputs", "compute", "digest")}
    phases |= {f"{p}_s": round(m.times[p][0], 3) for p in VERIFY_TIMES if p in m.times}
    print(
        json.dumps(
            {
                **best,
                **median,
                **phases,
                **{k: round(v, 3) for k, v in ratios.items()},
                "rows_loaded": total,
                "load_s": round(ld.load_s, 1),
                "load_rows_per_s": round(total / ld.load_s),
                "vacuum_analyze_s": round(ld.vacuum_s, 1),
                "rows": ld.rows,
                "raw_samples": args.raw,
                "storage_mode": ld.mode,
                "equipment": n_eq,
                "days": days,
                "quick": args.quick,
            }
        )
    )


if __name__ == "__main__":
    main()
