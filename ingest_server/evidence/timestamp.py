"""RFC 3161 time-stamp tokens over a day's Merkle root: asked of a time-stamping
authority (TSA) over HTTP, and verified against the TSA certificate a caller trusts.

What is time-stamped is the 32-byte root itself: the request's message imprint is
SHA-256(root) (RFC 3161 hashes the data it stamps), so `openssl ts -verify -data root.bin
-in token.tsr -CAfile ca.pem -untrusted tsa.pem` checks a stored token with no code of
ours. A request carries a random nonce and certReq (the TSA puts its certificate in the
token), and is POSTed as application/timestamp-query (RFC 3161 section 3.4). What is kept
is the TSA's whole answer, the DER TimeStampResp: its status and the token it carries.

The ASN.1 and CMS work is the maintained `rfc3161-client` (pinned in the `server` extra);
HTTP is the standard library's (it honours http_proxy/https_proxy/no_proxy, as a plant
behind a proxy needs). Each failure is its own exception, worded for an operator:

    TsaUnreachableError  no answer: connection refused, DNS, timeout, HTTP error
    TsaRefusedError      the TSA answered but granted nothing (its status and reason)
    TokenInvalidError    a token that does not hold: another imprint or nonce, a
                         signature or certificate that does not verify, an untrusted TSA

Each has its `kind` (unreachable, refused, token_invalid; `error_kind` gives `other` for
anything else), stored beside the error's text (anchor_tokens.last_error_kind, migration
0014) so that the console says what failed in the user's language.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from rfc3161_client import (
    HashAlgorithm,
    PKIStatus,
    TimestampRequestBuilder,
    TimeStampResponse,
    VerificationError,
    VerifierBuilder,
    decode_timestamp_response,
)

from ingest_server.errors import InvalidInputError, RefusedError, UnavailableError

QUERY_TYPE = "application/timestamp-query"
REPLY_TYPE = "application/timestamp-reply"
TIMEOUT_S = 15.0
MAX_REPLY = 1 << 20  # a token is a few kB; a TSA sending more is not one


class TsaUnreachableError(UnavailableError):
    """The TSA could not be asked: the day stays pending, the next run asks again."""

    kind = "unreachable"


class TsaRefusedError(RefusedError):
    """The TSA answered without granting a token (RFC 3161 PKIStatus rejection, waiting,
    revocation...)."""

    kind = "refused"


class TokenInvalidError(RefusedError):
    """A token that does not prove what it should about this root."""

    kind = "token_invalid"


# the kinds of a TSA's failure, as stored and as the console's catalogue words them
# (i18n.js `anchor_err_<kind>`)
ERROR_KINDS = ("unreachable", "refused", "token_invalid", "other")


def error_kind(exc: BaseException) -> str:
    """The kind of a failure to time-stamp: one of ERROR_KINDS."""
    kind = getattr(exc, "kind", None)
    return kind if isinstance(kind, str) and kind in ERROR_KINDS else "other"


class TsaCertificateError(InvalidInputError):
    """A --tsa-cert file that cannot serve as a trust anchor."""


@dataclass(frozen=True)
class Stamp:
    """A granted token over a root: the TSA's whole answer (DER TimeStampResp) and the
    time it vouches for."""

    response: bytes
    gen_time: dt.datetime
    tsa_url: str
    tsa_name: str  # the TSA's certificate subject (RFC 4514), or the URL without a cert


def _imprint(root: bytes) -> bytes:
    if len(root) != 32:
        raise ValueError(f"a Merkle root is 32 bytes, not {len(root)}")
    return hashlib.sha256(root).digest()


def request_token(url: str, root: bytes, *, timeout_s: float = TIMEOUT_S) -> Stamp:
    """Ask the TSA at `url` for a token over `root` (module docstring). The answer is
    checked as far as it can be without a trust anchor: granted, over this root's imprint
    in SHA-256, with the request's nonce; `verify_token` checks who signed it."""
    req = (
        TimestampRequestBuilder()
        .data(root)
        .hash_algorithm(HashAlgorithm.SHA256)
        .nonce(nonce=True)
        .cert_request(cert_request=True)
        .build()
    )
    _imprint(root)
    http = urllib.request.Request(
        url,
        data=req.as_bytes(),
        method="POST",
        headers={"Content-Type": QUERY_TYPE, "Accept": REPLY_TYPE},
    )
    try:
        with urllib.request.urlopen(http, timeout=timeout_s) as answer:
            body = answer.read(MAX_REPLY + 1)
            kind = answer.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        raise TsaUnreachableError(f"TSA {url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TsaUnreachableError(f"TSA {url} unreachable: {reason}") from None
    if len(body) > MAX_REPLY:
        raise TsaUnreachableError(f"TSA {url}: an answer over {MAX_REPLY} bytes is no token")
    try:
        response = decode_timestamp_response(body)
    except ValueError as exc:
        raise TsaUnreachableError(
            f"TSA {url}: the answer ({kind or 'no content type'}, {len(body)} bytes) is not "
            f"an RFC 3161 TimeStampResp ({exc}); is the URL the TSA's?"
        ) from None
    _granted(url, response)
    info = response.tst_info
    if info.message_imprint.message != _imprint(root):
        raise TokenInvalidError(
            f"TSA {url} stamped another imprint ({info.message_imprint.message.hex()}) "
            f"than the root's SHA-256 ({_imprint(root).hex()})"
        )
    if info.nonce != req.nonce:
        raise TokenInvalidError(f"TSA {url} answered with another nonce: a replayed answer")
    return Stamp(body, _utc(info.gen_time), url, _signer_name(response) or url)


def _granted(url: str, response: TimeStampResponse) -> None:
    status = PKIStatus(response.status)
    if status not in (PKIStatus.GRANTED, PKIStatus.GRANTED_WITH_MODS):
        text = "; ".join(response.status_string) or "no reason given"
        raise TsaRefusedError(f"TSA {url} refused the request: status {status.name} ({text})")


def _utc(t: dt.datetime) -> dt.datetime:
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)


def _signer_name(response: TimeStampResponse) -> str | None:
    """The subject of the certificate the token names as its signer, if it carries it."""
    try:
        (signer,) = response.signed_data.signer_infos
        for der in response.signed_data.certificates:
            cert = x509.load_der_x509_certificate(der)
            if cert.issuer == signer.issuer and cert.serial_number == signer.serial_number:
                return cert.subject.rfc4514_string()
    except ValueError:
        return None
    return None


def load_trust(path: Path) -> list[x509.Certificate]:
    """A --tsa-cert file: PEM, the TSA's certificate first, then the CA certificates up
    to a self-signed root (the chain the TSA's provider publishes)."""
    try:
        certs = x509.load_pem_x509_certificates(path.read_bytes())
    except OSError as exc:
        raise TsaCertificateError(f"--tsa-cert {path}: cannot read it ({exc})") from None
    except ValueError:
        raise TsaCertificateError(
            f"--tsa-cert {path}: no PEM certificate in it; give the TSA's certificate "
            "followed by its CA certificates, in PEM"
        ) from None
    if not any(c.issuer == c.subject for c in certs):
        raise TsaCertificateError(
            f"--tsa-cert {path}: no self-signed (root) certificate in it: append the CA "
            f"certificates that issued {certs[0].subject.rfc4514_string()}, up to the root"
        )
    return certs


def verify_token(response: bytes, root: bytes, trust: Sequence[x509.Certificate]) -> dt.datetime:
    """The time `response` (a stored TimeStampResp) vouches that `root` existed, once it
    is shown granted, over this root, signed by the TSA certificate trust[0] (pinned),
    which chains to a root certificate in `trust` and bears the timeStamping usage.
    Raises TokenInvalidError naming what does not hold."""
    if not trust:
        raise TsaCertificateError("no TSA certificate to verify the token against")
    try:
        decoded = decode_timestamp_response(response)
    except ValueError as exc:
        raise TokenInvalidError(f"not an RFC 3161 TimeStampResp: {exc}") from None
    if PKIStatus(decoded.status) not in (PKIStatus.GRANTED, PKIStatus.GRANTED_WITH_MODS):
        raise TokenInvalidError(f"the TSA granted nothing (status {decoded.status})")
    imprint = decoded.tst_info.message_imprint.message
    if imprint != _imprint(root):
        raise TokenInvalidError(
            f"the token stamps imprint {imprint.hex()[:16]}..., not this root "
            f"({root.hex()[:16]}..., imprint {_imprint(root).hex()[:16]}...)"
        )
    roots = [c for c in trust if c.issuer == c.subject]
    inter = [c for c in trust[1:] if c.issuer != c.subject]
    verifier = VerifierBuilder(tsa_certificate=trust[0], roots=roots, intermediates=inter).build()
    try:
        verifier.verify_message(decoded, root)
    except VerificationError as exc:
        raise TokenInvalidError(
            f"not signed by the trusted TSA {trust[0].subject.rfc4514_string()}: {exc}"
        ) from None
    return _utc(decoded.tst_info.gen_time)


def verify_any(
    response: bytes, root: bytes, trusts: Sequence[Sequence[x509.Certificate]]
) -> dt.datetime:
    """`verify_token` under the first of several trusted TSAs that verifies it (a day is
    stamped by several TSAs; each token names its own)."""
    reasons = []
    for trust in trusts:
        try:
            return verify_token(response, root, trust)
        except TokenInvalidError as exc:
            reasons.append(str(exc))
    raise TokenInvalidError("; ".join(dict.fromkeys(reasons)) or "no TSA certificate given")
