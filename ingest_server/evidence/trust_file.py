"""The verifier's trust file (`ingest-server trust export`), docs/evidence.md, "The trust
file": what the verifier receives at the enrolment visit, public keys and certificates
only; the offline verifier (evidence/offline/trust.py) trusts these, never a key a bundle
ships.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge_agent.contract.identity import fingerprint
from ingest_server.evidence.keys import public_pem
from ingest_server.evidence.timestamp import load_trust
from ingest_server.files import json_bytes
from ingest_server.repo import bundle, reports

TRUST_FORMAT = "factory-evidence.trust"
TRUST_FORMAT_VERSION = 1


def trust_document(
    conn: psycopg.Connection, *, enterprise: str, tsa_files: Sequence[Path]
) -> dict[str, Any]:
    """What the verifier receives at the enrolment visit (docs/evidence.md, "The trust
    file"): public keys and certificates only, never a private key."""
    gateways: dict[str, dict[str, Any]] = {}
    for k in bundle.gateway_key_rows(conn, enterprise=enterprise):
        name = f"{enterprise}/{k['site_id']}/{k['gateway']}"
        g = gateways.setdefault(name, {"gateway": name, "contract": k["contract"],
                                       "revoked_at": k["revoked_at"], "keys": []})  # fmt: skip
        raw = bytes(k["public_key"])
        g["keys"].append({"public_key": base64.b64encode(raw).decode(),
                          "fingerprint": fingerprint(raw), "enrolled_at": k["enrolled_at"],
                          "retired_at": k["retired_at"]})  # fmt: skip
    report_keys = []
    for rk in reports.list_keys(conn):
        public = Ed25519PublicKey.from_public_bytes(rk.public_key)
        report_keys.append({"key_id": rk.key_id, "created_at": rk.created_at,
                            "public_key": base64.b64encode(rk.public_key).decode(),
                            "public_key_pem": public_pem(public),
                            "retired_at": rk.retired_at, "revoked_at": rk.revoked_at})  # fmt: skip
    tsas = []
    for path in tsa_files:
        chain = load_trust(path)
        tsas.append({
            "file": path.name, "subject": chain[0].subject.rfc4514_string(),
            "sha256": chain[0].fingerprint(hashes.SHA256()).hex(),
            "not_before": chain[0].not_valid_before_utc,
            "not_after": chain[0].not_valid_after_utc,
            "chain_pem": "".join(c.public_bytes(serialization.Encoding.PEM).decode()
                                 for c in chain),
        })  # fmt: skip
    out: dict[str, Any] = json.loads(json_bytes({
        "format": TRUST_FORMAT, "format_version": TRUST_FORMAT_VERSION,
        "enterprise": enterprise,
        "exported_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "gateways": list(gateways.values()), "report_keys": report_keys, "tsas": tsas,
    }))  # fmt: skip
    return out


def trust_json(doc: dict[str, Any]) -> bytes:
    return json_bytes(doc)
