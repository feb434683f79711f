"""The server's report signing key: Ed25519, generated on first use (PKCS#8 PEM, mode
0600), re-read by a long-running server when `ingest-server keys rotate` replaces it
(`SigningKeyFile`). Its public key is registered in `signing_keys` (repo/reports.py) so
that a verifier with database access trusts a report's key by id, also after a rotation;
it can be exported (`public_pem`) for verifiers without database access. A key's id
(`key_id`) is evidence/algorithms.py's, importable from here too.
"""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from ingest_server.errors import InvalidInputError
from ingest_server.evidence.algorithms import key_id
from ingest_server.files import write_temp
from ingest_server.repo import reports

__all__ = [
    "SigningKeyError", "SigningKeyFile", "key_id", "load_or_create_key", "load_public_key",
    "public_pem", "register_key", "rotate_key",
]  # fmt: skip


class SigningKeyError(InvalidInputError):
    """The signing key cannot be read or written; the message says what to do."""


def load_or_create_key(path: Path) -> Ed25519PrivateKey:
    """The server's report signing key; created (0600) when the file does not exist."""
    if path.exists():
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise SigningKeyError(
                f"signing key {path} is readable by others (mode {mode:o}): chmod 600 {path}"
            )
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (ValueError, TypeError) as exc:
            raise SigningKeyError(f"signing key {path} is not a PEM private key: {exc}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise SigningKeyError(f"signing key {path} is not an Ed25519 key")
        return key
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = Ed25519PrivateKey.generate()
    # written whole under a temporary name, then linked into place: two servers starting
    # at once end up with one key, and nobody reads a half-written file
    tmp = _write_pem(path, key)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return load_or_create_key(path)  # another process made it first: use that one
    finally:
        tmp.unlink()
    return key


def public_pem(public: Ed25519PublicKey) -> str:
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise SigningKeyError(f"cannot read public key {path}: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError(f"{path} is not an Ed25519 public key")
    return key


def _write_pem(path: Path, key: Ed25519PrivateKey) -> Path:
    """The key's PEM in a new file (0600) next to `path`, written whole and synced."""
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return write_temp(path, pem, 0o600)


def rotate_key(
    conn: psycopg.Connection, path: Path, *, compromised: bool = False
) -> tuple[str, str]:
    """Replace the signing key in `path` with a new one; returns (old id, new id).

    The new public key is registered first, then the old one is marked retired (its
    reports made until now stay trusted) or, if `compromised`, revoked (none of its
    reports is trusted any more), and the file is replaced in one rename. The old
    private key is gone; its public key stays in signing_keys for verification. Servers
    that sign reports pick the new key up from the file (SigningKeyFile)."""
    old = load_or_create_key(path)
    new = Ed25519PrivateKey.generate()
    tmp = _write_pem(path, new)
    try:
        with conn.transaction():
            register_key(conn, old.public_key())
            new_id = register_key(conn, new.public_key())
            old_id = key_id(old.public_key())
            reports.retire_key(conn, key_id=old_id, revoke=compromised)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return old_id, new_id


class SigningKeyFile:
    """The signing key of a long-running server, re-read when its file is replaced
    (`ingest-server keys rotate`), and registered in signing_keys when it is."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._key = self._load()

    def _load(self) -> Ed25519PrivateKey:
        key = load_or_create_key(self.path)
        st = self.path.stat()
        self._stamp = (st.st_ino, st.st_mtime_ns)
        return key

    def get(self, conn: psycopg.Connection | None = None) -> Ed25519PrivateKey:
        st = self.path.stat()
        if (st.st_ino, st.st_mtime_ns) != self._stamp:
            self._key = self._load()
            if conn is not None:
                register_key(conn, self._key.public_key())
        return self._key


def register_key(conn: psycopg.Connection, public: Ed25519PublicKey) -> str:
    kid = key_id(public)
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    reports.add_key(conn, key_id=kid, public_key=raw)
    return kid
