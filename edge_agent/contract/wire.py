r"""MQTT contract v1: topics and payloads, signed with the gateway's HMAC key.

    fe/v1/{enterprise}/{site}/{gateway}/data     QoS 1      a batch of samples
    fe/v1/{enterprise}/{site}/{gateway}/birth    retained   devices, tags, roles, units
    fe/v1/{enterprise}/{site}/{gateway}/status   retained   online / offline (also the Will)
    fe/v1/{enterprise}/{site}/{gateway}/metrics  QoS 0      the agent's own counters

(topics.py builds and parses the topics.)

Every payload is one JSON object (UTF-8) whose last member is ``"sig"``: the hex
HMAC-SHA256, under the gateway's key, of the exact bytes of the payload with that member
removed, i.e. ``payload[: -len(',"sig":"<64 hex>"}')] + b"}"``. Signing the bytes rather
than a re-serialisation means a verifier in any language checks a stored payload without
canonicalising JSON. docs/mqtt.md gives the full schema.

A sample on the wire: ``{"d": device, "t": tag, "ts": ms, "v": value}`` plus ``"q"``
(quality) and ``"s"`` (device status text) when the quality is not good, ``"gts"``
(gateway time, ms) when the device gave its own timestamp and it differs, and ``"sts"``
(an OPC UA ServerTimestamp, ms) when it differs from ``ts``. Times are
integer milliseconds since the Unix epoch, UTC.

The server refuses a whole batch whose schema fails (docs/mqtt.md "Limits"), so a sample
the contract cannot carry is made to fit here, one sample at a time, and logged once per
tag: a value that is NaN or infinite, or a string with a NUL or over 4096 bytes of UTF-8,
is sent as a bad-quality sample whose status says why; a device time outside 1970..9999
(an OPC UA null DateTime is 1601) is replaced by the gateway time; a gateway or server
time outside it is left out; a status text is cut to 500 characters, NULs removed. Text
that is not valid Unicode (asyncua hands a device's undecodable byte 0xNN over as the
lone surrogate U+DCNN) has each such byte written as ``\xNN`` (other lone surrogates as
``\uDXXX``): distinct texts stay distinct and the bytes can be recovered.
Device and tag ids need nothing: the config allows only ids the contract takes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Iterable
from typing import Any

from edge_agent.contract.identity import Signer
from edge_agent.contract.identity import verify as ed25519_verify
from edge_agent.contract.sample import Quality, Sample

logger = logging.getLogger(__name__)

CONTRACT_VERSION = 1
_SIG_TAIL = re.compile(rb',"sig":"([0-9a-f]{64})"\}$')
# contract v2: JSON messages (birth, status, metrics) signed with the gateway's Ed25519 key
MESSAGE_VERSION_V2 = 2
MESSAGE_DOMAIN_V2 = b"fe/v2/message\x00"  # signed: these 14 bytes, then the body
_SIG2_TAIL = re.compile(rb',"sig":"([0-9a-f]{128})"\}$')
_GOOD = Quality.GOOD
_BAD = Quality.BAD
# the contract's limits (docs/mqtt.md "Limits"; the server's ingest_server/ingest/payload.py)
MAX_TEXT_BYTES = 4096
MAX_STATUS_CHARS = 500
MAX_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
_INF = float("inf")
_warned: set[tuple[str, str, str]] = set()
_WARNED_MAX = 10_000


class SignatureError(ValueError):
    """A payload whose signature is missing or does not match the key."""


class SignatureMismatchError(SignatureError):
    """Signed, but not with this key (a receiver may hold an old key: rotation)."""


def ms(t: float) -> int:
    return round(t * 1000)


def _warn_once(device: str, tag: str, what: str, detail: str) -> None:
    """Log a sample the contract cannot carry as it is, once per tag and kind of fix."""
    key = (device, tag, what)
    if key in _warned:
        return
    if len(_warned) < _WARNED_MAX:
        _warned.add(key)
    logger.warning("%s/%s: %s: %s (docs/mqtt.md, Limits)", device, tag, detail, what)


def utf8_safe(text: str) -> str:
    """`text` with whatever UTF-8 cannot carry (lone surrogates) written as escapes."""
    try:
        raw = text.encode("utf-8", "surrogateescape")  # asyncua's undecodable bytes, back
    except UnicodeEncodeError:  # a surrogate that is no escaped byte
        return text.encode("utf-8", "backslashreplace").decode()
    return raw.decode("utf-8", "backslashreplace")


def _is_utf8(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _refused_value(value: float | str) -> str | None:
    """Why the contract cannot carry this value, or None."""
    if isinstance(value, str):
        if "\x00" in value:
            return "a string holding a NUL character"
        if len(value) * 4 > MAX_TEXT_BYTES and (n := len(value.encode())) > MAX_TEXT_BYTES:
            return f"a string of {n} bytes (over {MAX_TEXT_BYTES})"
    elif value != value:  # noqa: PLR0124 (NaN is the one value unequal to itself)
        return "NaN"
    elif value in (_INF, -_INF):
        return "Inf"
    return None


def _in_range(t_ms: int | None) -> bool:
    return t_ms is not None and 0 <= t_ms <= MAX_MS


def sample_dict(s: Sample) -> dict[str, Any]:
    """One sample as the contract carries it, made to fit where it would not (the module
    docstring says how); the reference for `_sample_dicts`' fast path."""
    ts = round(s.ts * 1000)
    gts = None if s.gw_ts is None else round(s.gw_ts * 1000)
    sts = None if s.server_ts is None else round(s.server_ts * 1000)
    value, quality, status = s.value, s.quality, s.status
    if value.__class__ is str and not _is_utf8(value):
        _warn_once(s.device, s.tag, "undecodable bytes sent as \\xNN", "the text is not UTF-8")
        value = utf8_safe(value)
    if status and not _is_utf8(status):
        status = utf8_safe(status)
    if not _in_range(ts):
        # an OPC UA null DateTime (1601-01-01), a device clock gone wrong
        _warn_once(s.device, s.tag, "sent with the gateway time", f"device time {ts} ms")
        ts = gts if gts is not None and _in_range(gts) else ms(time.time())
    why = None if value is None else _refused_value(value)
    if why is not None:
        _warn_once(s.device, s.tag, "sent as bad quality", f"the value is {why}")
        value, quality, status = None, _BAD, why
    d: dict[str, Any] = {"d": s.device, "t": s.tag, "ts": ts, "v": value}
    if quality is not _GOOD:
        d["q"] = quality.value
        if status:
            d["s"] = status.replace("\x00", "")[:MAX_STATUS_CHARS]
    for key, t_ms in (("gts", gts), ("sts", sts)):
        if t_ms is not None and t_ms != ts:
            if _in_range(t_ms):
                d[key] = t_ms
            else:
                _warn_once(s.device, s.tag, f"{key} left out", f"{key} {t_ms} ms")
    return d


def _sample_dicts(samples: Iterable[Sample]) -> list[dict[str, Any]]:
    """sample_dict for a batch, fast: the samples of one read share a timestamp, and a
    sample that needs fitting to the contract (rare) goes the slow way. NaN and infinity
    are not looked for here: `_dumps` refuses them, and `encode_batch` then fits them."""
    out: list[dict[str, Any]] = []
    append = out.append
    last_ts, last_ms, ts_ok = None, 0, True
    for sample in samples:
        device, tag, ts, value, quality, gw_ts, status, server_ts = sample
        if ts != last_ts:
            last_ts, last_ms = ts, round(ts * 1000)
            ts_ok = 0 <= last_ms <= MAX_MS
        if not ts_ok or (
            value.__class__ is str and ("\x00" in value or len(value) * 4 > MAX_TEXT_BYTES)
        ):
            append(sample_dict(sample))
            continue
        d: dict[str, Any] = {"d": device, "t": tag, "ts": last_ms, "v": value}
        odd = False
        if quality is not _GOOD:
            d["q"] = quality.value
            if status:
                d["s"] = status
                odd = len(status) > MAX_STATUS_CHARS or "\x00" in status
        if gw_ts is not None:
            gts = round(gw_ts * 1000)
            if gts != last_ms:
                d["gts"] = gts
                odd = odd or not 0 <= gts <= MAX_MS
        if server_ts is not None and server_ts != ts:
            sts = round(server_ts * 1000)
            if sts != last_ms:
                d["sts"] = sts
                odd = odd or not 0 <= sts <= MAX_MS
        append(sample_dict(sample) if odd else d)
    return out


def sample_dicts(samples: Iterable[Sample]) -> list[dict[str, Any]]:
    """The wire sample dicts of a batch, fast (a v2 batch is sealed from these). NaN,
    infinity and text that is not UTF-8 are left in: sealing refuses them (ValueError),
    and the caller then runs `fit_late` over the dicts and seals again."""
    return _sample_dicts(samples)


def fit_late(dicts: list[dict[str, Any]]) -> None:
    """Make the rare samples `sample_dicts` leaves unfitted fit the contract, in place."""
    _fit_late(dicts)


def _fit_late(dicts: list[dict[str, Any]]) -> None:
    """What the fast path leaves to `_dumps` to find, being rare: NaN and infinite values
    as bad-quality samples (JSON has no token for them), text that is not UTF-8 fitted
    as `sample_dict` fits it."""
    for i, d in enumerate(dicts):
        value = d["v"]
        if value.__class__ is float and (why := _refused_value(value)) is not None:
            _warn_once(d["d"], d["t"], "sent as bad quality", f"the value is {why}")
            d["v"], d["q"], d["s"] = None, _BAD.value, why
        elif not (_is_utf8(value) if value.__class__ is str else True) or not _is_utf8(
            d.get("s") or ""
        ):
            sec = {k: d[k] / 1000 for k in ("gts", "sts") if k in d}
            dicts[i] = sample_dict(
                Sample(d["d"], d["t"], d["ts"] / 1000, value, Quality(d.get("q", "good")),
                       gw_ts=sec.get("gts"), status=d.get("s"), server_ts=sec.get("sts"))
            )  # fmt: skip


def sign(body: bytes, key: bytes) -> bytes:
    """Append the signature member to a JSON object's bytes."""
    if not (body.startswith(b'{"') and body.endswith(b"}")):
        raise ValueError("body must be a non-empty JSON object")
    mac = hmac.new(key, body, hashlib.sha256).hexdigest().encode()
    return body[:-1] + b',"sig":"' + mac + b'"}'


def _dumps(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def encode_batch(
    *, gw: str, boot: int, seq: int, sent: float, samples: Iterable[Sample], key: bytes
) -> bytes:
    dicts = _sample_dicts(samples)
    body = {"v": CONTRACT_VERSION, "gw": gw, "boot": boot, "seq": seq, "sent": ms(sent),
            "samples": dicts}  # fmt: skip
    try:
        data = _dumps(body)
    except ValueError:  # NaN, infinity or a lone surrogate: rare, so fitted late
        _fit_late(dicts)
        data = _dumps(body)
    return sign(data, key)


def encode_message(body: dict[str, Any], key: bytes) -> bytes:
    """Any other payload (birth, status, metrics): versioned and signed the same way."""
    return sign(_dumps({"v": CONTRACT_VERSION, **body}), key)


def check_signature(payload: bytes, key: bytes) -> None:
    """Raise SignatureError unless the payload's "sig" is its HMAC under `key`."""
    m = _SIG_TAIL.search(payload)
    if m is None:
        raise SignatureError('payload does not end with a "sig" member')
    body = payload[: m.start()] + b"}"
    expected = hmac.new(key, body, hashlib.sha256).hexdigest().encode()
    if not hmac.compare_digest(expected, m.group(1)):
        raise SignatureMismatchError("signature does not match the gateway's key")


def sign_v2(body: bytes, signer: Signer) -> bytes:
    """Contract v2: append an Ed25519 "sig" member (128 hex digits) to a JSON object's
    bytes, signing ``MESSAGE_DOMAIN_V2 + body`` (the domain keeps a message signature from
    ever passing as a batch signature, which signs a 32-byte digest)."""
    if not (body.startswith(b'{"') and body.endswith(b"}")):
        raise ValueError("body must be a non-empty JSON object")
    sig = signer.sign(MESSAGE_DOMAIN_V2 + body).hex().encode()
    return body[:-1] + b',"sig":"' + sig + b'"}'


def encode_message_v2(body: dict[str, Any], signer: Signer) -> bytes:
    """A v2 gateway's birth, status or metrics: {"v": 2, ...} signed with its key."""
    return sign_v2(_dumps({"v": MESSAGE_VERSION_V2, **body}), signer)


def check_signature_v2(payload: bytes, public_key: bytes) -> None:
    """Raise SignatureError unless the payload's "sig" is the Ed25519 signature of its
    body (the payload without that member) under the gateway's enrolled public key."""
    m = _SIG2_TAIL.search(payload)
    if m is None:
        raise SignatureError(
            'payload does not end with a "sig" member of 128 hex digits (an Ed25519 '
            "signature: contract v2)"
        )
    body = payload[: m.start()] + b"}"
    if not ed25519_verify(public_key, bytes.fromhex(m.group(1).decode()), MESSAGE_DOMAIN_V2 + body):
        raise SignatureMismatchError("signature does not verify with the gateway's public key")


def verify_v2(payload: bytes, public_key: bytes) -> dict[str, Any]:
    """Check a v2 message's Ed25519 signature and return the decoded object."""
    check_signature_v2(payload, public_key)
    obj = json.loads(payload)
    if not isinstance(obj, dict):
        raise SignatureError("payload is not a JSON object")
    return obj


def verify(payload: bytes, key: bytes) -> dict[str, Any]:
    """Check the signature and return the decoded object (the server's side, and tests')."""
    check_signature(payload, key)
    obj = json.loads(payload)
    if not isinstance(obj, dict):
        raise SignatureError("payload is not a JSON object")
    return obj
