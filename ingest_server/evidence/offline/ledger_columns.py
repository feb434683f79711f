"""The bundle's ledger as columns (docs/evidence-verify.md, "Speed"): one array a field,
read once for the batches, chain and anchors checks (`_ledger_of`); a `ledger.Batch`
made only for a batch a finding is about, so that evidence/ledger.py words it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, cast

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

from ingest_server.evidence import ledger
from ingest_server.evidence.offline.members import _table
from ingest_server.evidence.offline.trust import _ms_time

_LEDGER_COLUMNS = ["batch_id", "site", "gateway", "boot", "seq", "sent", "received_at",
                   "contract", "prev", "digest", "signature", "n_total", "role"]  # fmt: skip


def _fixed(col: pa.ChunkedArray | pa.Array, width: int) -> tuple[np.ndarray, np.ndarray]:
    """A binary column as an (n, width) uint8 array (zeros where not `width` bytes) and
    where it holds exactly `width` bytes. Zero-copy for the bundle's own type
    (fixed_size_binary(width) without an offset)."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    n = len(arr)
    if pa.types.is_fixed_size_binary(arr.type) and arr.type.byte_width == width:
        data = arr.buffers()[1]
        out = np.frombuffer(data, np.uint8, count=(arr.offset + n) * width).reshape(-1, width)
        out = out[arr.offset :]
        ok = arr.is_valid().to_numpy(zero_copy_only=False) if arr.null_count else np.ones(n, bool)
        if arr.null_count:
            out = np.where(ok[:, None], out, 0).astype(np.uint8)
        return out, ok
    out = np.zeros((n, width), np.uint8)  # another type: a bundle not made by bundle.py
    ok = np.zeros(n, bool)
    for i, x in enumerate(arr.to_pylist()):
        if isinstance(x, bytes) and len(x) == width:
            out[i] = np.frombuffer(x, np.uint8)
            ok[i] = True
    return out, ok


def _ints(col: pa.ChunkedArray, fill: int = 0) -> np.ndarray:
    out: np.ndarray = pc.fill_null(col, fill).to_numpy(zero_copy_only=False).astype(np.int64)
    return out


class _Ledger:
    """The bundle's v2 batches as columns (docs/evidence-verify.md, "Speed"): one array a
    field, no Python object a batch. `batch(i)` makes row i the ledger check's `Batch`,
    for the few batches a finding is about, so that evidence/ledger.py words them."""

    def __init__(self, manifest: dict[str, Any], files: Mapping[str, bytes]) -> None:
        self.enterprise = str(manifest["enterprise"])
        t = _table(files, "ledger.parquet", _LEDGER_COLUMNS)
        t = t.filter(pc.equal(pc.fill_null(t["contract"], 0), 2))
        self.table = t
        self.n = n = t.num_rows
        self.batch_id = _ints(t["batch_id"])
        self.boot = _ints(t["boot"])
        self.seq = _ints(t["seq"])
        self.received = _ints(t["received_at"])
        self.n_total = _ints(t["n_total"], -1)
        self.prev, prev_ok = _fixed(t["prev"], 32)
        self.digest, self.digest_ok = _fixed(t["digest"], 32)
        digest_ok = self.digest_ok
        self.signature, sig_ok = _fixed(t["signature"], 64)
        nulls = sum(t[c].null_count for c in ("batch_id", "boot", "seq", "sent", "received_at",
                                              "n_total", "site", "gateway", "role"))  # fmt: skip
        # a row the columns cannot stand for exactly: its checks go through `batch(i)`
        self.odd = ~(prev_ok & digest_ok & sig_ok)
        if nulls:
            for c in ("batch_id", "boot", "seq", "sent", "received_at", "n_total", "site",
                      "gateway", "role"):  # fmt: skip
                self.odd |= ~t[c].is_valid().to_numpy(zero_copy_only=False)
        role = pc.dictionary_encode(pc.fill_null(t["role"], "")).combine_chunks()
        names = role.dictionary.to_pylist()
        codes = role.indices.to_numpy(zero_copy_only=False)
        self.period = codes == names.index("period") if "period" in names else np.zeros(n, bool)
        self.extra = codes == names.index("extra") if "extra" in names else np.zeros(n, bool)
        self.before = (codes == names.index("before")) if "before" in names else np.zeros(n, bool)
        self.after = (codes == names.index("after")) if "after" in names else np.zeros(n, bool)
        pair = pc.binary_join_element_wise(pc.fill_null(t["site"], ""),
                                           pc.fill_null(t["gateway"], ""), "/")  # fmt: skip
        enc = pc.dictionary_encode(pair).combine_chunks()
        distinct = enc.dictionary.to_pylist()
        rank: Any = np.argsort(np.array(distinct, dtype=object), kind="stable") if distinct else []
        order = np.empty(len(distinct), np.int64)
        order[rank] = np.arange(len(distinct))
        #: each row's (site, gateway) as a code, codes in the order of the gateways' names
        self.gateways = [f"{self.enterprise}/{distinct[i]}" for i in rank]
        self.sites = [distinct[i].split("/", 1)[0] for i in rank]
        self.gw_ids = [distinct[i].split("/", 1)[1] for i in rank]
        self.gw = order[enc.indices.to_numpy(zero_copy_only=False)] if n else np.zeros(0, np.int64)
        self._by_id: tuple[np.ndarray, np.ndarray] | None = None
        self._by_digest: tuple[np.ndarray, np.ndarray] | None = None

    def batch(self, i: int) -> ledger.Batch:
        r = self.table.slice(int(i), 1).to_pylist()[0]
        return ledger.Batch(
            r["batch_id"], f"{self.enterprise}/{r['site']}/{r['gateway']}", r["gateway"],
            r["boot"], r["seq"], _ms_time(r["sent"]), _ms_time(r["received_at"]), 2, r["prev"],
            r["digest"], r["signature"], r["n_total"], r["role"],
        )  # fmt: skip

    def rows_of(self, ids: np.ndarray) -> np.ndarray:
        """The row of each batch id (the last row of an id given twice, as a dict by id
        keeps it), -1 where the ledger does not hold it."""
        if self._by_id is None:
            order = np.argsort(self.batch_id, kind="stable")
            keys = self.batch_id[order]
            last = np.r_[keys[1:] != keys[:-1], True] if len(keys) else np.zeros(0, bool)
            self._by_id = keys[last], order[last]
        keys, rows = self._by_id
        at = np.minimum(np.searchsorted(keys, ids), max(len(keys) - 1, 0))
        found = (keys[at] == ids) if len(keys) else np.zeros(len(ids), bool)
        return np.where(found, rows[at] if len(keys) else 0, -1)

    def with_digest(self, digest: bytes) -> int | None:
        """The last row whose digest is `digest` (as a dict by digest keeps it)."""
        if len(digest) != 32:
            odd = [i for i in np.flatnonzero(self.odd).tolist()
                   if self.table["digest"][i].as_py() == digest]  # fmt: skip
            return odd[-1] if odd else None
        if self._by_digest is None:
            head = np.ascontiguousarray(self.digest[:, :8]).view(">u8").ravel()
            order = np.argsort(head, kind="stable")
            self._by_digest = head[order], order
        heads, order = self._by_digest
        want = np.frombuffer(digest[:8], ">u8")[0]
        lo, hi = np.searchsorted(heads, want, "left"), np.searchsorted(heads, want, "right")
        rows = [int(r) for r in order[lo:hi]
                if self.digest_ok[r] and self.digest[r].tobytes() == digest]  # fmt: skip
        return max(rows) if rows else None


class _Known(Mapping[bytes, ledger.Batch]):
    """digest -> stored batch (ledger.check_chain's `known`), looked up in the columns."""

    def __init__(self, led: _Ledger) -> None:
        self.led = led

    def __getitem__(self, digest: bytes) -> ledger.Batch:
        i = self.led.with_digest(bytes(digest))
        if i is None:
            raise KeyError(digest)
        return self.led.batch(i)

    def __iter__(self) -> Iterator[bytes]:
        raise NotImplementedError("the chain check looks digests up; it does not list them")

    def __len__(self) -> int:
        return int(self.led.n)


def _ledger_of(
    manifest: dict[str, Any], files: Mapping[str, bytes], box: dict[str, Any]
) -> _Ledger:
    """The ledger's columns, read once for the batches, chain and anchors checks."""
    if "ledger" not in box:
        box["ledger"] = _Ledger(manifest, files)
    return cast(_Ledger, box["ledger"])
