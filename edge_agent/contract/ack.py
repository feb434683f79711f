"""Contract v2: the server's acknowledgement of what it has stored, per gateway.

    server: commit --encode_ack--> fe/v1/{e}/{s}/{g}/ack (QoS 1) --parse_ack--> agent:
    delete those batches from the outbox

An ack is one JSON object (UTF-8), published after the database transaction that stored
the batches has committed:

    {"v": 2, "stored": [[boot, first_seq, last_seq], ...], "dead": [[boot, seq, reason], ...]}

``stored`` lists ranges of batches (inclusive) that the server's database holds: new, or
already there (a repeat is acknowledged again, so a lost ack costs one more resend).
``dead`` lists batches the server refused for their content (a signature that does not
verify, a payload that breaks the contract) and wrote to its dead letters with the
reason: keeping them would only resend them forever. A batch of a gateway the server does
not know (or has no key for) is never acknowledged: it stays in the outbox until the
gateway is enrolled. Either list may be empty, not both.

An ack is not signed: the broker's ACL lets only the server's login write `ack` topics
and a gateway read only its own (docs/deploy.md). A forged ack could make a gateway drop
batches before they are stored; the chain of batch digests then shows the gap
(`ingest-server ledger check`), so such a loss is detected, never silent.

Errors: AckError (a ValueError) names what is wrong with a payload.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, NamedTuple

ACK_VERSION = 2
MAX_ENTRIES = 100_000  # ranges plus dead batches in one ack
MAX_REASON_CHARS = 500
_MAX_BOOT = 2**31 - 1
_MAX_SEQ = 2**63 - 1

Key = tuple[int, int]  # (boot, seq)


class AckError(ValueError):
    """A payload on an ack topic that is not an ack."""


class Ack(NamedTuple):
    stored: list[tuple[int, int, int]]  # (boot, first seq, last seq), inclusive
    dead: list[tuple[int, int, str]]  # (boot, seq, reason)

    def keys(self) -> list[Key]:
        """Every (boot, seq) this ack lets the gateway delete: stored and dead."""
        out = [(b, s) for b, first, last in self.stored for s in range(first, last + 1)]
        out.extend((b, s) for b, s, _ in self.dead)
        return out


def ranges(keys: Iterable[Key]) -> list[tuple[int, int, int]]:
    """Keys as ascending (boot, first, last) ranges of consecutive seqs."""
    out: list[list[int]] = []
    for boot, seq in sorted(set(keys)):
        if out and out[-1][0] == boot and out[-1][2] == seq - 1:
            out[-1][2] = seq
        else:
            out.append([boot, seq, seq])
    return [(b, f, la) for b, f, la in out]


def encode_ack(stored: Iterable[Key], dead: Iterable[tuple[int, int, str]] = ()) -> bytes:
    """The ack for these stored batches and dead-lettered ones."""
    body: dict[str, Any] = {
        "v": ACK_VERSION,
        "stored": [list(r) for r in ranges(stored)],
        "dead": [[b, s, r[:MAX_REASON_CHARS]] for b, s, r in sorted(dead)],
    }
    if not body["stored"] and not body["dead"]:
        raise ValueError("an ack acknowledges at least one batch")
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def _int(value: object, top: int, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= top:
        raise AckError(f"{where}: {value!r} is not an integer in 0..{top}")
    return value


def _range(r: object, where: str) -> tuple[int, int, int]:
    if not isinstance(r, list) or len(r) != 3:
        raise AckError(f"{where}: not [boot, first_seq, last_seq]")
    boot, first = _int(r[0], _MAX_BOOT, where), _int(r[1], _MAX_SEQ, where)
    last = _int(r[2], _MAX_SEQ, where)
    if last < first:
        raise AckError(f"{where}: last_seq {last} is before first_seq {first}")
    if last - first > MAX_ENTRIES:
        raise AckError(f"{where}: a range of over {MAX_ENTRIES} batches")
    return boot, first, last


def parse_ack(payload: bytes) -> Ack:
    """An ack as `encode_ack` writes it; AckError names what is wrong."""
    try:
        obj = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise AckError(f"not a JSON object: {exc}") from None
    if not isinstance(obj, dict):
        raise AckError("not a JSON object")
    if obj.get("v") != ACK_VERSION:
        raise AckError(f'"v" is {obj.get("v")!r}, not {ACK_VERSION}')
    unknown = set(obj) - {"v", "stored", "dead"}
    if unknown:
        raise AckError(f"unknown member(s) {sorted(unknown)}")
    stored_in, dead_in = obj.get("stored", []), obj.get("dead", [])
    if not isinstance(stored_in, list) or not isinstance(dead_in, list):
        raise AckError('"stored" and "dead" are lists')
    if len(stored_in) + len(dead_in) > MAX_ENTRIES:
        raise AckError(f"over {MAX_ENTRIES} entries")
    stored = [_range(r, f"stored[{i}]") for i, r in enumerate(stored_in)]
    dead: list[tuple[int, int, str]] = []
    for i, d in enumerate(dead_in):
        where = f"dead[{i}]"
        if not isinstance(d, list) or len(d) != 3 or not isinstance(d[2], str):
            raise AckError(f"{where}: not [boot, seq, reason]")
        dead.append((_int(d[0], _MAX_BOOT, where), _int(d[1], _MAX_SEQ, where), d[2]))
    if not stored and not dead:
        raise AckError("acknowledges no batch")
    return Ack(stored, dead)
