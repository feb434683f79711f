"""The verifier's trust file (docs/evidence.md, "The trust file"), read: the keys and
TSA certificates handed over at the enrolment visit, the only keys the checks trust (a
bundle's own gateway_keys.json is a copy for reading). Its times, and the bundle's
milliseconds, as datetimes.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from ingest_server.evidence import ledger
from ingest_server.evidence.algorithms import UnsupportedAlgorithmError, algorithm
from ingest_server.evidence.offline.verdict import BundleInputError

TRUST_FORMAT, TRUST_VERSION = "factory-evidence.trust", 1
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class _Trust:
    enterprise: str
    gateway_keys: list[ledger.GatewayKey]
    report_keys: dict[str, dict[str, Any]]
    tsas: list[list[x509.Certificate]]


def _when(text: str | None) -> dt.datetime | None:
    return None if text is None else dt.datetime.fromisoformat(text)


def _ms_time(ms: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(milliseconds=ms)


def load_trust_file(trust: Mapping[str, Any] | Path) -> _Trust:
    """The verifier's trust file (docs/evidence.md, "The trust file"), as a path or parsed."""
    where = str(trust) if isinstance(trust, Path) else "the trust file"
    if isinstance(trust, Path):
        try:
            doc = json.loads(trust.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise BundleInputError(f"{where}: cannot read it as JSON ({exc})") from None
    else:
        doc = dict(trust)
    if (doc.get("format"), doc.get("format_version")) != (TRUST_FORMAT, TRUST_VERSION):
        raise BundleInputError(
            f"{where} is not a {TRUST_FORMAT} version {TRUST_VERSION} file (format "
            f"{doc.get('format')!r}, version {doc.get('format_version')!r}): give the file "
            "`ingest-server trust export` wrote, as handed over at the enrolment visit"
        )
    try:
        keys = []
        for g in doc["gateways"]:
            revoked = _when(g.get("revoked_at"))
            for k in g["keys"]:
                algorithm(k.get("algorithm"), f"gateway {g['gateway']}'s key")  # refused if unknown
                retired = _when(k.get("retired_at"))
                if revoked is not None and (retired is None or revoked < retired):
                    retired = revoked  # a revoked gateway's keys sign nothing after it
                keys.append(ledger.GatewayKey(g["gateway"], base64.b64decode(k["public_key"]),
                                              _when(k["enrolled_at"]), retired))  # type: ignore[arg-type]  # fmt: skip
        tsas = [x509.load_pem_x509_certificates(t["chain_pem"].encode()) for t in doc["tsas"]]
        return _Trust(doc["enterprise"], keys, {k["key_id"]: k for k in doc["report_keys"]}, tsas)
    except UnsupportedAlgorithmError as exc:
        raise BundleInputError(f"{where}: {exc}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleInputError(
            f"{where}: a {TRUST_FORMAT} file, but an entry is missing or malformed ({exc!r}); "
            "export it again with `ingest-server trust export`"
        ) from None
