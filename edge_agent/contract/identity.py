"""A gateway's own identity for contract v2: an Ed25519 key pair made on the gateway,
whose private key never leaves it, and the short fingerprint people compare.

    edge-agent keys init   -> the private key file (PKCS#8 PEM, mode 0600), the public key
                              (32 bytes, base64) and its fingerprint, e.g. `K7QF-2M4P-X9TA-CC3D`
    ingest-server gateway add/enroll --public-key  -> the server keeps the public key only

The fingerprint is the first 80 bits of SHA-256 over the raw public key, in RFC 4648
base32 (no padding), 16 characters in four groups: short enough to read aloud or print
on a site-visit form, long enough that nobody can make a second key with the same one.

`Signer` is the seam for a key that lives elsewhere (a TPM, a secure element): anything
that can sign bytes and tell its public key will do; `FileSigner` is the key file.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64


class KeyFileError(ValueError):
    """A key file that cannot be used; the message says which and why."""


class Signer(Protocol):
    """Signs on the gateway's behalf. The private key may be anywhere (a file, a TPM)."""

    def public_key(self) -> bytes:
        """The raw 32-byte Ed25519 public key."""
        ...

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of `message`."""
        ...


def fingerprint(public_key: bytes) -> str:
    """`XXXX-XXXX-XXXX-XXXX`: 80 bits of SHA-256 over the raw public key, base32."""
    if len(public_key) != PUBLIC_KEY_BYTES:
        raise ValueError(
            f"an Ed25519 public key is {PUBLIC_KEY_BYTES} bytes, not {len(public_key)}"
        )
    text = base64.b32encode(hashlib.sha256(public_key).digest()[:10]).decode()
    return "-".join(text[i : i + 4] for i in range(0, 16, 4))


def public_key_text(public_key: bytes) -> str:
    """The raw public key as standard base64 (44 characters): what an operator copies."""
    return base64.b64encode(public_key).decode()


def parse_public_key(text: str) -> bytes:
    """A public key as `public_key_text` writes it (or a PEM SubjectPublicKeyInfo)."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(text.encode())
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise KeyFileError(f"not a PEM public key: {exc}") from None
        if not isinstance(key, Ed25519PublicKey):
            raise KeyFileError("the PEM public key is not an Ed25519 key")
        return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError:
        raise KeyFileError(
            "a public key is 44 characters of base64 (as `edge-agent keys init` prints it)"
        ) from None
    if len(raw) != PUBLIC_KEY_BYTES:
        raise KeyFileError(
            f"a public key is {PUBLIC_KEY_BYTES} bytes (44 characters of base64), not {len(raw)}"
        )
    return raw


def verify(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """Whether `signature` is the key's Ed25519 signature of `message`."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


class FileSigner:
    """The gateway's private key in a file of its own (PKCS#8 PEM, mode 0600)."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self._public = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @classmethod
    def create(cls, path: Path) -> FileSigner:
        """Make a new key pair and write its private key to `path`, which must not exist
        (an existing key is never overwritten: the server has enrolled its public key)."""
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # FileExistsError here: a file where the directory should be
            raise KeyFileError(f"{path}: cannot write the gateway key ({exc.strerror})") from None
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise KeyFileError(
                f"{path} exists: a gateway keeps its key (the server enrolled its public key); "
                "to replace it, move it away first and enrol the new public key"
            ) from None
        except OSError as exc:
            raise KeyFileError(f"{path}: cannot write the gateway key ({exc.strerror})") from None
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
                f.flush()
                os.fsync(f.fileno())
            # the public key is about to be enrolled: the file's name must survive a power cut
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            # a half-written key would block the next `keys init` and load as garbage
            path.unlink(missing_ok=True)
            raise KeyFileError(f"{path}: cannot write the gateway key ({exc.strerror})") from None
        return cls(key)

    @classmethod
    def load(cls, path: Path) -> FileSigner:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise KeyFileError(
                f"{path}: cannot read the gateway key ({exc.strerror}); make one with "
                "`edge-agent keys init`"
            ) from None
        if path.stat().st_mode & 0o077:
            raise KeyFileError(
                f"{path}: others may read the gateway's private key (mode "
                f"{path.stat().st_mode & 0o777:o}): chmod 600 {path}"
            )
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise KeyFileError(f"{path}: not an unencrypted PEM private key ({exc})") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFileError(f"{path}: the key is not an Ed25519 key")
        return cls(key)

    def public_key(self) -> bytes:
        return self._public

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)
