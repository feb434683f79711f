"""A small plant for KPI tests: registry, birth, and random sample streams with gaps,
offline spells, counter rollovers and resets, written through the real Store."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import psycopg

from edge_agent.contract.sample import Sample
from edge_agent.contract.wire import encode_message
from ingest_server.db.schema import migrate
from ingest_server.repo.registry import Registry, import_registry
from tests.harness.ingest import GW, KEY, batch, open_store, s, write

WRAP = 6553.6
STATES = ("RUNNING", "IDLE", "SETUP", "DOWN", "PLANNED_STOP", "OFF")


def kpi_registry(timezone: str = "Asia/Shanghai") -> Registry:
    return Registry.model_validate(
        {
            "enterprises": [
                {
                    "id": "hf",
                    "name": "测试企业",
                    "calendars": [
                        {
                            "id": "two",
                            "workdays": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                            "shifts": [
                                {
                                    "name": "day",
                                    "start": "08:00",
                                    "end": "16:00",
                                    "breaks": [{"start": "12:00", "end": "12:30"}],
                                },
                                {"name": "swing", "start": "16:00", "end": "23:30"},
                            ],
                        }
                    ],
                    "processes": [
                        {"id": "turning", "name": "车削", "key": True},
                        {"id": "washing", "name": "清洗", "key": False},
                    ],
                    "sites": [
                        {
                            "id": "p1",
                            "name": "一厂",
                            "timezone": timezone,
                            "grid_region": "anhui",
                            "calendar": "two",
                            "gateways": [{"id": GW}],
                            "equipment": [
                                {
                                    "id": "cnc-01",
                                    "name": "数控车床1",
                                    "process": "turning",
                                    "nc": True,
                                    "ideal_cycle_time_s": 50,
                                    "gateway": GW,
                                    "device": "cnc-01",
                                },
                                {
                                    "id": "cnc-02",
                                    "name": "数控车床2",
                                    "process": "turning",
                                    "nc": True,
                                    "ideal_cycle_time_s": 50,
                                    "gateway": GW,
                                    "device": "cnc-02",
                                },
                                {
                                    "id": "lathe-3",
                                    "name": "普通车床",
                                    "process": "turning",
                                    "nc": False,
                                },
                                {
                                    "id": "wash-1",
                                    "name": "清洗机",
                                    "process": "washing",
                                    "nc": False,
                                },
                            ],
                            "meters": [
                                {
                                    "id": "em-main",
                                    "name": "总表",
                                    "carrier": "electricity",
                                    "unit": "kWh",
                                    "gateway": GW,
                                    "device": "em-main",
                                },
                                {
                                    "id": "em-sub",
                                    "name": "分表",
                                    "carrier": "electricity",
                                    "unit": "kWh",
                                    "parent": "em-main",
                                    "covers": ["cnc-01"],
                                    "gateway": GW,
                                    "device": "em-sub",
                                },
                            ],
                        }
                    ],
                }
            ]
        }
    )


def kpi_birth() -> bytes:
    def machine(d: str) -> dict[str, Any]:
        return {
            "id": d,
            "protocol": "opcua",
            "metadata": {},
            "tags": [
                {"t": "state", "role": "machine_state"},
                {"t": "parts_completed", "role": "part_count_total"},
                {"t": "parts_good", "role": "part_count_good"},
            ],
        }

    def meter(d: str) -> dict[str, Any]:
        return {
            "id": d,
            "protocol": "modbus",
            "metadata": {"kind": "meter"},
            "tags": [
                {"t": "energy_kwh", "role": "energy_kwh", "unit": "kWh", "type": "u16",
                 "scale": 0.1, "offset": 0.0, "wrap": WRAP},
            ],
        }  # fmt: skip

    return encode_message(
        {
            "gw": GW,
            "boot": 1,
            "agent": {"name": "test", "version": "0"},
            "sent": 1_000,
            "devices": [machine("cnc-01"), machine("cnc-02"), meter("em-main"), meter("em-sub")],
        },
        KEY,
    )


def prepare_kpi(dsn: str, timezone: str = "Asia/Shanghai") -> None:
    migrate(dsn)
    with psycopg.connect(dsn) as conn:
        import_registry(conn, kpi_registry(timezone), {GW: KEY})
    store = open_store(dsn)
    try:
        write(store, ("birth", kpi_birth()))
    finally:
        store.conn.close()


def machine_stream(rng: random.Random, device: str, t0: float, t1: float) -> list[Sample]:
    """States changing every few minutes with 300 s heartbeats, silences (no samples at
    all) and offline spells; part counters that count while running and sometimes reset."""
    out: list[Sample] = []
    t = t0
    state = "OFF"
    parts = good = rng.randrange(0, 1000)
    next_change = t
    next_part = t + 50
    while t < t1:
        if rng.random() < 0.004:  # a silence: the gateway heard nothing
            t += rng.uniform(1000, 4000)
            continue
        if rng.random() < 0.004:  # an offline spell
            out.append(s(device, "_status", t, "offline"))
            t += rng.uniform(100, 2000)
            out.append(s(device, "_status", t, "online"))
        if t >= next_change:
            state = rng.choice(STATES)
            next_change = t + rng.expovariate(1 / 600)
        out.append(s(device, "state", t, state))
        if state == "RUNNING" and t >= next_part:
            parts += 1
            good += rng.random() > 0.05
            next_part = t + 50
            if rng.random() < 0.01:
                parts = good = 0  # a counter reset (a new job on the controller)
            out.append(s(device, "parts_completed", t, float(parts)))
            out.append(s(device, "parts_good", t, float(good)))
        t += min(rng.uniform(20, 300), max(1.0, next_change - t))
    return out


def meter_stream(rng: random.Random, device: str, t0: float, t1: float, kw: float) -> list[Sample]:
    """A u16 0.1 kWh register read every 60 s: rolls over at 6553.6 kWh."""
    out: list[Sample] = []
    energy = rng.uniform(0, WRAP)
    t = t0
    while t < t1:
        if rng.random() < 0.003:
            t += rng.uniform(600, 3000)
        energy += kw * rng.uniform(0.5, 1.5) / 60
        out.append(s(device, "energy_kwh", t, round(energy % WRAP, 1)))
        t += 60
    return out


def plant_samples(seed: int, t0: float, t1: float) -> list[Sample]:
    rng = random.Random(seed)
    return [
        *machine_stream(rng, "cnc-01", t0, t1),
        *machine_stream(rng, "cnc-02", t0, t1),
        *meter_stream(rng, "em-main", t0, t1, 400.0),
        *meter_stream(rng, "em-sub", t0, t1, 120.0),
    ]


def store_samples(dsn: str, samples: list[Sample], seed: int, per_batch: int = 500) -> None:
    """Write in shuffled batches (arrival order must not matter)."""
    rng = random.Random(seed)
    chunks = [samples[i : i + per_batch] for i in range(0, len(samples), per_batch)]
    rng.shuffle(chunks)
    store = open_store(dsn)
    try:
        for seq, chunk in enumerate(chunks, 1):
            write(store, ("data", batch(seq, chunk)))
    finally:
        store.conn.close()


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)  # type: ignore[misc]
