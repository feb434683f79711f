"""The ledger check (contract v2, issue 16): do the stored rows still say what each
gateway signed, and is every batch of its chain stored?

    stored rows (repo/ledger.py, or rows exported for an offline verifier)
      --check--> per batch: samples in batch_pos order --batch_digest--> == stored digest?
                            signature of the digest under the key enrolled when it arrived?
                            positions exactly 0..n_total-1?
                 per gateway, in (boot, seq) order: prev = digest of the batch just before?
      --> Result: findings (changed, signature, positions, gap, order, orphan_samples,
                  declaration), notes (a new outbox, a loss the gateway declared) and
                  the counts

Pure: no database, no clock. The rows are plain named tuples in the order the SQL (or an
export) gives them, so that issue 17's offline verifier runs these very checks over
exported rows; a sample's `ts` may be a datetime or ms since the epoch.

A gap is named and never bridged: a batch whose `prev` names no stored batch, or a
(boot, seq) missing between stored ones, is reported with the batches it leaves out, even
when the batches on either side verify. Its cause: batches the gateway declared dropped by
its own outbox (a v2 status's `dropped`, kept with the signed status) are a loss the
gateway disclosed, a note; only once that status's signature verifies under the key
enrolled when it arrived, and it declares that very range (else a `declaration` finding).
Whatever no verified declaration covers stays a `gap` finding: not stored, never received
or deleted on the server. A server cannot pass a deletion off as the gateway's drop: it
cannot sign a status.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from edge_agent.contract.digest import ZERO, SampleRow, batch_digest, verify_batch
from edge_agent.contract.identity import fingerprint
from edge_agent.contract.wire import verify_v2

Kind = Literal["changed", "signature", "positions", "gap", "order", "orphan_samples", "declaration"]
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


class Declaration(NamedTuple):
    """A range of batches a gateway declared its outbox dropped (declared_gaps), with the
    signed status that declared it (gateway_declarations)."""

    gateway: str
    boot: int
    first_seq: int
    last_seq: int
    reason: str  # "full" | "expired"
    declared_at: dt.datetime  # the status's own time (its `ts`), else when it arrived
    received_at: dt.datetime
    payload: bytes  # the status as the gateway signed it


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
    notes: list[Finding] = field(default_factory=list)  # not errors: a new outbox, a loss
    batches_checked: int = 0
    samples_recomputed: int = 0
    gaps: int = 0
    missing: int = 0  # batches known to be missing (a gap whose size is known)
    declared: int = 0  # gaps (or parts of one) the gateway declared: notes, not findings
    lost: int = 0  # batches in them, known lost by the gateway's own outbox
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


def check_chain(
    batches: Sequence[Batch],
    known: Mapping[bytes, Batch],
    declared: Disclosed | None = None,
) -> list[Finding]:
    """One gateway's chain over `batches` (its stored batches of the period with those
    around them, any order): each link, findings and notes. `known` maps the digest of
    every stored batch fetched (these, and those some `prev` names) to it; `declared`
    holds the drops the gateway declared (none: every gap is a finding)."""
    found: list[Finding] = []
    ordered = sorted(batches, key=lambda b: (b.boot, b.seq))
    disclosed = declared or Disclosed([], [])
    for i, b in enumerate(ordered):
        if b.role == "before" or b.contract != 2:
            continue  # the link into `before` is not this period's; v1 has none
        p = ordered[i - 1] if i else None
        found += _link(b, p, known, disclosed)
    # a declaration found broken here is the caller's to report when it gave `declared`
    return found if declared is not None else found + disclosed.findings


_NOT_STORED = "never received, or deleted on the server"
_DROPPED_BY = "dropped by the gateway's outbox"


def _link(b: Batch, p: Batch | None, known: Mapping[bytes, Batch], d: Disclosed) -> list[Finding]:
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
        if b.seq > 1:  # at least the batches of its own boot before it
            return _declared_or_not(b, 1, b.seq - 1, d, "", " (and perhaps earlier ones)")
        return d.unknown_extent(b, None) or f(
            "gap",
            f"the batches before boot {b.boot} seq {b.seq} are not stored (prev names no "
            f"stored batch): {_NOT_STORED}",
        )
    first, last = _missing(p, b)
    if last >= first:
        restart = " (the gateway restarted its chain after them: prev ZERO)" if prev == ZERO else ""
        perhaps = f" (and perhaps some after {_key(p)})" if b.boot != p.boot else ""
        return _declared_or_not(b, first, last, d, restart, perhaps)
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
    return d.unknown_extent(b, p) or f(
        "gap",
        f"the batches after {_key(p)} and before boot {b.boot} seq 1 are not stored (prev "
        f"names no stored batch): {_NOT_STORED}",
    )


def _declared_or_not(  # noqa: PLR0917
    b: Batch, first: int, last: int, d: Disclosed, restart: str, perhaps: str
) -> list[Finding]:
    """The batches b.boot/first..last are certainly missing: a note for those the gateway
    declared dropped, a gap finding for the rest."""
    covered, rest = d.cover(b.gateway, b.boot, first, last)
    out: list[Finding] = []
    if covered:
        n = sum(hi - lo + 1 for lo, hi, _ in covered)
        out.append(
            Finding(b.gateway, b.boot, b.seq, "note",
                    f"{_batches(b.boot, [(lo, hi) for lo, hi, _ in covered])} lost: "
                    f"{_dropped_by(x for _, _, x in covered)}{restart}", n)
        )  # fmt: skip
    if rest:
        n = sum(hi - lo + 1 for lo, hi in rest)
        out.append(
            Finding(b.gateway, b.boot, b.seq, "gap",
                    f"{_batches(b.boot, rest)} not stored: {_NOT_STORED}{restart}{perhaps}", n)
        )  # fmt: skip
    elif perhaps:  # the certain part was dropped; what came after p nobody can tell
        out[0] = out[0]._replace(message=out[0].message + perhaps)
    return out


def _batches(boot: int, ranges: Sequence[tuple[int, int]]) -> str:
    """'batch boot 1 seq 3', 'batches boot 1 seq 3..7, 9'."""
    if len(ranges) == 1 and ranges[0][0] == ranges[0][1]:
        return f"batch boot {boot} seq {ranges[0][0]}"
    parts = [str(lo) if lo == hi else f"{lo}..{hi}" for lo, hi in ranges]
    return f"batches boot {boot} seq {', '.join(parts)}"


def _dropped_by(declarations: Iterable[Declaration]) -> str:
    """ "dropped by the gateway's outbox: full, declared in its signed status of T"."""
    ds = list(declarations)
    reasons = ", ".join(dict.fromkeys(x.reason for x in ds))
    when = ", ".join(dict.fromkeys(x.declared_at.isoformat() for x in ds))
    many = "es" if len({x.declared_at for x in ds}) > 1 else ""
    return (
        f"dropped by the gateway's outbox: {reasons}, declared in its signed status{many} of {when}"
    )


class Disclosed:
    """One check's declared drops, each trusted only once its signed status verifies
    (under a key of the gateway enrolled when it arrived) and declares that very range;
    a declaration that does not is a `declaration` finding (once) and covers nothing."""

    def __init__(self, declarations: Sequence[Declaration], keys: Sequence[GatewayKey]) -> None:
        self.keys = keys
        self.by_boot: dict[tuple[str, int], list[Declaration]] = {}
        for x in sorted(declarations, key=lambda x: (x.gateway, x.boot, x.first_seq)):
            self.by_boot.setdefault((x.gateway, x.boot), []).append(x)
        self.findings: list[Finding] = []
        self._checked: dict[Declaration, bool] = {}
        self._payloads: dict[tuple[str, bytes, dt.datetime], dict[str, object] | str] = {}

    def cover(
        self, gateway: str, boot: int, first: int, last: int
    ) -> tuple[list[tuple[int, int, Declaration]], list[tuple[int, int]]]:
        """The parts of boot first..last that verified declarations cover (with the
        declaration), and the parts they do not, in seq order."""
        covered: list[tuple[int, int, Declaration]] = []
        rest: list[tuple[int, int]] = []
        at = first
        for x in self.by_boot.get((gateway, boot), ()):
            if x.last_seq < at or x.first_seq > last or not self.trusted(x):
                continue
            if x.first_seq > at:
                rest.append((at, x.first_seq - 1))
            hi = min(x.last_seq, last)
            covered.append((max(at, x.first_seq), hi, x))
            at = hi + 1
            if at > last:
                break
        if at <= last:
            rest.append((at, last))
        return covered, rest

    def unknown_extent(self, b: Batch, p: Batch | None) -> list[Finding]:
        """A gap of unknown extent before b (after p, or before anything stored) that the
        gateway declared: a verified declaration starts right after p, or lies in a boot
        between p's and b's (before b's, without p). A note naming them, or []."""
        lo = (0, 0) if p is None else (p.boot, p.seq + 1)
        found = [
            x
            for (gw, boot), xs in self.by_boot.items()
            if gw == b.gateway and lo[0] <= boot < b.boot
            for x in xs
            if ((x.boot, x.first_seq) == lo or x.boot > lo[0]) and self.trusted(x)
        ]
        if not found:
            return []
        after = "before" if p is None else f"after {_key(p)} and before"
        named = "; ".join(
            _batches(x.boot, [(x.first_seq, x.last_seq)]) for x in found[:_LISTED]
        ) + (f" and {len(found) - _LISTED} more range(s)" if len(found) > _LISTED else "")
        return [
            Finding(b.gateway, b.boot, b.seq, "note",
                    f"the batches {after} boot {b.boot} seq {b.seq} are not stored (prev names "
                    f"no stored batch): {named} lost: {_dropped_by(found)}; how many in all "
                    "the chain cannot tell")
        ]  # fmt: skip

    def trusted(self, x: Declaration) -> bool:
        if x not in self._checked:
            problem = self._problem(x)
            self._checked[x] = not problem
            if problem:
                self.findings.append(
                    Finding(x.gateway, x.boot, x.first_seq, "declaration",
                            f"the declaration of {_batches(x.boot, [(x.first_seq, x.last_seq)])} "
                            f"dropped ({x.reason}), received {x.received_at.isoformat()}: "
                            f"{problem}; its batches count as not stored")
                )  # fmt: skip
        return self._checked[x]

    def _problem(self, x: Declaration) -> str:
        """'' when the stored status verifies and declares x; else what is wrong."""
        in_effect = keys_at(self.keys, x.gateway, x.received_at)
        if not in_effect:
            return (
                "no public key of the gateway was enrolled when its signed status arrived "
                f"({x.received_at.isoformat()})"
            )
        body: dict[str, object] | None = None
        for k in in_effect:
            try:
                body = verify_v2(bytes(x.payload), bytes(k.public_key))
                break
            except ValueError:
                continue
        if body is None:
            tried = ", ".join(fingerprint(bytes(k.public_key)) for k in in_effect)
            return (
                f"the stored status's signature does not verify under key {tried}, enrolled "
                "when it arrived: it is not what the gateway signed"
            )
        gw = x.gateway.rsplit("/", 1)[-1]
        dropped = body.get("dropped")
        entry = [x.boot, x.first_seq, x.last_seq, x.reason]
        if (
            body.get("gw") != gw
            or not isinstance(dropped, list)
            or not any(isinstance(e, list) and e[:4] == entry for e in dropped)
        ):
            return "the gateway's signed status does not declare that range"
        return ""


def _missing(p: Batch, b: Batch) -> tuple[int, int]:
    """The seqs of b's boot certainly missing between p and b (seq starts at 1 at each
    boot): first..last, empty when last < first."""
    if b.boot == p.boot:
        return p.seq + 1, b.seq - 1
    return 1, b.seq - 1


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
    declarations: Sequence[Declaration] = (),
) -> Result:
    """The whole check of a period. `batches`: the period's v2 batches with those around
    them (`role`); `samples`: the stored samples of the `period` batches, sorted by
    batch_id (read lazily, one batch at a time); `named`: further stored batches some
    `prev` names; `declarations`: the drops the gateways declared."""
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
    disclosed = Disclosed(declarations, keys)
    for gateway in sorted(by_gateway):
        for f in check_chain(by_gateway[gateway], known, disclosed):
            if f.kind == "note":
                result.notes.append(f)
                if _DROPPED_BY in f.message:  # a loss the gateway declared
                    result.declared += 1
                    result.lost += f.missing
                continue
            result.findings.append(f)
            if f.kind == "gap":
                result.gaps += 1
                result.missing += f.missing
    for f in disclosed.findings:  # broken declarations: found while following the chains
        result.findings.append(f)
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


def link_findings(
    b: Batch, p: Batch | None, known: Mapping[bytes, Batch], declared: Disclosed
) -> list[Finding]:
    """check_chain's findings for the one link into `b` from `p`, the stored batch just
    before it in its gateway's (boot, seq) order (None: b is its first): for a caller
    that has found column-wise which links do not hold (the offline verifier), so that
    the findings are check_chain's, worded alike. A broken declaration found on the way
    goes to `declared.findings`, as check_chain leaves it when given `declared`."""
    if b.role == "before" or b.contract != 2:
        return []
    return _link(b, p, known, declared)
