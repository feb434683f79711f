"""The offline verifier's `kpis` check (check.py): every KPI of the report
recomputed from the bundle alone, and the declared side it stands on.

    registry.json + equipment_audit.json + registry_audit.json
        --roll back to when the report read it--> plant                  (kpi_trail.py)
        (each trail against the report's `registry_audit`: count, SHA-256, edits listed;
         the rolled-back registry against the report's enterprise, sites, equipment and
         meters; a bundle made before registry_audit.json: that trail is empty)
    production.json --> entries (each one the report's, none entered after it)
                                                                        (kpi_entries.py)
    factors.json    --> the report's tables, and the published ones this software knows
                                                                        (kpi_factors.py)
    samples.parquet + series.parquet --kpi/columnar.py--> intervals, counters, coverage,
        origins (kpi_inputs.py, kpi_samples.py) --kpi/engine.py compute--> the report
        again --verify.compare--> figures (here)
    report.json's targets, meter_register, green, ghg blocks --the server's own checks,
        and made again from the report again and the rolled-back registry--> blocks
                                                                        (kpi_blocks.py)

Pure: no database, no network; the bundle's members as bytes. Returns a `KpiCheck` the
caller turns into the verdict's check (status, bilingual reasons, details).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from ingest_server.evidence.compare import compare
from ingest_server.evidence.offline.kpi_blocks import _blocks
from ingest_server.evidence.offline.kpi_check import KpiCheck, _day, _when
from ingest_server.evidence.offline.kpi_entries import _production
from ingest_server.evidence.offline.kpi_factors import _factors
from ingest_server.evidence.offline.kpi_inputs import _inputs, _partial, digest
from ingest_server.evidence.offline.kpi_samples import Measured
from ingest_server.evidence.offline.kpi_trail import _trail
from ingest_server.kpi.engine import Parameters, compute
from ingest_server.reference.factors import emission_from_json, energy_from_json

MEMBERS = ("report.json", "registry.json", "equipment_audit.json", "production.json",
           "factors.json", "series.parquet", "samples.parquet")  # fmt: skip
_LISTED = 20  # differing figures listed in full; the rest are counted


def check_kpis(files: Mapping[str, bytes]) -> KpiCheck:
    """The `kpis` check over the bundle's members `files` (module docstring)."""
    out = KpiCheck()
    doc = json.loads(files["report.json"])
    registry = json.loads(files["registry.json"])
    trail = json.loads(files["equipment_audit.json"])
    # a bundle made before the member has none: no change of the registry was on a trail
    others = (json.loads(files["registry_audit.json"]) if "registry_audit.json" in files
              else None)  # fmt: skip
    entries = json.loads(files["production.json"])
    factors = json.loads(files["factors.json"])
    block = doc.get("registry_audit")
    read_at = _when(block["read_at"] if isinstance(block, dict) else doc["generated_at"])
    _factors(out, doc, factors)
    registry, equipment = _trail(out, doc, registry, (trail, others), block, read_at)
    _production(out, doc, entries, read_at)
    energy = energy_from_json(factors["energy"])
    emission = emission_from_json(factors["emission"])
    p = doc["parameters"]
    params = Parameters(coverage_threshold=p["coverage_threshold"], heartbeat_s=p["heartbeat_s"],
                        gap_after_s=p["gap_after_s"])  # fmt: skip
    as_of = _when(doc["period"]["as_of"])
    measured = Measured(files)
    period = (_day(doc["period"]["from"]), _day(doc["period"]["to"]))
    inputs = _inputs(registry, equipment, entries, period, as_of, measured, params)
    base = doc.get("baseline") or None
    baseline = None
    if base:
        bperiod = (_day(base["from"]), _day(base["to"]))
        baseline = _inputs(registry, equipment, entries, bperiod, as_of, measured, params)
    again = compute(
        inputs, params=params, energy=energy, emission=emission,
        partial=_partial(inputs), baseline=baseline,
        baseline_partial=baseline is not None and _partial(baseline),
        report_id=doc.get("report_id"), generated_at=as_of,
    )  # fmt: skip
    checks = list(compare(doc, again))
    differ = [c for c in checks if not c.ok]
    caused = [code for code, _, _ in out.failures]
    cause = (f" (causes found above: {', '.join(dict.fromkeys(caused))})" if caused
             else " (the bundle's samples do not give the report's figure)")  # fmt: skip
    for i, c in enumerate(differ):
        if i == _LISTED:
            out.fail("more", f"另有 {len(differ) - _LISTED} 项数值不符未列出",
                     f"and {len(differ) - _LISTED} more differing figure(s)")  # fmt: skip
            break
        out.fail("figure_differs",
                 f"{c.item}: 报告为 {c.claimed!r}, 根据证据包重新计算为 {c.recomputed!r}",
                 f"{c.item}: the report claims {c.claimed!r}, recomputed from the bundle "
                 f"{c.recomputed!r}{cause}")  # fmt: skip
    n, value = digest(inputs, baseline)
    claimed = doc.get("digest") or {}
    out.details.update({
        "figures_compared": len(checks), "figures_differ": len(differ),
        "differences": [{"item": c.item, "claimed": c.claimed, "recomputed": c.recomputed}
                        for c in differ],
        "digest": {"claimed": claimed.get("value"), "claimed_rows": claimed.get("rows"),
                   "recomputed": value, "recomputed_rows": n,
                   "equal": (claimed.get("value"), claimed.get("rows")) == (value, n),
                   "note": "informational: the report's digest is over the server's derived "
                           "rows and its gateway numbers (gid), which a bundle does not carry; "
                           "the figures above are the check"},
        "samples_read": measured.n,
    })  # fmt: skip
    # after the figures: a block's failure is not a cause of a differing figure
    _blocks(out, doc, again, registry, read_at)
    return out
