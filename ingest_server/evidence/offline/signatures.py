"""The v2 batches' signatures verified by libsodium on worker threads (`_Signatures`),
while the digests are recomputed and the later checks run (docs/evidence-verify.md,
"Speed"). What libsodium refuses is walked again with cryptography (batches.py).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError

from ingest_server.evidence import ledger
from ingest_server.evidence.offline.ledger_columns import _Ledger
from ingest_server.evidence.offline.trust import _EPOCH


class _Signatures:
    """Every v2 batch's signature of its stored digest, under the first key of its gateway
    the trust file says was in effect when it arrived, verified on worker threads while
    the digests are recomputed (docs/evidence-verify.md, "Speed").

    libsodium (PyNaCl) verifies: about twice as fast as OpenSSL's Ed25519 here, and it
    lets go of the GIL. libsodium is the stricter of the two (it refuses a non-canonical
    S, small-order keys and R, which OpenSSL accepts), so an answer of its can only be a
    "no" OpenSSL would say "yes" to: every batch it refuses, or whose gateway had another
    key in effect too, is walked again by ledger.check_batch, which verifies with
    `cryptography` (OpenSSL) under every key in effect and words the finding. A batch
    libsodium accepts is accepted: OpenSSL accepts it as well."""

    _CHUNK = 16384

    def __init__(self, keys: Sequence[ledger.GatewayKey], led: _Ledger) -> None:
        self.keys = keys
        self.led = led
        n = led.n
        self.key = np.full(n, -1, np.int64)  # the first key in effect (trust file order)
        self.publics: list[bytes] = [bytes(k.public_key) for k in keys]
        recv_us = led.received * 1000
        names = {g: i for i, g in enumerate(led.gateways)}
        for j in reversed(range(len(keys))):
            k = keys[j]
            code = names.get(k.gateway)
            if code is None:
                continue
            inside = (led.gw == code) & (recv_us >= _us(k.enrolled_at))
            if k.retired_at is not None:
                inside &= recv_us < _us(k.retired_at)
            self.key[inside] = j
        self.ok = np.zeros(n, bool)
        self.threads = max(1, min(os.cpu_count() or 1, 8))
        self._pool: ThreadPoolExecutor | None = None
        self._futures: list[Any] = []

    def start(self) -> None:
        """Verify every row's signature on worker threads; `wait` for the answers."""
        verify = _sodium_verify
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="ed25519")
        for lo in range(0, self.led.n, self._CHUNK):
            hi = min(lo + self._CHUNK, self.led.n)
            self._futures.append(self._pool.submit(self._run, verify, lo, hi))

    def _run(self, verify: Any, lo: int, hi: int) -> None:
        led = self.led
        key = self.key[lo:hi]
        use = (key >= 0) & ~led.odd[lo:hi]
        blob = np.concatenate([led.signature[lo:hi], led.digest[lo:hi]], axis=1).tobytes()
        publics = self.publics
        out = self.ok
        for j in np.flatnonzero(use).tolist():
            out[lo + j] = verify(blob[j * 96 : j * 96 + 96], publics[key[j]])

    def wait(self) -> np.ndarray:
        for f in self._futures:
            f.result()
        if self._pool is not None:
            self._pool.shutdown()
        return self.ok

    def cancel(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)


def _us(t: dt.datetime) -> int:
    return (t - _EPOCH) // dt.timedelta(microseconds=1)


def _sodium_verify(signed: bytes, public: bytes) -> bool:
    """libsodium's verdict on signature + 32-byte digest (`signed`), or False."""
    try:
        crypto_sign_open(signed, public)
    except (BadSignatureError, ValueError, TypeError):  # a bad key too: the slow walk names it
        return False
    return True
