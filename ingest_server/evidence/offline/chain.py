"""The `chain` check: each gateway's hash chain over its period batches and their
neighbours, column-wise; a link that does not hold is worded by ledger.link_findings
(ledger.check_chain's own rule), and each gap given with the time it spans and the devices
and equipment it touches.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import numpy as np

from ingest_server.evidence import ledger
from ingest_server.evidence.offline.ledger_columns import _Known, _Ledger, _ledger_of
from ingest_server.evidence.offline.members import _doc, _table
from ingest_server.evidence.offline.trust import _Trust, _when
from ingest_server.evidence.offline.verdict import Check, _findings


def _chain(
    manifest: dict[str, Any], files: Mapping[str, bytes], t: _Trust, box: dict[str, Any]
) -> Check:
    """Each gateway's chain over its period batches and their neighbours (an `extra`
    batch's chain is another period's); each gap with the time it spans (the sent times of
    the stored batches around it) and the devices and equipment of the gateway.
    Column-wise: the batches in (gateway, boot, seq) order, each link's prev against the
    digest of the batch before it; only a link that does not hold is handed, as `Batch`es,
    to ledger.link_findings (ledger.check_chain's own rule and wording)."""
    c = Check("chain")
    declared = [
        ledger.Declaration(d["gateway"], d["boot"], d["first_seq"], d["last_seq"], d["reason"],
                           _when(d["declared_at"]), _when(d["received_at"]),  # type: ignore[arg-type]
                           base64.b64decode(d["payload"]))
        for d in _doc(files, "declarations.json")
    ]  # fmt: skip
    registry = _doc(files, "registry.json")
    series = _table(files, "series.parquet", ["site", "gateway", "device"]).to_pylist()
    led = _ledger_of(manifest, files, box)
    known = _Known(led)
    disclosed = ledger.Disclosed(declared, t.gateway_keys)
    rows = np.flatnonzero(~led.extra)  # ledger.Role has no `extra`: the bundle's own role
    # gateways by name, each in (boot, seq) order; ties in the ledger's order (stable)
    order = rows[np.lexsort((led.seq[rows], led.boot[rows], led.gw[rows]))]
    g = led.gw[order]
    same = np.r_[False, g[1:] == g[:-1]]
    holds = same & np.r_[False, (led.prev[order][1:] == led.digest[order][:-1]).all(axis=1)]
    holds &= ~led.odd[order] & np.r_[False, ~led.odd[order][:-1]]
    checked = ~led.before[order]  # the link into `before` is not this period's
    findings: list[ledger.Finding] = []
    notes: list[str] = []
    gaps: list[dict[str, Any]] = []
    for k in np.flatnonzero(checked & ~holds).tolist():
        b = led.batch(int(order[k]))
        p = led.batch(int(order[k - 1])) if same[k] else None
        for f in ledger.link_findings(b, p, known, disclosed):
            if f.kind == "note":
                notes.append(f"{f.where()}: {f.message}")
                continue
            findings.append(f)
            if f.kind != "gap":
                continue
            i = _last_at(led, order, g, k, f)  # the dict by (boot, seq) check_chain kept
            after = led.batch(int(order[i - 1])) if i > 0 and g[i - 1] == g[i] else None
            gaps.append(_gap(f, after, led.batch(int(order[i])), series, registry))
    findings += disclosed.findings
    extra = {i: g["text_en"] for i, g in enumerate(gaps)}  # gaps come first in `findings`
    ranked = sorted(findings, key=lambda f: f.kind != "gap")  # stable: gaps in `gaps` order
    _findings(c, ranked, extra)
    c.details = {"gateways": len(np.unique(g)), "gaps": [{k: v for k, v in x.items()
                                                          if k != "text_en"} for x in gaps],
                 "notes": notes}  # fmt: skip
    return c


def _last_at(led: _Ledger, order: np.ndarray, g: np.ndarray, k: int, f: ledger.Finding) -> int:
    """The position in `order` of the last batch of k's gateway with f's (boot, seq)."""
    lo = int(np.searchsorted(g, g[k], "left"))
    hi = int(np.searchsorted(g, g[k], "right"))
    boots, seqs = led.boot[order[lo:hi]], led.seq[order[lo:hi]]
    hit = np.flatnonzero((boots == f.boot) & (seqs == f.seq))
    return lo + int(hit[-1]) if len(hit) else k


def _gap(
    f: ledger.Finding,
    after: ledger.Batch | None,
    before: ledger.Batch,
    series: list[dict[str, Any]],
    registry: dict[str, Any],
) -> dict[str, Any]:
    _, site, gw = f.gateway.split("/", 2)
    devices = sorted({s["device"] for s in series if (s["site"], s["gateway"]) == (site, gw)})
    touched = sorted(
        x["id"] for kind in ("equipment", "meters") for x in registry.get(kind) or []
        if (x.get("site_id"), x.get("gateway_id")) == (site, gw)
        and (x.get("device") is None or x.get("device") in devices)
    )  # fmt: skip
    span = None if after is None else (before.sent - after.sent).total_seconds()
    since = "the gateway's first stored batch" if after is None else after.sent.isoformat()
    text = (f"; between sent times {since} and {before.sent.isoformat()}"
            + ("" if span is None else f" ({span:.0f} s)")
            + f"; devices {devices}, equipment and meters {touched}")  # fmt: skip
    return {"gateway": f.gateway, "boot": f.boot, "seq": f.seq, "missing": f.missing,
            "from": None if after is None else after.sent.isoformat(),
            "to": before.sent.isoformat(), "seconds": span, "devices": devices,
            "equipment": touched, "text_en": text}  # fmt: skip
