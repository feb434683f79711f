"""The evidence bundle (`ingest-server report --bundle FILE`), docs/evidence.md, "The
bundle": collected from the database and written as one zip.

    signed report + one snapshot of the database
      --collect--> members: report.json, samples/series/ledger Parquet, registry, audit,
                   production, factors, gateway keys, anchors (+ their days' leaves);
                   the samples streamed (server-side cursor, a batch range at a time)
                   into Parquet files in a spool directory, never all in memory
                   (the Parquet members' schemas and writers: bundle_parquet.py)
      --write----> one zip: manifest.json first (each member's SHA-256 and row count,
                   the report's id and hashes), then the members

The bundle is what a verifier checks offline, with keys they hold themselves (the trust
file, trust_file.py, handed over at the enrolment visit): nothing in it is trusted for its
own sake. Its rows are raw (the server's derived tables are left out): the samples as
stored, so that each v2 batch's digest can be recomputed column-wise and checked against
the gateway's signature, and every KPI recomputed from them. The report's signature does
not cover the bundle; what binds them is said in docs/evidence.md.
"""

from __future__ import annotations

import bisect
import contextlib
import datetime as dt
import hashlib
import os
import secrets
import shutil
import tempfile
import time
import weakref
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

from edge_agent.contract.identity import fingerprint
from ingest_server.evidence import merkle
from ingest_server.evidence.bundle_parquet import (
    ASIDE_SCHEMA,
    LEAF_SCHEMA,
    LEDGER_SCHEMA,
    SAMPLE_SCHEMA,
    SERIES_SCHEMA,
    _group_plan,
    _merged,
    _parquet,
    _rows_table,
    _write_samples,
)
from ingest_server.evidence.ledger import ts_ms
from ingest_server.files import json_bytes as _json
from ingest_server.kpi.window import PART_ROLES, PRORATED_ROLES
from ingest_server.reference.factors import emission_table, energy_table
from ingest_server.repo import anchors, bundle, ledger

FORMAT = "factory-evidence.bundle"
FORMAT_VERSION = 1
COUNTERS = PRORATED_ROLES | frozenset(PART_ROLES)  # their good readings close the edges


@dataclass(frozen=True)
class Member:
    """One file of the bundle: its bytes, or a file of the bundle's spool directory (the
    samples, streamed there while they were read; `sha256` and `size` computed on the
    way)."""

    name: str
    data: bytes | Path
    rows: int | None  # None: a document, not a table
    content: str  # what it holds, one line
    sha256: str = ""  # hex; computed from `data` when it is bytes
    size: int = -1

    def __post_init__(self) -> None:
        if isinstance(self.data, bytes):
            object.__setattr__(self, "sha256", hashlib.sha256(self.data).hexdigest())
            object.__setattr__(self, "size", len(self.data))


@dataclass(frozen=True)
class Bundle:
    manifest: dict[str, Any]
    members: list[Member]
    spool: Path | None = None  # the members' files; removed with the bundle (or `close`)

    def __post_init__(self) -> None:
        if self.spool is not None:
            object.__setattr__(
                self, "_remove", weakref.finalize(self, shutil.rmtree, self.spool, True)
            )

    def close(self) -> None:
        """Remove the spooled members now (else when the bundle is collected)."""
        remove = getattr(self, "_remove", None)
        if remove is not None:
            remove()

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


FETCH_ROWS = 1 << 16  # samples a fetch from the database; with a row group, the working set


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
    written), read from `conn` (module docstring; call it in the report's snapshot). The
    samples are streamed to Parquet files in a spool directory (`Bundle.spool`), so memory
    grows with the batches and the series, not with the samples (docs/evidence.md)."""
    spool = Path(tempfile.mkdtemp(prefix="fe-bundle-"))
    try:
        return _collect(conn, doc, report, spool)
    except BaseException:
        shutil.rmtree(spool, ignore_errors=True)
        raise


def _collect(conn: psycopg.Connection, doc: dict[str, Any], report: bytes, spool: Path) -> Bundle:
    enterprise = doc["enterprise"]["id"]
    periods = _periods(doc)
    windows = _windows(conn, enterprise, periods)
    series = bundle.series_rows(conn, enterprise=enterprise)
    site_of = {r[0]: r[1] for r in series}
    pairs = list(site_of.items())
    counters = [r[0] for r in series if r[5] in COUNTERS]
    edges: dict[tuple[int, dt.datetime], tuple[Any, ...]] = {}
    batches: dict[int, tuple[Any, ...]] = {}
    used: set[int] = set()  # the batches of the windows' samples and their edges
    for window in windows:
        rows = bundle.window_edges(conn, series=pairs, window=window, counters=counters)
        edges.update(((r[0], r[1]), r) for r in rows)
        ids = set(bundle.window_batch_ids(conn, series=pairs, window=window))
        ids |= {r[6] for r in rows if r[6] is not None}
        used |= ids
        for b in bundle.batch_rows(conn, enterprise=enterprise, window=window, ids=sorted(ids)):
            old = batches.get(b[0])
            if old is None or _ROLE_RANK[b[-1]] < _ROLE_RANK[old[-1]]:
                batches[b[0]] = b
    # a v2 batch's samples go in whole (its digest is recomputed from them), except the
    # chain's neighbours before and after, there for their digest unless they hold a
    # sample the period reads
    whole = sorted(
        b[0]
        for b in batches.values()
        if b[7] == 2 and (b[-1] not in ("before", "after") or b[0] in used)
    )
    near, far = bundle.batches_reach(
        conn, batches=[(i, batches[i][5], batches[i][6], batches[i][11]) for i in whole],
        series_ids=list(site_of),
    )  # fmt: skip
    chosen = bundle.Selection(sorted(site_of), windows, site_of, whole, near)
    extra = {(r[0], r[1]): r for r in (*far, *edges.values()) if not chosen.holds(r)}
    n_samples, samples_member = _samples_member(conn, chosen, list(extra.values()), spool)
    n_aside, aside_member = _aside_member(conn, whole, spool)
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
        samples_member,
        aside_member,
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
                                       if k not in ("equipment_audit", "registry_audit")}),
               None, "enterprise, sites, calendars, processes, equipment, meters, gateways"),
        Member("equipment_audit.json", _json(registry["equipment_audit"]),
               len(registry["equipment_audit"]), "every edit of declared attributes"),
        Member("registry_audit.json", _json(registry["registry_audit"]),
               len(registry["registry_audit"]), "every other change `registry import` made "
               "to the registry (sites, calendars, processes, meters, the enterprise, what "
               "was inserted or removed)"),
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
    manifest = _manifest(doc, report, periods, windows, members, n_samples, n_aside)
    return Bundle(manifest, members, spool)


def _samples_member(
    conn: psycopg.Connection, chosen: bundle.Selection, extra: list[tuple[Any, ...]], spool: Path
) -> tuple[int, Member]:
    """samples.parquet: the selection's samples (streamed, a batch group at a time) with
    the `extra` rows put in their places."""
    counts = bundle.selection_counts(conn, selection=chosen)
    more = _rows_table(sorted(extra, key=lambda r: (r[0], r[1])), SAMPLE_SCHEMA)
    per_batch: dict[int | None, int] = {b: int(n) for b, n, _lo, _hi in counts}
    for b in more["batch_id"].to_pylist():
        per_batch[b] = per_batch.get(b, 0) + 1
    v2 = sorted(b for b in per_batch if b is not None)
    plan = _group_plan([(b, per_batch[b]) for b in ([None] if None in per_batch else []) + v2])
    spans = {b: (lo, hi) for b, _n, lo, hi in counts}
    ids = [b for b in spans if b is not None]  # ascending (selection_counts)

    def fetch(batches: tuple[int, int] | None) -> Iterator[pa.Table]:
        if batches is None:
            mine, span = more.filter(pc.is_null(more["batch_id"])), spans.get(None)
            whole: list[int] = []
        else:
            lo, hi = batches
            mine = more.filter(pc.and_(pc.greater_equal(more["batch_id"], lo),
                                       pc.less_equal(more["batch_id"], hi)))  # fmt: skip
            inside = ids[bisect.bisect_left(ids, lo) : bisect.bisect_right(ids, hi)]
            span = (
                (min(spans[b][0] for b in inside), max(spans[b][1] for b in inside))
                if inside
                else None
            )
            whole = chosen.whole[
                bisect.bisect_left(chosen.whole, lo) : bisect.bisect_right(chosen.whole, hi)
            ]
        chunks: Iterator[pa.Table] = iter(())
        if span is not None:
            chunks = (
                _rows_table(rows, SAMPLE_SCHEMA)
                for rows in bundle.selection_samples(
                    conn, selection=chosen, batches=batches, span=span, whole=whole, size=FETCH_ROWS
                )
            )
        return _merged(chunks, mine)

    sha, size, rows = _write_samples(spool / "samples.parquet", SAMPLE_SCHEMA, plan, fetch)
    return rows, Member(
        "samples.parquet", spool / "samples.parquet", rows,
        "raw samples (table samples): the periods', those just outside them, and every "
        "other sample of their v2 batches; batch_id null: a v1 sample", sha, size,
    )  # fmt: skip


def _aside_member(conn: psycopg.Connection, whole: list[int], spool: Path) -> tuple[int, Member]:
    """samples_aside.parquet: every `samples_aside` row of the whole batches, streamed."""
    counts = bundle.aside_counts(conn, ids=whole) if whole else []
    plan = _group_plan(counts)

    def fetch(batches: tuple[int, int] | None) -> Iterator[pa.Table]:
        assert batches is not None  # every aside row has its batch
        ids = [b for b, _n in counts if batches[0] <= b <= batches[1]]
        for rows in bundle.aside_samples(conn, ids=ids, size=FETCH_ROWS):
            yield _rows_table(rows, ASIDE_SCHEMA)

    path = spool / "samples_aside.parquet"
    sha, size, rows = _write_samples(path, ASIDE_SCHEMA, plan, fetch)
    return rows, Member(
        "samples_aside.parquet", path, rows,
        "samples of those v2 batches not in `samples` (reason 1 repeat, 2 bad time)", sha, size,
    )  # fmt: skip


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
                "sha256": m.sha256,
                "bytes": m.size,
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
                if isinstance(m.data, bytes):
                    z.writestr(m.name, m.data, method)
                else:
                    _copy_member(z, m, method)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def _copy_member(z: zipfile.ZipFile, m: Member, method: int) -> None:
    """A spooled member copied into the zip a piece at a time, with the header `writestr`
    would write (zip64 only when its size needs it)."""
    info = zipfile.ZipInfo(m.name, date_time=time.localtime(time.time())[:6])
    info.compress_type = method
    info.external_attr = 0o600 << 16
    info.file_size = m.size
    assert isinstance(m.data, Path)
    with open(m.data, "rb") as f, z.open(info, "w") as out:
        shutil.copyfileobj(f, out, 1 << 20)
