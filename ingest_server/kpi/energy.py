"""The energy, water and carbon KPIs: each meter's quantity over the period with its
standard coal and CO2 (`meter_results`, by the factor tables), the production entered for
the period (`production_of`), the totals and intensities (`energy_kpis`), and the
intensities' change against a baseline period (`change_kpis`).

A meter of role `generation` (on-site generation such as rooftop PV, registry `role`)
measures electricity made, not consumed: it is listed with its quantity and role, and
counts in no consumption, comprehensive energy or CO2 (it has no tce nor tCO2 of its
own); the green-factory sheet's renewable share reads it (evidence/green.py).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ingest_server.kpi.labels import CARRIER_ZH, KPI_NOTES, NO_NOTE, Note, factor_fallback
from ingest_server.kpi.records import CounterSum, Inputs
from ingest_server.kpi.results import Kpi, mean
from ingest_server.reference.factors import EmissionTable, EnergyTable
from ingest_server.repo.registry_model import CARRIER_ROLES


@dataclass(slots=True)
class MeterResult:
    id: str
    carrier: str
    unit: str
    top_level: bool
    quantity: float | None
    coverage: float
    counter: CounterSum | None
    tce: float | None
    tco2: float | None
    factor_note: Note = NO_NOTE  # the emission factor was another region's or year's: which
    role: str = "consumption"  # "generation": on-site generation, counted in no total


def meter_results(
    inputs: Inputs, energy: EnergyTable, emission: EmissionTable
) -> tuple[list[MeterResult], list[dict[str, Any]]]:
    cov: dict[tuple[Any, str], float] = {}
    for t in inputs.tags:
        cov[(t.device, t.role)] = min(1.0, t.counted / t.expected) if t.expected > 0 else 0.0
    out, rows = [], []
    for m in inputs.meters:
        role = CARRIER_ROLES.get(m.carrier)
        c = inputs.counters.get((m.device, role)) if m.device and role else None
        site = inputs.site(m.site)
        q = c.quantity if c is not None else None
        coef = energy.find(m.carrier, m.unit)
        # the period's year as the site's calendar has it (date_from is a local date)
        ef, ef_note = emission.find_noted(
            m.carrier, m.unit, site.grid_region, inputs.date_from.year
        )
        ef_notes = (
            factor_fallback(site.grid_region, inputs.date_from.year, ef.region, ef.year, ef.source)
            if ef is not None and ef_note
            else NO_NOTE
        )
        consumed = m.role != "generation"
        tce = q * coef.coefficient / 1000 if q is not None and coef and consumed else None
        tco2 = q * ef.factor / 1000 if q is not None and ef and consumed else None
        coverage = cov.get((m.device, role or ""), 0.0) if m.device else 0.0
        r = MeterResult(m.id, m.carrier, m.unit, m.parent is None, q, coverage, c, tce, tco2,
                        ef_notes, m.role)  # fmt: skip
        out.append(r)
        rows.append({
            "id": m.id, "name": m.name, "name_en": m.name_en, "site": m.site,
            "carrier": m.carrier, "unit": m.unit, "parent": m.parent, "top_level": r.top_level,
            "role": m.role,
            "quantity": q, "coverage": coverage,
            "rollovers": c.rollovers if c else 0, "resets": c.resets if c else 0,
            "tce": tce, "tco2": tco2,
            "emission_factor": None if ef is None or not consumed else {
                "region": ef.region, "year": ef.year, "factor": ef.factor,
                "factor_unit": ef.factor_unit},
        })  # fmt: skip
    return out, rows


@dataclass(slots=True)
class Production:
    output: float | None
    value_added: float | None
    unit: str
    rows: list[dict[str, Any]]


def production_of(inputs: Inputs) -> Production:
    output = va = 0.0
    has_out = has_va = False
    unit = "件"
    rows = []
    for p in inputs.production:
        days = (p.period_to - p.period_from).days + 1
        lo, hi = max(p.period_from, inputs.date_from), min(p.period_to, inputs.date_to)
        share = max(0, (hi - lo).days + 1) / days
        if share <= 0:
            continue
        if p.output is not None:
            output += p.output * share
            has_out = True
            unit = p.output_unit
        if p.value_added_10k_cny is not None:
            va += p.value_added_10k_cny * share
            has_va = True
        rows.append({
            "id": p.id, "site": p.site, "from": p.period_from.isoformat(),
            "to": p.period_to.isoformat(), "output": p.output, "output_unit": p.output_unit,
            "value_added_10k_cny": p.value_added_10k_cny, "share": share, "note": p.note,
            "entered_by": p.entered_by or None,
            "entered_at": None if p.entered_at is None else _utc(p.entered_at),
        })  # fmt: skip
    return Production(output if has_out else None, va if has_va else None, unit, rows)


def _utc(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def energy_kpis(meters: Sequence[MeterResult], prod: Production) -> list[Kpi]:
    top = [m for m in meters if m.top_level and m.role != "generation"]
    out: list[Kpi] = []
    carriers = sorted({m.carrier for m in top})
    for carrier in carriers:
        ms = [m for m in top if m.carrier == carrier]
        units = sorted({m.unit for m in ms})
        q = sum(m.quantity or 0.0 for m in ms)
        out.append(Kpi.of(
            "consumption_{carrier}", value=q, coverage=mean(m.coverage for m in ms),
            inputs=[m.id for m in ms], note=_anomaly_note(ms), carrier=carrier,
            carrier_zh=CARRIER_ZH.get(carrier, carrier), carrier_en=carrier.capitalize(),
            units="/".join(units)))  # fmt: skip
    energy = [m for m in top if m.tce is not None]
    no_coef = sorted(m.id for m in top if m.tce is None and m.carrier not in ("water", "air"))
    tce = sum(m.tce or 0.0 for m in energy) if energy else None
    out.append(Kpi.of(
        "energy_tce", value=tce, coverage=mean(m.coverage for m in energy),
        inputs=[m.id for m in energy],
        note=KPI_NOTES["no_coefficient"].filled(ids=", ".join(no_coef)) if no_coef
        else NO_NOTE))  # fmt: skip
    carbon = [m for m in top if m.tco2 is not None]
    tco2 = sum(m.tco2 or 0.0 for m in carbon) if carbon else None
    out.append(Kpi.of(
        "carbon_tco2", value=tco2, coverage=mean(m.coverage for m in carbon),
        inputs=[m.id for m in carbon],
        note=Note.join(m.factor_note for m in carbon)))  # fmt: skip
    water = [m for m in top if m.carrier == "water" and m.quantity is not None]
    w = sum(m.quantity or 0.0 for m in water) if water else None
    missing_out = KPI_NOTES["no_output"] if prod.output is None else NO_NOTE
    missing_va = KPI_NOTES["no_value_added"] if prod.value_added is None else NO_NOTE
    per: tuple[tuple[str, float | None, float | None, float, Note, list[MeterResult]], ...] = (
        # the KPI, what is divided, by what, scaled by, what is missing if nothing, meters
        ("energy_per_unit", tce, prod.output, 1000, missing_out, energy),
        ("energy_per_value_added", tce, prod.value_added, 1.0, missing_va, energy),
        ("water_per_unit", w, prod.output, 1.0, missing_out, water),
        ("water_per_value_added", w, prod.value_added, 1.0, missing_va, water),
        ("carbon_per_value_added", tco2, prod.value_added, 1.0, missing_va, carbon),
    )
    out += [
        Kpi.of(key, value=_div(num, den, scale), numerator=num, denominator=den, note=note,
               inputs=[m.id for m in ms], coverage=mean(m.coverage for m in ms),
               output_unit=prod.unit)
        for key, num, den, scale, note, ms in per
    ]  # fmt: skip
    return out


INTENSITIES = (
    "energy_per_unit",
    "energy_per_value_added",
    "water_per_unit",
    "water_per_value_added",
    "carbon_per_value_added",
)


def _div(a: float | None, b: float | None, scale: float = 1.0) -> float | None:
    return a * scale / b if a is not None and b else None


def _anomaly_note(ms: Sequence[MeterResult]) -> Note:
    return Note.join(
        KPI_NOTES["counter_anomalies"].filled(
            meter=m.id, rollovers=m.counter.rollovers, resets=m.counter.resets
        )
        for m in ms
        if m.counter and (m.counter.rollovers or m.counter.resets)
    )


def change_kpis(current: Sequence[Kpi], base: Sequence[Kpi]) -> list[Kpi]:
    by_id = {k.id: k for k in base}
    out = []
    for k in current:
        if k.id not in INTENSITIES:
            continue
        was = by_id.get(k.id)
        b = None if was is None else was.value
        v = k.value
        change = (v - b) / b * 100 if v is not None and b else None
        out.append(Kpi.of(
            "{kpi}_change", value=change, numerator=v, denominator=b, coverage=k.coverage,
            inputs=k.inputs,
            note=NO_NOTE if change is not None else KPI_NOTES["needs_both_periods"],
            kpi=k.id, name=k.name, name_en=k.name_en))  # fmt: skip
    return out


def energy_section(
    inputs: Inputs, energy: EnergyTable, emission: EmissionTable
) -> tuple[list[Kpi], list[dict[str, Any]], Production]:
    meters, rows = meter_results(inputs, energy, emission)
    prod = production_of(inputs)
    return energy_kpis(meters, prod), rows, prod
