"""The offline verifier's speed (`check_bundle`, issue 17 "Fast"), on bundles built here
without a database, and the column-wise batch digest against the per-batch one.

    .venv/bin/python bench/verify_throughput.py [--quick] [--days 1,3,10] [--month]

Full: 1, 3 and 10 days of the 100-machine plant and the demo plant's month (about
10 minutes here, 2 cores, a few GB of /tmp); `--month` adds the 100-machine month
(30 days, about 84 M samples: long, and about 0.3 GB of bundle); `--quick`: 1 day of
a 20-machine plant and 3 days of the demo plant, about a minute.

The bundles (bundle.py's schemas, its sample writer and `write`; no PostgreSQL):
  100 machines  the KPI bench's plant (bench/kpi_query.py): 10 machines a gateway, each
                machine's state (text), part counters total and good every 10 s; 23
                meters (main, 20 submeters, water, gas) on gateway gw-m every 10 s:
                323 series, 2.79 M samples a day
  demo          the demo scenario's month as `make demo` makes it (bench/RESULTS.md,
                "History mode end to end"): 82 series read every 60 s by history mode,
                sent by `edge-agent backfill` in batches of 2,000 (batch_max_samples)
Batches are what the agent's defaults make: it seals what it holds every
batch_interval_s (1 s) or at batch_max_samples (2,000), so a gateway polling every 10 s
sends one batch a poll (30 or 23 samples); the backfill sends full batches. Every batch
is Ed25519-signed by its gateway's generated key and chained (prev = the digest before);
a report signed by a generated report key; a trust file with the public keys.
No day is time-stamped (no TSA here): the anchors check fails ("day_unanchored") in
every run, after the same work as a stamped day minus one token per day. The kpis
check runs whatever offline.py has wired (helper K's recomputation, or not_checked):
its status is printed and in the JSON.

Measured, in a child process per bundle (peak RSS: its VmHWM): `check_bundle`'s wall
time; samples per second over the 100-machine runs (scaling over 1, 3, 10 days; the
month extrapolated from the 10 days unless --month measures it); bytes per sample of
the bundle. Side by side in this process, over the same batches: `batch_digest` per batch
(Python, what `_batches` did) against batch_columns (prepare + one digest a batch).
Targets: the month of 100 machines within 120 s and 4 GB; the demo month within 10 s;
at most 10 bytes a sample for the demo month. The last line is one JSON object.
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
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_agent.contract.digest import ZERO, batch_digest
from ingest_server.evidence import batch_columns
from ingest_server.evidence import bundle as bdl
from ingest_server.evidence.canonical import sign

T0 = dt.datetime(2026, 9, 1, tzinfo=dt.UTC)
STATES = ["RUNNING", "IDLE", "PLANNED_STOP", "ALARM", "OFF"]
ENT = "bench"
MONTH_SAMPLES_100 = 30 * 8640 * 323


def raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


class Plant:
    """Gateways and their series: (gateway, device, tag, kind) with kind text or number."""

    def __init__(self, machines: int, meters: int, step_s: int, per_batch: int | None) -> None:
        self.series: list[tuple[str, str, str, str]] = []
        for k in range(machines):
            gw, dev = f"gw-{k // 10 + 1:02d}", f"eq-{k + 1:03d}"
            self.series += [(gw, dev, "state", "text"), (gw, dev, "parts_total", "number"),
                            (gw, dev, "parts_good", "number")]  # fmt: skip
        self.series += [("gw-m", f"m-{j:02d}", "kwh", "number") for j in range(meters)]
        self.step_s, self.per_batch = step_s, per_batch  # None: one batch a poll
        self.gateways = sorted({s[0] for s in self.series})
        self.keys = {g: Ed25519PrivateKey.generate() for g in self.gateways}


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
    text = np.where(is_text, np.array(STATES)[rng.integers(0, len(STATES), n)], None)
    if p.per_batch is None:
        batch = np.repeat(np.arange(polls, dtype=np.int64), len(idx))
    else:
        batch = np.arange(n, dtype=np.int64) // p.per_batch
    pos = np.arange(n) - np.searchsorted(batch, batch)
    return {"series_id": sid, "ts": ts, "value": value, "text": text, "batch": batch,
            "pos": pos.astype(np.int32)}  # fmt: skip


def build(p: Plant, days: int, path: Path, seed: int = 7) -> dict[str, Any]:
    """The bundle of `days` of plant `p` at `path`; its sample count and build time."""
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
            sent = int(T0.timestamp() * 1000) + int(r["ts"][starts[i + 1] - 1] - r["ts"][0]) + 900
            ledger.append((next_id + i, "p1", gw, 1, i + 1, sent, sent + 40, 2, prev, d,
                           key.sign(d), int(starts[i + 1] - starts[i]),
                           int(starts[i + 1] - starts[i]), 0, "period", True))  # fmt: skip
            prev = d
        next_id += nb
        tables.append(table)
    samples = pa.concat_tables(tables)
    n = samples.num_rows
    # the bundle's order: (series_id, ts) within each row group of batches (bundle.py)
    samples = samples.sort_by([("series_id", "ascending"), ("ts", "ascending")])
    members = members_of(p, samples, ledger)
    del samples, tables
    report_key = Ed25519PrivateKey.generate()
    doc = sign({"report_id": f"bench-{days}", "enterprise": {"id": ENT},
                "generated_at": (T0 + dt.timedelta(days=days)).isoformat(),
                "period": {"from": T0.date().isoformat(),
                           "to": (T0 + dt.timedelta(days=days - 1)).date().isoformat()},
                "kpis": []}, report_key)  # fmt: skip
    report = json.dumps(doc, ensure_ascii=False).encode()
    members.insert(0, bdl.Member("report.json", report, None, "the signed report"))
    manifest = {
        "format": bdl.FORMAT, "format_version": bdl.FORMAT_VERSION, "enterprise": ENT,
        "report": {"member": "report.json", "report_id": doc["report_id"],
                   "sha256": hashlib.sha256(report).hexdigest(),
                   "key_id": doc["signature"]["key_id"], "signature": doc["signature"]["value"]},
        "counts": {"samples": n, "aside": 0},
        "members": [{"name": m.name, "sha256": hashlib.sha256(m.data).hexdigest(),
                     "bytes": len(m.data), "rows": m.rows, "content": m.content}
                    for m in members],
    }  # fmt: skip
    bdl.write(path, bdl.Bundle(manifest, members))
    trust = {
        "format": bdl.TRUST_FORMAT, "format_version": bdl.TRUST_FORMAT_VERSION, "enterprise": ENT,
        "gateways": [{"gateway": f"{ENT}/p1/{g}", "revoked_at": None, "keys": [{
            "public_key": base64.b64encode(raw(p.keys[g])).decode(),
            "enrolled_at": "2026-01-01T00:00:00+00:00", "retired_at": None}]}
            for g in p.gateways],
        "report_keys": [{"key_id": doc["signature"]["key_id"],
                         "public_key": base64.b64encode(raw(report_key)).decode(),
                         "retired_at": None, "revoked_at": None}],
        "tsas": [],
    }  # fmt: skip
    path.with_suffix(".trust.json").write_text(json.dumps(trust))
    return {"samples": n, "batches": len(ledger), "build_s": time.perf_counter() - started,
            "bytes": path.stat().st_size}  # fmt: skip


def members_of(p: Plant, samples: pa.Table, ledger: list[tuple[Any, ...]]) -> list[bdl.Member]:
    series = pa.Table.from_pylist([
        {"series_id": i + 1, "site": "p1", "gateway": g, "device": d, "tag": t,
         "role": "machine_state" if k == "text" else "part_count_total", "unit": None,
         "data_type": k, "scale": None, "offset": None, "wrap": None}
        for i, (g, d, t, k) in enumerate(p.series)], bdl.SERIES_SCHEMA)  # fmt: skip
    registry = {"sites": [{"id": "p1", "timezone": "Asia/Shanghai"}], "equipment": [],
                "meters": []}  # fmt: skip
    return [
        bdl.Member("samples.parquet", bdl.samples_parquet(samples), samples.num_rows, "samples"),
        bdl.Member(
            "samples_aside.parquet", bdl.samples_parquet(bdl.ASIDE_SCHEMA.empty_table()), 0, "aside"
        ),
        bdl.Member("series.parquet", bdl._parquet(series), series.num_rows, "series"),
        bdl.Member(
            "ledger.parquet",
            bdl._parquet(
                pa.Table.from_pylist(
                    [dict(zip(bdl.LEDGER_SCHEMA.names, r, strict=True)) for r in ledger],
                    bdl.LEDGER_SCHEMA,
                )
            ),
            len(ledger),
            "batches",
        ),
        bdl.Member("declarations.json", b"[]", 0, "declared drops"),
        bdl.Member("registry.json", json.dumps(registry).encode(), None, "registry"),
        bdl.Member("equipment_audit.json", b"[]", 0, "edits"),
        bdl.Member("production.json", b"[]", 0, "entries"),
        bdl.Member("factors.json", b"{}", None, "factors"),
        bdl.Member("gateway_keys.json", b"[]", 0, "keys (a copy)"),
        bdl.Member("anchors.json", b"[]", 0, "anchors"),
        bdl.Member(
            "anchor_leaves.parquet", bdl._parquet(bdl.LEAF_SCHEMA.empty_table()), 0, "leaves"
        ),
    ]


CHILD = """
import json, resource, sys, time
from pathlib import Path
from ingest_server.evidence.offline import check_bundle
path = Path(sys.argv[1])
t = time.perf_counter()
v = check_bundle(path, path.with_suffix(".trust.json"))
wall = time.perf_counter() - t
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
print(json.dumps({"wall_s": wall, "hwm_kb": hwm, "maxrss_kb": resource.getrusage(
    resource.RUSAGE_SELF).ru_maxrss, "status": {c.name: c.status for c in v.checks},
    "batch_details": v.check("batches").details}))
"""


def verify(path: Path) -> dict[str, Any]:
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True,
                         text=True, check=False, cwd=root)  # fmt: skip
    if out.returncode:
        raise SystemExit(f"check_bundle failed on {path}:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--days", default="1,3,10")
    ap.add_argument("--month", action="store_true", help="also build and verify 30 days")
    args = ap.parse_args()
    machines = 20 if args.quick else 100
    big = Plant(machines, 23 if not args.quick else 5, 10, None)
    demo = Plant(0, 0, 60, 2000)
    demo.series = [("gw-demo", f"dev-{i // 6:02d}", f"tag-{i % 6}",
                    "text" if i % 4 == 0 else "number") for i in range(82)]  # fmt: skip
    demo.gateways, demo.keys = ["gw-demo"], {"gw-demo": Ed25519PrivateKey.generate()}
    days = [1] if args.quick else [int(d) for d in args.days.split(",")]
    if args.month and not args.quick:
        days.append(30)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="fe-verify-bench-") as tmp:
        for d in days:
            path = Path(tmp) / f"big{d}.zip"
            built = build(big, d, path)
            ran = verify(path)
            path.unlink()
            results[f"big_{d}d"] = {**built, **ran}
            print(f"{machines} machines, {d:2d} d: {built['samples']:>11,} samples "
                  f"{built['batches']:>9,} batches  built {built['build_s']:6.1f} s  "
                  f"verified {ran['wall_s']:6.2f} s ({built['samples'] / ran['wall_s']:,.0f}/s)  "
                  f"peak RSS {ran['hwm_kb'] / 1024:6.0f} MB  "
                  f"{built['bytes'] / built['samples']:.2f} B/sample  {ran['status']}",
                  flush=True)  # fmt: skip
        demo_days = 3 if args.quick else 30
        path = Path(tmp) / "demo.zip"
        built = build(demo, demo_days, path)
        ran = verify(path)
        results["demo"] = {**built, **ran}
        print(f"demo plant, {demo_days} d: {built['samples']:,} samples, {built['batches']:,} "
              f"batches, verified {ran['wall_s']:.2f} s, peak RSS {ran['hwm_kb'] / 1024:.0f} MB, "
              f"{built['bytes'] / built['samples']:.2f} B/sample  {ran['status']}",
              flush=True)  # fmt: skip
    r = ratio(big, 2000 if not args.quick else 300)
    print(f"digest, one gateway's {r['samples']:,} samples: batch_digest per batch "
          f"{r['per_batch_samples_per_s']:,.0f}/s, batch_columns "
          f"{r['columns_samples_per_s']:,.0f}/s: {r['ratio']:.1f}x")  # fmt: skip
    bigs = [v for k, v in results.items() if k.startswith("big_")]
    last = max(bigs, key=lambda v: v["samples"])
    rate = last["samples"] / last["wall_s"]
    month = results.get("big_30d")
    month_s = month["wall_s"] if month else MONTH_SAMPLES_100 * (machines / 100) / rate
    print(json.dumps({
        "verify_samples_per_s": round(rate),
        "month_100_machines_s": round(month_s, 1),
        "month_100_machines_measured": month is not None,
        "bundle_bytes_per_sample": round(results["demo"]["bytes"] / results["demo"]["samples"], 3),
        "verify_peak_rss_mb": round(max(v["hwm_kb"] for v in results.values()) / 1024),
        "demo_month_s": round(results["demo"]["wall_s"], 2),
        "digest_columns_vs_per_batch": round(r["ratio"], 1),
        "digest_per_batch_samples_per_s": round(r["per_batch_samples_per_s"]),
        "digest_columns_samples_per_s": round(r["columns_samples_per_s"]),
        "runs": {k: {"samples": v["samples"], "batches": v["batches"], "s": round(v["wall_s"], 2),
                     "rss_mb": round(v["hwm_kb"] / 1024), "bytes": v["bytes"]}
                 for k, v in results.items()},
        "kpis_status": results["demo"]["status"]["kpis"],
        "anchors_status": results["demo"]["status"]["anchors"],
        "quick": args.quick,
        "cpus": os.cpu_count(),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
