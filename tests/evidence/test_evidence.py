"""Evidence reports end to end on a real PostgreSQL: make, sign, verify, and catch
tampering with the report, the raw samples or the derived rows; the CLI around them."""

from __future__ import annotations

import copy
import datetime as dt
import io
import json
import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest
from openpyxl import load_workbook

from ingest_server.cli.main import main
from ingest_server.evidence.keys import SigningKeyError, key_id, load_or_create_key
from ingest_server.evidence.render_html import render_html
from ingest_server.evidence.render_xlsx import render_xlsx
from ingest_server.evidence.report import Request, make_report
from ingest_server.evidence.verify import Verdict, verify
from ingest_server.kpi.engine import Parameters
from tests.evidence.test_canonical import legacy_sign
from tests.harness.ingest import batch, open_store, write
from tests.harness.kpi import plant_samples, prepare_kpi, store_samples, utc

T0 = utc(2026, 11, 15, 16).timestamp()
T1 = T0 + 2 * 86400
AS_OF = utc(2026, 11, 25, 12)
REQ = Request("hf", dt.date(2026, 11, 16), dt.date(2026, 11, 17))


@pytest.fixture
def plant(db: str) -> str:
    prepare_kpi(db)
    store_samples(db, plant_samples(11, T0, T1), 11)
    with psycopg.connect(db) as conn:
        conn.execute(
            "INSERT INTO production_entries (enterprise_id, period_from, period_to, output, "
            "value_added_10k_cny) VALUES ('hf', '2026-11-01', '2026-11-30', 30000, 600)"
        )
    return db


def by_id(doc: dict[str, Any]) -> dict[str, Any]:
    return {k["id"]: k for k in doc["kpis"]}


def codes(v: Verdict) -> list[str]:
    return [r.code for r in v.reasons]


def test_a_report_holds_every_kpi_and_verifies_against_the_raw_samples(
    plant: str, tmp_path: Path
) -> None:
    key = load_or_create_key(tmp_path / "k.pem")
    assert (tmp_path / "k.pem").stat().st_mode & 0o777 == 0o600
    with psycopg.connect(plant) as conn:
        doc = make_report(conn, REQ, key=key, as_of=AS_OF)
    k = by_id(doc)
    # declared: 2 NC of 3 key-process machines; the non-networked lathe can never be
    # measured; networking: 2 of 4 production machines deliver data
    assert k["nc_rate_declared"]["value"] == pytest.approx(200 / 3)
    assert k["nc_rate_declared"]["inputs"] == ["cnc-01", "cnc-02"]
    assert k["networking_rate"]["value"] == pytest.approx(50.0)
    assert k["nc_rate_measured"]["value"] <= k["nc_rate_declared"]["value"]
    for name in ("availability", "effectiveness", "quality_ratio", "oee", "energy_tce",
                 "carbon_tco2", "energy_per_unit", "energy_per_value_added"):  # fmt: skip
        assert k[name]["value"] is not None, name
        assert k[name]["value"] > 0, name
    oee = k["availability"]["value"] * k["effectiveness"]["value"] * k["quality_ratio"]["value"]
    assert k["oee"]["value"] == pytest.approx(oee / 1e4)
    # only the top-level meter counts; its tce and CO2 follow the tables
    meters = {m["id"]: m for m in doc["meters"]}
    assert k["energy_tce"]["inputs"] == ["em-main"]
    assert k["energy_tce"]["value"] == pytest.approx(meters["em-main"]["quantity"] * 0.1229 / 1000)
    assert meters["em-main"]["emission_factor"]["region"] == "anhui"
    assert k["carbon_tco2"]["value"] == pytest.approx(meters["em-main"]["quantity"] * 0.6553 / 1000)
    # two days of a 30-day entry
    assert doc["production"][0]["share"] == pytest.approx(2 / 30)
    assert k["energy_per_unit"]["denominator"] == pytest.approx(2000)
    assert doc["digest"]["rows"] > 100
    # one contract-v1 gateway: no sample is gateway-signed, and the report says so
    assert {x["attested"] for x in doc["kpis"]} == {0.0, None}
    assert k["oee"]["samples"] > 1000
    assert k["oee"]["samples_attested"] == 0
    [gw] = doc["attestation"]["gateways"]
    assert (gw["gateway"], gw["contract"], gw["attested"], gw["share"]) == ("gw-01", 1, 0, 0.0)
    assert gw["not_attested"] == gw["samples"] == doc["received"]["samples"]
    assert doc["quality"]["counter_anomalies"]
    assert doc["quality"]["gaps"]

    with psycopg.connect(plant) as conn:
        verdict = verify(doc, conn=conn)
    assert verdict.signature_ok
    assert verdict.trusted  # the key is in signing_keys
    assert verdict.digest_ok
    assert [c for c in verdict.checks if not c.ok] == []
    assert len(verdict.checks) == len(doc["kpis"])
    assert verdict.ok
    assert verdict.reasons == []
    assert doc["signature"]["canonicalization"] == "RFC8785"
    assert doc["notices"] == []  # a complete period
    assert doc["received"]["samples"] > 1000


def test_tampering_is_detected(plant: str, tmp_path: Path) -> None:
    key = load_or_create_key(tmp_path / "k.pem")
    with psycopg.connect(plant) as conn:
        doc = make_report(conn, REQ, key=key, as_of=AS_OF)

    # 1. a figure changed in the report: the signature fails
    forged = copy.deepcopy(doc)
    by_id(forged)["oee"]["value"] += 5
    assert not verify(forged).signature_ok
    assert codes(verify(forged, trusted=key.public_key())) == ["signature_invalid"]

    # 2. ... and re-signed with another key: not a key of this server
    other = load_or_create_key(tmp_path / "other.pem")
    from ingest_server.evidence.canonical import sign  # noqa: PLC0415

    sign(forged, other)
    assert verify(forged).signature_ok  # self-consistent ...
    assert not verify(forged).trusted  # ... but nobody trusts that key
    with psycopg.connect(plant) as conn:
        v = verify(forged, conn=conn)
    assert not v.ok
    assert "not among this server's signing keys" in v.signature
    # a valid signature by a key nobody trusts; the oee figure differs from the data
    assert codes(v) == ["key_untrusted", "figures_differ"]
    assert not verify(forged, trusted=key.public_key()).signature_ok
    assert codes(verify(forged, trusted=key.public_key())) == ["key_untrusted"]

    # 3. a raw sample changed after the report: the recomputation differs
    with psycopg.connect(plant) as conn:
        conn.execute(
            "UPDATE samples SET value = value + 500 WHERE (series_id, ts) = ("
            " SELECT s.series_id, s.ts FROM samples s JOIN series se USING (series_id)"
            " WHERE se.device = 'em-main' AND s.ts > '2026-11-16T04:00Z' ORDER BY s.ts LIMIT 1)"
        )
    with psycopg.connect(plant) as conn:
        v = verify(doc, conn=conn)
    assert v.signature_ok
    bad = {c.item for c in v.checks if not c.ok}
    assert "kpi energy_tce" in bad
    assert not v.ok
    # not late data: a sample the server held at issue changed
    assert codes(v) == ["samples_changed", "figures_differ"]
    assert v.reasons[1].count == len(bad)


def test_changed_derived_rows_show_in_the_digest(plant: str, tmp_path: Path) -> None:
    with psycopg.connect(plant) as conn:
        doc = make_report(conn, REQ, key=load_or_create_key(tmp_path / "k.pem"), as_of=AS_OF)
        conn.execute(
            "UPDATE state_intervals SET state = 'RUNNING' WHERE ctid = ("
            " SELECT ctid FROM state_intervals WHERE state = 'DOWN'"
            " AND start > '2026-11-16T02:00Z' AND start < '2026-11-17T00:00Z' LIMIT 1)"
        )
        conn.commit()
        v = verify(doc, conn=conn)
    assert v.digest_ok is False
    assert [c for c in v.checks if not c.ok] == []  # the raw samples still say DOWN
    assert not v.ok
    assert codes(v) == ["derived_changed"]
    # a report made from the altered rows: its figures are not those of the raw samples,
    # which did not change, and nothing arrived late
    with psycopg.connect(plant) as conn:
        doc = make_report(conn, REQ, key=load_or_create_key(tmp_path / "k.pem"), as_of=AS_OF)
        v = verify(doc, conn=conn)
    assert codes(v) == ["figures_differ"]
    assert v.digest_ok


def test_baseline_change_and_partial_period(plant: str) -> None:
    req = Request(
        "hf",
        dt.date(2026, 11, 17),
        dt.date(2026, 11, 20),
        baseline_from=dt.date(2026, 11, 16),
        baseline_to=dt.date(2026, 11, 16),
        params=Parameters(coverage_threshold=0.5),
    )
    with psycopg.connect(plant) as conn:
        doc = make_report(conn, req, key=None, as_of=utc(2026, 11, 17, 4, 30))
    assert doc["period"]["partial"] is True
    assert doc["period"]["as_of"] == "2026-11-17T04:30:00Z"
    assert "signature" not in doc
    k = by_id(doc)
    base = {b["id"]: b for b in doc["baseline"]["kpis"]}
    cur, was = k["energy_per_unit"]["value"], base["energy_per_unit"]["value"]
    assert k["energy_per_unit_change"]["value"] == pytest.approx((cur - was) / was * 100)
    # 12.5 h of the period passed (local 00:00 to 12:30): the equipment's calendar time
    eq = {e["id"]: e for e in doc["equipment"]}
    assert eq["cnc-01"]["time"]["calendar_s"] == pytest.approx(12.5 * 3600)
    assert doc["parameters"]["coverage_threshold"] == 0.5


def test_late_data_is_told_from_changed_samples(db: str, tmp_path: Path) -> None:
    """A report made before its period ends (as the console's "today" used to) fails
    verification once the rest of the data arrives, and the verdict says so: late data,
    not changed samples. A legacy report (no raw-sample tally) cannot tell them apart."""
    prepare_kpi(db)
    cut = T0 + 20 * 3600
    samples = plant_samples(11, T0, T1)
    store_samples(db, [x for x in samples if x.ts < cut], 11)
    key = load_or_create_key(tmp_path / "k.pem")
    with psycopg.connect(db) as conn:
        doc = make_report(conn, REQ, key=key, as_of=dt.datetime.fromtimestamp(cut, dt.UTC))
        assert doc["period"]["partial"] is True
        # the report says on its face that later data will change it
        assert [n["code"] for n in doc["notices"]] == ["partial_period"]
        assert "will change the figures" in doc["notices"][0]["text_en"]
        assert "会改变数值" in doc["notices"][0]["text"]
        assert verify(doc, conn=conn).ok  # nothing late yet
    # ... and so do its renderings
    assert doc["notices"][0]["text_en"] in render_html(doc)
    buf = io.BytesIO()
    render_xlsx(doc, buf)
    cells = [c.value for row in load_workbook(buf).worksheets[0].iter_rows() for c in row]
    assert "注意 Notice" in cells
    assert doc["notices"][0]["text"] in cells

    late = [x for x in samples if x.ts >= cut]
    store = open_store(db)
    try:  # the rest, as a gateway back online delivers it (later batches)
        for seq, i in enumerate(range(0, len(late), 500), 1000):
            write(store, ("data", batch(seq, late[i : i + 500])))
    finally:
        store.conn.close()

    with psycopg.connect(db) as conn:
        v = verify(doc, conn=conn)
        assert not v.ok
        assert codes(v)[0] == "late_data"
        assert "samples_changed" not in codes(v)
        assert v.reasons[0].count is not None
        assert v.reasons[0].count > 0
        assert "before its period ended" in v.reasons[0].message

        old = {k: x for k, x in doc.items() if k not in ("signature", "received", "notices")}
        legacy = legacy_sign(old, key)
        v = verify(legacy, conn=conn)
    assert v.trusted  # the legacy form still verifies its signature against signing_keys
    assert codes(v)[0] == "rows_changed"
    assert "late data is likely" in v.reasons[0].message


def run_cli(*argv: str) -> int:
    return main(list(argv))


def test_cli_report_verify_keys_and_production(
    plant: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "keys" / "report-signing.pem"
    out = tmp_path / "r.json"
    assert run_cli("production", "add", "--dsn", plant, "--enterprise", "hf", "--from",
                   "2026-11-16", "--to", "2026-11-16", "--output", "900") == 0  # fmt: skip
    assert run_cli("production", "add", "--dsn", plant, "--enterprise", "nobody", "--from",
                   "2026-11-16", "--to", "2026-11-16", "--output", "1") == 2  # fmt: skip
    assert "no enterprise 'nobody'" in capsys.readouterr().err
    assert run_cli("production", "add", "--dsn", plant, "--enterprise", "hf", "--from",
                   "2026-11-16", "--to", "2026-11-15", "--output", "1") == 2  # fmt: skip
    assert run_cli("report", "--dsn", plant, "--enterprise", "hf", "--from", "2026-11-16",
                   "--to", "2026-11-17", "--out", str(out), "--signing-key", str(key),
                   "--as-of", "2026-11-25T12:00:00Z", "--html", str(tmp_path / "r.html"),
                   "--xlsx", str(tmp_path / "r.xlsx")) == 0  # fmt: skip
    doc = json.loads(out.read_text())
    with psycopg.connect(plant) as conn:  # an issued, signed report is kept on record
        kept = conn.execute("SELECT id::text, created_by, document FROM reports").fetchall()
    assert [(k[0], json.loads(k[2])) for k in kept] == [(doc["report_id"], doc)]
    assert kept[0][1].startswith("cli:")
    page = (tmp_path / "r.html").read_text()
    assert "测试企业" in page
    assert doc["signature"]["key_id"] in page
    assert (tmp_path / "r.xlsx").read_bytes()[:2] == b"PK"
    assert len(doc["production"]) == 2
    assert run_cli("keys", "export", "--signing-key", str(key), "--out",
                   str(tmp_path / "pub.pem")) == 0  # fmt: skip
    capsys.readouterr()
    # signature only, with the exported key
    assert run_cli("verify", str(out), "--public-key", str(tmp_path / "pub.pem")) == 0
    assert "VERIFIED (signature only)" in capsys.readouterr().out
    # no trusted key at all: not verified, and it says what to pass
    assert run_cli("verify", str(out)) == 3
    assert "--public-key" in capsys.readouterr().out
    # full recomputation
    assert run_cli("verify", str(out), "--dsn", plant) == 0
    text = capsys.readouterr().out
    assert "kpi oee" in text
    assert "MISMATCH" not in text
    assert "VERIFIED" in text
    # a tampered file
    doc["kpis"][0]["value"] = 99.0
    out.write_text(json.dumps(doc))
    assert run_cli("verify", str(out), "--dsn", plant) == 3
    text = capsys.readouterr().out
    assert "reason    signature_invalid: INVALID: the signature does not match" in text
    assert "NOT VERIFIED: signature_invalid" in text
    assert run_cli("verify", str(out), "--dsn", plant, "--json") == 3
    verdict = json.loads(capsys.readouterr().out)
    assert verdict["reasons"][0]["code"] == "signature_invalid"
    assert verdict["ok"] is False
    assert run_cli("report", "--dsn", plant, "--enterprise", "nope", "--from", "2026-11-16",
                   "--to", "2026-11-17", "--unsigned") == 2  # fmt: skip
    assert "no enterprise 'nope'" in capsys.readouterr().err
    assert run_cli("report", "--dsn", plant, "--enterprise", "hf", "--from", "2026-11-16",
                   "--to", "2026-11-17", "--energy-factors", "gbt-1990") == 2  # fmt: skip
    assert "no energy coefficient table 'gbt-1990'" in capsys.readouterr().err


def test_the_signing_key_is_made_once_and_kept_private(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "report-signing.pem"
    barrier = threading.Barrier(8)
    ids: list[str] = []

    def first_start() -> None:
        barrier.wait()
        ids.append(key_id(load_or_create_key(path).public_key()))

    threads = [threading.Thread(target=first_start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(ids) == 8
    assert len(set(ids)) == 1  # everyone uses the one key on disk
    assert ids[0] == key_id(load_or_create_key(path).public_key())
    assert path.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["report-signing.pem"]
    path.chmod(0o644)
    with pytest.raises(SigningKeyError, match="chmod 600"):
        load_or_create_key(path)
    path.chmod(0o600)
    path.write_text("not a key")
    with pytest.raises(SigningKeyError, match="not a PEM private key"):
        load_or_create_key(path)
