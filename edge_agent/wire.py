"""MQTT contract v1: topics and payloads, signed with the gateway's HMAC key.

    fe/v1/{enterprise}/{site}/{gateway}/data     QoS 1      a batch of samples
    fe/v1/{enterprise}/{site}/{gateway}/birth    retained   devices, tags, roles, units
    fe/v1/{enterprise}/{site}/{gateway}/status   retained   online / offline (also the Will)
    fe/v1/{enterprise}/{site}/{gateway}/metrics  QoS 0      the agent's own counters

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
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterable
from typing import Any

from edge_agent.sample import Quality, Sample

CONTRACT_VERSION = 1
_SIG_TAIL = re.compile(rb',"sig":"([0-9a-f]{64})"\}$')
_GOOD = Quality.GOOD


class SignatureError(ValueError):
    """A payload whose signature is missing or does not match the key."""


def topic(prefix: str, kind: str) -> str:
    return f"{prefix}/{kind}"


def ms(t: float) -> int:
    return round(t * 1000)


def sample_dict(s: Sample) -> dict[str, Any]:
    d: dict[str, Any] = {"d": s.device, "t": s.tag, "ts": round(s.ts * 1000), "v": s.value}
    if s.quality is not _GOOD:
        d["q"] = s.quality.value
        if s.status:
            d["s"] = s.status
    if s.gw_ts is not None:
        gts = round(s.gw_ts * 1000)
        if gts != d["ts"]:
            d["gts"] = gts
    if s.server_ts is not None:
        sts = round(s.server_ts * 1000)
        if sts != d["ts"]:
            d["sts"] = sts
    return d


def _sample_dicts(samples: Iterable[Sample]) -> list[dict[str, Any]]:
    """sample_dict for a batch, fast: the samples of one read share a timestamp."""
    out: list[dict[str, Any]] = []
    append = out.append
    last_ts, last_ms = None, 0
    for device, tag, ts, value, quality, gw_ts, status, server_ts in samples:
        if ts != last_ts:
            last_ts, last_ms = ts, round(ts * 1000)
        d: dict[str, Any] = {"d": device, "t": tag, "ts": last_ms, "v": value}
        if quality is not _GOOD:
            d["q"] = quality.value
            if status:
                d["s"] = status
        if gw_ts is not None:
            gts = round(gw_ts * 1000)
            if gts != last_ms:
                d["gts"] = gts
        if server_ts is not None and server_ts != ts:
            sts = round(server_ts * 1000)
            if sts != last_ms:
                d["sts"] = sts
        append(d)
    return out


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
    body = {
        "v": CONTRACT_VERSION,
        "gw": gw,
        "boot": boot,
        "seq": seq,
        "sent": ms(sent),
        "samples": _sample_dicts(samples),
    }
    return sign(_dumps(body), key)


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
        raise SignatureError("signature does not match the gateway's key")


def verify(payload: bytes, key: bytes) -> dict[str, Any]:
    """Check the signature and return the decoded object (the server's side, and tests')."""
    check_signature(payload, key)
    obj = json.loads(payload)
    if not isinstance(obj, dict):
        raise SignatureError("payload is not a JSON object")
    return obj
