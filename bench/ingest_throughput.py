"""Ingest throughput and latency, side by side with the raw COPY ceiling, in one run.

    .venv/bin/python bench/ingest_throughput.py [--quick] [--dsn DSN]

On 127.0.0.1, each its own process:
  broker      a real Mosquitto
  database    the embedded PostgreSQL (or --dsn: a server of yours, e.g. TimescaleDB;
              the benchmark makes and drops its own databases there)
  gateway     publishes pre-signed contract v1 batches (QoS 1, up to 100 in flight), as
              fast as the broker takes them, or at a fixed rate for the latency run; for
              the v2 run, Ed25519-signed, chained contract v2 batches of --v2-gateways
              gateways (each its own key, enrolled), from one publishing process
  server      `ingest-server run`: validate (schema, HMAC, clocks), COPY, dedupe, derive,
              commit, then PUBACK

ceiling    psycopg binary COPY of the same rows into the same `samples` table (same
           indexes), no MQTT and no validation: what the database alone takes.
throughput samples committed per second, from the first publish to the last commit
           (read from the `batches` table), with the gateway publishing flat out.
latency    at 10,000 samples/s: for each batch, publish time to the moment a poller
           (every 5 ms) first sees it in `batches`, i.e. committed and queryable.
v2         the same throughput run with contract v2 batches (the servers decode, recompute
           the digest from the decoded columns, verify the signature, keep the ledger rows
           and publish acks), and what the server's checks of one batch cost in this
           process, v1 against v2. Both runs' CPU per sample is printed and in the JSON.

The samples are a plant's mix: per batch one machine state, one energy counter, the
rest analog values (power, speeds) of 50 devices, so the derived-data path runs too.
The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import psutil  # noqa: E402
import psycopg  # noqa: E402

from edge_agent.contract import topics  # noqa: E402
from edge_agent.contract.digest import ZERO  # noqa: E402
from edge_agent.contract.identity import FileSigner  # noqa: E402
from edge_agent.contract.sample import Sample  # noqa: E402
from edge_agent.contract.wire import (  # noqa: E402
    encode_batch,
    encode_message,
    encode_message_v2,
    sample_dicts,
)
from edge_agent.contract.wire_v2_encode import seal_batch_v2  # noqa: E402
from ingest_server.db.embedded_pg import EmbeddedPostgres  # noqa: E402
from ingest_server.db.schema import migrate  # noqa: E402
from ingest_server.repo.gateways import enroll_public_key  # noqa: E402
from ingest_server.repo.registry import Registry, import_registry  # noqa: E402
from tests.harness.broker import start_broker  # noqa: E402

ENT, SITE, GW = "bench", "p1", "gw-01"
PREFIX = f"fe/v1/{ENT}/{SITE}/{GW}/"
KEY = secrets.token_hex(32).encode()
DEVICES = 50
# contract v2 gateways: their ids and keys (made in memory, enrolled in each fresh schema)
V2_GATEWAYS: dict[str, FileSigner] = {}


def registry() -> Registry:
    gateways = [{"id": g} for g in (GW, *V2_GATEWAYS)]
    return Registry.model_validate(
        {
            "enterprises": [
                {
                    "id": ENT,
                    "name": "bench",
                    "sites": [{"id": SITE, "name": "p1", "gateways": gateways}],
                }
            ]
        }
    )


def v2_gateways(n: int) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (  # noqa: PLC0415
        Ed25519PrivateKey,
    )

    for i in range(n):
        V2_GATEWAYS[f"gw-v2-{i}"] = FileSigner(Ed25519PrivateKey.generate())


def birth_body() -> dict[str, Any]:
    devices = [
        {
            "id": f"dev-{d}",
            "protocol": "modbus",
            "metadata": {},
            "tags": [
                {"t": "state", "role": "machine_state"},
                {"t": "energy_kwh", "role": "energy_kwh", "unit": "kWh"},
                *({"t": f"v{j}", "role": "generic"} for j in range(40)),
            ],
        }
        for d in range(DEVICES)
    ]
    return {"boot": 1, "agent": {"name": "bench", "version": "0"}, "sent": 0, "devices": devices}


def births() -> list[tuple[str, bytes]]:
    """(topic prefix, birth) of every gateway: v1 signed with the HMAC key, v2 with its own."""
    out = [(PREFIX, birth())]
    for gw, signer in V2_GATEWAYS.items():
        body = {"gw": gw, **birth_body()}
        out.append((topics.prefix(ENT, SITE, gw) + "/", encode_message_v2(body, signer)))
    return out


def birth() -> bytes:
    devices = [
        {
            "id": f"dev-{d}",
            "protocol": "modbus",
            "metadata": {},
            "tags": [
                {"t": "state", "role": "machine_state"},
                {"t": "energy_kwh", "role": "energy_kwh", "unit": "kWh"},
                *({"t": f"v{j}", "role": "generic"} for j in range(40)),
            ],
        }
        for d in range(DEVICES)
    ]
    body = {"gw": GW, "boot": 1, "agent": {"name": "bench", "version": "0"}, "sent": 0}
    return encode_message(body | {"devices": devices}, KEY)


def batch_samples(seq: int, per_batch: int, t0: float) -> list[Sample]:
    """One poll of a plant: a state and an energy reading of one device, analog values."""
    t = t0 + seq * 0.05
    dev = f"dev-{seq % DEVICES}"
    out = [
        Sample(dev, "state", t, ("RUNNING", "IDLE")[(seq // DEVICES // 5) % 2]),
        Sample(dev, "energy_kwh", t, 1000.0 + seq * 0.5),
    ]
    out.extend(
        Sample(f"dev-{j % DEVICES}", f"v{j // DEVICES % 40}", t, float(seq + j))
        for j in range(per_batch - 2)
    )
    return out


def payloads(n: int, per_batch: int, t0: float, seq0: int = 1) -> list[tuple[str, bytes]]:
    return [
        (
            PREFIX + "data",
            encode_batch(
                gw=GW,
                boot=1,
                seq=seq,
                sent=t0,
                samples=batch_samples(seq, per_batch, t0),
                key=KEY,
            ),
        )
        for seq in range(seq0, seq0 + n)
    ]


def payloads_v2(n: int, per_batch: int, t0: float) -> list[tuple[str, bytes]]:
    """n v2 batches, round robin over the v2 gateways, each gateway's chained. Seqs are
    unique over all gateways (gateway i sends i+1, i+1+N, ...) so the poller's count by
    seq works as for v1; a gateway's seqs need not be consecutive for the server."""
    names = list(V2_GATEWAYS)
    prev = dict.fromkeys(names, ZERO)
    out = []
    for seq in range(1, n + 1):
        gw = names[(seq - 1) % len(names)]
        dicts = sample_dicts(batch_samples(seq, per_batch, t0))
        payload, prev[gw] = seal_batch_v2(
            V2_GATEWAYS[gw], gw=gw, boot=1, seq=seq, sent=round(t0 * 1000), prev=prev[gw],
            samples=dicts,
        )  # fmt: skip
        out.append((topics.prefix(ENT, SITE, gw) + "/data", payload))
    return out


def check_cost(v1: list[tuple[str, bytes]], v2: list[tuple[str, bytes]]) -> dict[str, float]:
    """us per batch of the server's checks of a payload, in this process: v1 (HMAC +
    JSON schema) and v2 (decode to columns, digest from them, Ed25519 verify; the decoder
    enforces the schema's limits), and of the decode, digest and verify alone."""
    from edge_agent.contract.digest import verify_batch  # noqa: PLC0415
    from edge_agent.contract.wire_v2 import decode_columns_v2  # noqa: PLC0415
    from ingest_server.ingest.payload import parse_message, parse_topic  # noqa: PLC0415
    from ingest_server.ingest.payload_v2 import parse_batch_v2  # noqa: PLC0415

    out: dict[str, float] = {}
    start = time.perf_counter()
    for topic, payload in v1:
        parse_message(topic, payload, key_of=lambda _o: KEY)
    out["v1_check_us_per_batch"] = (time.perf_counter() - start) / len(v1) * 1e6
    start = time.perf_counter()
    for topic, payload in v2:
        origin = parse_topic(topic)
        pk = V2_GATEWAYS[origin.gateway].public_key()
        parse_batch_v2(origin, payload, pk, max_samples=100_000,
                       max_bytes_decompressed=8 << 20)  # fmt: skip
    out["v2_check_us_per_batch"] = (time.perf_counter() - start) / len(v2) * 1e6
    start = time.perf_counter()
    decoded = [(decode_columns_v2(p), parse_topic(t).gateway) for t, p in v2]
    out["v2_decode_us_per_batch"] = (time.perf_counter() - start) / len(v2) * 1e6
    start = time.perf_counter()
    for d, _ in decoded:
        d.digest()
    out["v2_digest_us_per_batch"] = (time.perf_counter() - start) / len(v2) * 1e6
    digests = [(d.digest(), d.signature, V2_GATEWAYS[g].public_key()) for d, g in decoded]
    start = time.perf_counter()
    for digest, sig, pk in digests:
        verify_batch(pk, digest, sig)
    out["v2_verify_us_per_batch"] = (time.perf_counter() - start) / len(v2) * 1e6
    return out


def publisher(  # noqa: PLR0917 - a multiprocessing target takes positional arguments
    host: str, port: int, items: list[tuple[str, bytes]], rate_hz: float, out: Any, ready: Any
) -> None:
    """A gateway process: publish every payload (QoS 1, 100 in flight); report times."""
    import paho.mqtt.client as mqtt  # noqa: PLC0415
    from paho.mqtt.enums import CallbackAPIVersion  # noqa: PLC0415

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-gw", protocol=mqtt.MQTTv5)
    c.max_inflight_messages_set(100)
    c.max_queued_messages_set(0)
    c.connect(host, port)
    c.loop_start()
    ready.set()
    times: list[float] = []
    infos = []
    start = time.time()
    for i, (topic, payload) in enumerate(items):
        if rate_hz:
            due = start + i / rate_hz
            delay = due - time.time()
            if delay > 0:
                time.sleep(delay)
        times.append(time.time())
        infos.append(c.publish(topic, payload, qos=1))
    for info in infos:
        info.wait_for_publish(120)
    c.disconnect()
    c.loop_stop()
    out.send(times)


@contextlib.contextmanager
def database(args: argparse.Namespace, tmp: Path) -> Iterator[tuple[str, str]]:
    """(admin DSN, DSN of a fresh database) on the embedded server or --dsn's."""
    pg = None
    if args.dsn:
        admin = args.dsn
    else:
        root = Path(tempfile.mkdtemp(prefix="fe-bench-pg-"))
        root.chmod(0o755)
        pg = EmbeddedPostgres(root)
        pg.start()
        admin = pg.dsn("postgres")
    name = f"fe_bench_{os.getpid()}"
    try:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        dsn = psycopg.conninfo.make_conninfo(admin, dbname=name)
        yield admin, dsn
    finally:
        with contextlib.suppress(psycopg.Error), psycopg.connect(admin, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if pg is not None:
            pg.stop("fast")
            shutil.rmtree(pg.data_dir, ignore_errors=True)


def fresh_schema(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
    migrate(dsn)
    with psycopg.connect(dsn) as conn:
        import_registry(conn, registry(), {GW: KEY} | dict.fromkeys(V2_GATEWAYS, KEY))
        for gw, signer in V2_GATEWAYS.items():
            enroll_public_key(
                conn, enterprise=ENT, site=SITE, gateway=gw, public_key=signer.public_key()
            )


def ceiling(dsn: str, n_batches: int, per_batch: int, t0: float) -> float:
    """Rows/s of a binary COPY of the same rows into `samples`, 20,000 rows a commit."""
    fresh_schema(dsn)
    series: dict[tuple[str, str], int] = {}
    sid = 0
    rows = []
    for seq in range(1, n_batches + 1):
        for s in batch_samples(seq, per_batch, t0):
            key = (s.device, s.tag)
            if key not in series:
                sid += 1
                series[key] = sid
            num = s.value if isinstance(s.value, float) else None
            text = s.value if isinstance(s.value, str) else None
            rows.append((series[key], s.ts, num, text))
    from datetime import UTC, datetime  # noqa: PLC0415

    rows = [(a, datetime.fromtimestamp(ts, UTC), v, t, 0) for a, ts, v, t in rows]
    with psycopg.connect(dsn) as conn:
        start = time.perf_counter()
        for i in range(0, len(rows), 20_000):
            with conn.cursor().copy(
                "COPY samples (series_id, ts, value, text, quality) FROM STDIN (FORMAT BINARY)"
            ) as copy:
                copy.set_types(["int4", "timestamptz", "float8", "text", "int2"])
                for row in rows[i : i + 20_000]:
                    copy.write_row(row)
            conn.commit()
        elapsed = time.perf_counter() - start
    return len(rows) / elapsed


@contextlib.contextmanager
def servers(
    dsn: str, host: str, port: int, tmp: Path, n: int
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """n `ingest-server run` processes on the shared subscription (stable client ids)."""
    procs: list[subprocess.Popen[bytes]] = []
    # a share group per run: the broker keeps queueing to the persistent sessions of the
    # previous run's servers, which never come back
    group = f"bench{secrets.token_hex(3)}"
    try:
        for i in range(n):
            ready = tmp / f"server-{i}.ready"
            ready.unlink(missing_ok=True)
            with open(tmp / f"server-{i}.log", "ab") as log:
                procs.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "ingest_server.cli.main",
                            "run",
                            "--dsn",
                            dsn,
                            "--mqtt",
                            f"mqtt://{host}:{port}",
                            "--client-id",
                            f"{group}-server-{i}",
                            "--ready-file",
                            str(ready),
                            "--summary-every",
                            "0",
                            "--max-past",
                            "3650d",
                            "--share-group",
                            group,
                        ],
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
            deadline = time.time() + 60
            while not ready.exists():
                if procs[-1].poll() is not None or time.time() > deadline:
                    log_text = (tmp / f"server-{i}.log").read_text()
                    raise RuntimeError("server did not start:\n" + log_text)
                time.sleep(0.05)
        time.sleep(0.5)  # subscribed
        yield procs
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(30)


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds (user + system) of each named process, and of every `postgres` process."""
    out: dict[str, float] = {}
    for name, pid in pids.items():
        t = psutil.Process(pid).cpu_times()
        out[name] = t.user + t.system
    pg = 0.0
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] == "postgres":
            with contextlib.suppress(psutil.Error):
                t = proc.cpu_times()
                pg += t.user + t.system
    out["postgres"] = pg
    return out


def run_ingest(
    dsn: str,
    broker: Any,
    tmp: Path,
    items: list[tuple[str, bytes]],
    *,
    rate_hz: float,
    poll: bool,
    n_servers: int = 1,
) -> tuple[list[float], dict[int, float], float, dict[str, float]]:
    """Publish `items`; returns publish times, first-seen time per seq, samples stored and
    the CPU seconds each process spent meanwhile."""
    fresh_schema(dsn)
    seen: dict[int, float] = {}
    with (
        servers(dsn, broker.host, broker.port, tmp, n_servers) as procs,
        psycopg.connect(dsn, autocommit=True) as c,
    ):
        ctx = mp.get_context("spawn")
        recv, send = ctx.Pipe(duplex=False)
        ready = ctx.Event()
        from tests.harness.ingest import GatewayPublisher  # noqa: PLC0415

        pub = GatewayPublisher(broker, client_id="bench-birth")
        for prefix, payload in births():
            pub.publish("birth", payload, prefix=prefix)
        pub.close()
        proc = ctx.Process(
            target=publisher, args=(broker.host, broker.port, items, rate_hz, send, ready)
        )
        proc.start()
        ready.wait(30)
        assert proc.pid is not None
        pids = {f"server-{i}": p.pid for i, p in enumerate(procs)}
        pids |= {"gateway": proc.pid, "broker": broker.process.pid}
        cpu0 = cpu_seconds(pids)
        n = len(items)
        deadline = time.time() + 600
        while len(seen) < n and time.time() < deadline:
            # one server commits in order: ask only for the batches not yet seen
            after = max(seen, default=0) if n_servers == 1 else 0
            rows = c.execute("SELECT seq FROM batches WHERE seq > %s", (after,))
            now = time.time()
            for (seq,) in rows.fetchall():
                seen.setdefault(seq, now)
            time.sleep(0.005 if poll else 0.02)
        cpu1 = cpu_seconds(pids)
        times = recv.recv()
        proc.join(30)
        stored = c.execute("SELECT count(*) FROM samples").fetchone()
    if len(seen) < n:
        raise RuntimeError(f"only {len(seen)} of {n} batches stored")
    assert stored is not None
    return times, seen, float(stored[0]), {k: cpu1[k] - cpu0[k] for k in cpu1}


def run_v2(  # noqa: PLR0917
    dsn: str,
    broker: Any,
    tmp: Path,
    items: list[tuple[str, bytes]],
    n_servers: int,
    v1_rate: float,
    per_batch: int,
    t0: float,
) -> tuple[float, dict[str, float], dict[str, float]]:
    """The throughput run with contract v2 batches: (samples/s, CPU us per sample per
    process, check costs)."""
    items_v2 = payloads_v2(len(items), per_batch, t0)
    cost = check_cost(items[:100], items_v2[:100])
    print(
        "checks per batch of 1,000 samples, one process: v1 "
        f"{cost['v1_check_us_per_batch']:,.0f} us, v2 {cost['v2_check_us_per_batch']:,.0f}"
        f" us (of which decode {cost['v2_decode_us_per_batch']:,.0f} us, digest "
        f"{cost['v2_digest_us_per_batch']:,.0f} us, Ed25519 verify "
        f"{cost['v2_verify_us_per_batch']:,.0f} us)"
    )
    times, seen, stored, cpu = run_ingest(
        dsn, broker, tmp, items_v2, rate_hz=0, poll=False, n_servers=n_servers
    )
    elapsed = max(seen.values()) - times[0]
    rate_v2 = stored / elapsed
    v2_cpu = {k: v / stored * 1e6 for k, v in cpu.items()}
    print(
        f"ingest v2, {n_servers} server process(es), {len(V2_GATEWAYS)} gateways: "
        f"{stored:,.0f} samples in {elapsed:.2f} s = {rate_v2:,.0f} samples/s "
        f"({rate_v2 / v1_rate:.0%} of v1's)"
    )
    print(
        "  CPU per sample (us): "
        + ", ".join(f"{k} {v:.2f}" for k, v in v2_cpu.items())
        + f"; total {sum(v2_cpu.values()):.2f} on {os.cpu_count()} cores"
    )
    return rate_v2, v2_cpu, cost


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="smaller and shorter: under a minute")
    ap.add_argument("--dsn", help="a PostgreSQL/TimescaleDB server to run against")
    ap.add_argument(
        "--servers",
        type=int,
        default=2,
        help="ingest server processes sharing the load (one is also measured)",
    )
    ap.add_argument(
        "--v2-gateways", type=int, default=4, help="gateways sending the v2 run's batches"
    )
    args = ap.parse_args()
    v2_gateways(args.v2_gateways)
    # stopped from outside (timeout, Ctrl-C): unwind, so the servers and databases it
    # started are stopped too
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    per_batch = 1000
    n_tp = 200 if args.quick else 1000  # throughput run: batches of 1,000 samples
    lat_s = 8 if args.quick else 30  # latency run: seconds at 10,000 samples/s
    t0 = time.time() - 86400

    tmp = Path(tempfile.mkdtemp(prefix="fe-bench-"))
    broker = start_broker(tmp / "broker")
    try:
        with database(args, tmp) as (_admin, dsn):
            mode = "?"
            rows_ceiling = ceiling(dsn, n_tp, per_batch, t0)
            with psycopg.connect(dsn) as conn:
                row = conn.execute("SELECT value FROM settings WHERE key='storage_mode'").fetchone()
                mode = row[0] if row else "?"
            print(
                f"storage mode {mode}; ceiling (COPY of the same rows): {rows_ceiling:,.0f} rows/s"
            )

            items = payloads(n_tp, per_batch, t0)
            rates: dict[int, float] = {}
            per_sample: dict[str, float] = {}
            for n_servers in sorted({1, args.servers}):
                times, seen, stored, cpu = run_ingest(
                    dsn, broker, tmp, items, rate_hz=0, poll=False, n_servers=n_servers
                )
                elapsed = max(seen.values()) - times[0]
                rates[n_servers] = stored / elapsed
                print(
                    f"ingest, {n_servers} server process(es): {stored:,.0f} samples in "
                    f"{elapsed:.2f} s = {rates[n_servers]:,.0f} samples/s "
                    f"({rates[n_servers] / rows_ceiling:.0%} of the ceiling)"
                )
                per_sample = {k: v / stored * 1e6 for k, v in cpu.items()}
                print(
                    "  CPU per sample (us): "
                    + ", ".join(f"{k} {v:.2f}" for k, v in per_sample.items())
                    + f"; total {sum(per_sample.values()):.2f} on {os.cpu_count()} cores"
                )
            ingest_rate = rates[args.servers]
            v1_cpu = per_sample

            rate_v2, v2_cpu, cost = run_v2(
                dsn, broker, tmp, items, args.servers, ingest_rate, per_batch, t0
            )

            rate_hz = 10_000 / 500
            items = payloads(int(lat_s * rate_hz), 500, t0)
            times, seen, _, _ = run_ingest(dsn, broker, tmp, items, rate_hz=rate_hz, poll=True)
            lat = sorted(seen[i + 1] - t for i, t in enumerate(times))
            p50 = statistics.median(lat)
            p99 = lat[min(len(lat) - 1, round(0.99 * len(lat)))]
            print(f"latency at 10,000 samples/s: p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms")
    finally:
        broker.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        json.dumps(
            {
                "storage_mode": mode,
                "ingest_samples_per_s": round(ingest_rate),
                "ceiling_samples_per_s": round(rows_ceiling),
                "ceiling_ratio": round(ingest_rate / rows_ceiling, 3),
                "servers": args.servers,
                "ingest_one_server_samples_per_s": round(rates[1]),
                "p50_latency_s": round(p50, 4),
                "p99_latency_s": round(p99, 4),
                "cpu_us_per_sample": {k: round(v, 2) for k, v in v1_cpu.items()},
                "v2": {
                    "ingest_samples_per_s": round(rate_v2),
                    "gateways": len(V2_GATEWAYS),
                    "cpu_us_per_sample": {k: round(v, 2) for k, v in v2_cpu.items()},
                    **{k: round(v, 1) for k, v in cost.items()},
                    "v2_check_us_per_sample": round(cost["v2_check_us_per_batch"] / per_batch, 3),
                    "v2_verify_us_per_sample": round(cost["v2_verify_us_per_batch"] / per_batch, 3),
                },
                "quick": args.quick,
            }
        )
    )


if __name__ == "__main__":
    main()
