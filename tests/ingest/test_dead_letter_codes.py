"""Each kind of refused message is stored with its code beside its reason
(dead_letters.code, migration 0014; ingest/payload.py REFUSAL_CODES), through the running
consumer over a real Mosquitto into a real PostgreSQL: contract 1 and contract 2
gateways, every raise site family. The reasons stay worded as before. The repo reads give
the code (`other` for a letter written before the codes), `ingest-server status` counts by
it, and the console's catalogue and docs/ingest.md name every code.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import psycopg

from edge_agent.contract.identity import FileSigner
from edge_agent.contract.sample import Sample
from edge_agent.contract.wire import encode_message, sign
from ingest_server.evidence.timestamp import ERROR_KINDS
from ingest_server.ingest.payload import REFUSAL_CODES
from ingest_server.repo import reception, status
from ingest_server.repo.gateways import revoke_gateway
from ingest_server.repo.registry import import_registry
from tests.harness.broker import Broker
from tests.harness.ingest import ENT, GW, KEY, SITE, GatewayPublisher, batch, dump, s
from tests.harness.ingest import small_registry as registry_of
from tests.ingest.test_consumer import running_consumer, wait_until
from tests.ingest.test_v2_ingest import GW2, NOW_MS, PREFIX1, PREFIX2, seal, signer

__all__ = ["signer"]  # test_v2_ingest's fixture: gw-01 on contract 1, gw-02 on 2

ROOT = Path(__file__).resolve().parents[2]
NOW = time.time()
GOOD = [s("cnc-01", "state", NOW, "RUNNING"), s("em-1", "energy_kwh", NOW, 5.0)]
# a consumer after another: the first one's session must not stay in the shared group (the
# broker would queue it a share of what comes next)
ONCE = {"session_expiry_s": 0}


def letters(db: str) -> int:
    return int(dump(db, "SELECT count(*) FROM dead_letters")[0][0])


# (topic, payload, the code stored, words of the reason)
Case = tuple[str, bytes, str, str]


def publish_one_by_one(
    db: str, broker: Broker, cases: list[Case], **config: object
) -> list[tuple[str, str | None]]:
    """Publish each case once the one before is dead-lettered; the (reason, code) of every
    dead letter written meanwhile, in order."""
    first = letters(db)
    with running_consumer(db, broker, **ONCE, **config):
        pub = GatewayPublisher(broker)
        try:
            for i, (topic, payload, _, _) in enumerate(cases, 1):
                pub.publish("", payload, prefix=topic)
                wait_until(lambda: letters(db) >= first + i, 15, f"case {i}'s letter")  # noqa: B023
        finally:
            pub.close()
    rows = dump(db, f"SELECT reason, code FROM dead_letters ORDER BY id OFFSET {first}")
    return [(str(r), c) for r, c in rows]


def check_codes(got: list[tuple[str, str | None]], cases: list[Case]) -> None:
    assert len(got) == len(cases), got
    for (reason, code), (_, _, want_code, want_reason) in zip(got, cases, strict=True):
        assert want_reason in reason, (want_reason, reason)
        assert code == want_code, (reason, code, want_code)


def test_each_contract_1_refusal_stores_its_code(db: str, broker: Broker) -> None:
    # gw-01 with its HMAC key; gw-03 registered without one
    with psycopg.connect(db) as conn:
        import_registry(conn, registry_of((GW, "gw-03")), {GW: KEY})
    with psycopg.connect(db, autocommit=True) as conn:  # a rule of the site's DBA
        conn.execute(
            "ALTER TABLE samples ADD CONSTRAINT dba_rule CHECK (text IS DISTINCT FROM 'O9999')"
        )
    here = f"fe/v1/{ENT}/{SITE}/{GW}/data"
    future = Sample("em-1", "energy_kwh", NOW + 365 * 86400, 6.0)
    other_gw = {"gw": "gw-77", "boot": 1, "seq": 4, "sent": 1, "samples": []}
    cases = [
        (f"fe/v1/HF/{SITE}/{GW}/data", batch(1, GOOD), "unknown_topic", "is not fe/v1/ENTERPRISE"),
        (f"fe/v1/{ENT}/{SITE}/gw-99/data", batch(1, GOOD), "unknown_gateway",
         f"unknown gateway {ENT}/{SITE}/gw-99: register it"),
        (f"fe/v1/{ENT}/{SITE}/gw-03/data", batch(1, GOOD), "no_hmac_key",
         f"gateway {ENT}/{SITE}/gw-03 has no HMAC key"),
        (here, batch(2, GOOD * 400), "payload_too_large", "over the limit of 20000"),
        (here, b'{"v":1,"gw":"gw-01","boot":1}', "no_signature",
         'signature: payload does not end with a "sig" member'),
        (here, batch(3, GOOD, key=b"not the gateway's key"), "signature_mismatch",
         "signature: signature does not match the gateway's key"),
        (here, sign(b'{"v":1,"gw":"gw-01", oops}', KEY), "not_json", "not JSON"),
        (here, encode_message({"gw": GW, "boot": 1, "seq": 0, "sent": 1, "samples": []}, KEY),
         "schema", "schema: seq: Input should be greater than or equal to 1"),
        (here, encode_message(other_gw, KEY), "gateway_mismatch",
         "body says gateway 'gw-77', topic says 'gw-01'"),
        (here, batch(5, [*GOOD, future]), "implausible_time",
         "1 sample(s) of batch 1/5: sample time"),
        (here, batch(6, [s("cnc-01", "program", NOW, "O9999")]), "database_refused",
         "refused by the database:"),
    ]  # fmt: skip
    got = publish_one_by_one(db, broker, cases, max_payload_bytes=20_000)
    check_codes(got, cases)

    # a letter written before the codes (NULL) reads as `other`; the console's read and
    # `status` give the code, the status grouping by it
    with psycopg.connect(db) as conn:
        conn.execute(
            "INSERT INTO dead_letters (topic, gid, reason, payload, payload_bytes) SELECT "
            "%s, gid, 'signature: an old letter', '', 0 FROM gateways WHERE id = %s",
            (here, GW),
        )
        conn.commit()
        shown = reception.dead_letters(conn, enterprise=ENT, limit=100)
        counted = status.recent_dead_letter_reasons(conn)
    assert shown[0]["reason"] == "signature: an old letter"
    assert shown[0]["code"] == "other"
    # the enterprise's letters, newest first: those of an unregistered gateway and the
    # database's refusal (written without the gateway) too, by their topic; not the one
    # of a topic outside the enterprise's prefix ("HF" is not "hf")
    assert [r["code"] for r in shown[1:]] == [c for _, _, c, _ in reversed(cases[1:])]
    assert [(r["site"], r["gateway"]) for r in shown if r["code"] == "unknown_gateway"] == [
        (SITE, "gw-99")]  # fmt: skip
    # twelve (code, reason) groups of one letter each, the ten `status` shows in order of
    # code on a tie
    by_code = {r.code: r for r in counted}
    assert [r.code for r in counted] == sorted({c for _, _, c, _ in cases} | {"other"})[:10]
    assert by_code["schema"].reason == "schema: seq"
    assert by_code["other"].reason == "signature: an old letter"
    assert all(r.count == 1 for r in counted)


def test_each_contract_2_refusal_stores_its_code(
    db: str, broker: Broker, signer: FileSigner, tmp_path: Path
) -> None:
    samples = [{"d": "em-1", "t": "energy_kwh", "ts": NOW_MS, "v": 5.0}]
    forged, _ = seal(FileSigner.create(tmp_path / "other.key"), 1, samples)
    good, _ = seal(signer, 2, samples)
    twin, _ = seal(signer, 2, [{"d": "em-1", "t": "energy_kwh", "ts": NOW_MS, "v": 6.0}])
    named_other, _ = seal(signer, 3, samples, gw="gw-77")
    v2_from_v1, _ = seal(signer, 9, samples, gw=GW)
    data1, data2, status2 = PREFIX1 + "data", PREFIX2 + "data", PREFIX2 + "status"
    cases = [
        (data2, forged, "signature_mismatch", "signature: does not verify with gateway"),
        (data2, b"FEW\x02\x05gw-02\xff\xff\xff", "v2_payload", "v2 payload: "),
        (data2, named_other, "gateway_mismatch", "body says gateway 'gw-77'"),
        (data2, batch(7, [Sample("cnc-01", "state", NOW, "DOWN")]), "contract_mismatch",
         f"gateway {ENT}/{SITE}/{GW2} is enrolled for contract v2"),
        (data1, v2_from_v1, "contract_mismatch",
         f"gateway {ENT}/{SITE}/{GW} is enrolled for contract v1 (HMAC) and sent a v2 batch"),
        (status2, b'{"v":2,"gw":"gw-02","boot":1,"state":"online"}', "no_signature",
         'signature: payload does not end with a "sig" member of 128 hex digits'),
    ]  # fmt: skip
    got = publish_one_by_one(db, broker, cases)
    # the same (boot, seq) as a stored batch with other content
    with running_consumer(db, broker, **ONCE):
        pub = GatewayPublisher(broker)
        try:
            pub.publish("data", good, prefix=PREFIX2)
            wait_until(lambda: dump(db, "SELECT count(*) FROM batches") == [(1,)], 15, "batch 2")
            pub.publish("data", twin, prefix=PREFIX2)
            wait_until(lambda: letters(db) == len(cases) + 1, 15, "the twin's letter")
        finally:
            pub.close()
    got += [(str(r), c) for r, c in dump(db, "SELECT reason, code FROM dead_letters "
                                             f"ORDER BY id OFFSET {len(cases)}")]  # fmt: skip
    cases.append((data2, twin, "digest_conflict", "batch 1/2 was stored with another digest"))
    # revoked: no public key any more (a consumer started afresh reads the gateway anew)
    with psycopg.connect(db) as conn:
        revoke_gateway(conn, ENT, SITE, GW2)
    again, _ = seal(signer, 4, samples)
    revoked = [(data2, again, "no_public_key", f"gateway {ENT}/{SITE}/{GW2} has no public key")]
    got += publish_one_by_one(db, broker, revoked)
    check_codes(got, cases + revoked)


def test_every_code_and_kind_is_in_the_console_catalogue_and_the_docs() -> None:
    """The console words each code in both languages (i18n.js `dl_<code>`, each TSA error
    kind `anchor_err_<kind>`), and the docs list the codes."""
    text = (ROOT / "ingest_server/console/static/i18n.js").read_text(encoding="utf-8")
    zh, _, en = text.partition("\n  en: {")
    for half, name in ((zh, "zh"), (en, "en")):
        keys = set(re.findall(r"\b((?:dl|anchor_err)_[a-z0-9_]+):", half))
        assert {f"dl_{c}" for c in REFUSAL_CODES} <= keys, name
        assert {f"anchor_err_{k}" for k in ERROR_KINDS} <= keys, name
    docs = (ROOT / "docs/ingest.md").read_text(encoding="utf-8")
    missing = [c for c in REFUSAL_CODES if f"`{c}`" not in docs]
    assert missing == [], "docs/ingest.md does not list these dead-letter codes"
