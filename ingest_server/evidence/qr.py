"""What a printed report carries to be matched with its signed file: the report id, a
short digest and a QR code holding both with the signature.

The report digest is SHA-256 over the bytes the signature covers: the RFC 8785 canonical
JSON of everything but the signature (evidence/canonical.py; a report signed before RFC
8785, in the legacy form its signature block names; an unsigned draft, in RFC 8785).
The page prints its first 16 hex digits in groups of four (`3f2a 9c41 07be d5e8`):
64 bits, which nobody can hit with a second report short of 2^64 tries. It is not
the input-rows `digest` inside the report: that one is part of what is signed.

The QR text, one line of ASCII, colon-separated:

    FE1:<report id>:<report digest, 64 lowercase hex>:<signature, base64url, no padding>

`FE1` names this layout (a later one gets `FE2`). The id comes first and the signature
last (base64url has no colon), so an id holding a colon still parses. A signed report's
text is about 192 characters: QR version 10 at error correction M (57 x 57 modules)
in byte mode; segno raises the correction level when the same version allows. Printed
at 0.5 mm a module with the 4-module quiet zone, 32.5 mm square. An unsigned draft gets
no QR: it is not evidence, and there is no signature to match.

    report --canonical()--> SHA-256 --> id, digest, signature --> FE1 text --> segno

Matching a paper copy to a file (`check_paper`) says they are the same report; whether
the file is genuine is `verify`'s question (its signature, by a trusted key).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ingest_server.errors import InvalidInputError
from ingest_server.evidence.canonical import CanonicalFormError, canonical
from ingest_server.kpi.results import FORMAT

if TYPE_CHECKING:  # segno is needed to draw the code only, not to read its text
    import segno

QR_PREFIX = "FE1"
QR_ERROR = "m"
MODULE_MM = 0.5  # printed size of one module; 300 dpi prints it 6 dots wide
QUIET_ZONE = 4  # modules, as ISO/IEC 18004 requires around a QR code
# a report id this server makes is a UUID; one long enough to push the code past about
# version 15 (too fine to print in 35 mm) is no id of ours: no code for it
MAX_QR_TEXT = 400
_HEX64 = re.compile(r"[0-9a-f]{64}")
_B64URL = re.compile(r"[A-Za-z0-9_-]+")


class QrTextError(InvalidInputError, ValueError):
    """The text read from a printed report's QR code is not one this server writes."""


@dataclass(frozen=True, slots=True)
class PaperMark:
    """What the first page prints: `qr_text` is None for an unsigned draft (or a text
    too long to print as a code, MAX_QR_TEXT)."""

    report_id: str
    digest: str  # 64 lowercase hex
    qr_text: str | None

    @property
    def short_digest(self) -> str:
        return short_digest(self.digest)


@dataclass(frozen=True, slots=True)
class QrPayload:
    """A QR text, parsed."""

    report_id: str
    digest: str
    signature: bytes


def report_digest(doc: dict[str, Any]) -> str:
    """SHA-256 (hex) of the bytes the report's signature covers, in the form its
    signature block names; raises CanonicalFormError when they cannot be reproduced."""
    sig = doc.get("signature")
    form = sig.get("canonicalization") if isinstance(sig, dict) else None
    body = canonical(doc, form) if isinstance(sig, dict) else canonical(doc)
    return hashlib.sha256(body).hexdigest()


def short_digest(digest: str) -> str:
    """The first 16 hex digits in groups of four: read aloud or compared by eye."""
    head = digest[:16]
    return " ".join(head[i : i + 4] for i in range(0, len(head), 4))


def _signature_bytes(doc: dict[str, Any]) -> bytes | None:
    sig = doc.get("signature")
    if not isinstance(sig, dict) or not isinstance(sig.get("value"), str):
        return None
    try:
        raw = base64.b64decode(sig["value"], validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw or None


def qr_text(report_id: str, digest: str, signature: bytes) -> str:
    sig = base64.urlsafe_b64encode(signature).decode().rstrip("=")
    return f"{QR_PREFIX}:{report_id}:{digest}:{sig}"


def paper_mark(doc: dict[str, Any]) -> PaperMark | None:
    """The id, digest and QR text of a report; None when the document is no report, has
    no id or its signed bytes cannot be reproduced (nothing to print a mark for)."""
    rid = doc.get("report_id")
    if doc.get("format") != FORMAT or not isinstance(rid, str) or not rid:
        return None
    try:
        digest = report_digest(doc)
    except CanonicalFormError:
        return None
    sig = _signature_bytes(doc)
    text = None if sig is None else qr_text(rid, digest, sig)
    return PaperMark(rid, digest, text if text is None or len(text) <= MAX_QR_TEXT else None)


def qr_code(text: str) -> segno.QRCode:
    """The QR symbol of `text`: a full QR code (never Micro QR), at least level M."""
    import segno  # noqa: PLC0415 (the server extra's; reading a QR text needs none)

    return segno.make_qr(text, error=QR_ERROR)


def qr_svg(text: str) -> str:
    """The code as inline SVG for the printed page: fixed millimetre size, white quiet
    zone drawn (a tinted paper or a print background setting cannot eat it), no XML
    namespace URL (the page holds no link of any kind)."""
    return str(
        qr_code(text).svg_inline(
            scale=MODULE_MM, unit="mm", border=QUIET_ZONE, dark="#000", light="#fff",
            title="报告编号、报告摘要与签名 / report id, digest and signature",
        )
    )  # fmt: skip


def qr_data_uri(text: str) -> str:
    """The code as an SVG data: URI for the console (an <img>, never markup in the page)."""
    return str(qr_code(text).svg_data_uri(scale=4, border=QUIET_ZONE, dark="#000", light="#fff"))


def paper_json(doc: dict[str, Any]) -> dict[str, Any] | None:
    """The mark as the API gives it with a verdict: the console shows it beside it."""
    mark = paper_mark(doc)
    if mark is None:
        return None
    return {
        "report_id": mark.report_id,
        "digest": mark.digest,
        "short_digest": mark.short_digest,
        "qr_text": mark.qr_text,
        "qr_svg": None if mark.qr_text is None else qr_data_uri(mark.qr_text),
    }


def parse_qr_text(text: str) -> QrPayload:
    """A scanned QR text (surrounding whitespace, as scanners add, is ignored); refused
    with what is wrong and what was expected."""
    text = text.strip()
    layout = f"{QR_PREFIX}:<report id>:<64 hex digest>:<base64url signature>"
    prefix, _, rest = text.partition(":")
    if prefix != QR_PREFIX:
        raise QrTextError(
            f"the QR text starts with {prefix[:16]!r}, not {QR_PREFIX!r}: it is not a "
            f"factory-evidence report's code (expected {layout})"
        )
    parts = rest.rsplit(":", 2)
    if len(parts) != 3 or not parts[0]:
        raise QrTextError(f"the QR text has not the four fields of {layout}")
    rid, digest, sig = parts
    digest = digest.lower()
    if not _HEX64.fullmatch(digest):
        raise QrTextError(
            f"the QR text's digest {digest[:70]!r} is not 64 hex digits: a misread or "
            "cut-off scan; scan it again"
        )
    if not _B64URL.fullmatch(sig) or len(sig) % 4 == 1:
        raise QrTextError(
            "the QR text's signature is not base64url (A-Z a-z 0-9 - _): a misread or "
            "cut-off scan; scan it again"
        )
    raw = base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))
    return QrPayload(rid, digest, raw)


def check_paper(qr: str | QrPayload, doc: dict[str, Any]) -> list[str]:
    """How a printed report's QR code differs from a report file; empty when the paper
    is a copy of that file (same id, same signed content, same signature). It does not
    check the signature itself: `ingest-server verify` does."""
    payload = parse_qr_text(qr) if isinstance(qr, str) else qr
    mark = paper_mark(doc)
    if mark is None:
        return ["the file has no report id or its signed content cannot be reproduced"]
    out = []
    if payload.report_id != mark.report_id:
        out.append(f"report id: paper {payload.report_id}, file {mark.report_id}")
    if payload.digest != mark.digest:
        out.append(
            f"report digest: paper {short_digest(payload.digest)}, file {mark.short_digest} "
            "(the file's signed content is not the printed report's)"
        )
    sig = _signature_bytes(doc)
    if sig is None:
        out.append("signature: the file is unsigned or its signature is not base64")
    elif sig != payload.signature:
        out.append("signature: the paper's is not the file's")
    return out
