"""The bytes a report's signature covers, and signing them.

A report is signed with Ed25519 over the RFC 8785 (JCS) canonical JSON of everything but
the signature. JCS fixes how every number and string is written, so a file re-serialised
by a browser or another language (75.0 written as 75, keys reordered, whitespace)
canonicalises to the same bytes; the signature block names its form
(`"canonicalization": "RFC8785"`; reports signed before it had none and were signed over
Python's sorted-keys `json.dumps`, which `canonical` still reproduces for them).

    report --sign()--> canonical(RFC 8785) --Ed25519--> signature
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any

import rfc8785
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ingest_server.errors import InvalidInputError
from ingest_server.evidence.algorithms import key_id
from ingest_server.kpi.records import ReportError

# The canonical form reports are signed over now; a signature block without
# "canonicalization" is of the legacy form (Python's sorted-keys json.dumps).
CANONICALIZATION = "RFC8785"
JCS_MAX_INT = 2**53 - 1  # I-JSON: integers beyond this are not exact in a double


class CanonicalFormError(InvalidInputError, ValueError):
    """The document cannot be put in the canonical form the signature names."""


def canonical(doc: dict[str, Any], form: str | None = CANONICALIZATION) -> bytes:
    """The bytes a signature covers: everything but the signature, in `form` (RFC 8785,
    or None for the legacy sorted-keys json.dumps of reports signed before RFC 8785)."""
    body = {k: v for k, v in doc.items() if k != "signature"}
    if form is None:
        return json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()
    if form != CANONICALIZATION:
        raise CanonicalFormError(
            f"unknown canonicalization {form!r}: this server knows {CANONICALIZATION!r} "
            "and the legacy form (no canonicalization field)"
        )
    problem = jcs_problem(body)
    if problem is not None:
        raise CanonicalFormError(problem)
    try:
        return rfc8785.dumps(body)
    except rfc8785.CanonicalizationError as exc:  # e.g. a key that is not a string
        raise CanonicalFormError(f"not representable in RFC 8785 JSON: {exc}") from None


def jcs_problem(value: Any, path: str = "$") -> str | None:
    """Where `value` holds something RFC 8785 JSON cannot represent exactly (NaN,
    infinity, an integer beyond 2^53 - 1, a non-string key), or None."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return None
    if isinstance(value, float):
        if math.isfinite(value):
            return None
        return (
            f"{path} is {value}: RFC 8785 JSON has no NaN or infinity; the figure must be "
            "null (no value) instead"
        )
    if isinstance(value, int):
        if abs(value) <= JCS_MAX_INT:
            return None
        return (
            f"{path} is the integer {value}, beyond 2^53 - 1: RFC 8785 JSON writes numbers "
            "as doubles, so it would not be exact; write it as a string"
        )
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                return f"{path} has the key {k!r}, which is not a string"
            found = jcs_problem(v, f"{path}.{k}")
            if found is not None:
                return found
        return None
    if isinstance(value, list | tuple):
        for i, v in enumerate(value):
            found = jcs_problem(v, f"{path}[{i}]")
            if found is not None:
                return found
        return None
    return f"{path} is a {type(value).__name__}, which is not JSON"


def sign(doc: dict[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    """Sign `doc` in place over its RFC 8785 form; raises ReportError (naming the field)
    if the document holds a value JCS cannot represent."""
    public = key.public_key()
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    doc.pop("signature", None)
    try:
        body = canonical(doc)
    except CanonicalFormError as exc:
        raise ReportError(f"the report cannot be signed: {exc}") from None
    doc["signature"] = {
        "algorithm": "Ed25519",
        "canonicalization": CANONICALIZATION,
        "key_id": key_id(public),
        "public_key": base64.b64encode(raw).decode(),
        "value": base64.b64encode(key.sign(body)).decode(),
    }
    return doc
