"""Enrolling a gateway's own public key (contract v2, `ingest-server gateway enroll` and
`gateway add --public-key`) through the real CLI against a real PostgreSQL: the server
keeps exactly the 32 raw bytes of the public key and nothing of the private key, shows
the contract and the fingerprint the gateway printed, refuses what it cannot trust and
changes nothing when it refuses."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from psycopg import sql

from edge_agent.contract.identity import FileSigner, fingerprint, public_key_text
from tests.harness.ingest import prepare

ENT, SITE = "hf", "p1"


class Cli:
    """`python -m ingest_server.cli.main ... --dsn DB`, as an operator runs it."""

    def __init__(self, db: str) -> None:
        self.db = db

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ingest_server.cli.main", "gateway", *args, "--dsn", self.db],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def ok(self, *args: str) -> str:
        done = self(*args)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def refused(self, *args: str) -> str:
        done = self(*args)
        assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
        assert done.stdout == ""
        return done.stderr

    def listed(self) -> dict[str, str]:
        """`gateway list`, line by gateway id."""
        lines = self.ok("list").splitlines()
        return {line.split()[0].rsplit("/", 1)[1]: line for line in lines}


class Key:
    """A gateway key pair made as `edge-agent keys init` makes it (FileSigner.create)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        signer = FileSigner.create(path)
        self.public = signer.public_key()
        self.text = public_key_text(self.public)
        self.fingerprint = fingerprint(self.public)
        private = serialization.load_pem_private_key(path.read_bytes(), password=None)
        assert isinstance(private, Ed25519PrivateKey)
        raw = private.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        # every form the private key could take where it should not be
        self.secrets = [raw.hex(), base64.b64encode(raw).decode(), path.read_text().strip()]
        der = private.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        self.secrets += [der.hex(), base64.b64encode(der).decode()]

    def pem(self) -> str:
        """The public key as a PEM SubjectPublicKeyInfo."""
        private = serialization.load_pem_private_key(self.path.read_bytes(), password=None)
        return (
            private.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )


@pytest.fixture
def env(db: str, tmp_path: Path) -> dict[str, Any]:
    """gw-01 with its v1 secrets (`gateway add`), gw-02 registered only."""
    prepare(db, gateways=("gw-01", "gw-02"))
    cli = Cli(db)
    cli.ok("add", ENT, SITE, "gw-01", "--out", str(tmp_path / "bundle-01"), "--rotate")
    keys = {name: Key(tmp_path / "gateway-keys" / f"{name}.pem") for name in ("a", "b")}
    return {"db": db, "cli": cli, "keys": keys, "tmp": tmp_path}


def row(db: str, gateway: str) -> dict[str, Any] | None:
    with psycopg.connect(db) as conn:
        cur = conn.execute(
            "SELECT hmac_key, broker_password_hash, public_key, contract, enrolled_at, "
            "revoked_at, issued_at FROM gateways "
            "WHERE enterprise_id = %s AND site_id = %s AND id = %s",
            (ENT, SITE, gateway),
        )
        found = cur.fetchone()
        names = [d.name for d in cur.description or ()]
    if found is None:
        return None
    r = dict(zip(names, found, strict=True))
    if r["public_key"] is not None:
        r["public_key"] = bytes(r["public_key"])
    return r


def gateway_rows(db: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(db) as conn:
        return conn.execute("SELECT * FROM gateways ORDER BY gid").fetchall()


def database_text(db: str) -> str:
    """Every row of every table of the database, as text (bytea as hex)."""
    with psycopg.connect(db) as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_type = 'BASE TABLE' "
            "AND table_schema NOT IN ('pg_catalog', 'information_schema')"
        ).fetchall()
        assert ("public", "gateways") in tables
        out = []
        for schema, table in tables:
            query = sql.SQL("SELECT t::text FROM {} t").format(sql.Identifier(schema, table))
            out += [str(r[0]) for r in conn.execute(query).fetchall()]
    return "\n".join(out)


def assert_no_private_key(key: Key, texts: list[str]) -> None:
    for text in texts:
        for secret in key.secrets:
            assert secret.lower() not in text.lower()
        assert "PRIVATE KEY" not in text


def test_enrol_then_list_shows_contract_2_and_the_fingerprint(env: dict[str, Any]) -> None:
    cli, db, key = env["cli"], env["db"], env["keys"]["a"]
    before = row(db, "gw-01")
    assert before is not None
    assert (before["contract"], before["public_key"], before["enrolled_at"]) == (1, None, None)
    listed = cli.listed()
    assert listed["gw-01"].split()[-3:] == ["contract", "1", "-"]

    out = cli.ok("enroll", ENT, SITE, "gw-01", "--public-key", key.text)
    assert out.splitlines()[:2] == [
        "gateway hf/p1/gw-01: public key enrolled: contract 2",
        f"  fingerprint: {key.fingerprint}",
    ]
    assert out.splitlines()[2:] == [
        "compare it with the fingerprint `edge-agent keys init` printed on the gateway",
        "(read aloud, or on the site-visit form) before trusting it; if they differ, this",
        "is not the gateway's key: enrol the one it printed, with --replace",
        "from now on the server accepts only contract v2 from this gateway: set",
        "gateway.contract: 2 in its agent config and restart the agent",
    ]

    after = row(db, "gw-01")
    assert after is not None
    assert after["public_key"] == key.public  # exactly the 32 raw bytes
    assert len(after["public_key"]) == 32
    assert after["contract"] == 2
    assert after["enrolled_at"] is not None
    # the v1 secrets stay: the gateway keeps publishing with its HMAC key until v2 lands
    assert (after["hmac_key"], after["broker_password_hash"]) == (
        before["hmac_key"], before["broker_password_hash"],
    )  # fmt: skip

    listed = cli.listed()
    assert listed["gw-01"].split() == [
        "hf/p1/gw-01", "ready", "never", "seen", "contract", "2", key.fingerprint,
    ]  # fmt: skip
    assert listed["gw-02"].split()[-3:] == ["contract", "1", "-"]
    bundle = env["tmp"] / "bundle-01"
    assert_no_private_key(key, [database_text(db), *(p.read_text() for p in bundle.iterdir()), out])


def test_the_file_and_pem_forms(env: dict[str, Any]) -> None:
    cli, db, tmp = env["cli"], env["db"], env["tmp"]
    a, b = env["keys"]["a"], env["keys"]["b"]
    text_file = tmp / "gw-01.pub"
    text_file.write_text(a.text + "\n")
    out = cli.ok("enroll", ENT, SITE, "gw-01", "--public-key", f"@{text_file}")
    assert f"  fingerprint: {a.fingerprint}" in out.splitlines()
    pem_file = tmp / "gw-02.pub.pem"
    pem_file.write_text(b.pem())
    assert "BEGIN PUBLIC KEY" in pem_file.read_text()
    out = cli.ok("enroll", ENT, SITE, "gw-02", "--public-key", f"@{pem_file}")
    assert f"  fingerprint: {b.fingerprint}" in out.splitlines()
    for gw, key in (("gw-01", a), ("gw-02", b)):
        r = row(db, gw)
        assert r is not None
        assert (r["public_key"], r["contract"]) == (key.public, 2)
        assert cli.listed()[gw].endswith(f"contract 2  {key.fingerprint}")


def test_enrolling_the_same_key_again_changes_nothing(env: dict[str, Any]) -> None:
    cli, db, key = env["cli"], env["db"], env["keys"]["a"]
    cli.ok("enroll", ENT, SITE, "gw-01", "--public-key", key.text)
    first = gateway_rows(db)
    out = cli.ok("enroll", ENT, SITE, "gw-01", "--public-key", key.text)
    assert out.splitlines() == [
        "gateway hf/p1/gw-01: this public key is already enrolled (contract 2); nothing changed",
        f"  fingerprint: {key.fingerprint}",
    ]
    assert gateway_rows(db) == first  # enrolled_at included


def test_another_key_only_with_replace(env: dict[str, Any]) -> None:
    cli, db = env["cli"], env["db"]
    a, b = env["keys"]["a"], env["keys"]["b"]
    cli.ok("enroll", ENT, SITE, "gw-01", "--public-key", a.text)
    first = gateway_rows(db)
    err = cli.refused("enroll", ENT, SITE, "gw-01", "--public-key", b.text)
    assert err.strip() == (
        f"ingest-server: gateway hf/p1/gw-01 already has public key {a.fingerprint} "
        f"enrolled; this key is {b.fingerprint}. Check {b.fingerprint} against the "
        "fingerprint the gateway printed (edge-agent keys init), then pass --replace"
    )
    assert gateway_rows(db) == first
    out = cli.ok("enroll", ENT, SITE, "gw-01", "--public-key", b.text, "--replace")
    assert out.splitlines()[:2] == [
        f"gateway hf/p1/gw-01: public key enrolled (it replaces {a.fingerprint}): contract 2",
        f"  fingerprint: {b.fingerprint}",
    ]
    r = row(db, "gw-01")
    assert r is not None
    assert (r["public_key"], r["contract"]) == (b.public, 2)
    assert cli.listed()["gw-01"].endswith(f"contract 2  {b.fingerprint}")


def test_unknown_and_revoked_gateways_are_refused(env: dict[str, Any]) -> None:
    cli, db, key = env["cli"], env["db"], env["keys"]["a"]
    err = cli.refused("enroll", ENT, SITE, "gw-09", "--public-key", key.text)
    assert err.strip() == (
        "ingest-server: no gateway hf/p1/gw-09: add it first "
        "(ingest-server gateway add hf p1 gw-09 --public-key KEY)"
    )
    assert row(db, "gw-09") is None
    cli.ok("revoke", ENT, SITE, "gw-01")
    revoked = gateway_rows(db)
    err = cli.refused("enroll", ENT, SITE, "gw-01", "--public-key", key.text)
    assert err.strip() == (
        "ingest-server: gateway hf/p1/gw-01 is revoked: give it new secrets and enrol its "
        "key in one step (ingest-server gateway add hf p1 gw-01 --public-key KEY)"
    )
    assert gateway_rows(db) == revoked


def test_one_key_belongs_to_one_gateway(env: dict[str, Any]) -> None:
    cli, db, key = env["cli"], env["db"], env["keys"]["a"]
    cli.ok("enroll", ENT, SITE, "gw-01", "--public-key", key.text)
    first = gateway_rows(db)
    err = cli.refused("enroll", ENT, SITE, "gw-02", "--public-key", key.text)
    assert f"public key {key.fingerprint} is already enrolled for gateway hf/p1/gw-01" in err
    assert gateway_rows(db) == first


def test_a_malformed_key_is_refused_and_changes_nothing(env: dict[str, Any]) -> None:
    cli, db, tmp, key = env["cli"], env["db"], env["tmp"], env["keys"]["a"]
    cli.ok("enroll", ENT, SITE, "gw-01", "--public-key", key.text)
    first = gateway_rows(db)
    rsa_pem = tmp / "rsa.pub.pem"
    rsa_pem.write_bytes(
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    bad_pem = tmp / "bad.pem"
    bad_pem.write_text("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    short = base64.b64encode(key.public[:31]).decode()
    cases = {
        "not base64!": "--public-key: a public key is 44 characters of base64",
        short: "--public-key: a public key is 32 bytes (44 characters of base64), not 31",
        "": "--public-key: a public key is 32 bytes (44 characters of base64), not 0",
        f"@{rsa_pem}": f"--public-key @{rsa_pem}: the PEM public key is not an Ed25519 key",
        f"@{bad_pem}": f"--public-key @{bad_pem}: not a PEM public key",
        f"@{tmp / 'missing.pub'}": f"cannot read {tmp / 'missing.pub'} (No such file",
        # the gateway's private key by mistake: refused, and not echoed
        f"@{key.path}": "this is a private key, which never leaves the gateway",
    }
    for text, message in cases.items():
        for gw in ("gw-01", "gw-02"):
            err = cli.refused("enroll", ENT, SITE, gw, "--public-key", text, "--replace")
            assert err.startswith("ingest-server: "), err
            assert message in err, (text, err)
            assert_no_private_key(key, [err])
    assert gateway_rows(db) == first
    err = cli.refused("add", ENT, SITE, "gw-03", "--out", str(tmp / "b3"), "--replace")
    assert "--replace replaces an enrolled public key: give --public-key too" in err
    assert gateway_rows(db) == first


def test_add_with_a_public_key_enrols_it_at_creation(env: dict[str, Any]) -> None:
    cli, db, tmp, key = env["cli"], env["db"], env["tmp"], env["keys"]["b"]
    bundle = tmp / "bundle-03"
    out = cli.ok("add", ENT, SITE, "gw-03", "--out", str(bundle), "--public-key", key.text)
    lines = out.splitlines()
    assert lines[0] == f"gateway hf/p1/gw-03: bundle in {bundle}/"
    # contract 2 signs with the gateway's own key: the bundle carries no HMAC key
    assert not any("gateway.key" in ln for ln in lines), lines
    assert "gateway hf/p1/gw-03: public key enrolled: contract 2" in lines
    assert f"  fingerprint: {key.fingerprint}" in lines
    assert "the bundle holds no contract v2 key: the gateway's private key stays on it" in lines
    assert "gateway.contract: 2 in its agent config and restart the agent" in lines
    r = row(db, "gw-03")
    assert r is not None
    assert (r["public_key"], r["contract"]) == (key.public, 2)
    # issued all the same, never accepted from a contract-2 gateway (docs/deploy.md)
    assert r["hmac_key"] is not None
    assert r["enrolled_at"] == r["issued_at"]  # one transaction: one now()
    assert sorted(p.name for p in bundle.iterdir()) == ["agent.yaml", "mqtt.password"]
    assert_no_private_key(key, [database_text(db), *(p.read_text() for p in bundle.iterdir())])
    assert cli.listed()["gw-03"].split()[-3:] == ["contract", "2", key.fingerprint]


def test_add_refused_for_the_key_creates_nothing(env: dict[str, Any]) -> None:
    """Creation and enrolment are one transaction: the key refused, no gateway."""
    cli, db, tmp, key = env["cli"], env["db"], env["tmp"], env["keys"]["a"]
    cli.ok("enroll", ENT, SITE, "gw-01", "--public-key", key.text)
    first = gateway_rows(db)
    err = cli.refused("add", ENT, SITE, "gw-04", "--out", str(tmp / "b4"), "--public-key",
                      key.text)  # fmt: skip
    assert f"public key {key.fingerprint} is already enrolled for gateway hf/p1/gw-01" in err
    assert gateway_rows(db) == first
    assert row(db, "gw-04") is None
    assert not (tmp / "b4").exists()
    err = cli.refused("add", ENT, SITE, "gw-05", "--out", str(tmp / "b5"), "--public-key", "x")
    assert "--public-key: a public key is" in err
    assert row(db, "gw-05") is None
    assert not (tmp / "b5").exists()


def test_revoking_clears_the_public_key(env: dict[str, Any]) -> None:
    cli, db, tmp = env["cli"], env["db"], env["tmp"]
    a, b = env["keys"]["a"], env["keys"]["b"]
    cli.ok("enroll", ENT, SITE, "gw-01", "--public-key", a.text)
    cli.ok("revoke", ENT, SITE, "gw-01")
    r = row(db, "gw-01")
    assert r is not None
    assert (r["hmac_key"], r["broker_password_hash"], r["public_key"]) == (None, None, None)
    assert r["revoked_at"] is not None
    assert cli.listed()["gw-01"].split()[1] == "revoked"
    assert cli.listed()["gw-01"].endswith("contract 2  -")  # what it spoke, no key left
    # new secrets: back to contract 1 until a key is enrolled
    cli.ok("add", ENT, SITE, "gw-01", "--out", str(tmp / "again"))
    r = row(db, "gw-01")
    assert r is not None
    assert (r["public_key"], r["contract"], r["enrolled_at"]) == (None, 1, None)
    assert cli.listed()["gw-01"].split()[1:] == ["ready", "never", "seen", "contract", "1", "-"]
    # the revoked key was forgotten: another gateway may not have it, this one a new one
    cli.ok("enroll", ENT, SITE, "gw-01", "--public-key", b.text)
    assert cli.listed()["gw-01"].endswith(f"contract 2  {b.fingerprint}")


def test_the_schema_holds_only_raw_ed25519_public_keys(env: dict[str, Any]) -> None:
    db = env["db"]
    with psycopg.connect(db) as conn:
        for update, args in (
            ("UPDATE gateways SET public_key = %s, contract = 2 WHERE id = 'gw-02'", (b"k" * 31,)),
            ("UPDATE gateways SET public_key = %s, contract = 2 WHERE id = 'gw-02'", (b"k" * 64,)),
            ("UPDATE gateways SET contract = 3 WHERE id = 'gw-02'", ()),
            ("UPDATE gateways SET contract = 2 WHERE id = 'gw-02'", ()),  # v2 without a key
        ):
            with pytest.raises(psycopg.errors.CheckViolation), conn.transaction():
                conn.execute(update.encode(), args)
        conn.execute(
            "UPDATE gateways SET public_key = %s, contract = 2 WHERE id = 'gw-02'",
            (env["keys"]["a"].public,),
        )
        with pytest.raises(psycopg.errors.UniqueViolation), conn.transaction():
            conn.execute(
                "UPDATE gateways SET public_key = %s WHERE id = 'gw-01'",
                (env["keys"]["a"].public,),
            )


def key_history(db: str, gateway: str) -> list[tuple[bytes, bool, bool]]:
    """gateway_public_keys of a gateway, oldest first: (key, enrolled_at set, retired)."""
    with psycopg.connect(db) as conn:
        rows = conn.execute(
            "SELECT k.public_key, k.enrolled_at, k.retired_at FROM gateway_public_keys k "
            "JOIN gateways g ON g.gid = k.gid WHERE g.id = %s ORDER BY k.enrolled_at",
            (gateway,),
        ).fetchall()
    return [(bytes(k), at is not None, until is not None) for k, at, until in rows]


def test_every_key_a_gateway_had_stays_in_its_history(env: dict[str, Any]) -> None:
    """A batch is verified with the key in effect when it arrived (`ledger check`): a key
    replaced or revoked is retired, never forgotten."""
    cli, db, tmp = env["cli"], env["db"], env["tmp"]
    a, b = env["keys"]["a"], env["keys"]["b"]
    assert key_history(db, "gw-01") == []
    cli.ok("enroll", ENT, SITE, "gw-01", "--public-key", a.text)
    assert key_history(db, "gw-01") == [(a.public, True, False)]
    cli.ok("enroll", ENT, SITE, "gw-01", "--public-key", a.text)  # unchanged: no new row
    assert key_history(db, "gw-01") == [(a.public, True, False)]
    cli.refused("enroll", ENT, SITE, "gw-01", "--public-key", b.text)  # refused: no change
    assert key_history(db, "gw-01") == [(a.public, True, False)]
    cli.ok("enroll", ENT, SITE, "gw-01", "--public-key", b.text, "--replace")
    assert key_history(db, "gw-01") == [(a.public, True, True), (b.public, True, False)]
    with psycopg.connect(db) as conn:
        retired, enrolled, current = conn.execute(
            "SELECT (SELECT retired_at FROM gateway_public_keys WHERE public_key = %s), "
            "(SELECT enrolled_at FROM gateway_public_keys WHERE public_key = %s), "
            "(SELECT enrolled_at FROM gateways WHERE id = 'gw-01')",
            (a.public, b.public),
        ).fetchone()
    assert retired == enrolled == current  # one transaction: no moment without a key
    cli.ok("revoke", ENT, SITE, "gw-01")
    assert key_history(db, "gw-01") == [(a.public, True, True), (b.public, True, True)]
    # new secrets with a key at once (`add --public-key`): the history goes on
    cli.ok("add", ENT, SITE, "gw-01", "--out", str(tmp / "again"), "--public-key", a.text)
    assert key_history(db, "gw-01") == [(a.public, True, False), (b.public, True, True)]
    cli.ok("add", ENT, SITE, "gw-03", "--out", str(tmp / "b3"), "--public-key", b.text)
    assert key_history(db, "gw-03") == [(b.public, True, False)]
