"""`check_bundle`: every check of a bundle against a trust file, in the order the package
docstring draws, and the verdict over them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ingest_server.evidence.offline.anchors import _anchors
from ingest_server.evidence.offline.batches import _batches
from ingest_server.evidence.offline.chain import _chain
from ingest_server.evidence.offline.kpis import MEMBERS, check_kpis
from ingest_server.evidence.offline.manifest import _manifest
from ingest_server.evidence.offline.members import _open
from ingest_server.evidence.offline.report_signature import _report_signature
from ingest_server.evidence.offline.trust import load_trust_file
from ingest_server.evidence.offline.verdict import BundleInputError, Check, Verdict, _guarded


def check_bundle(bundle_path: Path, trust: Mapping[str, Any] | Path) -> Verdict:
    """Every check of the bundle at `bundle_path` against `trust` (the package's docstring).
    Raises BundleInputError for a file that is not a bundle or trust file it reads."""
    manifest, files, names = _open(Path(bundle_path))
    t = load_trust_file(trust)
    if t.enterprise != manifest.get("enterprise"):
        raise BundleInputError(
            f"the trust file is enterprise {t.enterprise!r}'s, the bundle enterprise "
            f"{manifest.get('enterprise')!r}'s: use the trust file handed over for that "
            "enterprise"
        )
    checks = [_manifest(manifest, files, names)]
    checks.append(_guarded("report_signature", files, ["report.json"],
                           lambda: _report_signature(files, t)))  # fmt: skip
    box: dict[str, Any] = {}  # the ledger's columns, read once for the three checks
    batch_members = ["ledger.parquet", "series.parquet", "samples.parquet",
                     "samples_aside.parquet"]  # fmt: skip
    checks.append(_guarded("batches", files, batch_members,
                           lambda: _batches(manifest, files, t, box)))  # fmt: skip
    chain_members = [*batch_members, "declarations.json", "registry.json"]
    try:
        checks.append(_guarded("chain", files, chain_members,
                               lambda: _chain(manifest, files, t, box)))  # fmt: skip
        checks.append(_guarded("anchors", files, ["anchors.json", "anchor_leaves.parquet",
                                                  "registry.json", "ledger.parquet"],
                               lambda: _anchors(manifest, files, t, box)))  # fmt: skip
        checks.append(_guarded("kpis", files, MEMBERS, lambda: _kpis(files)))
    except BaseException:
        if "cancel" in box:  # no check will wait for the signatures: stop them
            box["cancel"]()
        raise
    if "finish" in box:  # the batch signatures, verified meanwhile on worker threads
        checks[2] = _guarded("batches", files, batch_members, box.pop("finish"))
    return Verdict(checks)


def _kpis(files: Mapping[str, bytes]) -> Check:
    """Every KPI recomputed from the bundle (kpis.py), as a check."""
    c = Check("kpis")
    found = check_kpis(files)
    for code, zh, en in found.failures:
        c.fail(code, zh, en)
    c.details = found.details
    return c
