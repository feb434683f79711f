"""`ingest-server anchor`: each day's signed batches under a Merkle root time-stamped by
real RFC 3161 TSAs (OpenSSL's `ts -reply` on 127.0.0.1, tests/harness/tsa.py), against a
real PostgreSQL. The v2 batches are written into the ledger as tests/evidence/test_ledger.py
writes them (its World: sealed as a gateway seals them, stored as the ingest path stores
them); then the ledger is edited as an insider could, and `anchor --check` must name the
day.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from ingest_server.cli.anchor import _ANCHOR_LOCK as ANCHOR_LOCK
from ingest_server.cli.anchor import anchor_pending_everywhere
from ingest_server.evidence import merkle, timestamp
from ingest_server.repo import anchors
from tests.evidence.test_ledger import DAY, World, run
from tests.harness.ingest import ENT
from tests.harness.tsa import Tsa


@pytest.fixture
def world(db: str) -> Iterator[World]:
    w = World(db)
    yield w
    w.conn.close()


@pytest.fixture
def tsa(tmp_path: Path) -> Iterator[Tsa]:
    t = Tsa(tmp_path / "tsa-a", "A").start()
    yield t
    t.stop()


@pytest.fixture
def tsa_b(tmp_path: Path) -> Iterator[Tsa]:
    t = Tsa(tmp_path / "tsa-b", "B").start()
    yield t
    t.stop()


def anchor(*extra: str, world: World) -> tuple[int, str]:
    code, out = run("anchor", "--enterprise", ENT, "--dsn", world.db, *extra)
    return code, str(out)


def check(world: World, *certs: Tsa) -> tuple[int, str]:
    certs_args = [a for t in certs for a in ("--tsa-cert", str(t.cert_file))]
    return anchor("--check", "--day", str(DAY), *certs_args, world=world)


def current(world: World, day: dt.date = DAY) -> anchors.Anchor:
    a = anchors.current_anchor(world.conn, enterprise=ENT, day=day)
    assert a is not None
    return a


def test_a_day_anchored_verifies_and_so_does_every_batch(
    world: World, tsa: Tsa, tmp_path: Path
) -> None:
    world.chain("gw-02", 2)
    world.chain("gw-01", 3)
    world.seal("gw-01", 4, world.samples(15 * 60), minutes=15 * 60)  # received the next day
    code, out = anchor("--day", str(DAY), "--tsa", tsa.url, "--tsa-cert", str(tsa.cert_file),
                       world=world)  # fmt: skip
    assert code == 0, out
    assert f"{ENT} {DAY}: 5 batch(es)" in out
    assert "time-stamped by" in out

    a = current(world)
    assert (a.leaves, a.leaf_order) == (5, merkle.LEAF_ORDER)
    (token,) = a.granted
    assert token.tsa_name == "CN=A test TSA"
    trust = timestamp.load_trust(tsa.cert_file)
    at = timestamp.verify_token(token.token or b"", a.root, trust)
    assert at == token.gen_time
    assert abs(at - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=5)
    # and OpenSSL, with no code of ours, agrees (the command docs/evidence.md gives)
    (tmp_path / "root.bin").write_bytes(a.root)
    (tmp_path / "token.tsr").write_bytes(token.token or b"")
    openssl = subprocess.run(
        ["openssl", "ts", "-verify", "-data", str(tmp_path / "root.bin"), "-in",
         str(tmp_path / "token.tsr"), "-CAfile", str(tsa.folder / "ca.pem"), "-untrusted",
         str(tsa.folder / "tsa.pem")],
        capture_output=True, text=True, timeout=20, check=False,
    )  # fmt: skip
    assert "Verification: OK" in openssl.stdout, openssl.stderr
    # the order rule: by gateway, then boot and seq; the batch of the next day is not a leaf
    leaves = [merkle.Leaf(*r) for r in anchors.day_leaves(world.conn, enterprise=ENT, day=DAY)]
    proofs = merkle.inclusions(leaves)
    assert [(p.leaf.gateway, p.leaf.seq) for p in proofs] == [
        ("gw-01", 1), ("gw-01", 2), ("gw-01", 3), ("gw-02", 1), ("gw-02", 2)
    ]  # fmt: skip
    assert all(p.verify(a.root) for p in proofs)
    assert not proofs[1].verify(hashlib.sha256(b"another root").digest())
    nxt = anchors.day_leaves(world.conn, enterprise=ENT, day=DAY + dt.timedelta(days=1))
    assert [(r[1], r[3]) for r in nxt] == [("gw-01", 4)]

    assert check(world, tsa)[0] == 0
    # anchoring again asks no TSA: the day holds its token
    asked = tsa.requests
    assert anchor("--day", str(DAY), "--tsa", tsa.url, world=world)[0] == 0
    assert tsa.requests == asked


@pytest.mark.parametrize("edit", ["digest edited", "batch deleted"])
def test_a_ledger_changed_after_anchoring_fails_the_check(
    world: World, tsa: Tsa, edit: str
) -> None:
    ids = world.chain("gw-01", 4)
    assert anchor("--day", str(DAY), "--tsa", tsa.url, world=world)[0] == 0
    assert check(world, tsa)[0] == 0
    if edit == "digest edited":
        world.conn.execute("UPDATE batches SET digest = %s WHERE id = %s",
                           (hashlib.sha256(b"forged").digest(), ids[1]))  # fmt: skip
    else:
        world.conn.execute("DELETE FROM batches WHERE id = %s", (ids[2],))
    code, out = check(world, tsa)
    assert code == 3, out
    assert (
        f"{ENT} {DAY}: a history rewritten after its day was time-stamped no longer matches "
        "its token" in out
    )
    assert f"over {3 if edit == 'batch deleted' else 4} batch(es); root" in out
    assert "ANCHOR NOT OK" in out
    # the token still verifies: it is the ledger that moved, not the stamp
    assert "valid, root time-stamped at" in out

    # re-anchoring the changed day is refused, unless forced (the old root kept)
    code, out = anchor("--day", str(DAY), "--tsa", tsa.url, world=world)
    assert (code, "REFUSED" in out) == (3, True), out
    assert anchor("--day", str(DAY), "--tsa", tsa.url, "--force", world=world)[0] == 0
    assert check(world, tsa)[0] == 0
    (n,) = world.conn.execute("SELECT count(*) FROM anchor_days").fetchone() or (0,)
    assert n == 2


def test_a_tsa_down_leaves_the_day_pending_then_the_next_run_anchors_it(
    world: World, tsa: Tsa
) -> None:
    world.chain("gw-01", 2)
    tsa.stop()
    code, out = anchor("--pending", "--tsa", tsa.url, world=world)
    assert code == 1, out
    assert "PENDING" in out
    a = current(world)
    (t,) = a.tokens
    assert t.token is None
    assert t.last_error is not None
    assert t.last_error.startswith(f"TSA {tsa.url} unreachable")
    code, out = check(world, tsa)
    assert (code, "NOT ANCHORED (pending: " in out) == (3, True), out

    tsa.start()
    code, out = anchor("--pending", "--tsa", tsa.url, world=world)
    assert code == 0, out
    (t,) = current(world).tokens
    assert (t.token is not None, t.last_error) == (True, None)
    assert check(world, tsa)[0] == 0
    assert anchor("--pending", "--tsa", tsa.url, world=world) == (0, f"{ENT}: no day to anchor\n")


def test_two_tsas_and_a_token_under_another_certificate(world: World, tsa: Tsa, tsa_b: Tsa) -> None:
    world.chain("gw-01", 2)
    code, out = anchor("--day", str(DAY), "--tsa", tsa.url, "--tsa", tsa_b.url,
                       "--tsa-cert", str(tsa.cert_file), "--tsa-cert", str(tsa_b.cert_file),
                       world=world)  # fmt: skip
    assert code == 0, out
    a = current(world)
    assert sorted(t.tsa_name or "" for t in a.granted) == ["CN=A test TSA", "CN=B test TSA"]
    assert check(world, tsa, tsa_b)[0] == 0

    # trusting only A: B's token is not A's
    code, out = check(world, tsa)
    assert code == 3, out
    assert f"token of {tsa_b.url}: INVALID: not signed by the trusted TSA CN=A test TSA" in out
    by_url = {t.tsa_url: t.token or b"" for t in a.granted}
    trust_a = timestamp.load_trust(tsa.cert_file)
    with pytest.raises(timestamp.TokenInvalidError, match="not signed by the trusted TSA"):
        timestamp.verify_token(by_url[tsa_b.url], a.root, trust_a)
    # a token over another root
    with pytest.raises(timestamp.TokenInvalidError, match="not this root"):
        timestamp.verify_token(by_url[tsa.url], hashlib.sha256(b"x").digest(), trust_a)


def test_one_tsa_of_two_down_still_anchors_and_the_other_is_asked_next_time(
    world: World, tsa: Tsa, tsa_b: Tsa
) -> None:
    world.chain("gw-01", 2)
    tsa_b.stop()
    code, out = anchor("--day", str(DAY), "--tsa", tsa.url, "--tsa", tsa_b.url, world=world)
    assert code == 0, out
    assert f"{tsa_b.url}: not time-stamped: TSA {tsa_b.url} unreachable" in out
    tsa_b.start()
    code, out = anchor("--pending", "--tsa", tsa.url, "--tsa", tsa_b.url, world=world)
    assert code == 0, out
    assert len(current(world).granted) == 2


def test_errors_name_the_cause(world: World, tmp_path: Path) -> None:
    root = hashlib.sha256(b"root").digest()
    refusing = Tsa(tmp_path / "tsa-sha384", "C", digests="sha384").start()
    try:
        with pytest.raises(timestamp.TsaRefusedError, match="refused the request: status "
                           "REJECTION"):  # fmt: skip
            timestamp.request_token(refusing.url, root)
    finally:
        refusing.stop()
    with pytest.raises(timestamp.TsaUnreachableError, match="unreachable"):
        timestamp.request_token(refusing.url, root, timeout_s=5)
    leaf_only = tmp_path / "leaf.pem"
    leaf_only.write_bytes((tmp_path / "tsa-sha384" / "tsa.pem").read_bytes())
    with pytest.raises(timestamp.TsaCertificateError, match="no self-signed"):
        timestamp.load_trust(leaf_only)

    tomorrow = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)  # in every time zone
    code, out = anchor("--day", str(tomorrow), "--tsa", "http://127.0.0.1:9/", world=world)
    assert (code, "not over yet" in out) == (2, True), out
    code, out = anchor("--check", "--day", str(DAY), world=world)
    assert (code, "give --tsa-cert" in out) == (2, True), out


def test_run_anchors_every_enterprises_pending_days_one_process_at_a_time(
    world: World, tsa: Tsa
) -> None:
    """`ingest-server run --tsa URL` calls this every --anchor-every: `anchor --pending` for
    each enterprise, in one process of many (an advisory lock)."""
    world.chain("gw-01", 2)
    trust = [timestamp.load_trust(tsa.cert_file)]
    with psycopg.connect(world.db, autocommit=True) as other:  # another worker anchoring
        other.execute("SELECT pg_advisory_lock(%s)", (ANCHOR_LOCK,))
        assert anchor_pending_everywhere(world.db, [tsa.url], trust) is None
        assert anchors.current_anchor(world.conn, enterprise=ENT, day=DAY) is None
    done = anchor_pending_everywhere(world.db, [tsa.url], trust)
    assert done is not None
    assert done.pop(ENT) == [0]
    assert all(codes == [] for codes in done.values())  # no signed batch elsewhere
    assert check(world, tsa)[0] == 0
    assert anchor_pending_everywhere(world.db, [tsa.url], trust) == {ENT: [], **done}
