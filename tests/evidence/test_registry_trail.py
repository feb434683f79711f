"""Every change `registry import` makes to the declared registry is on a trail the report
signs and the offline verifier sees (issue 17): equipment attributes in equipment_audit
(as an edit through the API), the rest in registry_audit (migration 0010).

The plant is test_offline_kpi's. Before its report, an import renames the process (a
registry edit the report signs); after it, an import takes away the process's key_process
(which moves the NC rate) and sets the machine's nc back (the API edit of test_bundle's
plant undone). A bundle made then must still pass for the report made before: the
verifier rolls registry.json back by both trails.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ingest_server.evidence import bundle as evidence_bundle
from ingest_server.evidence.offline import check_bundle
from ingest_server.repo.registry import Registry, import_with_trail, load_registry
from ingest_server.repo.registry_model import DeclarationDef
from tests.evidence.test_bundle import _make
from tests.evidence.test_ledger import run
from tests.evidence.test_offline import failed, zipped
from tests.evidence.test_offline_kpi import _World
from tests.harness.ingest import small_registry
from tests.harness.tsa import Tsa
from tests.ingest.test_registry import DEMO

Made = dict[str, Any]


def _changed(reg: Registry, *, process_name: str | None = None, key: bool | None = None,
             nc: bool | None = None, signatory: str | None = None) -> Registry:  # fmt: skip
    """`reg` with its first enterprise's first process and first machine changed, and its
    declaration signed by `signatory`."""
    ent = reg.enterprises[0]
    if signatory is not None:
        ent = ent.model_copy(update={"declaration": DeclarationDef(signatory=signatory,
                                                                   position="总经理")})  # fmt: skip
    p = ent.processes[0]
    p = p.model_copy(update={k: v for k, v in (("name", process_name), ("key", key))
                             if v is not None})  # fmt: skip
    site = ent.sites[0]
    e = site.equipment[0]
    e = e.model_copy(update={} if nc is None else {"nc": nc})
    site = site.model_copy(update={"equipment": [e, *site.equipment[1:]]})
    ent = ent.model_copy(update={"processes": [p, *ent.processes[1:]],
                                 "sites": [site, *ent.sites[1:]]})  # fmt: skip
    return Registry.model_validate(reg.model_copy(update={"enterprises": [ent]}).model_dump())


def _trails(conn: psycopg.Connection) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    eq = conn.execute("SELECT equipment_id, field, old, new, account, note, at "
                      "FROM equipment_audit ORDER BY id").fetchall()  # fmt: skip
    reg = conn.execute("SELECT kind, entity_id, field, old, new, account, note, at "
                       "FROM registry_audit ORDER BY id").fetchall()  # fmt: skip
    return eq, reg


# -- the import writes the trail -----------------------------------------------------------


def test_a_reimport_that_flips_key_process_and_nc_writes_who_when_old_new(db: str) -> None:
    reg = load_registry(DEMO)
    ent = reg.enterprises[0]
    process = next(p for p in ent.processes if p.key)
    machine = ent.sites[0].equipment[0]
    with psycopg.connect(db) as conn:
        _, n = import_with_trail(conn, reg, {}, account="first")
        assert n == 0  # the import that creates the enterprise: no registry to change
        assert _trails(conn) == ([], [])
        flipped = reg.model_copy(update={"enterprises": [ent.model_copy(update={
            "processes": [p.model_copy(update={"key": False}) if p.id == process.id else p
                          for p in ent.processes],
            "sites": [ent.sites[0].model_copy(update={"equipment": [
                e.model_copy(update={"nc": not e.nc}) if e.id == machine.id else e
                for e in ent.sites[0].equipment]})],
        })]})  # fmt: skip
        before = conn.execute("SELECT now()").fetchone()
        conn.commit()
        _, n = import_with_trail(conn, flipped, {}, account="cli:alice", note="re-survey")
        assert n == 2
        eq, others = _trails(conn)
        assert [r[:6] for r in eq] == [
            (machine.id, "nc", machine.nc, not machine.nc, "cli:alice", "re-survey")
        ]
        assert [r[:7] for r in others] == [
            ("process", process.id, "key_process", True, False, "cli:alice", "re-survey")
        ]
        assert before is not None
        assert eq[0][6] > before[0]
        assert others[0][7] == eq[0][6]
        # the same file again: nothing changed, nothing written
        _, n = import_with_trail(conn, flipped, {}, account="cli:alice")
        assert n == 0
        assert _trails(conn) == (eq, others)
        # a machine removed and a meter's unit changed: rows too
        site = flipped.enterprises[0].sites[0]
        fewer = flipped.model_copy(update={"enterprises": [flipped.enterprises[0].model_copy(
            update={"sites": [site.model_copy(update={"equipment": [
                e for e in site.equipment if e.id != machine.id]})]})]})  # fmt: skip
        _, n = import_with_trail(conn, fewer, {}, account="cli:bob")
        _, others = _trails(conn)
        (removed,) = others[1:]
        assert removed[:3] == ("equipment", machine.id, "*")
        assert removed[4] is None
        assert removed[3]["nc"] is (not machine.nc)
        assert removed[5] == "cli:bob"


def test_the_cli_import_takes_account_and_note(db: str, tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(DEMO.read_text(encoding="utf-8"), encoding="utf-8")
    code, out = run("registry", "import", str(path), "--dsn", db)
    assert code == 0, out
    text = DEMO.read_text(encoding="utf-8")
    zone = next(line for line in text.splitlines() if "timezone:" in line)
    path.write_text(text.replace(zone, zone.split(":")[0] + ": Asia/Urumqi"), encoding="utf-8")
    code, out = run("registry", "import", str(path), "--dsn", db, "--account", "ops-3",
                    "--note", "the site moved")  # fmt: skip
    assert code == 0, out
    assert "1 change(s) on the edit trail as ops-3" in str(out)
    with psycopg.connect(db) as conn:
        _, others = _trails(conn)
    assert [r[:7] for r in others] == [
        ("site", others[0][1], "timezone", "Asia/Shanghai", "Asia/Urumqi", "ops-3",
         "the site moved")]  # fmt: skip
    code, out = run("registry", "import", str(path), "--dsn", db)
    assert code == 0
    assert "0 change(s) on the edit trail" in str(out)


# -- the verifier sees it ------------------------------------------------------------------


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory, pg_server: Any) -> Iterator[Made]:
    """The report (made before the second import) and the bundle made after it."""
    tmp = tmp_path_factory.mktemp("registry_trail")
    tsa = Tsa(tmp / "tsa", "A").start()
    with pg_server.database() as db:
        world = _World(db)
        try:
            with psycopg.connect(db) as conn:  # before the report: signed by it
                import_with_trail(conn, _changed(small_registry(("gw-01", "gw-02")),
                                                 process_name="精密车削"), {},
                                  account="importer-1", note="renamed")  # fmt: skip
            first = _make(world, tsa, tmp)
            with psycopg.connect(db) as conn:  # after the report
                _, n = import_with_trail(
                    conn, _changed(small_registry(("gw-01", "gw-02")), process_name="精密车削",
                                   key=False, signatory="李明"),
                    {}, account="importer-2", note="not a key process after all")  # fmt: skip
                # key_process, nc set back to the file's (the API edit), and the declaration
                assert n == 3
                doc = json.loads(first["report"])
                b = evidence_bundle.collect(conn, doc, first["report"])
                path = tmp / "after.zip"
                try:
                    evidence_bundle.write(path, b)
                finally:
                    b.close()
            trust = tmp / "trust.json"
            trust.write_text(first["trust_text"], encoding="utf-8")
            yield {**first, "after": path, "trust_file": trust}
        finally:
            world.conn.close()
            tsa.stop()


def _files(path: Path) -> dict[str, bytes]:
    import zipfile  # noqa: PLC0415

    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist()}


def test_a_report_made_before_a_reimport_passes_on_a_bundle_made_after(made: Made) -> None:
    report = json.loads(made["report"])
    block = report["registry_audit"]
    assert block["version"] == 2
    (renamed,) = block["registry"]["edits"]
    assert (renamed["kind"], renamed["field"], renamed["new"], renamed["account"]) == (
        "process", "name", "精密车削", "importer-1")  # fmt: skip
    (cnc,) = report["equipment"]
    assert (cnc["key_process"], cnc["nc"], cnc["process_name"]) == (True, False, "精密车削")
    files = _files(made["after"])
    registry = json.loads(files["registry.json"])
    assert registry["processes"][0]["key_process"] is False  # as it stands now
    manifest = {m["name"]: m for m in json.loads(files["manifest.json"])["members"]}
    assert manifest["registry_audit.json"]["rows"] == 3
    assert registry["enterprise"]["declaration"]["signatory"] == "李明"  # as it stands now
    v = check_bundle(made["after"], made["trust"])
    c = v.check("kpis")
    assert c.status == "ok", [r.text_en for r in c.reasons]
    later = [e for e in c.details["edits"] if e["after_report"]]
    assert {(e.get("kind", "equipment"), e["field"], e["old"], e["new"], e["account"])
            for e in later if e["field"] != "declaration"} == {
        ("process", "key_process", True, False, "importer-2"),
        ("equipment", "nc", False, True, "importer-2")}  # fmt: skip
    # a declared field a report states but does not compute from, rolled back all the same
    (signed,) = [e for e in later if e["field"] == "declaration"]
    assert (signed["kind"], signed["old"], signed["new"]["signatory"]) == (
        "enterprise",
        None,
        "李明",
    )
    assert v.verdict == "pass", [(x.name, x.status, [r.text_en for r in x.reasons])
                                 for x in v.checks]  # fmt: skip


def test_a_signed_registry_edit_removed_from_the_trail_fails_naming_it(
    made: Made, tmp_path: Path
) -> None:
    files = _files(made["after"])
    trail = json.loads(files["registry_audit.json"])
    files["registry_audit.json"] = json.dumps(
        [r for r in trail if r["account"] != "importer-1"]).encode()  # fmt: skip
    v = check_bundle(zipped(tmp_path, files, fix=("registry_audit.json",)), made["trust"])
    reasons = failed(v, "kpis")
    assert any(r.startswith("registry edit ") and "process turning name '车削' -> '精密车削' "
               "by importer-1" in r and "removed from the trail" in r
               for r in reasons), reasons  # fmt: skip
    assert any(r.startswith("registry_audit.json holds 0 edit(s)") for r in reasons), reasons


def test_a_later_change_removed_from_the_trail_shows_in_the_rolled_back_registry(
    made: Made, tmp_path: Path
) -> None:
    files = _files(made["after"])
    trail = json.loads(files["registry_audit.json"])
    files["registry_audit.json"] = json.dumps(
        [r for r in trail if r["field"] != "key_process"]).encode()  # fmt: skip
    v = check_bundle(zipped(tmp_path, files, fix=("registry_audit.json",)), made["trust"])
    reasons = failed(v, "kpis")
    assert any(r.startswith("equipment cnc-01 key_process: the registry rolled back") and
               "gives False, the report used True" in r for r in reasons), reasons  # fmt: skip


def test_a_bundle_without_the_member_still_checks_a_report_that_signed_none(
    made: Made, tmp_path: Path
) -> None:
    """A bundle made before registry_audit.json, as the report before version 2 sees it."""
    files = _files(made["after"])
    del files["registry_audit.json"]
    manifest = json.loads(files["manifest.json"])
    manifest["members"] = [m for m in manifest["members"] if m["name"] != "registry_audit.json"]
    files["manifest.json"] = json.dumps(manifest).encode()
    v = check_bundle(zipped(tmp_path, files), made["trust"])
    reasons = failed(v, "kpis")  # this report signed a registry edit: missing now
    assert any("missing from registry_audit.json (the bundle lacks it)" in r for r in reasons)


def test_the_cli_prints_the_registry_edits(made: Made) -> None:
    code, out = run("verify", str(made["after"]), "--trust", str(made["trust_file"]))
    text = str(out)
    assert code == 0, text
    assert "importer-2: process turning key_process True → False" in text, text
    assert "importer-1: process turning name 车削 → 精密车削" in text, text
    assert "importer-2: cnc-01 nc False → True" in text, text


def test_a_report_signed_before_version_2_is_checked_on_the_equipment_trail_alone() -> None:
    from ingest_server.kpi.columnar import audit_block  # noqa: PLC0415

    at = dt.datetime(2026, 3, 10, tzinfo=dt.UTC)
    v1 = audit_block([], at, at)
    assert "version" not in v1
    assert "registry" not in v1
    v2 = audit_block([], at, at, [])
    assert v2["version"] == 2
    assert v2["registry"]["entries"] == 0
    assert {k: v2[k] for k in v1} == v1  # the equipment part: what version 1 signed
