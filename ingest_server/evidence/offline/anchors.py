"""The `anchors` check: each day's current Merkle root rebuilt from its leaves, its tokens
verified under the trust file's TSAs, every period batch a leaf of its anchored day
(column-wise), unanchored days listed; and the report's own `anchoring` block against the
bundle's anchors.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

from ingest_server.evidence import merkle
from ingest_server.evidence.offline.ledger_columns import _fixed, _ints, _Ledger, _ledger_of
from ingest_server.evidence.offline.members import _doc, _table
from ingest_server.evidence.offline.trust import _EPOCH, _ms_time, _Trust, _when
from ingest_server.evidence.offline.verdict import Check
from ingest_server.evidence.timestamp import TokenInvalidError, verify_any


def _anchors(
    manifest: dict[str, Any], files: Mapping[str, bytes], t: _Trust, box: dict[str, Any]
) -> Check:
    """Each day's current root rebuilt from its leaves and its tokens verified under the
    trust file's TSAs; every period batch a leaf of its (anchored) day. Column-wise: the
    leaves a day at a time, each batch's local day from its arrival, membership by a
    hashed join of (site, gateway, boot, seq, digest) keys."""
    c = Check("anchors")
    zones = {s["id"]: ZoneInfo(s["timezone"]) for s in _doc(files, "registry.json")["sites"]}
    leaves = _table(files, "anchor_leaves.parquet")
    led = _ledger_of(manifest, files, box)
    day = _local_days(led, zones)
    leaf_day = pc.fill_null(leaves["day"].cast(pa.int32()), -(1 << 31)).to_numpy(
        zero_copy_only=False
    )
    anchored: set[int] = set()
    missing: dict[int, list[int]] = {}  # day -> its period rows that are not a leaf of it
    superseded = []
    for a in _doc(files, "anchors.json"):
        d = dt.date.fromisoformat(a["day"])
        if a.get("superseded_at"):
            superseded.append(f"{d} ({a['superseded_at']})")
            continue
        n = (d - _EPOCH.date()).days
        at = np.flatnonzero(leaf_day == n)
        rows = leaves.take(pa.array(at)) if len(at) else leaves.slice(0, 0)
        rows = rows.take(pc.sort_indices(rows, [("index", "ascending")]))
        if _day(c, d, a, rows, t):
            anchored.add(n)
            period = np.flatnonzero((day == n) & led.period)
            missing[n] = period[~_leaves_hold(led, period, rows)].tolist()
    days = np.unique(day)
    for n in days.tolist():
        d = _EPOCH.date() + dt.timedelta(days=n)
        if n not in anchored:
            count = int(np.count_nonzero((day == n) & led.period))
            if count:
                c.fail("day_unanchored",
                       f"{d}: 本期 {count} 个批次所在的日期没有有效的时间戳",
                       f"{d} holds {count} period batch(es) but has no valid "
                       "time-stamp token: when they were sealed is not proven; anchor the day "
                       "(`anchor --day`) and make the bundle again")  # fmt: skip
            continue
        for r in missing[n]:
            b = led.batch(r)
            c.fail("not_a_leaf", f"{b.gateway} boot {b.boot} seq {b.seq} 不是 {d} 的叶子",
                   f"{b.gateway} boot {b.boot} seq {b.seq} (received {d}) is not a leaf "
                   "of its day's time-stamped tree with its digest")  # fmt: skip
    first = _EPOCH.date()
    c.details = {"anchored_days": [str(first + dt.timedelta(days=n)) for n in sorted(anchored)],
                 "unanchored_days": [str(first + dt.timedelta(days=n)) for n in days.tolist()
                                     if n not in anchored],
                 "superseded_roots": superseded}  # fmt: skip
    _report_anchoring(c, files, {first + dt.timedelta(days=n) for n in anchored})
    return c


def _report_anchoring(c: Check, files: Mapping[str, bytes], anchored: set[dt.date]) -> None:
    """The report's own `anchoring` block (docs/evidence.md, "What the report says")
    against the bundle's anchors: a day the report calls anchored holds that root in the
    bundle, with a token from each TSA it names, and (its current root) a token verified
    here; a day it calls not anchored holds no root built before the block was read. A
    day pending or not anchored then and anchored since is no contradiction; a report
    made before the block has nothing to compare."""
    block = json.loads(files["report.json"]).get("anchoring")
    if not isinstance(block, dict):
        return
    records: dict[str, list[dict[str, Any]]] = {}
    for a in _doc(files, "anchors.json"):
        records.setdefault(a["day"], []).append(a)
    read_at = _when(block.get("read_at"))
    open_days = []
    for d in block.get("days") or []:
        if not isinstance(d, dict):
            continue
        day, state = str(d.get("day")), d.get("state")
        mine = records.get(day, [])
        if state == "anchored":
            a = next((a for a in mine if base64.b64decode(a["root"]).hex() == d.get("root")), None)
            urls = {t.get("tsa_url") for t in (a or {}).get("tokens") or [] if t.get("token")}
            named = sorted(str(t.get("url")) for t in d.get("tsas") or [] if isinstance(t, dict))
            if a is None or not set(named) <= urls:
                c.fail("report_anchoring",
                       f"{day}: 报告称已锚定, 但证据包中没有该树根或所列时间戳服务的令牌",
                       f"{day}: the report says anchored (root {d.get('root')}, by {named}), "
                       "but the bundle holds no such root with tokens from those TSAs")  # fmt: skip
            elif not a.get("superseded_at") and dt.date.fromisoformat(day) not in anchored:
                c.fail("report_anchoring",
                       f"{day}: 报告称已锚定, 但其时间戳令牌均未通过信任文件的校验",
                       f"{day}: the report says anchored, but no token over its root verifies "
                       "under the trust file's TSAs")  # fmt: skip
            continue
        if state == "pending" or (state == "not_anchored" and d.get("batches")):
            open_days.append(f"{day} {state}")
        built = [
            a["built_at"]
            for a in mine
            if read_at is not None and (_when(a["built_at"]) or read_at) < read_at
        ]
        if state == "not_anchored" and built:
            c.fail("report_anchoring",
                   f"{day}: 报告称未锚定, 但证据包中该日的树根早于报告生成",
                   f"{day}: the report says not anchored, but the bundle holds a root built "
                   f"for it at {min(built)}, before the report was made")  # fmt: skip
    c.details["report_open_days"] = open_days


def _local_days(led: _Ledger, zones: Mapping[str, ZoneInfo]) -> np.ndarray:
    """Each batch's day of arrival in its site's time zone (days since 1970-01-01): per
    quarter hour of arrival (every zone's offsets and changes fall on one), checked at
    both ends of it, else per batch."""
    out = np.zeros(led.n, np.int64)
    quarter = 900_000
    epoch = _EPOCH.date()
    codes: dict[str, list[int]] = {}
    for code, site in enumerate(led.sites):
        codes.setdefault(site, []).append(code)
    for site, cs in codes.items():
        zone = zones.get(site, ZoneInfo("UTC"))
        rows = np.flatnonzero(np.isin(led.gw, cs))
        q = led.received[rows] // quarter
        uq, inv = np.unique(q, return_inverse=True)
        local = np.empty(len(uq), np.int64)
        exact = np.ones(len(uq), bool)
        for j, x in enumerate(uq.tolist()):
            d0 = _ms_time(x * quarter).astimezone(zone).date()
            d1 = _ms_time(x * quarter + quarter - 1).astimezone(zone).date()
            local[j] = (d0 - epoch).days
            exact[j] = d0 == d1
        out[rows] = local[inv]
        for r in rows[~exact[inv]].tolist():
            out[r] = (_ms_time(int(led.received[r])).astimezone(zone).date() - epoch).days
    return out


def _leaves_hold(led: _Ledger, rows: np.ndarray, leaves: pa.Table) -> np.ndarray:
    """Whether each ledger row in `rows` is a leaf (site, gateway, boot, seq, digest) of
    `leaves`."""
    if not len(rows):
        return np.zeros(0, bool)
    names = {f"{s}/{g}": i for i, (s, g) in enumerate(zip(led.sites, led.gw_ids, strict=True))}
    pair = pc.binary_join_element_wise(leaves["site"], leaves["gateway"], "/").to_pylist()
    leaf_gw = np.array([names.get(x, -1) if x is not None else -1 for x in pair], np.int64)
    leaf_digest, ok = _fixed(leaves["digest"], 32)
    valid = ok & (leaf_gw >= 0)
    for col in ("boot", "seq"):
        valid &= leaves[col].is_valid().to_numpy(zero_copy_only=False)
    leaf_keys = _leaf_keys(leaf_gw[valid], _ints(leaves["boot"])[valid],
                           _ints(leaves["seq"])[valid], leaf_digest[valid])  # fmt: skip
    mine = _leaf_keys(led.gw[rows], led.boot[rows], led.seq[rows], led.digest[rows])
    held = pc.is_in(mine, value_set=leaf_keys).to_numpy(zero_copy_only=False)
    out: np.ndarray = held & led.digest_ok[rows]
    return out


def _leaf_keys(gw: np.ndarray, boot: np.ndarray, seq: np.ndarray, digest: np.ndarray) -> pa.Array:
    n = len(gw)
    raw = np.empty((n, 56), np.uint8)
    raw[:, 0:8] = gw.astype(">i8").view(np.uint8).reshape(n, 8)
    raw[:, 8:16] = boot.astype(">i8").view(np.uint8).reshape(n, 8)
    raw[:, 16:24] = seq.astype(">i8").view(np.uint8).reshape(n, 8)
    raw[:, 24:56] = digest
    data = pa.py_buffer(raw.tobytes())
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(56), n, [None, data])


def _day(c: Check, day: dt.date, a: dict[str, Any], rows: pa.Table, t: _Trust) -> bool:
    """One day's current root: rebuilt from its leaves (`rows`, in index order), its
    tokens verified. Whether a token verifies over its root (else the day is
    unanchored)."""
    root = base64.b64decode(a["root"])
    index = _ints(rows["index"], -1)
    if (
        len(index) != a["leaves"]
        or not np.array_equal(index, np.arange(len(index)))
        or not (_sorted_keys(rows))
    ):
        c.fail("leaves", f"{day}: 叶子数量或顺序与锚定记录不符",
               f"{day}: the bundled leaves are not the {a['leaves']} leaves of the "
               "anchored root in leaf order 1")  # fmt: skip
    if merkle.root(rows["digest"].to_pylist()) != root:
        c.fail("root", f"{day}: 由叶子重建的 Merkle 根与锚定的根不符: 当天的历史在加盖时间戳后"
               "被改写", f"{day}: the root rebuilt from its leaves is not the anchored root: "
               "the day's history was rewritten after it was time-stamped")  # fmt: skip
    good = 0
    for tok in a.get("tokens") or []:
        if not tok.get("token"):
            continue  # a TSA that granted nothing: the day may still hold another token
        try:
            verify_any(base64.b64decode(tok["token"]), root, t.tsas)
            good += 1
        except TokenInvalidError as exc:
            c.fail("token", f"{day}: {tok.get('tsa_name')} 的时间戳令牌无效 ({exc})",
                   f"{day}: the token of {tok.get('tsa_name')} does not verify under a TSA "
                   f"of the trust file over this root: {exc}")  # fmt: skip
    return good > 0


def _sorted_keys(rows: pa.Table) -> bool:
    """Whether the leaves' (site, gateway, boot, seq) are in ascending order (as Python
    compares the tuples)."""
    n = rows.num_rows
    if n < 2:
        return True
    if any(rows[k].null_count for k in ("site", "gateway", "boot", "seq")):
        keys = list(zip(*(rows[k].to_pylist() for k in ("site", "gateway", "boot", "seq")),
                        strict=True))  # fmt: skip
        try:
            return keys == sorted(keys)
        except TypeError:
            return False
    codes = []
    for k in ("site", "gateway"):
        enc = pc.dictionary_encode(rows[k]).combine_chunks()
        words = enc.dictionary.to_pylist()
        rank = np.empty(len(words), np.int64)
        rank[np.argsort(np.array(words, dtype=object), kind="stable")] = np.arange(len(words))
        codes.append(rank[enc.indices.to_numpy(zero_copy_only=False)])
    cols = [*codes, _ints(rows["boot"]), _ints(rows["seq"])]
    order = np.lexsort(cols[::-1])
    return bool(
        np.array_equal(order, np.arange(n)) or all(np.array_equal(col[order], col) for col in cols)
    )
