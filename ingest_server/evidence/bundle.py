"""The evidence bundle (`ingest-server report --bundle FILE`) and the verifier's trust file
(`ingest-server trust export`), docs/evidence.md, "The bundle" and "The trust file".

    signed report + one snapshot of the database
      --collect--> members: report.json, samples/series/ledger Parquet, registry, audit,
                   production, factors, gateway keys, anchors (+ their days' leaves)
      --write----> one zip: manifest.json first (each member's SHA-256 and row count,
                   the report's id and hashes), then the members

The bundle is what a verifier checks offline, with keys they hold themselves (the trust
file, handed over at the enrolment visit): nothing in it is trusted for its own sake. Its
rows are raw (the server's derived tables are left out): the samples as stored, so that
each v2 batch's digest can be recomputed column-wise and checked against the gateway's
signature, and every KPI recomputed from them. The report's signature does not cover the
bundle; what binds them is said in docs/evidence.md.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import io
import json
import os
import secrets
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import psycopg
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge_agent.contract.identity import fingerprint
from ingest_server.evidence import merkle
from ingest_server.evidence.keys import public_pem
from ingest_server.evidence.ledger import ts_ms
from ingest_server.evidence.timestamp import load_trust
from ingest_server.kpi.window import PART_ROLES, PRORATED_ROLES
from ingest_server.reference.factors import emission_table, energy_table
from ingest_server.repo import anchors, bundle, ledger, reports

FORMAT = "factory-evidence.bundle"
FORMAT_VERSION = 1
TRUST_FORMAT = "factory-evidence.trust"
TRUST_FORMAT_VERSION = 1
COUNTERS = PRORATED_ROLES | frozenset(PART_ROLES)  # their good readings close the edges
ZSTD_LEVEL = 9  # within a few % of 19 on samples, several times faster
# the samples' Parquet: ts and batch_pos change by little from row to row; series, texts,
# statuses and batch ids repeat; doubles compress best split into byte planes
_SAMPLE_ENCODING = {"ts": "DELTA_BINARY_PACKED", "batch_pos": "DELTA_BINARY_PACKED",
                    "value": "BYTE_STREAM_SPLIT"}  # fmt: skip
_SAMPLE_DICTIONARY = ["series_id", "text", "quality", "status", "batch_id", "reason"]

SAMPLE_SCHEMA = pa.schema([
    ("series_id", pa.int32()), ("ts", pa.int64()), ("value", pa.float64()),
    ("text", pa.string()), ("quality", pa.int8()), ("status", pa.string()),
    ("batch_id", pa.int64()), ("batch_pos", pa.int32()),
])  # fmt: skip
ASIDE_SCHEMA = SAMPLE_SCHEMA.append(pa.field("reason", pa.int8()))
SERIES_SCHEMA = pa.schema([
    ("series_id", pa.int32()), ("site", pa.string()), ("gateway", pa.string()),
    ("device", pa.string()), ("tag", pa.string()), ("role", pa.string()),
    ("unit", pa.string()), ("data_type", pa.string()), ("scale", pa.float64()),
    ("offset", pa.float64()), ("wrap", pa.float64()),
])  # fmt: skip
LEDGER_SCHEMA = pa.schema([
    ("batch_id", pa.int64()), ("site", pa.string()), ("gateway", pa.string()),
    ("boot", pa.int32()), ("seq", pa.int64()), ("sent", pa.int64()),
    ("received_at", pa.int64()), ("contract", pa.int8()), ("prev", pa.binary(32)),
    ("digest", pa.binary(32)), ("signature", pa.binary(64)), ("n_total", pa.int32()),
    ("samples", pa.int32()), ("rejected", pa.int32()), ("role", pa.string()),
    ("complete", pa.bool_()),
])  # fmt: skip
LEAF_SCHEMA = pa.schema([
    ("day", pa.date32()), ("index", pa.int32()), ("site", pa.string()),
    ("gateway", pa.string()), ("boot", pa.int32()), ("seq", pa.int64()),
    ("digest", pa.binary(32)),
])  # fmt: skip


@dataclass(frozen=True)
class Member:
    name: str
    data: bytes
    rows: int | None  # None: a document, not a table
    content: str  # what it holds, one line


@dataclass(frozen=True)
class Bundle:
    manifest: dict[str, Any]
    members: list[Member]

    @property
    def samples(self) -> int:
        return int(self.manifest["counts"]["samples"]) + int(self.manifest["counts"]["aside"])


@contextlib.contextmanager
def one_snapshot(conn: psycopg.Connection) -> Iterator[None]:
    """The report and its bundle read from one snapshot (REPEATABLE READ), so samples
    arriving meanwhile cannot make them disagree. Not read only: making the report
    registers its key, and the report is stored, in the same transaction."""
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        yield


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bytes | memoryview):
        return base64.b64encode(bytes(value)).decode()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _json(doc: Any) -> bytes:
    return (json.dumps(doc, ensure_ascii=False, indent=1, default=_jsonable) + "\n").encode()


def _parquet(table: pa.Table, **options: Any) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", compression_level=ZSTD_LEVEL, **options)
    return sink.getvalue()


SAMPLE_ROW_GROUP = 1 << 20  # rows; a row group of samples spans its own batches


def _samples_parquet(rows: Sequence[tuple[Any, ...]], schema: pa.Schema) -> bytes:
    """Rows sorted by (series_id, ts), written in row groups by batch (samples_parquet)."""
    cols = list(zip(*rows, strict=True)) if rows else [() for _ in schema]
    arrays = [
        pa.array([ts_ms(t) for t in col] if f.name == "ts" else col, type=f.type)
        for f, col in zip(schema, cols, strict=True)
    ]
    return samples_parquet(pa.Table.from_arrays(arrays, schema=schema))


def sample_writer(sink: Any, schema: pa.Schema) -> pq.ParquetWriter:
    """The samples' Parquet writer: each series' times and values run on smoothly, which
    the encodings above turn into a few bits a sample (docs/evidence.md)."""
    return pq.ParquetWriter(
        sink, schema, compression="zstd", compression_level=ZSTD_LEVEL,
        use_dictionary=[c for c in _SAMPLE_DICTIONARY if c in schema.names],
        column_encoding=_SAMPLE_ENCODING,
    )  # fmt: skip


def batch_groups(batch_id: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Each row's row group: v1 samples (no batch) first (-1), then consecutive ranges of
    batch ids of about SAMPLE_ROW_GROUP samples each, so that a verifier checks a row
    group's batches alone (offline._plan) with a bounded working set."""
    ids = pa.chunked_array([batch_id]) if isinstance(batch_id, pa.Array) else batch_id
    values = ids.fill_null(np.iinfo(np.int64).min).to_numpy()
    valid = ids.is_valid().to_numpy()
    distinct, counts = np.unique(values[valid], return_counts=True)
    group_of = (np.cumsum(counts) - counts) // SAMPLE_ROW_GROUP
    out = np.full(len(values), -1, np.int64)
    out[valid] = group_of[np.searchsorted(distinct, values[valid])]
    return out


def samples_parquet(table: pa.Table) -> bytes:
    """The samples' Parquet: rows in (batch group, series_id, ts) order, one row group a
    batch group (batch_groups; the stable sort keeps `table`'s (series_id, ts) order
    within each), so the verifier streams them (docs/evidence-verify.md, "Speed")."""
    groups = batch_groups(table["batch_id"])
    order = np.argsort(groups, kind="stable")
    table, groups = table.take(pa.array(order)), groups[order]
    cuts = np.flatnonzero(np.diff(groups)) + 1
    sink = io.BytesIO()
    with sample_writer(sink, table.schema) as w:
        for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(groups)], strict=True):
            w.write_table(table.slice(int(lo), int(hi - lo)), row_group_size=SAMPLE_ROW_GROUP)
        if not len(groups):
            w.write_table(table)
    return sink.getvalue()


def _ms(t: dt.datetime | None) -> int | None:
    return None if t is None else ts_ms(t)


def _windows(
    conn: psycopg.Connection, enterprise: str, periods: Sequence[tuple[dt.date, dt.date]]
) -> list[bundle.Window]:
    return [
        ledger.site_windows(conn, enterprise=enterprise, date_from=a, date_to=b) for a, b in periods
    ]


def _periods(doc: dict[str, Any]) -> list[tuple[dt.date, dt.date]]:
    """The report's period, and its baseline's when it has one: the samples of both."""
    out = [
        (dt.date.fromisoformat(doc["period"]["from"]), dt.date.fromisoformat(doc["period"]["to"]))
    ]
    base = doc.get("baseline") or {}
    if base.get("from") and base.get("to"):
        out.append((dt.date.fromisoformat(base["from"]), dt.date.fromisoformat(base["to"])))
    return out


_ROLE_RANK = {"period": 0, "span": 1, "before": 2, "after": 2, "extra": 3}


def collect(conn: psycopg.Connection, doc: dict[str, Any], report: bytes) -> Bundle:
    """The bundle of a signed report `doc` whose file holds `report` (its bytes exactly as
    written), read from `conn` (module docstring; call it in the report's snapshot)."""
    enterprise = doc["enterprise"]["id"]
    periods = _periods(doc)
    windows = _windows(conn, enterprise, periods)
    series = bundle.series_rows(conn, enterprise=enterprise)
    site_of = {r[0]: r[1] for r in series}
    counters = [r[0] for r in series if r[5] in COUNTERS]
    found: dict[tuple[int, dt.datetime], tuple[Any, ...]] = {}
    batches: dict[int, tuple[Any, ...]] = {}
    for window in windows:
        rows = bundle.window_samples(
            conn, series=list(site_of.items()), window=window, counters=counters
        )
        for r in rows:
            found[(r[0], r[1])] = r
        ids = sorted({r[6] for r in rows if r[6] is not None})
        for b in bundle.batch_rows(conn, enterprise=enterprise, window=window, ids=ids):
            old = batches.get(b[0])
            if old is None or _ROLE_RANK[b[-1]] < _ROLE_RANK[old[-1]]:
                batches[b[0]] = b
    # a v2 batch's samples go in whole (its digest is recomputed from them), except the
    # chain's neighbours before and after, there for their digest unless they hold a
    # sample the period reads
    used = {r[6] for r in found.values() if r[6] is not None}
    whole = sorted(
        b[0]
        for b in batches.values()
        if b[7] == 2 and (b[-1] not in ("before", "after") or b[0] in used)
    )
    more, aside = bundle.batches_samples(
        conn, batches=[(i, batches[i][5], batches[i][6], batches[i][11]) for i in whole],
        series_ids=list(site_of),
    )  # fmt: skip
    for r in more:
        found.setdefault((r[0], r[1]), r)
    samples = sorted(found.values(), key=lambda r: (r[0], r[1]))
    aside = sorted(aside, key=lambda r: (r[0], r[1], r[6], r[7]))
    whole_set = set(whole)
    ledger_rows = [
        (*b[:5], _ms(b[5]), _ms(b[6]), b[7], *(None if x is None else bytes(x) for x in b[8:11]),
         *b[11:15], b[0] in whole_set)
        for b in sorted(batches.values(), key=lambda b: (b[1], b[2], b[3], b[4]))
    ]  # fmt: skip
    registry = bundle.registry_rows(conn, enterprise=enterprise)
    sites = {s["id"]: s for s in registry["sites"]}
    anchor_days = sorted(
        {d for a, b in periods for d in _days(a, b)}
        | {
            b[6].astimezone(ZoneInfo(sites[b[1]]["timezone"])).date()
            for b in batches.values()
            if b[7] == 2 and b[1] in sites
        }
    )
    anchor_list = bundle.anchor_rows(conn, enterprise=enterprise, days=anchor_days)
    leaves = []
    for day in sorted({a["day"] for a in anchor_list}):
        tree_leaves = merkle.ordered(
            [merkle.Leaf(*r) for r in anchors.day_leaves(conn, enterprise=enterprise, day=day)]
        )
        leaves += [(day, i, lf.site, lf.gateway, lf.boot, lf.seq, lf.digest)
                   for i, lf in enumerate(tree_leaves)]  # fmt: skip
    gids = bundle.gateway_gids(conn, enterprise=enterprise)
    declared = ledger.declarations(
        conn, [(b[0], f"{enterprise}/{b[1]}/{b[2]}", b[2], b[3]) for b in batches.values()
               if b[7] == 2], gids,
    )  # fmt: skip
    energy = energy_table(doc["factors"]["energy"]["version"])
    emission = emission_table(doc["factors"]["emission"]["version"])
    keys = bundle.gateway_key_rows(conn, enterprise=enterprise)
    production = bundle.production_rows(conn, enterprise=enterprise, periods=periods)

    members = [
        Member("report.json", report, None, "the signed report, as `report --out` writes it"),
        Member("samples.parquet", _samples_parquet(samples, SAMPLE_SCHEMA), len(samples),
               "raw samples (table samples): the periods', those just outside them, and every "
               "other sample of their v2 batches; batch_id null: a v1 sample"),
        Member("samples_aside.parquet", _samples_parquet(aside, ASIDE_SCHEMA), len(aside),
               "samples of those v2 batches not in `samples` (reason 1 repeat, 2 bad time)"),
        Member("series.parquet", _parquet(pa.Table.from_pylist(
            [dict(zip(SERIES_SCHEMA.names, r, strict=True)) for r in series], SERIES_SCHEMA)),
            len(series), "every series of the enterprise's gateways"),
        Member("ledger.parquet", _parquet(pa.Table.from_pylist(
            [dict(zip(LEDGER_SCHEMA.names, r, strict=True)) for r in ledger_rows], LEDGER_SCHEMA)),
            len(ledger_rows), "the batches: those of the samples, the periods' chains and their "
            "neighbours; complete: all its samples are in the bundle"),
        Member("declarations.json", _json([
            {"gateway": d[0], "boot": d[1], "first_seq": d[2], "last_seq": d[3], "reason": d[4],
             "declared_at": d[5], "received_at": d[6], "payload": d[7]} for d in declared]),
            len(declared), "batches the gateways declared dropped, with the signed status"),
        Member("registry.json", _json({k: v for k, v in registry.items()
                                       if k != "equipment_audit"}), None,
               "enterprise, sites, calendars, processes, equipment, meters, gateways"),
        Member("equipment_audit.json", _json(registry["equipment_audit"]),
               len(registry["equipment_audit"]), "every edit of declared attributes"),
        Member("production.json", _json(production), len(production),
               "production and value-added entries overlapping the periods"),
        Member("factors.json", _json({"energy": energy.as_json(), "emission": emission.as_json()}),
               None, "the factor tables the report names, with versions and sources"),
        Member("gateway_keys.json", _json([
            {**k, "gateway": f"{enterprise}/{k['site_id']}/{k['gateway']}",
             "fingerprint": fingerprint(bytes(k["public_key"]))} for k in keys]), len(keys),
            "every public key the gateways have had (a copy: verify with the trust file)"),
        Member("anchors.json", _json([
            {**{k: v for k, v in a.items() if k != "tokens"},
             "tokens": [{k: v for k, v in t.items() if k != "anchor_id"} for t in a["tokens"]]}
            for a in anchor_list]), len(anchor_list),
            "the anchors of the days: root, leaves, tokens (DER TimeStampResp, base64)"),
        Member("anchor_leaves.parquet", _parquet(pa.Table.from_pylist(
            [dict(zip(LEAF_SCHEMA.names, r, strict=True)) for r in leaves], LEAF_SCHEMA)),
            len(leaves), "each anchored day's leaves in tree order (the inclusion proofs' source)"),
    ]  # fmt: skip
    manifest = _manifest(doc, report, periods, windows, members, len(samples), len(aside))
    return Bundle(manifest, members)


def _days(a: dt.date, b: dt.date) -> list[dt.date]:
    return [a + dt.timedelta(days=i) for i in range((b - a).days + 1)]


def _manifest(  # noqa: PLR0917 (one caller, every part named there)
    doc: dict[str, Any],
    report: bytes,
    periods: Sequence[tuple[dt.date, dt.date]],
    windows: Sequence[bundle.Window],
    members: Sequence[Member],
    n_samples: int,
    n_aside: int,
) -> dict[str, Any]:
    sig = doc.get("signature") or {}
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "enterprise": doc["enterprise"]["id"],
        "report": {
            "member": "report.json",
            "report_id": doc.get("report_id"),
            "sha256": hashlib.sha256(report).hexdigest(),
            "digest": (doc.get("digest") or {}).get("value"),
            "key_id": sig.get("key_id"),
            "signature": sig.get("value"),
        },
        "periods": [
            {
                "from": a.isoformat(),
                "to": b.isoformat(),
                "windows": {
                    site: [lo.isoformat(), hi.isoformat()] for site, (lo, hi) in sorted(w.items())
                },
            }
            for (a, b), w in zip(periods, windows, strict=True)
        ],
        "counts": {"samples": n_samples, "aside": n_aside},
        "members": [
            {
                "name": m.name,
                "sha256": hashlib.sha256(m.data).hexdigest(),
                "bytes": len(m.data),
                "rows": m.rows,
                "content": m.content,
            }
            for m in members
        ],
    }


def write(path: Path, b: Bundle) -> None:
    """The zip at `path`, written whole under a temporary name and renamed: manifest.json
    first, Parquet members stored (already compressed), JSON members deflated."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp")
    try:
        with zipfile.ZipFile(tmp, "w") as z:
            z.writestr("manifest.json", _json(b.manifest), zipfile.ZIP_DEFLATED)
            for m in b.members:
                method = zipfile.ZIP_STORED if m.name.endswith(".parquet") else zipfile.ZIP_DEFLATED
                z.writestr(m.name, m.data, method)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


# --- the trust file ----------------------------------------------------------------------


def trust_document(
    conn: psycopg.Connection, *, enterprise: str, tsa_files: Sequence[Path]
) -> dict[str, Any]:
    """What the verifier receives at the enrolment visit (docs/evidence.md, "The trust
    file"): public keys and certificates only, never a private key."""
    gateways: dict[str, dict[str, Any]] = {}
    for k in bundle.gateway_key_rows(conn, enterprise=enterprise):
        name = f"{enterprise}/{k['site_id']}/{k['gateway']}"
        g = gateways.setdefault(name, {"gateway": name, "contract": k["contract"],
                                       "revoked_at": k["revoked_at"], "keys": []})  # fmt: skip
        raw = bytes(k["public_key"])
        g["keys"].append({"public_key": base64.b64encode(raw).decode(),
                          "fingerprint": fingerprint(raw), "enrolled_at": k["enrolled_at"],
                          "retired_at": k["retired_at"]})  # fmt: skip
    report_keys = []
    for rk in reports.list_keys(conn):
        public = Ed25519PublicKey.from_public_bytes(rk.public_key)
        report_keys.append({"key_id": rk.key_id, "created_at": rk.created_at,
                            "public_key": base64.b64encode(rk.public_key).decode(),
                            "public_key_pem": public_pem(public),
                            "retired_at": rk.retired_at, "revoked_at": rk.revoked_at})  # fmt: skip
    tsas = []
    for path in tsa_files:
        chain = load_trust(path)
        tsas.append({
            "file": path.name, "subject": chain[0].subject.rfc4514_string(),
            "sha256": chain[0].fingerprint(hashes.SHA256()).hex(),
            "not_before": chain[0].not_valid_before_utc,
            "not_after": chain[0].not_valid_after_utc,
            "chain_pem": "".join(c.public_bytes(serialization.Encoding.PEM).decode()
                                 for c in chain),
        })  # fmt: skip
    out: dict[str, Any] = json.loads(_json({
        "format": TRUST_FORMAT, "format_version": TRUST_FORMAT_VERSION,
        "enterprise": enterprise,
        "exported_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "gateways": list(gateways.values()), "report_keys": report_keys, "tsas": tsas,
    }))  # fmt: skip
    return out


def trust_json(doc: dict[str, Any]) -> bytes:
    return _json(doc)
