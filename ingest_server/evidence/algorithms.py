"""The signature algorithms this verifier knows, in one table: the seam for a second one.

Every signature a verifier checks names its algorithm: a report's signature block
(`"algorithm": "Ed25519"`), a key of the trust file (`"algorithm"`, absent meaning
`ed25519`: every file issued so far). Verification looks the name up here (case does not
matter) and calls that entry; a name the table lacks is refused with a reason in Chinese
and English ("not supported by this verifier"), never guessed. Today the table holds
Ed25519 (RFC 8032). A system assessed under GB/T 39786 may need SM2 signatures with SM3
(GB/T 32918, GB/T 35276): add an `Algorithm` entry here (its verify function and its raw
public key form) and give the keys `"algorithm": "sm2"` in the trust file; the checks
need no other change. docs/evidence-verify.md, "A second signature algorithm".

    signature block / trust key --"algorithm"--> ALGORITHMS[name].verify(key, sig, message)

Pure: cryptography only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ingest_server.errors import InvalidInputError

DEFAULT_ALGORITHM = "ed25519"  # what a key or signature block without "algorithm" means


@dataclass(frozen=True, slots=True)
class Algorithm:
    name: str  # lower case, as the table's key
    label: str  # as a signature block writes it ("Ed25519")
    public_key_bytes: int  # the raw public key's length
    verify: Callable[[bytes, bytes, bytes], bool]  # (raw public key, signature, message)


def _ed25519_verify(public: bytes, signature: bytes, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


ALGORITHMS: dict[str, Algorithm] = {
    "ed25519": Algorithm("ed25519", "Ed25519", 32, _ed25519_verify),
}


class UnsupportedAlgorithmError(InvalidInputError, ValueError):
    """A signature or key of an algorithm this verifier does not implement. `text` (Chinese)
    and `text_en` say so; str() is both."""

    def __init__(self, name: object, where: str = "a signature") -> None:
        known = ", ".join(a.label for a in ALGORITHMS.values())
        self.text = (
            f"{where} 使用签名算法 {name!r}, 本验证程序不支持该算法 (支持: {known}); "
            "请使用支持该算法的验证程序版本"
        )
        self.text_en = (
            f"{where} uses the signature algorithm {name!r}, which is not supported by this "
            f"verifier (it supports: {known}); use a verifier version that implements it"
        )
        super().__init__(f"{self.text_en} / {self.text}")


def algorithm(name: Any, where: str = "a signature") -> Algorithm:
    """The table's entry for `name` (None: the default, Ed25519); UnsupportedAlgorithmError
    for a name it lacks."""
    if name is None:
        return ALGORITHMS[DEFAULT_ALGORITHM]
    found = ALGORITHMS.get(name.lower()) if isinstance(name, str) else None
    if found is None:
        raise UnsupportedAlgorithmError(name, where)
    return found


def raw_key_id(public: bytes) -> str:
    """A public key's id: the first 16 hex digits of SHA-256 over its raw bytes."""
    return hashlib.sha256(public).hexdigest()[:16]


def key_id(public: Ed25519PublicKey) -> str:
    """An Ed25519 public key's id (`raw_key_id` of its 32 raw bytes)."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return raw_key_id(raw)
