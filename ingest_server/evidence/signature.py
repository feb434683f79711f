"""A report's signature checked against a key, and a report file read strictly: pure, no
database. The server's `verify` (evidence/verify.py) adds the database's signing keys on
top; the offline verifier (evidence/offline/) checks against the trust file's keys. The
algorithm comes from the signature block and is looked up in evidence/algorithms.py's
table (the seam for SM2/SM3).

    report --parse_report--> doc --canonical(RFC 8785)--> bytes
        --ALGORITHMS[signature.algorithm].verify(public key, value)--> key id == trusted?
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ingest_server.evidence.algorithms import (
    DEFAULT_ALGORITHM,
    UnsupportedAlgorithmError,
    algorithm,
    raw_key_id,
)
from ingest_server.evidence.canonical import CanonicalFormError, canonical


@dataclass(frozen=True, slots=True)
class TrustedKey:
    """A key the verifier trusts, of any algorithm of the table: its name and raw bytes."""

    algorithm: str
    public_key: bytes

    @property
    def key_id(self) -> str:
        return raw_key_id(self.public_key)

    @classmethod
    def of(cls, key: Ed25519PublicKey | TrustedKey) -> TrustedKey:
        if isinstance(key, TrustedKey):
            return key
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return cls(DEFAULT_ALGORITHM, raw)


def trusted_key(entry: Mapping[str, Any], where: str = "a key of the trust file") -> TrustedKey:
    """A trust file's key entry (`public_key` base64, `algorithm` absent = ed25519).
    UnsupportedAlgorithmError (bilingual) for an algorithm this verifier lacks; ValueError
    for a key that is not one of its algorithm."""
    alg = algorithm(entry.get("algorithm"), where)
    try:
        raw = base64.b64decode(str(entry["public_key"]), validate=True)
    except (KeyError, binascii.Error) as exc:
        raise ValueError(f"{where}: no base64 public_key ({exc})") from None
    if len(raw) != alg.public_key_bytes:
        raise ValueError(
            f"{where}: an {alg.label} public key is {alg.public_key_bytes} bytes, not {len(raw)}"
        )
    return TrustedKey(alg.name, raw)


def parse_report(data: bytes | str, where: str = "the report") -> dict[str, Any]:
    """A report file's JSON, refused with a message that says what is wrong: not UTF-8,
    not JSON, not an object, NaN or Infinity (not JSON), a key given twice (which of the
    two did the signer mean?)."""

    def no_constant(name: str) -> Any:
        raise ValueError(f"{where} holds {name}, which is not JSON: it cannot be a report")

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in pairs:
            if k in out:
                raise ValueError(f"{where} gives the key {k!r} twice: it cannot be a report")
            out[k] = v
        return out

    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        doc = json.loads(text, parse_constant=no_constant, object_pairs_hook=unique)
    except UnicodeDecodeError as exc:
        raise ValueError(f"{where} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where} is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{where} is not a report: a JSON object was expected")
    return doc


def signed_key(doc: Mapping[str, Any]) -> TrustedKey | None:
    """The key the report's signature block names (algorithm and raw bytes), or None when
    the block has none readable; UnsupportedAlgorithmError for an unknown algorithm."""
    sig = doc.get("signature")
    if not isinstance(sig, dict):
        return None
    alg = algorithm(sig.get("algorithm"), "the report's signature")
    try:
        return TrustedKey(alg.name, base64.b64decode(str(sig["public_key"]), validate=True))
    except (KeyError, binascii.Error):
        return None


def check_signature(
    doc: dict[str, Any], *, trusted: Ed25519PublicKey | TrustedKey | None = None
) -> tuple[bool, bool, str]:
    """(valid, trusted, what to say): the signature over the report's canonical form, by
    the key the block names, with that key's id; when `trusted` is given, by that key."""
    sig = doc.get("signature")
    if not isinstance(sig, dict) or "algorithm" not in sig:
        return False, False, "INVALID: the report has no signature block"
    try:
        alg = algorithm(sig.get("algorithm"), "the report's signature")
    except UnsupportedAlgorithmError as exc:
        return False, False, f"INVALID: {exc.text_en}"
    try:
        body = canonical(doc, sig.get("canonicalization"))
    except CanonicalFormError as exc:
        return False, False, f"INVALID: the signed content cannot be reproduced: {exc}"
    try:
        raw = base64.b64decode(sig["public_key"], validate=True)
        value = base64.b64decode(sig["value"], validate=True)
    except (binascii.Error, KeyError, TypeError, ValueError):
        return False, False, "INVALID: the signature does not match the report's content"
    if not alg.verify(raw, value, body):
        return False, False, "INVALID: the signature does not match the report's content"
    kid = raw_key_id(raw)
    if kid != sig.get("key_id"):
        return False, False, f"INVALID: key_id {sig.get('key_id')} is not the key's id {kid}"
    if trusted is None:
        return True, False, (
            f"valid for the key in the report ({kid}), which is not checked against a trusted "
            "key: pass --public-key (the server's exported key) or --dsn"
        )  # fmt: skip
    want = TrustedKey.of(trusted)
    if (want.algorithm, want.public_key) != (alg.name, raw):
        return False, False, f"INVALID: signed by key {kid}, not by the trusted key {want.key_id}"
    return True, True, f"valid, by the trusted key {kid}"
