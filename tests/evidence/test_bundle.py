"""`ingest-server report --bundle` and `ingest-server trust export`, against a real
PostgreSQL and a real RFC 3161 TSA (tests/harness/tsa.py).

The plant is test_ledger's World: two gateways whose v2 batches are sealed as a gateway
seals them and stored as the ingest path stores them (a repeat set aside, a batch the day
before and the day after), plus v1 samples written by the ingest path's Store, an edit of
a declared attribute through repo/equipment, a production entry, and the day anchored.
Everything checked is taken from the bundle and the trust file alone, as the offline
verifier will, and compared with the database.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from edge_agent.contract.digest import batch_digest, verify_batch
from edge_agent.contract.identity import fingerprint
from ingest_server.evidence import merkle
from ingest_server.repo import production
from ingest_server.repo.equipment import edit_equipment
from tests.evidence.test_ledger import DAY, World, run
from tests.harness.ingest import ENT, batch, open_store, s, write
from tests.harness.tsa import Tsa

MEMBERS = {
    "manifest.json", "report.json", "samples.parquet", "samples_aside.parquet",
    "series.parquet", "ledger.parquet", "declarations.json", "registry.json",
    "equipment_audit.json", "registry_audit.json", "production.json", "factors.json",
    "gateway_keys.json", "anchors.json", "anchor_leaves.parquet",
}  # fmt: skip
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory, pg_server: Any) -> Iterator[dict[str, Any]]:
    """One plant, one anchored day, one report with its bundle and a trust file: the
    tests below only read them."""
    tmp = tmp_path_factory.mktemp("bundle")
    tsa = Tsa(tmp / "tsa", "A").start()
    with pg_server.database() as db:
        world = World(db)
        try:
            yield _make(world, tsa, tmp)
        finally:
            world.conn.close()
            tsa.stop()


def _make(world: World, tsa: Tsa, tmp: Path) -> dict[str, Any]:
    world.seal("gw-01", 7, world.samples(-24 * 60), minutes=-24 * 60)  # the day before
    world.chain("gw-01", 4, boot=2)
    # a repeat of a stored (series, ts): set aside, still digested
    world.seal("gw-01", 5, world.samples(1)[:1] + world.samples(5), boot=2, minutes=5)
    world.seal("gw-01", 6, world.samples(24 * 60), boot=2, minutes=24 * 60)  # the day after
    world.chain("gw-02", 3)
    noon = world.noon.timestamp()
    with open_store(world.db) as store:  # v1 (HMAC) samples, written by the ingest path
        write(store, ("data", batch(1, [s("cnc-01", "load", noon + 60 * i, 10.0 + i)
                                        for i in range(5)], boot=9)))  # fmt: skip
    edit_equipment(world.conn, enterprise=ENT, equipment="cnc-01", changes={"nc": False},
                   account="editor-7", note="the lathe lost its controller")  # fmt: skip
    production.add_entry(world.conn, production.NewEntry(
        ENT, None, DAY, DAY, 120.0, "件", 3.5, "", "clerk-2"))  # fmt: skip
    cert = str(tsa.cert_file)
    code, out = run("anchor", "--enterprise", ENT, "--day", str(DAY), "--tsa", tsa.url,
                    "--tsa-cert", cert, "--dsn", world.db)  # fmt: skip
    assert code == 0, out
    key = tmp / "keys" / "report.pem"
    report, zipped, trust = tmp / "r.json", tmp / "b.zip", tmp / "trust.json"
    code, out = run("report", "--enterprise", ENT, "--from", str(DAY), "--to", str(DAY),
                    "--dsn", world.db, "--signing-key", str(key), "--out", str(report),
                    "--as-of", "2026-04-01T00:00:00Z", "--bundle", str(zipped))  # fmt: skip
    assert code == 0, out
    code, out = run("trust", "export", "--enterprise", ENT, "--out", str(trust), "--dsn",
                    world.db, "--tsa-cert", cert, "--signing-key", str(key))  # fmt: skip
    assert code == 0, out
    with zipfile.ZipFile(zipped) as z:
        files = {n: z.read(n) for n in z.namelist()}
    window = json.loads(files["manifest.json"])["periods"][0]["windows"]["p1"]
    lo, hi = (dt.datetime.fromisoformat(t) for t in window)
    db_rows = world.conn.execute(
        "SELECT s.series_id, s.ts, s.value, s.text, s.quality, s.status, s.batch_id, "
        "s.batch_pos FROM samples s WHERE s.ts >= %s AND s.ts < %s", (lo, hi)
    ).fetchall()  # fmt: skip
    return {"files": files, "report": report.read_bytes(), "trust": json.loads(trust.read_text()),
            "trust_text": trust.read_text(), "lo": lo, "hi": hi, "db_rows": db_rows,
            "tsa": tsa, "report_key": key}  # fmt: skip


def table(made: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return pq.read_table(pa.BufferReader(made["files"][name])).to_pylist()  # type: ignore[no-any-return]


def doc(made: dict[str, Any], name: str) -> Any:
    return json.loads(made["files"][name])


def test_the_bundle_opens_and_every_member_matches_its_manifest(made: dict[str, Any]) -> None:
    files = made["files"]
    assert set(files) == MEMBERS
    manifest = doc(made, "manifest.json")
    assert (manifest["format"], manifest["format_version"]) == ("factory-evidence.bundle", 1)
    listed = {m["name"]: m for m in manifest["members"]}
    assert set(listed) == MEMBERS - {"manifest.json"}
    for name, m in listed.items():
        assert hashlib.sha256(files[name]).hexdigest() == m["sha256"], name
        if name.endswith(".parquet"):
            assert pq.read_metadata(pa.BufferReader(files[name])).num_rows == m["rows"], name
        elif m["rows"] is not None:
            assert len(json.loads(files[name])) == m["rows"], name
    # the report exactly as `report --out` wrote it, bound by its id, hash and signature
    assert files["report.json"] == made["report"]
    report = json.loads(made["report"])
    assert manifest["report"]["report_id"] == report["report_id"]
    assert manifest["report"]["sha256"] == hashlib.sha256(made["report"]).hexdigest()
    assert manifest["report"]["signature"] == report["signature"]["value"]
    # a changed member no longer matches its hash
    assert (
        hashlib.sha256(files["samples.parquet"] + b"\0").hexdigest()
        != (listed["samples.parquet"]["sha256"])
    )


def _key(r: dict[str, Any] | tuple[Any, ...]) -> tuple[Any, ...]:
    if isinstance(r, dict):
        r = tuple(r[c] for c in ("series_id", "ts", "value", "text", "quality", "status",
                                 "batch_id", "batch_pos"))  # fmt: skip
    else:
        r = (r[0], (r[1] - EPOCH) // dt.timedelta(milliseconds=1), *r[2:])
    return r


def test_the_samples_are_the_databases_rows_of_the_period(made: dict[str, Any]) -> None:
    lo, hi = (ts_ms(made["lo"]), ts_ms(made["hi"]))
    bundled = [_key(r) for r in table(made, "samples.parquet") if lo <= r["ts"] < hi]
    stored = [_key(r) for r in made["db_rows"]]
    assert len(bundled) == len(stored) > 0
    checksum = hashlib.sha256(repr(sorted(stored)).encode()).hexdigest()
    assert hashlib.sha256(repr(sorted(bundled)).encode()).hexdigest() == checksum
    v1 = [r for r in bundled if r[6] is None]
    assert len(v1) == 5  # the v1 samples: no batch, so not gateway-signed
    # and the samples just outside the period, which the KPIs read at its edges
    everything = table(made, "samples.parquet")
    assert any(r["ts"] < lo for r in everything)
    assert any(r["ts"] >= hi for r in everything)


def ts_ms(t: dt.datetime) -> int:
    return (t - EPOCH) // dt.timedelta(milliseconds=1)


def test_every_v2_batch_recomputes_and_verifies_with_the_trust_files_keys(
    made: dict[str, Any],
) -> None:
    series = {r["series_id"]: r for r in table(made, "series.parquet")}
    by_batch: dict[int, list[dict[str, Any]]] = {}
    for r in table(made, "samples.parquet") + table(made, "samples_aside.parquet"):
        if r["batch_id"] is not None:
            by_batch.setdefault(r["batch_id"], []).append(r)
    trusted = {g["gateway"]: g["keys"] for g in made["trust"]["gateways"]}
    ledger = table(made, "ledger.parquet")
    checked = 0
    for b in ledger:
        if b["contract"] != 2 or not b["complete"]:
            continue
        rows = sorted(by_batch.get(b["batch_id"], []), key=lambda r: r["batch_pos"])
        assert [r["batch_pos"] for r in rows] == list(range(b["n_total"]))
        samples = [
            (series[r["series_id"]]["device"], series[r["series_id"]]["tag"], r["ts"],
             r["text"] if r["text"] is not None else r["value"], r["quality"], r["status"])
            for r in rows
        ]  # fmt: skip
        digest = batch_digest(gw=b["gateway"], boot=b["boot"], seq=b["seq"], prev=b["prev"],
                              samples=samples)  # fmt: skip
        assert digest == b["digest"], (b["gateway"], b["boot"], b["seq"])
        received = EPOCH + dt.timedelta(milliseconds=b["received_at"])
        keys = [
            base64.b64decode(k["public_key"]) for k in trusted[f"{ENT}/{b['site']}/{b['gateway']}"]
            if dt.datetime.fromisoformat(k["enrolled_at"]) <= received
            and (k["retired_at"] is None or received < dt.datetime.fromisoformat(k["retired_at"]))
        ]  # fmt: skip
        assert any(verify_batch(k, digest, b["signature"]) for k in keys)
        checked += 1
    # gw-01: boot 1 seq 7 (the day before), boot 2 seq 1..5, seq 6 (the day after); gw-02:
    # seq 1..3. The chain's neighbours are complete too: they hold the samples just
    # outside the period that the KPIs read at its edges
    assert checked == 10
    roles = {(b["gateway"], b["boot"], b["seq"]): b["role"] for b in ledger if b["contract"] == 2}
    assert roles[("gw-01", 1, 7)] == "before"
    assert roles[("gw-01", 2, 6)] == "after"
    assert sum(1 for r in roles.values() if r == "period") == 8
    aside = table(made, "samples_aside.parquet")
    assert [r["reason"] for r in aside] == [1]


def test_the_days_anchor_recomputes_from_the_bundles_leaves(made: dict[str, Any]) -> None:
    (anchor,) = [a for a in doc(made, "anchors.json") if a["day"] == str(DAY)]
    assert anchor["superseded_at"] is None
    (token,) = anchor["tokens"]
    assert token["tsa_name"] == "CN=A test TSA"
    assert token["token"]
    leaves = [r for r in table(made, "anchor_leaves.parquet") if r["day"] == DAY]
    assert [r["index"] for r in leaves] == list(range(anchor["leaves"]))
    root = merkle.root([r["digest"] for r in leaves])
    assert root == base64.b64decode(anchor["root"])
    in_day = {(r["gateway"], r["boot"], r["seq"], r["digest"]) for r in leaves}
    ledger = table(made, "ledger.parquet")
    assert {(b["gateway"], b["boot"], b["seq"], b["digest"]) for b in ledger
            if b["role"] == "period" and b["contract"] == 2} <= in_day  # fmt: skip


def test_the_registry_carries_the_audit_trail_entries_factors_and_keys(
    made: dict[str, Any],
) -> None:
    registry = doc(made, "registry.json")
    assert registry["enterprise"]["id"] == ENT
    (cnc,) = [e for e in registry["equipment"] if e["id"] == "cnc-01"]
    assert cnc["nc"] is False  # as it stands, after the edit
    (edit,) = doc(made, "equipment_audit.json")
    assert (edit["equipment_id"], edit["account"], edit["field"], edit["old"], edit["new"]) == (
        "cnc-01", "editor-7", "nc", True, False)  # fmt: skip
    assert edit["note"] == "the lathe lost its controller"
    assert edit["at"]
    (entry,) = doc(made, "production.json")
    assert (entry["entered_by"], entry["output"], entry["value_added_10k_cny"]) == (
        "clerk-2", 120.0, 3.5)  # fmt: skip
    report = json.loads(made["report"])
    factors = doc(made, "factors.json")
    assert factors["energy"] == report["factors"]["energy"]
    assert factors["emission"]["version"] == report["factors"]["emission"]["version"]
    keys = doc(made, "gateway_keys.json")
    assert {k["gateway"] for k in keys} == {f"{ENT}/p1/gw-01", f"{ENT}/p1/gw-02"}


def test_the_trust_file_holds_the_public_keys_and_nothing_private(made: dict[str, Any]) -> None:
    trust, text = made["trust"], made["trust_text"]
    assert (trust["format"], trust["enterprise"]) == ("factory-evidence.trust", ENT)
    assert "PRIVATE" not in text
    for g in trust["gateways"]:
        for k in g["keys"]:
            raw = base64.b64decode(k["public_key"])
            assert len(raw) == 32
            assert fingerprint(raw) == k["fingerprint"]
    report = json.loads(made["report"])
    (signer,) = [k for k in trust["report_keys"] if k["key_id"] == report["signature"]["key_id"]]
    assert len(base64.b64decode(signer["public_key"])) == 32
    assert "BEGIN PUBLIC KEY" in signer["public_key_pem"]
    (tsa,) = trust["tsas"]
    assert tsa["subject"] == "CN=A test TSA"
    assert tsa["chain_pem"].count("BEGIN CERTIFICATE") == 2
    # the TSA's certificate as the file holds it
    assert tsa["chain_pem"].startswith(made["tsa"].cert_file.read_text().split("-----END")[0])


def test_a_bundle_needs_a_signed_report(tmp_path: Path) -> None:
    code, out = run("report", "--enterprise", ENT, "--from", str(DAY), "--to", str(DAY),
                    "--dsn", "postgresql://nowhere.invalid/x", "--unsigned", "--bundle",
                    str(tmp_path / "b.zip"))  # fmt: skip
    assert code == 2
    assert "--bundle" in out
    assert "drop --unsigned" in out
