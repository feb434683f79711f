"""Each KPI states the share of its samples that its gateway signed (contract v2), the
report sums the period's samples by gateway and origin, both renderings show it, and
verify recomputes it from the raw samples (a real PostgreSQL).

The plant of tests/harness/kpi.py on two gateways: gw-01 speaks contract v1 (HMAC) the
whole time and reads cnc-01 and the sub-meter; gw-02 reads cnc-02 and the main meter and
moves to contract v2 at local midnight between the two days: its samples from then on
name the gateway-signed batch they came in (`samples.batch_id`, migration 0007). Every
expected figure is counted here from the generated samples, not from the database.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from openpyxl import load_workbook  # type: ignore[import-untyped,unused-ignore]

from edge_agent.contract.wire import encode_batch, encode_message
from ingest_server.db.schema import migrate
from ingest_server.evidence.canonical import sign
from ingest_server.evidence.keys import load_or_create_key
from ingest_server.evidence.render_html import render_html
from ingest_server.evidence.render_xlsx import render_xlsx
from ingest_server.evidence.report import Request, make_report
from ingest_server.evidence.verify import verify
from ingest_server.ingest.check import DataItem, Group
from ingest_server.ingest.payload import parse_message
from ingest_server.kpi.attestation import attest
from ingest_server.kpi.records import Inputs
from ingest_server.kpi.results import Kpi
from ingest_server.repo.registry import Registry, import_registry
from tests.harness.ingest import KEY, open_store
from tests.harness.kpi import kpi_birth, kpi_registry, plant_samples, utc
from tests.harness.pg import PgServer

T0 = utc(2026, 11, 15, 16).timestamp()  # 2026-11-16 00:00 Asia/Shanghai
SWITCH = T0 + 86400  # 2026-11-17 00:00 local: gw-02 enrolled for contract v2
T1 = T0 + 2 * 86400
AS_OF = utc(2026, 11, 25, 12)
BOTH_DAYS = Request("hf", dt.date(2026, 11, 16), dt.date(2026, 11, 17))
V1_DAY = Request("hf", dt.date(2026, 11, 16), dt.date(2026, 11, 16))
V2_DAY = Request("hf", dt.date(2026, 11, 17), dt.date(2026, 11, 17))
GATEWAY_OF = {"cnc-01": "gw-01", "em-sub": "gw-01", "cnc-02": "gw-02", "em-main": "gw-02"}
# the registry's equipment and meters by the device they read (lathe-3, wash-1: none)
DEVICE_OF = {"cnc-01": "cnc-01", "cnc-02": "cnc-02", "em-main": "em-main", "em-sub": "em-sub"}
SAMPLES = plant_samples(5, T0, T1)


def two_gateways() -> Registry:
    d = kpi_registry().model_dump(by_alias=True, exclude_none=True)
    site = d["enterprises"][0]["sites"][0]
    site["gateways"] = [{"id": "gw-01"}, {"id": "gw-02"}]
    for item in site["equipment"] + site["meters"]:
        if item.get("device") in GATEWAY_OF:
            item["gateway"] = GATEWAY_OF[item["device"]]
    return Registry.model_validate(d)


def write_as(store: Any, gw: str, kind: str, payload: bytes) -> None:
    """One message of gateway `gw` stored as the consumer stores it (contract v1)."""
    origin, msg = parse_message(f"fe/v1/hf/p1/{gw}/{kind}", payload, key_of=lambda _o: KEY)
    group = Group()
    if kind == "data":
        group.data.append(DataItem(origin, msg, list(msg.samples), 0))  # type: ignore[union-attr, arg-type]
    else:
        group.births.append((origin, msg))  # type: ignore[arg-type]
    store.write(group)


def build_plant(dsn: str) -> None:
    migrate(dsn)
    with psycopg.connect(dsn) as conn:
        import_registry(conn, two_gateways(), {"gw-01": KEY, "gw-02": KEY})
    birth = json.loads(kpi_birth())
    del birth["sig"]
    store = open_store(dsn)
    try:
        for gw in ("gw-01", "gw-02"):
            body = dict(birth, gw=gw)
            body["devices"] = [d for d in birth["devices"] if GATEWAY_OF[d["id"]] == gw]
            write_as(store, gw, "birth", encode_message(body, KEY))
            mine = [x for x in SAMPLES if GATEWAY_OF[x.device] == gw]
            for seq, i in enumerate(range(0, len(mine), 2000), 1):
                chunk = mine[i : i + 2000]
                payload = encode_batch(
                    gw=gw, boot=1, seq=seq, sent=chunk[-1].ts, samples=chunk, key=KEY
                )
                write_as(store, gw, "data", payload)
    finally:
        store.conn.close()
    enroll_and_sign(dsn)


def enroll_and_sign(dsn: str) -> None:
    """gw-02 enrolled for v2 at SWITCH; its samples from then on stored from one signed
    batch (a ledger row with the fields of migration 0007: what the v2 ingest writes)."""
    public = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    with psycopg.connect(dsn) as conn:
        gid = conn.execute("SELECT gid FROM gateways WHERE id = 'gw-02'").fetchone()[0]  # type: ignore[index]
        conn.execute(
            "UPDATE gateways SET contract = 2, public_key = %s, enrolled_at = %s WHERE gid = %s",
            (public, dt.datetime.fromtimestamp(SWITCH, dt.UTC), gid),
        )
        switch = dt.datetime.fromtimestamp(SWITCH, dt.UTC)
        n = conn.execute(
            "SELECT count(*) FROM samples JOIN series USING (series_id) "
            "WHERE gid = %s AND ts >= %s",
            (gid, switch),
        ).fetchone()[0]  # type: ignore[index]
        batch_id = conn.execute(
            "INSERT INTO batches (gid, boot, seq, sent, received_at, samples, rejected, "
            "contract, prev, digest, signature, n_total) "
            "VALUES (%s, 2, 1, %s, %s, %s, 0, 2, %s, %s, %s, %s) RETURNING id",
            (gid, switch, switch, n, bytes(32), hashlib.sha256(b"gw-02").digest(),
             bytes(64), n),
        ).fetchone()[0]  # type: ignore[index]  # fmt: skip
        conn.execute(
            "UPDATE samples s SET batch_id = %(b)s, batch_pos = x.pos FROM ("
            " SELECT series_id, ts, row_number() OVER (ORDER BY ts, series_id) - 1 AS pos"
            " FROM samples JOIN series USING (series_id) WHERE gid = %(g)s AND ts >= %(t)s"
            ") x WHERE s.series_id = x.series_id AND s.ts = x.ts",
            {"b": batch_id, "g": gid, "t": switch},
        )


@pytest.fixture(scope="module")
def plant(pg_server: PgServer) -> Iterator[str]:
    """One plant for the module's tests (they only read it, or change it in a
    transaction they roll back)."""
    with pg_server.database() as dsn:
        build_plant(dsn)
        yield dsn


@pytest.fixture(scope="module")
def signed(plant: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    key_file = tmp_path_factory.mktemp("keys") / "k.pem"
    with psycopg.connect(plant) as conn:
        doc = make_report(conn, BOTH_DAYS, key=load_or_create_key(key_file), as_of=AS_OF)
    return doc, key_file


def truth(devices: set[str], start: float, end: float) -> tuple[int, int]:
    """(samples, gateway-signed) of the devices in [start, end), from the generated
    samples: each (device, tag, ts) once, as the samples key stores it."""
    keys = {(x.device, x.tag, x.ts) for x in SAMPLES if x.device in devices}
    inside = [k for k in keys if start <= k[2] < end]
    signed = [k for k in inside if GATEWAY_OF[k[0]] == "gw-02" and k[2] >= SWITCH]
    return len(inside), len(signed)


def by_id(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k["id"]: k for k in doc["kpis"]}


def test_each_kpi_states_the_share_of_its_samples_its_gateways_signed(
    signed: tuple[dict[str, Any], Path],
) -> None:
    doc, _ = signed
    kpis = by_id(doc)
    assert kpis["nc_rate_declared"]["attested"] is None  # the registry's word: no sample
    assert kpis["nc_rate_declared"]["samples"] is None
    checked = 0
    for k in doc["kpis"]:
        if k["id"] == "nc_rate_declared":
            continue
        devices = {DEVICE_OF[i] for i in k["inputs"] if i in DEVICE_OF}
        n, s = truth(devices, T0, T1)
        assert (k["samples"], k["samples_attested"]) == (n, s), k["id"]
        if n:
            assert k["attested"] == pytest.approx(s / n), k["id"]
            checked += 1
        else:
            assert k["attested"] is None, k["id"]
    assert checked >= 10
    # the main meter is gw-02's, signed from the second day on: half its samples or so
    n, s = truth({"em-main"}, T0, T1)
    assert 0.4 < s / n < 0.6
    assert kpis["energy_tce"]["attested"] == pytest.approx(s / n)
    assert kpis["energy_tce"]["inputs"] == ["em-main"]  # not the v1 sub-meter
    # OEE over both machines: cnc-01 on v1 throughout, cnc-02 signed on day two
    n, s = truth({"cnc-01", "cnc-02"}, T0, T1)
    assert kpis["oee"]["inputs"] == ["cnc-01", "cnc-02"]
    assert kpis["oee"]["attested"] == pytest.approx(s / n)
    assert 0.1 < s / n < 0.4


def test_the_report_sums_the_samples_by_gateway_and_contract(
    signed: tuple[dict[str, Any], Path],
) -> None:
    doc, _ = signed
    a = doc["attestation"]
    gw = {g["gateway"]: g for g in a["gateways"]}
    assert list(gw) == ["gw-01", "gw-02"]
    n1, _ = truth({"cnc-01", "em-sub"}, T0, T1)
    n2, s2 = truth({"cnc-02", "em-main"}, T0, T1)
    # the v1 gateway's samples are all marked not gateway-attested
    assert gw["gw-01"] == {"gateway": "gw-01", "site": "p1", "contract": 1, "samples": n1,
                           "attested": 0, "not_attested": n1, "share": 0.0}  # fmt: skip
    assert gw["gw-02"]["contract"] == 2
    assert (gw["gw-02"]["samples"], gw["gw-02"]["attested"]) == (n2, s2)
    assert gw["gw-02"]["not_attested"] == n2 - s2
    assert gw["gw-02"]["share"] == pytest.approx(s2 / n2)
    assert (a["samples"], a["attested"]) == (n1 + n2, s2)
    assert a["share"] == pytest.approx(s2 / (n1 + n2))


def test_a_kpi_over_v2_samples_only_is_fully_signed_and_over_v1_only_not(plant: str) -> None:
    with psycopg.connect(plant) as conn:
        v2 = by_id(make_report(conn, V2_DAY, key=None, as_of=AS_OF))
        v1_doc = make_report(conn, V1_DAY, key=None, as_of=AS_OF)
    v1 = by_id(v1_doc)
    for kid in ("energy_tce", "carbon_tco2", "consumption_electricity", "energy_per_unit"):
        n, _ = truth({"em-main"}, SWITCH, T1)
        assert n > 1000
        assert (v2[kid]["attested"], v2[kid]["samples"], v2[kid]["samples_attested"]) == (
            1.0, n, n,
        ), kid  # fmt: skip
        n, _ = truth({"em-main"}, T0, SWITCH)
        assert (v1[kid]["attested"], v1[kid]["samples"], v1[kid]["samples_attested"]) == (
            0.0, n, 0,
        ), kid  # fmt: skip
    # the day before gw-02 moved to v2 nothing is gateway-signed, whatever its contract now
    assert {k["attested"] for k in v1.values()} <= {0.0, None}
    assert {g["gateway"]: g["share"] for g in v1_doc["attestation"]["gateways"]} == {
        "gw-01": 0.0, "gw-02": 0.0,
    }  # fmt: skip


def test_verify_recomputes_the_share_and_names_an_edited_one(
    plant: str, signed: tuple[dict[str, Any], Path]
) -> None:
    doc, key_file = signed
    key = load_or_create_key(key_file)
    with psycopg.connect(plant) as conn:
        assert [c for c in verify(doc, conn=conn).checks if not c.ok] == []

    # the share edited, and the report signed again with the server's own key: the
    # signature holds, the recomputation from the raw samples does not
    forged = copy.deepcopy(doc)
    by_id(forged)["energy_tce"]["attested"] = 1.0
    gw02 = forged["attestation"]["gateways"][1]
    gw02["share"], gw02["attested"] = 1.0, gw02["samples"]
    sign(forged, key)
    with psycopg.connect(plant) as conn:
        v = verify(forged, conn=conn)
    assert v.signature_ok
    assert v.trusted
    bad = {c.item: (c.claimed, c.recomputed) for c in v.checks if not c.ok}
    assert set(bad) == {
        "kpi energy_tce attested",
        "attestation gateway p1/gw-02 attested",
        "attestation gateway p1/gw-02 share",
    }
    assert bad["kpi energy_tce attested"] == (1.0, by_id(doc)["energy_tce"]["attested"])
    assert [r.code for r in v.reasons] == ["figures_differ"]
    assert v.reasons[0].count == 3

    # the samples' origin changed after the report (their ledger link cut): the same
    # report no longer verifies, and the checks name the share
    with psycopg.connect(plant) as conn:
        conn.execute(
            "UPDATE samples SET batch_id = NULL, batch_pos = NULL WHERE series_id IN ("
            " SELECT series_id FROM series WHERE device = 'em-main')"
        )
        v = verify(doc, conn=conn)
        conn.rollback()
    bad = {c.item for c in v.checks if not c.ok}
    assert "kpi energy_tce attested" in bad
    assert "kpi energy_tce samples_attested" in bad
    assert "kpi oee attested" not in bad  # the machines' samples kept theirs
    assert not v.ok


def test_a_report_made_before_the_share_existed_still_verifies_and_renders(
    plant: str, signed: tuple[dict[str, Any], Path]
) -> None:
    doc, key_file = signed
    old = copy.deepcopy(doc)
    del old["attestation"]
    assert old["baseline"] is None
    for k in old["kpis"]:
        for f in ("attested", "samples", "samples_attested"):
            del k[f]
    sign(old, load_or_create_key(key_file))
    with psycopg.connect(plant) as conn:
        v = verify(old, conn=conn)
    assert v.ok
    assert v.reasons == []
    page = render_html(old)
    assert "网关签名数据占比" not in page
    assert "Data origin" not in page
    buf = io.BytesIO()
    render_xlsx(old, buf)
    cells = [c.value for ws in load_workbook(buf).worksheets for r in ws.iter_rows() for c in r]
    assert "网关签名数据占比 Gateway-signed share" not in cells


def test_html_and_xlsx_show_each_share_and_the_gateways(
    signed: tuple[dict[str, Any], Path],
) -> None:
    doc, _ = signed
    kpis = by_id(doc)
    tce = kpis["energy_tce"]
    page = render_html(doc)
    assert "网关签名数据占比" in page
    assert "Gateway-signed share" in page
    headline = page[page.index("Headline KPIs") : page.index("Data origin")]
    share = f"{tce['attested'] * 100:.1f}%"
    counts = f"{tce['samples_attested']:,} / {tce['samples']:,}"
    assert f'<td class="num">{share}<span class="en">{counts}</span></td>' in headline
    assert "rests on no samples" in headline  # the declared NC rate
    origin = page[page.index("Data origin") : page.index("<section", page.index("Data origin"))]
    assert "不证明传感器" in origin
    assert "does not prove that the sensor" in origin
    gw = {g["gateway"]: g for g in doc["attestation"]["gateways"]}
    assert "v1 HMAC" in origin
    assert "v2 Ed25519" in origin
    assert f"{gw['gw-02']['share'] * 100:.1f}%" in origin
    assert f"{gw['gw-01']['samples']:,}" in origin
    assert "0.0%" in origin  # gw-01: nothing gateway-signed

    buf = io.BytesIO()
    render_xlsx(doc, buf)
    wb = load_workbook(buf)
    summary = wb["概览 Summary"]
    rows = [[c.value for c in r] for r in summary.iter_rows()]
    head = next(r for r in rows if r[0] == "编号 ID")
    col = head.index("网关签名数据占比 Gateway-signed share")
    by_kpi = {r[0]: r for r in rows[rows.index(head) + 1 :] if r[0]}
    assert by_kpi["energy_tce"][col] == tce["attested"]
    assert by_kpi["nc_rate_declared"][col] is None
    signed_col = head.index("网关签名样本数 Gateway-signed samples")
    assert by_kpi["oee"][signed_col] == kpis["oee"]["samples_attested"]
    total = next(r for r in rows if r[0] == "网关签名数据占比 Gateway-signed share")
    assert total[1] == doc["attestation"]["share"]
    quality = [[c.value for c in r] for r in wb["数据质量 Data quality"].iter_rows()]
    at = quality[1].index("网关 Gateway")
    table = {r[at]: r[at : at + 7] for r in quality[2:] if r[at]}
    assert table["gw-01"] == ["gw-01", "p1", 1, gw["gw-01"]["samples"], 0,
                              gw["gw-01"]["samples"], 0.0]  # fmt: skip
    assert table["gw-02"][2:6] == [2, gw["gw-02"]["samples"], gw["gw-02"]["attested"],
                                   gw["gw-02"]["not_attested"]]  # fmt: skip


def test_a_kpi_that_does_not_say_where_its_samples_come_from_is_refused() -> None:
    day = dt.date(2026, 11, 16)
    inputs = Inputs({}, "discrete", day, day, AS_OF, [], [], [])
    with pytest.raises(ValueError, match=r"'new_kpi'.*EQUIPMENT_KPIS"):
        attest([Kpi(id="new_kpi")], inputs)
    assert attest([Kpi(id="oee")], inputs)[0].samples == 0
