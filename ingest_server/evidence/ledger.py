"""The ledger check (contract v2, issue 16): do the stored rows still say what each
gateway signed, and is every batch of its chain stored?

    stored rows (repo/ledger.py, or rows exported for an offline verifier)
      --check--> per batch: samples in batch_pos order --batch_digest--> == stored digest?
                            signature of the digest under the key enrolled when it arrived?
                            positions exactly 0..n_total-1?
                 per gateway, in (boot, seq) order: prev = digest of the batch just before?
      --> Result: findings (changed, signature, positions, gap, order, orphan_samples),
                  notes (a new outbox) and the counts

Pure: no database, no clock. The rows are plain named tuples in the order the SQL (or an
export) gives them, so that issue 17's offline verifier runs these very checks over
exported rows; a sample's `ts` may be a datetime or ms since the epoch.

A gap is named and never bridged: a batch whose `prev` names no stored batch, or a
(boot, seq) missing between stored ones, is reported with the batches it leaves out, even
when the batches on either side verify.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from edge_agent.contract.digest import ZERO, SampleRow, batch_digest, verify_batch
from edge_agent.contract.identity import fingerprint

Kind = Literal["changed", "signature", "positions", "gap", "order", "orphan_samples"]
# what a batch is in the check: its contents are checked (`period`), or it is there for
# the chain only: stored between the period's batches but sent outside it (`span`), the
# batch just before them (`before`) or just after (`after`)
Role = Literal["period", "span", "before", "after"]
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MS = dt.timedelta(milliseconds=1)
_LISTED = 5  # positions named in a finding; the rest are counted


class Batch(NamedTuple):
    """One stored batch: the columns of `batches`, its gateway's names and its role."""

    batch_id: int
    gateway: str  # enterprise/site/gateway: what findings name
    gw: str  # the gateway's id: what the digest covers
    boot: int
    seq: int
    sent: dt.datetime
    received_at: dt.datetime
    contract: int
    prev: bytes | None  # None for a v1 batch, as digest, signature and n_total
    digest: bytes | None
    signature: bytes | None
    n_total: int | None
    role: Role


class StoredSample(NamedTuple):
    """One stored sample of a v2 batch, from `samples` or `samples_aside`."""

    batch_id: int
    batch_pos: int
    device: str | None  # None: its series is gone
    tag: str | None
    ts: dt.datetime | int  # int: ms since the epoch
    value: float | None
    text: str | None
    quality: int
    status: str | None


class GatewayKey(NamedTuple):
    """A public key a gateway had, and when (gateway_public_keys)."""

    gateway: str
    public_key: bytes
    enrolled_at: dt.datetime
    retired_at: dt.datetime | None


class Orphans(NamedTuple):
    """Samples of the period whose batch_id names no stored batch."""

    gateway: str
    batch_id: int
    n: int
    first_ts: dt.datetime
    last_ts: dt.datetime


class Finding(NamedTuple):
    gateway: str
    boot: int | None  # None for orphan samples: their batch is not stored
    seq: int | None
    kind: Kind | Literal["note"]
    message: str
    missing: int = 0  # a gap: the batches it certainly leaves out (0: not known)

    def where(self) -> str:
        if self.boot is None:
            return self.gateway
        return f"{self.gateway} boot {self.boot} seq {self.seq}"


@dataclass
class Result:
    findings: list[Finding] = field(default_factory=list)
    notes: list[Finding] = field(default_factory=list)  # not errors: a new outbox
    batches_checked: int = 0
    samples_recomputed: int = 0
    gaps: int = 0
    missing: int = 0  # batches known to be missing (a gap whose size is known)
    v1_batches: int = 0  # in the period, not gateway-signed

    @property
    def ok(self) -> bool:
        return not self.findings


def ts_ms(ts: dt.datetime | int) -> int:
    """A stored time as the wire's ms, exactly (no float on the way)."""
    if isinstance(ts, int):
        return ts
    return (ts - _EPOCH) // _MS


def sample_rows(samples: Sequence[StoredSample]) -> list[SampleRow]:
    """What the gateway digested, rebuilt from stored rows in batch_pos order: a text
    value if `text` is set, else the number or None (spec: docs/mqtt.md)."""
    return [
        (
            s.device,  # type: ignore[misc]  # None fails in batch_digest, as it should
            s.tag,
            ts_ms(s.ts),
            s.text if s.text is not None else s.value,
            s.quality,
            s.status,
        )
        for s in sorted(samples, key=lambda s: s.batch_pos)
    ]


def keys_at(keys: Iterable[GatewayKey], gateway: str, when: dt.datetime) -> list[GatewayKey]:
    """The gateway's keys in effect at `when`: enrolled at or before it, not retired."""
    return [
        k
        for k in keys
        if k.gateway == gateway
        and k.enrolled_at <= when
        and (k.retired_at is None or when < k.retired_at)
    ]


def check_batch(
    batch: Batch, samples: Sequence[StoredSample], keys: Sequence[GatewayKey]
) -> list[Finding]:
    """The findings of one stored v2 batch's contents: positions, digest, signature."""
    # a v2 batch: the schema (batches_v2_signed) holds all four
    assert batch.prev is not None
    assert batch.digest is not None
    assert batch.n_total is not None
    found: list[Finding] = []

    def finding(kind: Kind, message: str) -> None:
        found.append(Finding(batch.gateway, batch.boot, batch.seq, kind, message))

    wrong = _positions(samples, batch.n_total)
    if wrong:
        finding("positions", f"{wrong} (n_total {batch.n_total})")
    try:
        digest = batch_digest(
            gw=batch.gw, boot=batch.boot, seq=batch.seq, prev=bytes(batch.prev),
            samples=sample_rows(samples),
        )  # fmt: skip
    except ValueError as exc:
        digest = None
        finding("changed", f"the stored samples cannot be digested: {exc}")
    if digest is not None and digest != bytes(batch.digest):
        finding(
            "changed",
            "a stored sample of this batch differs from what the gateway signed (the digest "
            f"recomputed from {len(samples)} stored samples is {digest.hex()[:16]}..., the "
            f"signed one {bytes(batch.digest).hex()[:16]}...)",
        )
    message = _signature(batch, keys)
    if message:
        finding("signature", message)
    return found


def _positions(samples: Sequence[StoredSample], n_total: int) -> str:
    """What is wrong with the batch positions, or ''."""
    counts = Counter(s.batch_pos for s in samples)
    missing = [p for p in range(n_total) if p not in counts]
    twice = sorted(p for p, n in counts.items() if n > 1)
    outside = sorted(p for p in counts if not 0 <= p < n_total)
    parts = [
        f"{what} {_listed(ps)}"
        for what, ps in (
            ("missing: position(s)", missing),
            ("stored more than once: position(s)", twice),
            ("beyond the batch: position(s)", outside),
        )
        if ps
    ]
    if not parts:
        return ""
    return f"{len(samples)} sample(s) stored for {n_total} signed; " + "; ".join(parts)


def _listed(positions: list[int]) -> str:
    shown = ", ".join(map(str, positions[:_LISTED]))
    more = len(positions) - _LISTED
    return shown + (f" and {more} more" if more > 0 else "")


def _signature(batch: Batch, keys: Sequence[GatewayKey]) -> str:
    """'' when a key of the gateway in effect when the batch arrived signed its stored
    digest; else what is wrong."""
    digest, signature = bytes(batch.digest or b""), bytes(batch.signature or b"")
    in_effect = keys_at(keys, batch.gateway, batch.received_at)
    if any(verify_batch(bytes(k.public_key), digest, signature) for k in in_effect):
        return ""
    when = batch.received_at.isoformat()
    if in_effect:
        tried = ", ".join(fingerprint(bytes(k.public_key)) for k in in_effect)
        text = f"the signature does not verify under key {tried}, enrolled when it arrived ({when})"
    else:
        text = f"no public key of the gateway was enrolled when it arrived ({when})"
    other = [
        k
        for k in keys
        if k.gateway == batch.gateway
        and k not in in_effect
        and verify_batch(bytes(k.public_key), digest, signature)
    ]
    for k in other:
        until = "now" if k.retired_at is None else k.retired_at.isoformat()
        text += (
            f"; it verifies under key {fingerprint(bytes(k.public_key))}, which was in effect "
            f"from {k.enrolled_at.isoformat()} to {until} only"
        )
    return text


def check_chain(batches: Sequence[Batch], known: Mapping[bytes, Batch]) -> list[Finding]:
    """One gateway's chain over `batches` (its stored batches of the period with those
    around them, any order): each link, findings and notes. `known` maps the digest of
    every stored batch fetched (these, and those some `prev` names) to it."""
    found: list[Finding] = []
    ordered = sorted(batches, key=lambda b: (b.boot, b.seq))
    for i, b in enumerate(ordered):
        if b.role == "before" or b.contract != 2:
            continue  # the link into `before` is not this period's; v1 has none
        p = ordered[i - 1] if i else None
        found += _link(b, p, known)
    return found


def _link(b: Batch, p: Batch | None, known: Mapping[bytes, Batch]) -> list[Finding]:
    """The findings of one link: b's prev against p, the stored batch just before b."""

    def f(kind: Kind | Literal["note"], message: str, missing: int = 0) -> list[Finding]:
        return [Finding(b.gateway, b.boot, b.seq, kind, message, missing)]

    prev = bytes(b.prev or ZERO)
    if p is not None and p.digest is not None and prev == bytes(p.digest):
        return []  # the link holds: whatever the numbering, nothing sealed in between
    named = known.get(prev)
    if p is None:
        if prev == ZERO:
            return f("note", "a new outbox (prev ZERO): the gateway's first stored batch")
        if named is not None:
            return f("order", f"prev names {_key(named)}, stored after it")
        return f(
            "gap",
            f"the batches before boot {b.boot} seq {b.seq} are not stored (prev names no "
            "stored batch): never received, or deleted",
        )
    missing, n = _missing(p, b)
    if n:
        restart = " (the gateway restarted its chain after them: prev ZERO)" if prev == ZERO else ""
        return f("gap", f"{missing} not stored: never received, or deleted{restart}", n)
    if prev == ZERO:
        if b.boot != p.boot or p.contract != 2:
            return f("note", "a new outbox (prev ZERO) at a new boot")
        return f(
            "order",
            f"prev is ZERO though {_key(p)} is stored just before it: the chain restarts "
            "where it should go on",
        )
    if named is not None:
        return f("order", f"prev names {_key(named)}, not {_key(p)} just before it")
    if b.boot == p.boot:
        return f(
            "gap",
            f"prev names no stored batch, though {_key(p)} is stored just before it: what "
            "the gateway sealed in between is not stored, or that batch was replaced",
        )
    return f(
        "gap",
        f"the batches after {_key(p)} and before boot {b.boot} seq 1 are not stored (prev "
        "names no stored batch): never received, or deleted",
    )


def _missing(p: Batch, b: Batch) -> tuple[str, int]:
    """The (boot, seq) certainly missing between p and b (seq starts at 1 at each boot),
    and how many."""
    if b.boot == p.boot:
        first, last = p.seq + 1, b.seq - 1
    else:
        first, last = 1, b.seq - 1
    if last < first:
        return "", 0
    n = last - first + 1
    what = f"batch boot {b.boot} seq {first}" if n == 1 else (
        f"batches boot {b.boot} seq {first}..{last}")  # fmt: skip
    if b.boot != p.boot:
        what += f" (and perhaps some after {_key(p)})"
    return what, n


def _key(b: Batch) -> str:
    return f"boot {b.boot} seq {b.seq}"


def check(
    batches: Sequence[Batch],
    samples: Iterable[StoredSample],
    keys: Sequence[GatewayKey],
    *,
    orphans: Iterable[Orphans] = (),
    named: Sequence[Batch] = (),
    v1_batches: int = 0,
) -> Result:
    """The whole check of a period. `batches`: the period's v2 batches with those around
    them (`role`); `samples`: the stored samples of the `period` batches, sorted by
    batch_id (read lazily, one batch at a time); `named`: further stored batches some
    `prev` names."""
    result = Result(v1_batches=v1_batches)
    checked = sorted((b for b in batches if b.role == "period"), key=lambda b: b.batch_id)
    for batch, group in zip(checked, _grouped(samples, [b.batch_id for b in checked]), strict=True):
        result.findings += check_batch(batch, group, keys)
        result.batches_checked += 1
        result.samples_recomputed += len(group)
    known = {bytes(b.digest): b for b in (*batches, *named) if b.digest is not None}
    by_gateway: dict[str, list[Batch]] = {}
    for b in batches:
        by_gateway.setdefault(b.gateway, []).append(b)
    for gateway in sorted(by_gateway):
        for f in check_chain(by_gateway[gateway], known):
            if f.kind == "note":
                result.notes.append(f)
                continue
            result.findings.append(f)
            if f.kind == "gap":
                result.gaps += 1
                result.missing += f.missing
    for o in orphans:
        result.findings.append(
            Finding(
                o.gateway,
                None,
                None,
                "orphan_samples",
                f"{o.n} sample(s) from {o.first_ts.isoformat()} to {o.last_ts.isoformat()} "
                f"name batch id {o.batch_id}, which is not stored: its ledger row was deleted",
            )
        )
    result.findings.sort(key=lambda f: (f.gateway, f.boot or 0, f.seq or 0))
    return result


def _grouped(samples: Iterable[StoredSample], ids: list[int]) -> Iterator[list[StoredSample]]:
    """The samples of each of `ids` (ascending) in turn, from samples sorted by batch_id;
    samples of other batches are passed over."""
    it = iter(samples)
    pending: StoredSample | None = next(it, None)
    for batch_id in ids:
        group: list[StoredSample] = []
        while pending is not None and pending.batch_id <= batch_id:
            if pending.batch_id == batch_id:
                group.append(pending)
            pending = next(it, None)
        yield group
