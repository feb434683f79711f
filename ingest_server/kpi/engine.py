"""Every KPI of a report from its typed inputs: pure functions, no database.

`compute(inputs, ...)` returns the report body (docs/kpi.md, "Report format") without
digest and signature; evidence/report.py adds those. The same function recomputes a report in
`ingest-server verify` from inputs rebuilt out of raw samples, so the claimed and the
recomputed figures come from one definition of each KPI and two independent inputs.
The formulas are in kpi/equipment.py and kpi/energy.py; each KPI is a `Kpi`
(kpi/results.py) with its names, unit and formula text from the table in kpi/labels.py.
Here: the parameters, the report's sections around the KPIs, and the report body; each
KPI's gateway-signed share and the per-gateway summary come from kpi/attestation.py.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from ingest_server import __version__
from ingest_server.kpi.attestation import attest, origin_summary
from ingest_server.kpi.energy import INTENSITIES, change_kpis, energy_section
from ingest_server.kpi.equipment import (
    equipment_results,
    equipment_row,
    groups,
    nc_kpis,
    networking_kpi,
    oee_kpis,
)
from ingest_server.kpi.records import HEARTBEAT_S, Inputs
from ingest_server.kpi.results import FORMAT, FORMAT_VERSION
from ingest_server.reference.factors import EmissionTable, EnergyTable


@dataclass(frozen=True, slots=True)
class Parameters:
    coverage_threshold: float = 0.8
    heartbeat_s: float = HEARTBEAT_S
    gap_after_s: float = 900.0

    def as_json(self, industry: str) -> dict[str, Any]:
        return {
            "coverage_threshold": self.coverage_threshold,
            "gap_after_s": self.gap_after_s,
            "heartbeat_s": self.heartbeat_s,
            "industry": industry,
        }


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _epoch_iso(t: float) -> str:
    return _iso(dt.datetime.fromtimestamp(t, dt.UTC))


def _period_json(inputs: Inputs, partial: bool) -> dict[str, Any]:
    first = inputs.sites[0] if inputs.sites else None
    return {
        "from": inputs.date_from.isoformat(),
        "to": inputs.date_to.isoformat(),
        "start": _iso(first.start) if first else None,
        "end": _iso(first.end) if first else None,
        "timezone": first.timezone if first else None,
        "partial": partial,
        "as_of": _iso(inputs.as_of),
    }


def _quality(inputs: Inputs) -> dict[str, Any]:
    names = inputs.device_names
    gaps = []
    for dev, ivs in sorted(inputs.intervals.items()):
        for iv in ivs:
            if iv.state in ("OFFLINE", "UNKNOWN", "NO_DATA"):
                gaps.append({  # noqa: PERF401
                    "device": names.get(dev, str(dev)), "start": _epoch_iso(iv.start),
                    "end": _epoch_iso(iv.end), "seconds": iv.end - iv.start,
                    "kind": {"OFFLINE": "offline", "UNKNOWN": "unknown"}.get(iv.state, "no_data"),
                })  # fmt: skip
    return {
        "tags": [
            {"device": names.get(t.device, str(t.device)), "tag": t.tag, "role": t.role,
             "received": t.received, "expected": round(t.expected, 3),
             "coverage": min(1.0, t.counted / t.expected) if t.expected > 0 else None}
            for t in sorted(inputs.tags, key=lambda t: (names.get(t.device, ""), t.tag))
        ],
        "gaps": gaps,
        "counter_anomalies": [
            {"device": names.get(a.device, str(a.device)), "tag": a.tag, "ts": _iso(a.ts),
             "flag": a.flag, "prev_value": a.prev_value, "value": a.value, "delta": a.delta}
            for a in sorted(inputs.anomalies, key=lambda a: (a.device, a.tag, a.ts))
        ],
    }  # fmt: skip


def compute(
    inputs: Inputs,
    *,
    params: Parameters,
    energy: EnergyTable,
    emission: EmissionTable,
    partial: bool,
    baseline: Inputs | None = None,
    baseline_partial: bool = False,
    report_id: str | None = None,
    generated_at: dt.datetime | None = None,
) -> dict[str, Any]:
    results = equipment_results(inputs)
    e_kpis, meter_rows, prod = energy_section(inputs, energy, emission)
    kpis = [
        *nc_kpis(results, inputs.industry, params.coverage_threshold),
        networking_kpi(results),
        *oee_kpis(results),
        *e_kpis,
    ]
    base_json = None
    if baseline is not None:
        b_kpis, _, _ = energy_section(baseline, energy, emission)
        kpis += change_kpis(e_kpis, b_kpis)
        base_json = {
            **_period_json(baseline, baseline_partial),
            "kpis": [
                k.dump()
                for k in attest(b_kpis, baseline)
                if k.id in INTENSITIES or k.id == "energy_tce"
            ],
        }
    kpis = attest(kpis, inputs, baseline)
    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "report_id": report_id or str(uuid.uuid4()),
        "generated_at": _iso(generated_at or inputs.as_of),
        "software": {"name": "factory-evidence", "version": __version__},
        "enterprise": inputs.enterprise,
        "period": _period_json(inputs, partial),
        "baseline": base_json,
        "parameters": params.as_json(inputs.industry),
        "factors": {"energy": energy.as_json(), "emission": emission.as_json()},
        "sites": [
            {
                "id": s.id,
                "name": s.name,
                "name_en": s.name_en,
                "timezone": s.timezone,
                "grid_region": s.grid_region,
            }
            for s in inputs.sites
        ],
        "kpis": [k.dump() for k in kpis],
        "groups": groups(results),
        "equipment": [equipment_row(r, params.coverage_threshold) for r in results],
        "meters": meter_rows,
        "production": prod.rows,
        "quality": _quality(inputs),
        "attestation": origin_summary(inputs),
    }
    # the edit trails as the registry was read (kpi/plant.py; versioned, docs/evidence.md)
    if inputs.registry_audit is not None:
        doc["registry_audit"] = inputs.registry_audit
    return doc
