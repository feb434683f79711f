"""The `batches` check: every v2 batch's positions, digest (digests.py) and signature
(signatures.py), and samples whose batch is not bundled. `_batches` starts it,
`_batches_finish` words it once the signatures are in (check.py runs the other checks in
between).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ingest_server.evidence import ledger
from ingest_server.evidence.offline.digests import _digests
from ingest_server.evidence.offline.ledger_columns import _Ledger, _ledger_of
from ingest_server.evidence.offline.signatures import _Signatures
from ingest_server.evidence.offline.trust import _Trust
from ingest_server.evidence.offline.verdict import Check, _findings


def _batches(
    manifest: dict[str, Any], files: Mapping[str, bytes], t: _Trust, box: dict[str, Any]
) -> Check:
    """Positions, digest and signature of every v2 batch, and samples whose batch is not
    bundled. The signatures on worker threads (`_Signatures`), started first; the digests
    recomputed column-wise (batch_columns) meanwhile, a range of batches at a time; the
    check is finished (`box["finish"]`) after the chain, anchors and kpis checks, so the
    signatures overlap them too. A batch that fails anything is walked again by
    ledger.check_batch (`batch_digest`, `cryptography`), whose findings name it, so
    `ledger check` and this check say the same things. The ledger's columns go into
    `box`, for the checks after this one."""
    led = _ledger_of(manifest, files, box)
    sig = _Signatures(t.gateway_keys, led)
    sig.start()
    try:
        walk, seen_ids, orphans, recomputed = _digests(manifest, files, led)
    except BaseException:
        sig.cancel()
        raise
    box["finish"] = lambda: _batches_finish(t, led, sig, walk, seen_ids, orphans, recomputed)
    box["cancel"] = sig.cancel
    return Check("batches")  # finished by box["finish"]


def _batches_finish(  # noqa: PLR0917 (one caller: what _batches found)
    t: _Trust,
    led: _Ledger,
    sig: _Signatures,
    walk: dict[int, list[ledger.StoredSample]],
    seen_ids: np.ndarray,
    orphans: list[ledger.Orphans],
    recomputed: int,
) -> Check:
    c = Check("batches")
    try:
        sig_ok = sig.wait()
    finally:
        sig.cancel()
    seen = np.isin(led.batch_id, seen_ids)
    signatures = len(seen_ids)
    found: dict[int, list[ledger.Finding]] = {}
    for bid in sorted(walk):  # its digest or positions fail: check_batch names what
        r = int(led.rows_of(np.array([bid], np.int64))[0])
        found[bid] = ledger.check_batch(led.batch(r), walk[bid], t.gateway_keys)
    # digest and positions held column-wise, so check_batch could only find the signature
    # (its wording: with no samples, keep its signature finding alone)
    for r in np.flatnonzero(seen & ~sig_ok).tolist():
        bid = int(led.batch_id[r])
        if bid not in found:
            found[bid] = [f for f in ledger.check_batch(led.batch(r), [], t.gateway_keys)
                          if f.kind == "signature"]  # fmt: skip
    slow = len(found)
    empty = np.flatnonzero(~seen)
    signatures += len(empty)
    found |= _without_samples(led, empty, sig_ok, t.gateway_keys)
    _orphans(c, orphans)
    listed = np.flatnonzero(np.isin(led.batch_id, np.fromiter(found, np.int64, len(found))))
    _findings(c, [f for r in listed.tolist() for f in found[int(led.batch_id[r])]])
    c.details = {"v2_batches": led.n, "signatures_checked": signatures,
                 "samples_recomputed": recomputed, "orphan_batches": len(orphans),
                 "digest": "column-wise (batch_columns); batch_digest for a batch that fails",
                 "signature": "libsodium (PyNaCl) on worker threads; cryptography "
                              "(OpenSSL) for a batch libsodium refuses",
                 "batches_walked": slow}  # fmt: skip
    return c


def _without_samples(
    led: _Ledger, rows: np.ndarray, sig_ok: np.ndarray, keys: Sequence[ledger.GatewayKey]
) -> dict[int, list[ledger.Finding]]:
    """The findings of v2 batches without a bundled sample (ledger rows `rows`)."""
    found = {}
    for r in rows.tolist():
        b = led.batch(r)
        if b.role in ("before", "after"):
            # a chain neighbour without a bundled sample: its signature only (check_batch's
            # own wording; its positions and digest cannot be checked without samples)
            if not sig_ok[r]:
                found[b.batch_id] = [f for f in ledger.check_batch(b, [], keys)
                                     if f.kind == "signature"]  # fmt: skip
            continue
        # every other v2 batch is checked whole, whatever its `complete` flag says
        found[b.batch_id] = ledger.check_batch(b, [], keys)
    return found


def _orphans(c: Check, orphans: Sequence[ledger.Orphans]) -> None:
    """Samples naming a batch the bundle's ledger does not hold, one reason a batch."""
    for o in sorted(orphans, key=lambda o: o.batch_id):
        c.fail("orphan_samples",
               f"{o.gateway}: {o.n} 个样本 ({o.first_ts.isoformat()} 至 {o.last_ts.isoformat()})"
               f"属于批次 {o.batch_id}, 但证据包的账本中没有该批次",
               f"{o.gateway}: {o.n} sample(s) from {o.first_ts.isoformat()} to "
               f"{o.last_ts.isoformat()} name batch id {o.batch_id}, which the bundle's ledger "
               "does not hold: its ledger row was removed")  # fmt: skip
