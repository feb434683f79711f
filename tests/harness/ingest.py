"""Helpers for the ingestion server's tests: a registry, signed messages, table dumps."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg

from edge_agent.contract.sample import Quality, Sample
from edge_agent.contract.wire import encode_batch, encode_message
from ingest_server.db.schema import migrate
from ingest_server.ingest.check import DataItem, Group
from ingest_server.ingest.payload import parse_message
from ingest_server.ingest.store import Store
from ingest_server.repo.registry import Registry, import_registry

KEY = b"0123456789abcdef" * 4
ENT, SITE, GW = "hf", "p1", "gw-01"
PREFIX = f"fe/v1/{ENT}/{SITE}/{GW}/"


def small_registry(gateways: tuple[str, ...] = (GW,)) -> Registry:
    return Registry.model_validate(
        {
            "enterprises": [
                {
                    "id": ENT,
                    "name": "测试企业",
                    "processes": [{"id": "turning", "name": "车削", "key": True}],
                    "sites": [
                        {
                            "id": SITE,
                            "name": "一厂",
                            "gateways": [{"id": g} for g in gateways],
                            "equipment": [
                                {
                                    "id": "cnc-01",
                                    "name": "数控车床",
                                    "process": "turning",
                                    "nc": True,
                                    "gateway": GW,
                                    "device": "cnc-01",
                                }
                            ],
                        }
                    ],
                }
            ]
        }
    )


def prepare(dsn: str, key: bytes = KEY, gateways: tuple[str, ...] = (GW,)) -> None:
    migrate(dsn)
    with psycopg.connect(dsn) as conn:
        import_registry(conn, small_registry(gateways), dict.fromkeys(gateways, key))


def open_store(dsn: str) -> Store:
    conn = psycopg.connect(dsn)
    mode = conn.execute("SELECT value FROM settings WHERE key = 'storage_mode'").fetchone()
    assert mode is not None
    return Store(conn, str(mode[0]))


def batch(seq: int, samples: list[Sample], *, boot: int = 1, key: bytes = KEY) -> bytes:
    sent = max((s.ts for s in samples), default=1.0)
    return encode_batch(gw=GW, boot=boot, seq=seq, sent=sent, samples=samples, key=key)


def birth(devices: list[dict[str, Any]], *, boot: int = 1) -> bytes:
    body = {
        "gw": GW,
        "boot": boot,
        "agent": {"name": "test", "version": "0"},
        "sent": 1_000,
        "devices": devices,
    }
    return encode_message(body, KEY)


def write(store: Store, *messages: tuple[str, bytes]) -> None:
    """Validate and write messages the way the consumer does, in one transaction."""
    group = Group()
    for kind, payload in messages:
        origin, msg = parse_message(PREFIX + kind, payload, key_of=lambda _o: KEY)
        if kind == "data":
            group.data.append(DataItem(origin, msg, list(msg.samples), 0))  # type: ignore[union-attr, arg-type]
        elif kind == "birth":
            group.births.append((origin, msg))  # type: ignore[arg-type]
        else:
            group.statuses.append((origin, msg))  # type: ignore[arg-type]
    store.write(group)


def dump(dsn: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return [tuple(r) for r in conn.execute(query).fetchall()]  # type: ignore[arg-type]


def intervals(dsn: str, device: str = "cnc-01") -> list[tuple[Any, ...]]:
    return dump(
        dsn,
        'SELECT extract(epoch FROM start)::float8, extract(epoch FROM "end")::float8, state '
        f"FROM state_intervals WHERE device = '{device}' ORDER BY start",
    )


def s(device: str, tag: str, ts: float, value: Any, quality: Quality = Quality.GOOD) -> Sample:
    return Sample(device, tag, ts, value, quality)


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data), encoding="utf-8")


class GatewayPublisher:
    """Publishes signed messages as a gateway would (QoS 1, waits for each PUBACK)."""

    def __init__(self, broker: Any, *, client_id: str = "gw-test") -> None:
        import paho.mqtt.client as mqtt  # noqa: PLC0415
        from paho.mqtt.enums import CallbackAPIVersion  # noqa: PLC0415

        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def publish(self, kind: str, payload: bytes, *, prefix: str = PREFIX) -> None:
        info = self.client.publish(prefix + kind, payload, qos=1)
        info.wait_for_publish(10)
        assert info.is_published(), f"no PUBACK for {kind}"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def synthetic_batches(n: int, per_batch: int, *, t0: float = 1_795_000_000.0) -> list[list[Sample]]:
    """n batches of a plant's worth of values: powers, an energy counter, machine states."""
    out = []
    energy = 1000.0
    for i in range(n):
        t = t0 + i
        samples = []
        for j in range(per_batch):
            if j == 0:
                samples.append(s("cnc-01", "state", t, ("RUNNING", "IDLE")[(i // 7) % 2]))
            elif j == 1:
                energy += 0.25
                samples.append(s("em-1", "energy_kwh", t, energy))
            else:
                samples.append(s(f"dev-{j % 50}", f"power-{j}", t, float(i * 1000 + j)))
        out.append(samples)
    return out


CNC_BIRTH = encode_message(
    {
        "gw": GW,
        "boot": 1,
        "agent": {"name": "test", "version": "0"},
        "sent": 1_000,
        "devices": [
            {
                "id": "cnc-01",
                "protocol": "opcua",
                "metadata": {"nc": True},
                "tags": [{"t": "state", "role": "machine_state"}],
            },
            {
                "id": "em-1",
                "protocol": "modbus",
                "metadata": {"kind": "meter"},
                "tags": [{"t": "energy_kwh", "role": "energy_kwh", "unit": "kWh"}],
            },
        ],
    },
    KEY,
)
