"""Rotating the report signing key (`ingest-server keys rotate`): reports signed before a
planned rotation stay verified, reports of a revoked (compromised) key do not, a retired
key cannot vouch for a report made after its retirement, and a running API signs with
the new key from its next report without a restart."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cryptography.hazmat.primitives import serialization
from fastapi.testclient import TestClient

from ingest_server.api.app import create_app
from ingest_server.cli.main import main
from ingest_server.evidence.canonical import sign
from ingest_server.evidence.keys import rotate_key
from ingest_server.evidence.verify import verify
from ingest_server.repo.accounts import add_account, new_token
from tests.evidence.test_evidence import plant  # noqa: F401 (fixture)

REPORT = ("--enterprise", "hf", "--from", "2026-11-16", "--to", "2026-11-17",
          "--as-of", "2026-11-25T12:00:00Z")  # fmt: skip


def _report(db: str, key: Path, out: Path) -> dict[str, Any]:
    assert main(["report", "--dsn", db, *REPORT, "--signing-key", str(key),
                 "--out", str(out)]) == 0  # fmt: skip
    doc: dict[str, Any] = json.loads(out.read_text())
    return doc


def test_rotation_keeps_old_reports_and_revocation_ends_them(
    plant: str,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    key = tmp_path / "keys" / "report-signing.pem"
    first = _report(plant, key, tmp_path / "first.json")
    old_private = tmp_path / "stolen.pem"
    shutil.copy(key, old_private)
    capsys.readouterr()

    assert main(["keys", "rotate", "--dsn", plant, "--signing-key", str(key)]) == 0
    out = capsys.readouterr().out
    assert f"signing key {first['signature']['key_id']} retired" in out
    assert key.stat().st_mode & 0o777 == 0o600
    second = _report(plant, key, tmp_path / "second.json")
    assert second["signature"]["key_id"] != first["signature"]["key_id"]

    # the first report, signed before the rotation, is still verified from the database
    assert main(["verify", str(tmp_path / "first.json"), "--dsn", plant]) == 0
    assert "retired on" in capsys.readouterr().out
    assert main(["verify", str(tmp_path / "second.json"), "--dsn", plant]) == 0
    capsys.readouterr()

    # the retired key (say, a copy that leaked) signing a report dated after retirement
    forged = json.loads(json.dumps(first))
    forged["generated_at"] = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)).isoformat()
    stolen = serialization.load_pem_private_key(old_private.read_bytes(), password=None)
    forged = sign(forged, stolen)  # type: ignore[arg-type]
    with psycopg.connect(plant) as conn:
        v = verify(forged, conn=conn)
    assert v.signature_ok
    assert not v.trusted
    assert "retired" in v.signature

    # the second key leaks: revoked, and its report is no longer trusted
    assert main(["keys", "rotate", "--dsn", plant, "--signing-key", str(key),
                 "--compromised"]) == 0  # fmt: skip
    assert "revoked" in capsys.readouterr().out
    assert main(["verify", str(tmp_path / "second.json"), "--dsn", plant]) == 3
    assert "revoked" in capsys.readouterr().out
    assert main(["verify", str(tmp_path / "first.json"), "--dsn", plant]) == 0
    capsys.readouterr()
    assert main(["keys", "list", "--dsn", plant]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[-2] for line in listed] == ["retired", "revoked", "in"]  # in use


def test_a_running_api_signs_with_the_rotated_key(plant: str, tmp_path: Path) -> None:  # noqa: F811
    with psycopg.connect(plant, autocommit=True) as conn:
        add_account(conn, "hf-user", "enterprise", ["hf"])
        headers = {"Authorization": f"Bearer {new_token(conn, 'hf-user')}"}
    key = tmp_path / "k.pem"
    body = {"from": "2026-11-16", "to": "2026-11-16"}
    with TestClient(create_app(plant, signing_key=key)) as c:
        url = "/api/v1/enterprises/hf/reports"
        a = c.post(url, json=body, headers=headers).json()["id"]
        with psycopg.connect(plant, autocommit=True) as conn:
            old_id, new_id = rotate_key(conn, key)
        b = c.post(url, json=body, headers=headers).json()["id"]
        docs = {r: c.get(f"/api/v1/reports/{r}", headers=headers).json() for r in (a, b)}
        assert docs[a]["signature"]["key_id"] == old_id
        assert docs[b]["signature"]["key_id"] == new_id
        for r in (a, b):
            verdict = c.post(f"/api/v1/reports/{r}/verify", headers=headers).json()
            assert verdict["ok"] is True, verdict
        keys = {k["key_id"]: k for k in c.get("/api/v1/keys", headers=headers).json()}
        assert keys[old_id]["retired_at"] is not None
        assert keys[new_id]["retired_at"] is None
