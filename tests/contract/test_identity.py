"""The gateway's own key (contract v2): the fingerprint people compare, the public key
text they paste, and the key file that is private and never overwritten."""

from __future__ import annotations

import base64
import errno
import hashlib
import os
import re
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent.contract.identity import (
    FileSigner,
    KeyFileError,
    fingerprint,
    parse_public_key,
    public_key_text,
    verify,
)

# the key of seed bytes(range(32)): a fixed vector that pins the fingerprint's definition
SEED_PUBLIC = bytes.fromhex("03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8")
SEED_PUBLIC_TEXT = "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg="
SEED_FINGERPRINT = "KZDV-VJ2U-MNDU-YAUF"


def seed_signer() -> FileSigner:
    return FileSigner(Ed25519PrivateKey.from_private_bytes(bytes(range(32))))


def test_a_fixed_key_has_a_fixed_public_key_and_fingerprint() -> None:
    signer = seed_signer()
    assert signer.public_key() == SEED_PUBLIC
    assert public_key_text(signer.public_key()) == SEED_PUBLIC_TEXT
    assert fingerprint(signer.public_key()) == SEED_FINGERPRINT
    assert fingerprint(seed_signer().public_key()) == SEED_FINGERPRINT  # deterministic


def test_the_fingerprint_is_80_bits_of_sha256_in_base32_groups() -> None:
    """Recomputed from its written definition, as another implementation would."""
    digest = hashlib.sha256(SEED_PUBLIC).digest()[:10]
    text = base64.b32encode(digest).decode()
    assert len(text) == 16
    assert fingerprint(SEED_PUBLIC) == "-".join([text[0:4], text[4:8], text[8:12], text[12:16]])
    for _ in range(20):
        fp = fingerprint(FileSigner(Ed25519PrivateKey.generate()).public_key())
        assert re.fullmatch(r"[A-Z2-7]{4}(-[A-Z2-7]{4}){3}", fp), fp


def test_different_keys_have_different_fingerprints() -> None:
    keys = [FileSigner(Ed25519PrivateKey.generate()).public_key() for _ in range(50)]
    assert len({fingerprint(k) for k in keys}) == 50
    assert SEED_FINGERPRINT not in {fingerprint(k) for k in keys}


def test_the_fingerprint_refuses_a_key_of_the_wrong_length() -> None:
    with pytest.raises(ValueError, match="32 bytes, not 31"):
        fingerprint(SEED_PUBLIC[:31])


def test_parse_public_key_takes_base64_with_whitespace_around() -> None:
    assert parse_public_key(SEED_PUBLIC_TEXT) == SEED_PUBLIC
    assert parse_public_key(f"  {SEED_PUBLIC_TEXT}\n") == SEED_PUBLIC


def test_parse_public_key_takes_a_pem() -> None:
    pem = (
        Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    assert pem.startswith("-----BEGIN PUBLIC KEY-----")
    assert parse_public_key(pem) == SEED_PUBLIC


def test_parse_public_key_refuses_the_wrong_length() -> None:
    short = base64.b64encode(SEED_PUBLIC[:16]).decode()
    with pytest.raises(KeyFileError, match=r"32 bytes \(44 characters of base64\), not 16"):
        parse_public_key(short)


def test_parse_public_key_refuses_what_is_not_base64() -> None:
    with pytest.raises(KeyFileError, match="44 characters of base64"):
        parse_public_key("not a key at all!")
    with pytest.raises(KeyFileError, match="44 characters of base64"):
        parse_public_key(SEED_PUBLIC_TEXT.replace("/", "_"))  # base64url is not it


def test_parse_public_key_refuses_a_pem_of_another_kind_of_key() -> None:
    pem = (
        generate_private_key(SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    with pytest.raises(KeyFileError, match="not an Ed25519 key"):
        parse_public_key(pem)


def test_parse_public_key_refuses_a_broken_pem() -> None:
    with pytest.raises(KeyFileError, match="not a PEM public key"):
        parse_public_key("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")


def test_create_writes_a_private_pkcs8_file_that_load_reads(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "gateway.ed25519"  # the directory is made too
    made = FileSigner.create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert FileSigner.load(path).public_key() == made.public_key()


def test_create_never_overwrites_a_key(tmp_path: Path) -> None:
    path = tmp_path / "gateway.ed25519"
    FileSigner.create(path)
    before = path.read_bytes()
    with pytest.raises(KeyFileError, match="exists: a gateway keeps its key") as info:
        FileSigner.create(path)
    assert "move it away first" in str(info.value)
    assert path.read_bytes() == before


def test_create_reports_a_directory_it_cannot_write_in(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the directory should be\n")
    with pytest.raises(KeyFileError, match="cannot write the gateway key"):
        FileSigner.create(blocker / "gateway.ed25519")


def test_a_failed_write_leaves_no_half_key_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    path = tmp_path / "gateway.ed25519"
    monkeypatch.setattr(os, "fsync", disk_full)  # identity.py calls os.fsync
    with pytest.raises(KeyFileError, match=r"cannot write the gateway key \(No space left"):
        FileSigner.create(path)
    assert not path.exists()  # so the next `keys init` can make one
    monkeypatch.undo()
    FileSigner.create(path)


def test_load_refuses_a_key_others_can_read_and_says_how_to_fix_it(tmp_path: Path) -> None:
    path = tmp_path / "gateway.ed25519"
    FileSigner.create(path)
    path.chmod(0o644)
    with pytest.raises(KeyFileError, match=r"others may read .* \(mode 644\): chmod 600 "):
        FileSigner.load(path)
    path.chmod(0o640)
    with pytest.raises(KeyFileError, match="chmod 600"):
        FileSigner.load(path)


def test_load_names_a_missing_file_and_the_command_that_makes_one(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="edge-agent keys init"):
        FileSigner.load(tmp_path / "absent")


def test_load_refuses_a_key_of_another_kind(tmp_path: Path) -> None:
    path = tmp_path / "ec.pem"
    path.write_bytes(
        generate_private_key(SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    with pytest.raises(KeyFileError, match="not an Ed25519 key"):
        FileSigner.load(path)
    path.write_text("gateway.key from ingest-server gateway add, by mistake\n")
    with pytest.raises(KeyFileError, match="not an unencrypted PEM private key"):
        FileSigner.load(path)


def test_a_signature_verifies_with_its_key_only() -> None:
    signer = seed_signer()
    other = FileSigner(Ed25519PrivateKey.generate())
    message = b"fe/v2 batch digest"
    signature = signer.sign(message)
    assert len(signature) == 64
    assert verify(signer.public_key(), signature, message)
    assert not verify(signer.public_key(), signature, message + b".")
    assert not verify(other.public_key(), signature, message)
    assert not verify(signer.public_key(), other.sign(message), message)
    assert not verify(signer.public_key()[:31], signature, message)  # a malformed key
