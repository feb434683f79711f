"""The offline verifier's checks (evidence/offline/) over a real bundle and trust file.

The bundle is test_bundle's: a real PostgreSQL plant of two v2 gateways, a day anchored by
a real RFC 3161 TSA (tests/harness/tsa.py), `report --bundle` and `trust export` run as a
user runs them. Then each test tampers with a copy of the zip as an attacker holding the
bundle could (and, where the attacker would, writes the manifest's hash to match), and
the check must fail naming the cause. The checks themselves touch no database.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from ingest_server.evidence.canonical import sign
from ingest_server.evidence.offline import Verdict, check_bundle
from ingest_server.evidence.timestamp import request_token
from tests.evidence import test_bundle
from tests.harness.ingest import ENT

made = test_bundle.made  # its plant, bundle and trust file, built once for this module

Made = dict[str, Any]


def zipped(tmp: Path, files: dict[str, bytes], *, fix: tuple[str, ...] = ()) -> Path:
    """The members as a bundle zip (manifest first); the members named in `fix` get their
    manifest entry rewritten to match, as an attacker would."""
    files = dict(files)
    if fix:
        manifest = json.loads(files["manifest.json"])
        for m in manifest["members"]:
            if m["name"] in fix:
                data = files[m["name"]]
                m["sha256"], m["bytes"] = hashlib.sha256(data).hexdigest(), len(data)
                if m["name"].endswith(".parquet"):
                    m["rows"] = pq.read_metadata(pa.BufferReader(data)).num_rows
        files["manifest.json"] = json.dumps(manifest).encode()
    path = tmp / f"b{len(list(tmp.iterdir()))}.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("manifest.json", files.pop("manifest.json"))
        for name, data in files.items():
            z.writestr(name, data)
    return path


def resigned(made: Made, tmp: Path, doc: dict[str, Any]) -> Verdict:
    """The bundle with `doc` as its report, signed again by the report key the trust file
    trusts (the enterprise's own statement), the manifest's report entry written to match:
    the signature and manifest checks pass, so what fails is the content."""
    key = load_pem_private_key(made["report_key"].read_bytes(), None)
    assert isinstance(key, Ed25519PrivateKey)
    doc = copy.deepcopy(doc)
    doc.pop("signature", None)
    sign(doc, key)
    report = json.dumps(doc, ensure_ascii=False).encode()
    files = {**made["files"], "report.json": report}
    manifest = json.loads(files["manifest.json"])
    manifest["report"].update(sha256=hashlib.sha256(report).hexdigest(),
                              signature=doc["signature"]["value"])  # fmt: skip
    files["manifest.json"] = json.dumps(manifest).encode()
    v = check_bundle(zipped(tmp, files, fix=("report.json",)), made["trust"])
    assert v.check("report_signature").status == "ok"
    assert v.check("manifest").status == "ok"
    return v


def parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def failed(v: Verdict, name: str) -> list[str]:
    """The English reasons of a failed check (asserting that it failed)."""
    c = v.check(name)
    assert c.status == "failed", (name, c)
    return [r.text_en for r in c.reasons]


def test_a_clean_bundle_passes_every_check(made: Made, tmp_path: Path) -> None:
    v = check_bundle(zipped(tmp_path, made["files"]), made["trust"])
    status = {c.name: c.status for c in v.checks}
    assert status == {"manifest": "ok", "report_signature": "ok", "batches": "ok",
                      "chain": "ok", "anchors": "ok", "kpis": "ok"}  # fmt: skip
    assert v.verdict == "pass"
    assert v.text[0].startswith("通过")
    assert v.text[1].startswith("PASS")
    assert not v.check("kpis").reasons
    batches = v.check("batches").details
    # 10 batches whose samples are bundled, each recomputed and its signature verified
    assert batches["signatures_checked"] == 10
    assert batches["samples_recomputed"] > 0
    anchors = v.check("anchors").details
    # the chain's neighbours arrived the day before and the day after: listed, not anchored
    assert len(anchors["anchored_days"]) == 1
    assert len(anchors["unanchored_days"]) == 2
    assert json.loads(json.dumps(v.as_json()))["verdict"] == "pass"


def test_a_sample_value_edited_fails_its_batchs_digest(made: Made, tmp_path: Path) -> None:
    table = pq.read_table(pa.BufferReader(made["files"]["samples.parquet"]))
    # the first numeric sample of a v2 batch, its value changed
    i = next(i for i, (b, x) in enumerate(zip(table["batch_id"].to_pylist(),
                                              table["value"].to_pylist(), strict=True))
             if b is not None and x is not None)  # fmt: skip
    batch_id = table["batch_id"][i].as_py()
    values = table["value"].to_pylist()
    values[i] += 1.0
    table = table.set_column(table.schema.get_field_index("value"), "value",
                             pa.array(values, pa.float64()))  # fmt: skip
    files = {**made["files"], "samples.parquet": parquet(table)}
    v = check_bundle(zipped(tmp_path, files, fix=("samples.parquet",)), made["trust"])
    assert v.check("manifest").status == "ok"  # the attacker fixed the manifest
    reasons = failed(v, "batches")
    ledger = pq.read_table(pa.BufferReader(made["files"]["ledger.parquet"])).to_pylist()
    (b,) = [r for r in ledger if r["batch_id"] == batch_id]
    (reason,) = reasons
    assert f"{b['gateway']} boot {b['boot']} seq {b['seq']}: a stored sample" in reason
    assert v.verdict == "fail"
    assert v.text[1].startswith("FAIL")
    assert "batches" in v.text[1]


def test_a_member_changed_without_fixing_the_manifest_fails_it(made: Made, tmp_path: Path) -> None:
    data = made["files"]["production.json"].replace(b"120.0", b"150.0")
    assert data != made["files"]["production.json"]
    extra = {**made["files"], "production.json": data, "notes.txt": b"unlisted"}
    v = check_bundle(zipped(tmp_path, extra), made["trust"])
    reasons = failed(v, "manifest")
    assert any("production.json" in r and "SHA-256" in r for r in reasons)
    assert any("notes.txt" in r for r in reasons)


def test_a_report_resigned_with_a_key_not_in_the_trust_file_fails(
    made: Made, tmp_path: Path
) -> None:
    doc = json.loads(made["files"]["report.json"])
    doc["kpis"][0]["value"] = 99.9  # what the new signer wanted to say
    sign(doc, Ed25519PrivateKey.generate())
    report = json.dumps(doc, ensure_ascii=False).encode()
    files = {**made["files"], "report.json": report}
    manifest = json.loads(files["manifest.json"])
    manifest["report"].update(sha256=hashlib.sha256(report).hexdigest(),
                              key_id=doc["signature"]["key_id"],
                              signature=doc["signature"]["value"])  # fmt: skip
    files["manifest.json"] = json.dumps(manifest).encode()
    v = check_bundle(zipped(tmp_path, files, fix=("report.json",)), made["trust"])
    assert v.check("manifest").status == "ok"
    (reason,) = failed(v, "report_signature")
    assert f"signed by key {doc['signature']['key_id']}, which is not in the trust file" in reason


def test_a_ledger_row_removed_is_a_gap_with_its_time_and_devices(
    made: Made, tmp_path: Path
) -> None:
    table = pq.read_table(pa.BufferReader(made["files"]["ledger.parquet"]))
    gone = pc.and_(pc.equal(table["gateway"], "gw-01"),
                   pc.and_(pc.equal(table["boot"], 2), pc.equal(table["seq"], 3)))  # fmt: skip
    assert pc.sum(gone).as_py() == 1
    files = {**made["files"], "ledger.parquet": parquet(table.filter(pc.invert(gone)))}
    v = check_bundle(zipped(tmp_path, files, fix=("ledger.parquet",)), made["trust"])
    reasons = failed(v, "chain")
    assert any("boot 2 seq 4" in r and "batch boot 2 seq 3 not stored" in r for r in reasons)
    (gap,) = v.check("chain").details["gaps"]
    assert (gap["gateway"], gap["boot"], gap["seq"], gap["missing"]) == (f"{ENT}/p1/gw-01", 2, 4, 1)
    assert gap["seconds"] == 120  # seq 2 sent at noon + 2 min, seq 4 at noon + 4 min
    assert gap["devices"] == ["cnc-01"]
    assert "cnc-01" in gap["equipment"]
    # its samples name a batch the ledger no longer holds
    assert any("its ledger row was removed" in r for r in failed(v, "batches"))


def test_a_token_swapped_for_another_days_fails_the_anchor(made: Made, tmp_path: Path) -> None:
    other = request_token(made["tsa"].url, hashlib.sha256(b"another day's root").digest())
    anchors = json.loads(made["files"]["anchors.json"])
    (day,) = [a for a in anchors if a["tokens"]]
    day["tokens"][0]["token"] = base64.b64encode(other.response).decode()
    files = {**made["files"], "anchors.json": json.dumps(anchors).encode()}
    v = check_bundle(zipped(tmp_path, files, fix=("anchors.json",)), made["trust"])
    reasons = failed(v, "anchors")
    assert any(r.startswith(f"{day['day']}: the token of CN=A test TSA") and "not this root" in r
               for r in reasons)  # fmt: skip
    # with no valid token, the day's period batches are not proven in time either
    assert any("no valid time-stamp token" in r for r in reasons)


def test_a_trust_file_without_the_gateways_key_fails_its_batches(
    made: Made, tmp_path: Path
) -> None:
    trust = copy.deepcopy(made["trust"])
    trust["gateways"] = [g for g in trust["gateways"] if not g["gateway"].endswith("/gw-02")]
    v = check_bundle(zipped(tmp_path, made["files"]), trust)
    reasons = failed(v, "batches")
    assert len(reasons) == 3  # gw-02's seq 1..3
    assert all(r.startswith(f"{ENT}/p1/gw-02 boot 1 seq") and "no public key of the gateway"
               in r for r in reasons)  # fmt: skip


def test_the_checks_use_no_database(made: Made, tmp_path: Path, monkeypatch: Any) -> None:
    """No connection string in reach, and psycopg refusing to connect: the same verdict."""
    import psycopg  # noqa: PLC0415

    def refuse(*_: Any, **__: Any) -> Any:
        raise AssertionError("the offline check tried to connect to a database")

    monkeypatch.setattr(psycopg, "connect", refuse)
    monkeypatch.setattr(psycopg.Connection, "connect", refuse)
    for name in [n for n in os.environ if n.startswith("PG") or n.endswith("DSN")]:
        monkeypatch.delenv(name)
    path = zipped(tmp_path, made["files"])
    trust = tmp_path / "trust.json"
    trust.write_text(made["trust_text"])
    assert check_bundle(path, trust).verdict == "pass"


# --- issue 17's tampering list, the rest of it (helper B) ---------------------------------


def _without(table: pa.Table, batch_id: int) -> pa.Table:
    ids = table["batch_id"]
    return table.filter(pc.or_kleene(pc.is_null(ids), pc.not_equal(ids, batch_id)))


def test_a_batch_deleted_whole_is_a_gap_in_the_chain(made: Made, tmp_path: Path) -> None:
    ledger = pq.read_table(pa.BufferReader(made["files"]["ledger.parquet"]))
    (row,) = [r for r in ledger.to_pylist()
              if (r["gateway"], r["boot"], r["seq"]) == ("gw-01", 2, 3)]  # fmt: skip
    files = dict(made["files"])
    files["ledger.parquet"] = parquet(_without(ledger, row["batch_id"]))
    for name in ("samples.parquet", "samples_aside.parquet"):
        table = pq.read_table(pa.BufferReader(files[name]))
        files[name] = parquet(_without(table, row["batch_id"]))
    gone = pq.read_table(pa.BufferReader(made["files"]["samples.parquet"]))["batch_id"]
    assert pc.sum(pc.equal(gone, row["batch_id"])).as_py() > 0  # it had samples to delete
    fix = ("ledger.parquet", "samples.parquet", "samples_aside.parquet")
    v = check_bundle(zipped(tmp_path, files, fix=fix), made["trust"])
    assert v.check("manifest").status == "ok"
    assert v.check("batches").status == "ok"  # what is left is what the gateways signed
    reasons = failed(v, "chain")
    assert any(r.startswith(f"{ENT}/p1/gw-01 boot 2 seq 4")
               and "batch boot 2 seq 3 not stored" in r for r in reasons)  # fmt: skip
    (gap,) = v.check("chain").details["gaps"]
    assert (gap["boot"], gap["seq"], gap["missing"], gap["devices"]) == (2, 4, 1, ["cnc-01"])


def test_a_batch_resigned_with_a_key_not_enrolled_fails_naming_it(
    made: Made, tmp_path: Path
) -> None:
    ledger = pq.read_table(pa.BufferReader(made["files"]["ledger.parquet"]))
    rows = ledger.to_pylist()
    (i,) = [i for i, r in enumerate(rows) if (r["gateway"], r["boot"], r["seq"]) == ("gw-02", 1, 2)]
    stranger = Ed25519PrivateKey.generate()  # the key of whoever rewrote the ledger
    rows[i]["signature"] = stranger.sign(rows[i]["digest"])
    files = {**made["files"], "ledger.parquet": parquet(pa.Table.from_pylist(rows, ledger.schema))}
    v = check_bundle(zipped(tmp_path, files, fix=("ledger.parquet",)), made["trust"])
    assert v.check("manifest").status == "ok"
    (reason,) = failed(v, "batches")
    assert reason.startswith(f"{ENT}/p1/gw-02 boot 1 seq 2: the signature does not verify "
                             "under key")  # fmt: skip
    assert v.check("batches").details["batches_walked"] == 1


def _anchored_day(made: Made) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    anchors = json.loads(made["files"]["anchors.json"])
    (day,) = [a for a in anchors if a["tokens"]]
    return anchors, day


def test_a_day_rewritten_after_its_time_stamp_fails_its_anchor(made: Made, tmp_path: Path) -> None:
    from ingest_server.evidence import merkle  # noqa: PLC0415

    anchors, day = _anchored_day(made)
    leaves = pq.read_table(pa.BufferReader(made["files"]["anchor_leaves.parquet"]))
    rows = leaves.to_pylist()
    mine = sorted((r for r in rows if str(r["day"]) == day["day"]), key=lambda r: r["index"])
    mine[1]["digest"] = hashlib.sha256(b"a batch the gateway never sent").digest()
    # the rewriter recomputes the root from the leaves, but cannot get the TSA to re-stamp
    # the day in the past: the old token stays
    day["root"] = base64.b64encode(merkle.root([r["digest"] for r in mine])).decode()
    files = {
        **made["files"],
        "anchors.json": json.dumps(anchors).encode(),
        "anchor_leaves.parquet": parquet(pa.Table.from_pylist(rows, leaves.schema)),
    }
    v = check_bundle(zipped(tmp_path, files, fix=("anchors.json", "anchor_leaves.parquet")),
                     made["trust"])  # fmt: skip
    assert v.check("manifest").status == "ok"
    reasons = failed(v, "anchors")
    assert any(r.startswith(f"{day['day']}: the token of") for r in reasons)
    assert any(r.startswith(day["day"]) and "no valid time-stamp token" in r for r in reasons)
    assert day["day"] in v.check("anchors").details["unanchored_days"]


def test_a_token_from_a_tsa_not_in_the_trust_file_fails_naming_the_day(
    made: Made, tmp_path: Path
) -> None:
    from tests.harness.tsa import Tsa  # noqa: PLC0415

    anchors, day = _anchored_day(made)
    other = Tsa(tmp_path / "tsa-b", "B").start()  # a genuine TSA, but not the verifier's
    try:
        token = request_token(other.url, base64.b64decode(day["root"]))
    finally:
        other.stop()
    day["tokens"][0]["token"] = base64.b64encode(token.response).decode()
    files = {**made["files"], "anchors.json": json.dumps(anchors).encode()}
    v = check_bundle(zipped(tmp_path, files, fix=("anchors.json",)), made["trust"])
    assert v.check("manifest").status == "ok"
    reasons = failed(v, "anchors")
    assert any(r.startswith(f"{day['day']}: the token of") and "does not verify under a TSA "
               "of the trust file" in r for r in reasons)  # fmt: skip
    assert day["day"] in v.check("anchors").details["unanchored_days"]


# --- libsodium for the batch signatures (helper P) -----------------------------------------

_L = 2**252 + 27742317777372353535851937790883648493  # the order of Ed25519's base point


def test_a_malleated_signature_s_plus_l_fails_naming_the_batch(made: Made, tmp_path: Path) -> None:
    """S + L verifies the same equation; both libsodium and OpenSSL refuse a non-canonical
    S, and so does the check (the finding is check_batch's, worded by cryptography's)."""
    ledger = pq.read_table(pa.BufferReader(made["files"]["ledger.parquet"]))
    rows = ledger.to_pylist()
    (i,) = [i for i, r in enumerate(rows) if (r["gateway"], r["boot"], r["seq"]) == ("gw-01", 2, 2)]
    sig = rows[i]["signature"]
    s = int.from_bytes(sig[32:], "little") + _L
    rows[i]["signature"] = sig[:32] + s.to_bytes(32, "little")
    files = {**made["files"], "ledger.parquet": parquet(pa.Table.from_pylist(rows, ledger.schema))}
    v = check_bundle(zipped(tmp_path, files, fix=("ledger.parquet",)), made["trust"])
    (reason,) = failed(v, "batches")
    assert reason.startswith(f"{ENT}/p1/gw-01 boot 2 seq 2: the signature does not verify "
                             "under key")  # fmt: skip


def test_a_signature_libsodium_refuses_is_verified_again_with_cryptography(
    made: Made, tmp_path: Path, monkeypatch: Any
) -> None:
    """libsodium is the stricter: what it refuses is re-checked by cryptography (OpenSSL)
    before it is reported, so a libsodium that refused everything changes no verdict."""
    from ingest_server.evidence.offline import signatures  # noqa: PLC0415

    monkeypatch.setattr(signatures, "_sodium_verify", lambda signed, public: False)
    v = check_bundle(zipped(tmp_path, made["files"]), made["trust"])
    assert v.verdict == "pass", v.as_json()
    details = v.check("batches").details
    assert details["batches_walked"] == details["v2_batches"] > 0


def test_a_report_whose_anchoring_block_the_bundle_contradicts_fails(
    made: Made, tmp_path: Path
) -> None:
    """The enterprise re-signs its report (with its own, trusted key) saying a day was
    anchored under a root the bundle does not hold: the anchors check names the day."""
    doc = json.loads(made["files"]["report.json"])
    (day,) = [d for d in doc["anchoring"]["days"] if d["state"] == "anchored"]
    day["root"] = "ab" * 32
    v = resigned(made, tmp_path, doc)
    codes = [r.code for r in v.check("anchors").reasons]
    assert codes == ["report_anchoring"], v.check("anchors").reasons
    (reason,) = v.check("anchors").reasons
    assert reason.text_en.startswith(f"{day['day']}: the report says anchored (root abab")
    assert "报告称已锚定" in reason.text
    clean = check_bundle(zipped(tmp_path, made["files"]), made["trust"]).check("anchors")
    assert clean.status == "ok"
    assert clean.details["report_open_days"] == []
