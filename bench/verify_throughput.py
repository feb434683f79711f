"""The offline verifier's speed (`check_bundle`, issue 17 "Fast"), on bundles built here
without a database, with every check passing; and, side by side, the per-batch against
the column-wise batch digest, and OpenSSL against libsodium per Ed25519 signature.

    .venv/bin/python bench/verify_throughput.py [--quick] [--days 1,3,10] [--month]
                                                [--keep DIR] [--profile]

Full: 1, 3 and 10 days of the 100-machine plant and the demo plant's month; `--month`
adds the 100-machine month (30 days, 83.7 M samples, 2.85 M batches: about 10 minutes to
build, 0.7 GB); its bundles are kept in /tmp/fe-verify-bench (or --keep DIR) and reused
by the next run of the same builder version (BUILD). `--quick`: 1 day of a 20-machine
plant and 3 days of the demo plant, about a minute. `--profile`: cProfile of the largest
run's main thread on stderr.

The bundles (bundle_parquet.py's schemas and sample writer, bundle.py's `write`; no
PostgreSQL):
  100 machines  the KPI bench's plant (bench/kpi_query.py `plant`: 100 equipment in 6
                processes, 10 a gateway; meters main, 20 submeters, water, gas on gw-m),
                each machine's state (canonical states, held about 5 minutes), part
                counters total and good every 10 s, each meter every 10 s: 323 series,
                2.79 M samples a day
  demo          the demo scenario's month as `make demo` makes it (bench/RESULTS.md,
                "History mode end to end"): 82 series read every 60 s by history mode,
                sent by `edge-agent backfill` in batches of 2,000 (batch_max_samples)
Batches are what the agent's defaults make: it seals what it holds every
batch_interval_s (1 s) or at batch_max_samples (2,000), so a gateway polling every 10 s
sends one batch a poll (30 or 23 samples); the backfill sends full batches. Every batch
is Ed25519-signed by its gateway's generated key and chained (prev = the digest before).
Every local day is anchored: a Merkle tree over its batches (evidence/merkle.py, leaf
order 1) and an RFC 3161 token over its root from a real TSA on 127.0.0.1
(tests/harness/tsa.py: OpenSSL's `ts` behind a small HTTP server). The registry declares
the plant (equipment, meters, a two-shift calendar), one production entry covers the
period, factors.json holds the published tables, and the report is computed by
kpi/engine.py from the bundle's own members (offline/kpi_inputs.py `plant_inputs`, as the
verifier recomputes it) and signed by a generated report key. The trust file holds the
gateways' and the report's public keys and the TSA's chain. So every check must be `ok`
and the verdict `pass`: a run that is not says so loudly, and the bench exits 1.

Measured, in a child process per bundle (peak RSS: its VmHWM; CPU: its user + system):
`check_bundle`'s wall time and each check's; samples per second; the month measured with
--month (else extrapolated from the largest run), and what 215 M samples (the issue's
figure) would take at that rate; bytes per sample of the demo month. Side by side in
this process: `batch_digest` per batch (Python) against batch_columns over the same
batches, and Ed25519 verification of the same signatures by cryptography (OpenSSL) and
by libsodium (PyNaCl), on one thread and on every core. Targets: the month of 100
machines within 120 s and 4 GB; the demo month within 10 s; at most 10 bytes a sample
for the demo month. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from nacl.bindings import crypto_sign_open

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.kpi_query import CALENDAR, PROCESSES, plant
from edge_agent.contract.digest import ZERO, batch_digest
from ingest_server.evidence import batch_columns, merkle, trust_file
from ingest_server.evidence import bundle as bdl
from ingest_server.evidence import bundle_parquet as bpq
from ingest_server.evidence.canonical import sign
from ingest_server.evidence.offline import kpi_inputs
from ingest_server.evidence.timestamp import request_token
from ingest_server.kpi.engine import Parameters, compute
from ingest_server.reference.factors import EMISSION_TABLES, ENERGY_TABLES
from tests.harness.tsa import Tsa

TZ = "Asia/Shanghai"
T0 = dt.datetime(2026, 9, 1, tzinfo=ZoneInfo(TZ)).astimezone(dt.UTC)  # local midnight
STATES = ["RUNNING", "IDLE", "SETUP", "DOWN", "PLANNED_STOP", "OFF"]  # MachineState
STATE_SHARE = [0.55, 0.2, 0.06, 0.04, 0.1, 0.05]
ENT = "bench"
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
MONTH_SAMPLES_100 = 30 * 8640 * 323
ISSUE_MONTH_SAMPLES = 215_000_000  # the issue's "about 215 M samples"
BUILD = "b4"  # the builder's version: a kept bundle of another version is built again
ROLES = {"electricity": "energy_kwh", "water": "water_m3", "gas": "gas_m3"}


def raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


class Plant:
    """Gateways and their series (gateway, device, tag, kind, role, unit), kind text or
    number, and the registry that declares them (equipment with a process, meters)."""

    def __init__(self, machines: int, step_s: int, per_batch: int | None) -> None:
        layout = plant(ENT, machines)
        self.series: list[tuple[str, str, str, str, str, str | None]] = []
        self.equipment = [(m.id, m.process, m.nc, m.gateway, m.cycle_s) for m in layout.machines]
        for m in layout.machines:
            g = m.gateway
            self.series += [(g, m.id, "state", "text", "machine_state", None),
                            (g, m.id, "parts_total", "number", "part_count_total", "pcs"),
                            (g, m.id, "parts_good", "number", "part_count_good", "pcs"),
                            ]  # fmt: skip
        self.meters = [(x.id, x.carrier, x.unit, x.parent) for x in layout.meters]
        self.series += [("gw-m", x.id, x.carrier, "number", ROLES[x.carrier], x.unit)
                        for x in layout.meters]  # fmt: skip
        self.step_s, self.per_batch = step_s, per_batch  # None: one batch a poll
        self.gateways = sorted({s[0] for s in self.series})
        self.keys = {g: Ed25519PrivateKey.generate() for g in self.gateways}

    def registry(self) -> dict[str, Any]:
        """registry.json as bundle.collect writes it (repo/bundle.py registry_rows)."""
        names = {x[0]: x for x in PROCESSES}
        return {
            "enterprise": {"id": ENT, "name": "基准企业", "name_en": "Bench", "credit_code": None,
                           "industry": "discrete", "declaration": None, "targets": []},
            "sites": [{"id": "p1", "name": "一厂", "name_en": "Plant 1", "timezone": TZ,
                       "calendar_id": CALENDAR["id"], "grid_region": "anhui"}],
            "calendars": [{"id": CALENDAR["id"],
                           "definition": {k: v for k, v in CALENDAR.items() if k != "id"}}],
            "processes": [{"id": x[0], "name": x[1], "name_en": x[2], "key_process": x[3]}
                          for x in PROCESSES],
            "equipment": [{"id": e, "site_id": "p1", "name": f"{names[proc][1]}{e[3:]}",
                           "name_en": f"{names[proc][2]} {e[3:]}", "process_id": proc, "nc": nc,
                           "production": True, "interface": "OPC UA" if nc else "Modbus TCP",
                           "ideal_cycle_time_s": round(cycle * 0.9, 1), "gateway_id": gw,
                           "device": e} for e, proc, nc, gw, cycle in self.equipment],
            "meters": [{"id": m, "site_id": "p1", "name": m, "name_en": m, "carrier": c,
                        "unit": u, "parent_id": parent, "covers": [], "gateway_id": "gw-m",
                        "device": m, "serial": None, "model": None, "accuracy_class": None,
                        "calibration": None, "role": "consumption"}
                       for m, c, u, parent in self.meters],
            "gateways": [{"site_id": "p1", "id": g, "gid": i + 1, "contract": 2,
                          "enrolled_at": "2026-01-01T00:00:00+00:00", "issued_at": None,
                          "revoked_at": None} for i, g in enumerate(self.gateways)],
        }  # fmt: skip


def demo_plant() -> Plant:
    """The demo scenario's month as `make demo` makes it: 82 series on one gateway read
    every 60 s, sent in backfill batches of 2,000; 14 machines, each a state and counters."""
    p = Plant(0, 60, 2000)
    p.series = [("gw-demo", f"dev-{i // 6:02d}", f"tag-{i % 6}", "text" if i % 6 == 0 else "number",
                 "machine_state" if i % 6 == 0 else "part_count_total", None if i % 6 == 0
                 else "pcs") for i in range(82)]  # fmt: skip
    p.equipment = [(f"dev-{k:02d}", "turning", True, "gw-demo", 60.0) for k in range(14)]
    p.meters = []
    p.gateways, p.keys = ["gw-demo"], {"gw-demo": Ed25519PrivateKey.generate()}
    return p


def gateway_rows(p: Plant, gw: int, days: int, rng: np.random.Generator) -> dict[str, Any]:
    """One gateway's samples over `days`, in send order, with batch numbers (0..)."""
    idx = [i for i, s in enumerate(p.series) if s[0] == p.gateways[gw]]
    polls = days * 86400 // p.step_s
    n = polls * len(idx)
    sid = np.tile(np.array(idx, np.int32), polls)
    ts = np.repeat(np.arange(polls, dtype=np.int64) * p.step_s * 1000, len(idx))
    ts += int(T0.timestamp() * 1000) + rng.integers(0, 50, n)  # a read takes a few ms
    is_text = np.array([p.series[i][3] == "text" for i in idx] * polls)
    level = np.cumsum(rng.random((polls, len(idx))) < 0.3, axis=0).ravel().astype(np.float64)
    value = np.where(is_text, np.nan, level * 1.5)
    # a machine holds its state about 5 minutes (the KPI bench's plant: minutes a state)
    held = np.cumsum(rng.random((polls, len(idx))) < p.step_s / 300, axis=0).ravel()
    pick = rng.choice(len(STATES), int(held.max()) + 1, p=STATE_SHARE)
    text = np.where(is_text, np.array(STATES)[pick[held]], None)
    if p.per_batch is None:
        batch = np.repeat(np.arange(polls, dtype=np.int64), len(idx))
    else:
        batch = np.arange(n, dtype=np.int64) // p.per_batch
    pos = np.arange(n) - np.searchsorted(batch, batch)
    return {"series_id": sid, "ts": ts, "value": value, "text": text, "batch": batch,
            "pos": pos.astype(np.int32)}  # fmt: skip


def build(p: Plant, days: int, path: Path, tsa: Tsa, seed: int = 7) -> dict[str, Any]:
    """The bundle of `days` of plant `p` at `path`, every day anchored by `tsa`, its report
    computed from its own samples (so every check passes); its sample count, build time."""
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    tables, ledger = [], []
    next_id = 1
    for g, gw in enumerate(p.gateways):
        r = gateway_rows(p, g, days, rng)
        nb = int(r["batch"][-1]) + 1
        bid = r["batch"] + next_id
        table = pa.table({
            "series_id": pa.array(r["series_id"] + 1, pa.int32()), "ts": r["ts"],
            "value": pa.array(r["value"], pa.float64(), from_pandas=True),
            "text": pa.array(r["text"], pa.string()),
            "quality": pa.array(np.zeros(len(bid), np.int8)),
            "status": pa.nulls(len(bid), pa.string()),
            "batch_id": bid, "batch_pos": r["pos"],
        })  # fmt: skip
        names = pa.array([s[1] for s in p.series])
        tags = pa.array([s[2] for s in p.series])
        digest_rows = pa.table({
            "batch_id": bid, "device": names.take(pa.array(r["series_id"])),
            "tag": tags.take(pa.array(r["series_id"])), "ts": r["ts"], "value": table["value"],
            "text": table["text"], "quality": table["quality"], "status": table["status"],
        })  # fmt: skip
        prepared = batch_columns.prepare(digest_rows)
        prev, key = ZERO, p.keys[gw]
        starts = prepared.starts
        for i in range(nb):
            d = prepared.digest(i, gw=gw, boot=1, seq=i + 1, prev=prev)
            sent = int(r["ts"][starts[i + 1] - 1]) + 900
            ledger.append((next_id + i, "p1", gw, 1, i + 1, sent, sent + 40, 2, prev, d,
                           key.sign(d), int(starts[i + 1] - starts[i]),
                           int(starts[i + 1] - starts[i]), 0, "period", True))  # fmt: skip
            prev = d
        next_id += nb
        tables.append(table)
        del digest_rows, prepared
    samples = pa.concat_tables(tables)
    n = samples.num_rows
    del tables
    # the bundle's order: (series_id, ts) within each row group of batches (bundle.py)
    samples = samples.sort_by([("series_id", "ascending"), ("ts", "ascending")])
    members = members_of(p, samples, ledger, tsa)
    del samples
    report_key = Ed25519PrivateKey.generate()
    doc = sign(report(p, days, {m.name: m.data for m in members}), report_key)
    report_bytes = json.dumps(doc, ensure_ascii=False).encode()
    members.insert(0, bdl.Member("report.json", report_bytes, None, "the signed report"))
    manifest = {
        "format": bdl.FORMAT, "format_version": bdl.FORMAT_VERSION, "enterprise": ENT,
        "report": {"member": "report.json", "report_id": doc["report_id"],
                   "sha256": hashlib.sha256(report_bytes).hexdigest(),
                   "key_id": doc["signature"]["key_id"], "signature": doc["signature"]["value"]},
        "counts": {"samples": n, "aside": 0},
        "members": [{"name": m.name, "sha256": hashlib.sha256(m.data).hexdigest(),
                     "bytes": len(m.data), "rows": m.rows, "content": m.content}
                    for m in members],
    }  # fmt: skip
    bdl.write(path, bdl.Bundle(manifest, members))
    trust = {
        "format": trust_file.TRUST_FORMAT, "format_version": trust_file.TRUST_FORMAT_VERSION,
        "enterprise": ENT,
        "gateways": [{"gateway": f"{ENT}/p1/{g}", "revoked_at": None, "keys": [{
            "public_key": base64.b64encode(raw(p.keys[g])).decode(),
            "enrolled_at": "2026-01-01T00:00:00+00:00", "retired_at": None}]}
            for g in p.gateways],
        "report_keys": [{"key_id": doc["signature"]["key_id"],
                         "public_key": base64.b64encode(raw(report_key)).decode(),
                         "retired_at": None, "revoked_at": None}],
        "tsas": [{"chain_pem": tsa.cert_file.read_text()}],
    }  # fmt: skip
    path.with_suffix(".trust.json").write_text(json.dumps(trust))
    out = {"samples": n, "batches": len(ledger), "build_s": time.perf_counter() - started,
           "bytes": path.stat().st_size}  # fmt: skip
    path.with_suffix(".built.json").write_text(json.dumps(out))
    return out


def report(p: Plant, days: int, files: dict[str, bytes]) -> dict[str, Any]:
    """The report of the period, computed as the offline verifier recomputes it (the
    same engine over the bundle's members), unsigned."""
    params = Parameters()
    period = (T0.astimezone(ZoneInfo(TZ)).date(),
              (T0 + dt.timedelta(days=days - 1)).astimezone(ZoneInfo(TZ)).date())  # fmt: skip
    as_of = T0 + dt.timedelta(days=days, hours=1)
    inputs, partial = kpi_inputs.plant_inputs(
        files, json.loads(files["registry.json"]), json.loads(files["production.json"]),
        period, as_of, params,
    )  # fmt: skip
    energy, emission = json.loads(files["factors.json"]).values()
    return compute(inputs, params=params, energy=ENERGY_TABLES[energy["version"]],
                   emission=EMISSION_TABLES[emission["version"]], partial=partial,
                   report_id=f"bench-{days}", generated_at=as_of)  # fmt: skip


def members_of(
    p: Plant, samples: pa.Table, ledger: list[tuple[Any, ...]], tsa: Tsa
) -> list[bdl.Member]:
    series = pa.Table.from_pylist([
        {"series_id": i + 1, "site": "p1", "gateway": g, "device": d, "tag": t, "role": role,
         "unit": unit, "data_type": k, "scale": None, "offset": None, "wrap": None}
        for i, (g, d, t, k, role, unit) in enumerate(p.series)], bpq.SERIES_SCHEMA)  # fmt: skip
    registry = p.registry()
    first = T0.astimezone(ZoneInfo(TZ)).date()
    production = [{"id": 1, "site_id": "p1", "period_from": first.isoformat(),
                   "period_to": (first + dt.timedelta(days=60)).isoformat(), "output": 12000.0,
                   "output_unit": "pcs", "value_added_10k_cny": 350.0, "note": "",
                   "entered_at": "2026-08-31T08:00:00+00:00", "entered_by": "bench"}]  # fmt: skip
    factors = {"energy": ENERGY_TABLES[sorted(ENERGY_TABLES)[0]].as_json(),
               "emission": EMISSION_TABLES[sorted(EMISSION_TABLES)[0]].as_json()}  # fmt: skip
    anchors, leaves = anchor(ledger, tsa)
    return [
        bdl.Member("samples.parquet", bpq.samples_parquet(samples), samples.num_rows, "samples"),
        bdl.Member(
            "samples_aside.parquet", bpq.samples_parquet(bpq.ASIDE_SCHEMA.empty_table()), 0, "aside"
        ),
        bdl.Member("series.parquet", bpq._parquet(series), series.num_rows, "series"),
        bdl.Member(
            "ledger.parquet",
            bpq._parquet(pa.table(list(zip(*ledger, strict=True)), schema=bpq.LEDGER_SCHEMA)),
            len(ledger),
            "batches",
        ),
        bdl.Member("declarations.json", b"[]", 0, "declared drops"),
        bdl.Member("registry.json", json.dumps(registry).encode(), None, "registry"),
        bdl.Member("equipment_audit.json", b"[]", 0, "edits"),
        bdl.Member("production.json", json.dumps(production).encode(), 1, "entries"),
        bdl.Member("factors.json", json.dumps(factors).encode(), None, "factors"),
        bdl.Member("gateway_keys.json", b"[]", 0, "keys (a copy)"),
        bdl.Member("anchors.json", json.dumps(anchors).encode(), len(anchors), "anchors"),
        bdl.Member("anchor_leaves.parquet", bpq._parquet(leaves), leaves.num_rows, "leaves"),
    ]


def anchor(ledger: list[tuple[Any, ...]], tsa: Tsa) -> tuple[list[dict[str, Any]], pa.Table]:
    """Each local day's Merkle tree over its batches' digests in leaf order (site, gateway,
    boot, seq; merkle.ordered), its root time-stamped by the TSA on 127.0.0.1 (RFC 3161,
    OpenSSL's `ts`): anchors.json and anchor_leaves.parquet as bundle.collect writes them."""
    zone = ZoneInfo(TZ)
    days: dict[dt.date, list[merkle.Leaf]] = {}
    for b in ledger:
        day = (EPOCH + dt.timedelta(milliseconds=b[6])).astimezone(zone)
        days.setdefault(day.date(), []).append(merkle.Leaf(b[1], b[2], b[3], b[4], b[9]))
    anchors, cols = [], {k: [] for k in bpq.LEAF_SCHEMA.names}  # type: ignore[var-annotated]
    for day in sorted(days):
        tree, ordered = merkle.day_tree(days[day])
        stamp = request_token(tsa.url, tree.root)
        token = {"tsa_name": stamp.tsa_name, "tsa_url": stamp.tsa_url,
                 "token": base64.b64encode(stamp.response).decode()}  # fmt: skip
        root = base64.b64encode(tree.root).decode()
        anchors.append({"day": day.isoformat(), "root": root, "leaves": len(ordered),
                        "superseded_at": None, "tokens": [token]})  # fmt: skip
        for i, lf in enumerate(ordered):
            for k, v in zip(bpq.LEAF_SCHEMA.names, (day, i, lf.site, lf.gateway, lf.boot, lf.seq,
                                                    lf.digest), strict=True):  # fmt: skip
                cols[k].append(v)
    return anchors, pa.table(cols, schema=bpq.LEAF_SCHEMA)


CHILD = """
import cProfile, json, pstats, resource, sys, time
from pathlib import Path
from ingest_server.evidence.offline import batches, check
path, profile = Path(sys.argv[1]), sys.argv[2] == "1"
spent = {}
def timed(name, fn):
    def run(*a, **k):
        t = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            spent[name] = round(time.perf_counter() - t, 2)
    return run
for name in ("_manifest", "_report_signature", "_batches", "_chain", "_anchors", "_kpis"):
    setattr(check, name, timed(name.strip("_"), getattr(check, name)))  # as check_bundle calls them
batches._batches_finish = timed("batches_finish", batches._batches_finish)
prof = cProfile.Profile() if profile else None
t = time.perf_counter()
if prof:
    prof.enable()
v = check.check_bundle(path, path.with_suffix(".trust.json"))
wall = time.perf_counter() - t
if prof:
    prof.disable()
    pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(25)
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
cpu = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"wall_s": wall, "hwm_kb": hwm, "cpu_s": cpu.ru_utime + cpu.ru_stime,
    "status": {c.name: c.status for c in v.checks}, "verdict": v.verdict, "spent_s": spent,
    "reasons": [r.text_en for c in v.checks for r in c.reasons][:10],
    "batch_details": v.check("batches").details}))
"""


def verify(path: Path, profile: bool = False) -> dict[str, Any]:
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", CHILD, str(path), "1" if profile else "0"],
                         capture_output=True, text=True, check=False, cwd=root)  # fmt: skip
    if out.returncode:
        raise SystemExit(f"check_bundle failed on {path}:\n{out.stderr[-3000:]}")
    if profile:
        print(out.stderr, file=sys.stderr)
    ran: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    if ran["verdict"] != "pass":
        print(f"\n!!!!!!!! {path.name}: verdict {ran['verdict'].upper()}, not pass: "
              f"{ran['status']}\n!!!!!!!! {ran['reasons']}\n", flush=True)  # fmt: skip
    return ran


def signature_ratio(n: int = 20000) -> dict[str, float]:
    """Ed25519 verification of the same n batch signatures: cryptography (OpenSSL), what
    `_Signatures` did, against libsodium (PyNaCl) on one thread and on every core."""
    key = Ed25519PrivateKey.generate()
    public, pk = key.public_key(), raw(key)
    msgs = [os.urandom(32) for _ in range(n)]
    sigs = [key.sign(m) for m in msgs]
    t = time.perf_counter()
    for m, x in zip(msgs, sigs, strict=True):
        public.verify(x, m)
    openssl = (time.perf_counter() - t) / n
    signed = [x + m for m, x in zip(msgs, sigs, strict=True)]
    t = time.perf_counter()
    for x in signed:
        crypto_sign_open(x, pk)
    sodium = (time.perf_counter() - t) / n
    threads = os.cpu_count() or 1
    size = -(-n // threads)
    t = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda lo: [crypto_sign_open(x, pk) for x in signed[lo : lo + size]],
                      range(0, n, size)))  # fmt: skip
    threaded = (time.perf_counter() - t) / n
    return {"openssl_us": openssl * 1e6, "sodium_us": sodium * 1e6,
            "sodium_threads_us": threaded * 1e6, "ratio": openssl / sodium,
            "threads": threads}  # fmt: skip


def ratio(p: Plant, polls: int) -> dict[str, float]:
    """batch_digest per batch against batch_columns, over the same batches, this process."""
    r = gateway_rows(p, 0, 1, np.random.default_rng(1))
    keep = r["batch"] < polls
    names = [s[1] for s in p.series]
    tags = [s[2] for s in p.series]
    rows = pa.table({
        "batch_id": r["batch"][keep], "device": [names[i] for i in r["series_id"][keep]],
        "tag": [tags[i] for i in r["series_id"][keep]], "ts": r["ts"][keep],
        "value": pa.array(r["value"][keep], from_pandas=True),
        "text": pa.array(r["text"][keep], pa.string()),
        "quality": np.zeros(int(keep.sum()), np.int8),
        "status": pa.nulls(int(keep.sum()), pa.string()),
    })  # fmt: skip
    t = time.perf_counter()
    prepared = batch_columns.prepare(rows)
    fast = [prepared.digest(i, gw="gw", boot=1, seq=i, prev=ZERO)
            for i in range(len(prepared.batch_ids))]  # fmt: skip
    columns_s = time.perf_counter() - t
    cols = [rows[c].to_pylist() for c in ("device", "tag", "ts", "value", "text", "quality",
                                          "status", "batch_id")]  # fmt: skip
    t = time.perf_counter()
    slow, lo = [], 0
    for i in range(len(prepared.batch_ids)):
        hi = int(prepared.starts[i + 1])
        samples = [(cols[0][j], cols[1][j], cols[2][j],
                    cols[4][j] if cols[4][j] is not None else cols[3][j], cols[5][j], cols[6][j])
                   for j in range(lo, hi)]  # fmt: skip
        slow.append(batch_digest(gw="gw", boot=1, seq=i, prev=ZERO, samples=samples))
        lo = hi
    per_batch_s = time.perf_counter() - t
    assert slow == fast, "batch_columns disagrees with batch_digest"
    n = rows.num_rows
    return {
        "samples": n,
        "per_batch_samples_per_s": n / per_batch_s,
        "columns_samples_per_s": n / columns_s,
        "ratio": per_batch_s / columns_s,
    }


def bundle(  # noqa: PLR0917 (one caller)
    plant_: Plant, days: int, name: str, where: Path, tsa: Tsa, keep: bool
) -> dict[str, Any]:
    """Build the bundle `name` in `where` (or reuse the one kept there, built by this
    version of the builder with its trust file), verify it in a child process."""
    path = where / f"{name}-{BUILD}.zip"
    built_file = path.with_suffix(".built.json")
    if keep and path.exists() and built_file.exists():
        built = {**json.loads(built_file.read_text()), "reused": True}
    else:
        built = {**build(plant_, days, path, tsa), "reused": False}
    return built


def line(label: str, built: dict[str, Any], ran: dict[str, Any]) -> str:
    return (f"{label}: {built['samples']:>11,} samples {built['batches']:>9,} batches  "
            f"{'kept' if built['reused'] else 'built'} {built['build_s']:6.1f} s  "
            f"verified {ran['wall_s']:6.2f} s ({built['samples'] / ran['wall_s']:,.0f}/s, "
            f"CPU {ran['cpu_s']:.0f} s)  peak RSS {ran['hwm_kb'] / 1024:6.0f} MB  "
            f"{built['bytes'] / built['samples']:.2f} B/sample  {ran['verdict'].upper()}  "
            f"{ran['spent_s']}")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--days", default="1,3,10")
    ap.add_argument("--month", action="store_true", help="also build and verify 30 days")
    ap.add_argument("--keep", default=None, help="keep (and reuse) the bundles in this folder "
                    "(default with --month: /tmp/fe-verify-bench)")  # fmt: skip
    ap.add_argument("--profile", action="store_true", help="cProfile the largest run (stderr)")
    args = ap.parse_args()
    machines = 20 if args.quick else 100
    big = Plant(machines, 10, None)
    demo = demo_plant()
    days = [1] if args.quick else [int(d) for d in args.days.split(",") if d]
    if args.month and not args.quick:
        days.append(30)
    keep = args.keep or ("/tmp/fe-verify-bench" if args.month else None)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="fe-verify-bench-") as tmp:
        where = Path(keep) if keep else Path(tmp)
        where.mkdir(parents=True, exist_ok=True)
        tsa = Tsa(Path(tmp) / "tsa").start()  # a kept bundle's trust file names its own
        try:
            for d in days:
                built = bundle(big, d, f"big{machines}-{d}d", where, tsa, keep is not None)
                ran = verify(where / f"big{machines}-{d}d-{BUILD}.zip",
                             args.profile and d == max(days))  # fmt: skip
                results[f"big_{d}d"] = {**built, **ran}
                print(line(f"{machines} machines, {d:2d} d", built, ran), flush=True)
            demo_days = 3 if args.quick else 30
            built = bundle(demo, demo_days, f"demo-{demo_days}d", where, tsa, keep is not None)
            ran = verify(where / f"demo-{demo_days}d-{BUILD}.zip")
            results["demo"] = {**built, **ran}
            print(line(f"demo plant, {demo_days} d", built, ran), flush=True)
        finally:
            tsa.stop()
    r = ratio(big, 2000 if not args.quick else 300)
    print(f"digest, one gateway's {r['samples']:,} samples: batch_digest per batch "
          f"{r['per_batch_samples_per_s']:,.0f}/s, batch_columns "
          f"{r['columns_samples_per_s']:,.0f}/s: {r['ratio']:.1f}x")  # fmt: skip
    sg = signature_ratio(5000 if args.quick else 20000)
    print(f"Ed25519 verify, a batch signature: cryptography (OpenSSL) {sg['openssl_us']:.1f} us, "
          f"libsodium (PyNaCl) {sg['sodium_us']:.1f} us ({sg['ratio']:.2f}x), on "
          f"{sg['threads']} threads {sg['sodium_threads_us']:.1f} us wall")  # fmt: skip
    bigs = [v for k, v in results.items() if k.startswith("big_")]
    last = max(bigs, key=lambda v: v["samples"])
    rate = last["samples"] / last["wall_s"]
    month = results.get("big_30d")
    month_s = month["wall_s"] if month else MONTH_SAMPLES_100 * (machines / 100) / rate
    failed = {k: v["verdict"] for k, v in results.items() if v["verdict"] != "pass"}
    if failed:
        print(f"\n!!!!!!!! NOT EVERY RUN PASSED: {failed}: the times above are not of a "
              "full verification\n", flush=True)  # fmt: skip
    print(json.dumps({
        "verify_samples_per_s": round(rate),
        "month_100_machines_s": round(month_s, 1),
        "month_100_machines_measured": month is not None,
        "month_samples": month["samples"] if month else MONTH_SAMPLES_100,
        "issue_month_215M_s_at_this_rate": round(ISSUE_MONTH_SAMPLES / rate, 1),
        "bundle_bytes_per_sample": round(results["demo"]["bytes"] / results["demo"]["samples"], 3),
        "verify_peak_rss_mb": round(max(v["hwm_kb"] for v in results.values()) / 1024),
        "demo_month_s": round(results["demo"]["wall_s"], 2),
        "digest_columns_vs_per_batch": round(r["ratio"], 1),
        "digest_per_batch_samples_per_s": round(r["per_batch_samples_per_s"]),
        "digest_columns_samples_per_s": round(r["columns_samples_per_s"]),
        "signature_openssl_us": round(sg["openssl_us"], 1),
        "signature_sodium_us": round(sg["sodium_us"], 1),
        "signature_sodium_threads_us": round(sg["sodium_threads_us"], 1),
        "signature_openssl_vs_sodium": round(sg["ratio"], 2),
        "runs": {k: {"samples": v["samples"], "batches": v["batches"], "s": round(v["wall_s"], 2),
                     "cpu_s": round(v["cpu_s"], 1), "rss_mb": round(v["hwm_kb"] / 1024),
                     "bytes": v["bytes"], "verdict": v["verdict"], "checks_s": v["spent_s"]}
                 for k, v in results.items()},
        "all_pass": not failed,
        "quick": args.quick,
        "cpus": os.cpu_count(),
    }))  # fmt: skip
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
