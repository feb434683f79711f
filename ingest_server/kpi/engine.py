"""Every KPI of a report from its typed inputs: pure functions, no database.

`compute(inputs, ...)` returns the report body (docs/kpi.md, "Report format") without
digest and signature; evidence/report.py adds those. The same function recomputes a report in
`ingest-server verify` from inputs rebuilt out of raw samples, so the claimed and the
recomputed figures come from one definition of each KPI and two independent inputs.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ingest_server import __version__
from ingest_server.kpi.calendar import windows
from ingest_server.kpi.inputs import (
    HEARTBEAT_S,
    CounterSum,
    Equipment,
    Inputs,
    Site,
)
from ingest_server.kpi.timemodel import (
    TimeBuckets,
    performance,
    plan_segments,
    time_model,
)
from ingest_server.reference.factors import EmissionTable, EnergyTable
from ingest_server.repo.registry import CARRIER_ROLES

FORMAT = "factory-evidence.report"
FORMAT_VERSION = 1


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


def _ratio(num: float, den: float) -> float | None:
    return num / den if den > 0 else None


def _pct(x: float | None) -> float | None:
    return None if x is None else x * 100.0


def kpi(  # noqa: PLR0917
    id: str,
    name: str,
    name_en: str,
    value: float | None,
    unit: str,
    formula: str,
    *,
    numerator: float | None = None,
    denominator: float | None = None,
    coverage: float | None = None,
    note: str = "",
    inputs: Iterable[str] = (),
) -> dict[str, Any]:
    return {
        "id": id,
        "name": name,
        "name_en": name_en,
        "value": value,
        "unit": unit,
        "formula": formula,
        "numerator": numerator,
        "denominator": denominator,
        "coverage": coverage,
        "note": note,
        "inputs": sorted(inputs),
    }


# -- equipment --------------------------------------------------------------------------


def segments_of(site: Site) -> list[tuple[float, float, int]]:
    """The site's plan over its period, in epoch seconds: outside, break, work."""
    start, end = site.start.timestamp(), site.end.timestamp()
    if site.calendar is None:
        return plan_segments(start, end, [], [])
    ws = windows(site.calendar, site.timezone, site.start, site.end)
    return plan_segments(
        start,
        end,
        [(w.start.timestamp(), w.end.timestamp()) for w in ws],
        [(a.timestamp(), b.timestamp()) for w in ws for a, b in w.breaks],
    )


@dataclass(slots=True)
class EquipmentResult:
    eq: Equipment
    time: TimeBuckets
    has_state: bool
    produced: float | None
    good: float | None
    coverage: float
    delivered: bool


def equipment_results(inputs: Inputs) -> list[EquipmentResult]:
    segments = {s.id: segments_of(s) for s in inputs.sites}
    tag_cov: dict[Any, list[float]] = defaultdict(list)
    tag_any: dict[Any, int] = defaultdict(int)
    for tag in inputs.tags:
        tag_cov[tag.device].append(
            min(1.0, tag.counted / tag.expected) if tag.expected > 0 else 0.0
        )
        tag_any[tag.device] += tag.received
    out = []
    for e in inputs.equipment:
        site = inputs.site(e.site)
        has_state = e.device is not None and e.device in inputs.intervals
        ivs = inputs.intervals.get(e.device, []) if e.device else []
        t = time_model(site.start.timestamp(), site.end.timestamp(), ivs, segments[e.site])
        produced = good = None
        if e.device is not None:
            total = inputs.counters.get((e.device, "part_count_total"))
            g = inputs.counters.get((e.device, "part_count_good"))
            scrap = inputs.counters.get((e.device, "part_count_scrap"))
            if total is not None:
                produced = total.quantity
                if g is not None:
                    good = g.quantity
                elif scrap is not None:
                    good = total.quantity - scrap.quantity
            elif g is not None and scrap is not None:
                produced, good = g.quantity + scrap.quantity, g.quantity
        if has_state:
            coverage = t.coverage
        elif e.device is not None and tag_cov.get(e.device):
            coverage = sum(tag_cov[e.device]) / len(tag_cov[e.device])
        else:
            coverage = 0.0
        delivered = e.device is not None and (
            tag_any.get(e.device, 0) > 0 or (has_state and coverage > 0)
        )
        out.append(EquipmentResult(e, t, has_state, produced, good, coverage, delivered))
    return out


def _equipment_json(r: EquipmentResult, threshold: float) -> dict[str, Any]:
    e = r.eq
    p = performance(
        r.time, ideal_cycle_time_s=e.ideal_cycle_time_s, produced=r.produced, good=r.good
    )
    return {
        "id": e.id,
        "name": e.name,
        "name_en": e.name_en,
        "site": e.site,
        "process": e.process,
        "process_name": e.process_name,
        "process_name_en": e.process_name_en,
        "key_process": e.key_process,
        "nc": e.nc,
        "production": e.production,
        "interface": e.interface,
        "ideal_cycle_time_s": e.ideal_cycle_time_s,
        "coverage": r.coverage,
        "delivered_data": r.delivered,
        "nc_measured": e.nc and r.coverage >= threshold,
        "time": r.time.as_json() if r.has_state else None,
        "parts": {
            "produced": r.produced,
            "good": r.good,
            "scrap": None if r.produced is None or r.good is None else r.produced - r.good,
        },
        "availability": p.availability if r.has_state else None,
        "effectiveness": p.effectiveness if r.has_state else None,
        "quality_ratio": p.quality_ratio,
        "oee": p.oee if r.has_state else None,
        "utilisation": p.utilisation if r.has_state else None,
        "mtbf_s": p.mtbf_s,
        "mttr_s": p.mttr_s,
        "down_events": r.time.down_events if r.has_state else None,
    }


def oee_kpis(results: Sequence[EquipmentResult]) -> list[dict[str, Any]]:
    """Availability, effectiveness, quality, OEE, utilisation, MTBF, MTTR over a group of
    production equipment: sums of times and counts, then the ratios (not a mean of
    ratios, so a machine weighs by its time)."""
    prod = [r for r in results if r.eq.production]
    timed = [r for r in prod if r.has_state]
    t = TimeBuckets()
    for r in timed:
        t.add(r.time)
    pbt = sum(r.time.pbt_s for r in prod)
    known = t.known_pbt_s
    cov = _ratio(known, pbt)
    ids = [r.eq.id for r in timed]
    missing = sorted(r.eq.id for r in prod if not r.has_state)
    note = f"no state data from: {', '.join(missing)}" if missing else ""
    availability = _ratio(t.apt_s, known)
    eff = [r for r in timed if r.eq.ideal_cycle_time_s and r.produced is not None]
    ideal = sum((r.eq.ideal_cycle_time_s or 0.0) * (r.produced or 0.0) for r in eff)
    run_eff = sum(r.time.running_s for r in eff)
    effectiveness = _ratio(ideal, run_eff)
    q = [r for r in timed if r.produced is not None and r.good is not None]
    produced = sum(r.produced or 0.0 for r in q)
    good = sum(r.good or 0.0 for r in q)
    quality = _ratio(good, produced)
    oee = (
        availability * effectiveness * quality
        if availability is not None and effectiveness is not None and quality is not None
        else None
    )
    events = t.down_events
    return [
        kpi("availability", "设备可用率", "Availability (ISO 22400-2)", _pct(availability), "%",
            "APT / (PBT - unknown); PBT = POT - planned downtime",
            numerator=t.apt_s / 3600, denominator=known / 3600, coverage=cov, note=note,
            inputs=ids),
        kpi("effectiveness", "性能效率", "Effectiveness", _pct(effectiveness), "%",
            "sum(ideal cycle time x produced) / running time",
            numerator=ideal / 3600, denominator=run_eff / 3600, coverage=cov,
            inputs=[r.eq.id for r in eff]),
        kpi("quality_ratio", "质量合格率", "Quality ratio", _pct(quality), "%",
            "good / produced", numerator=good, denominator=produced, coverage=cov,
            inputs=[r.eq.id for r in q]),
        kpi("oee", "设备综合效率 OEE", "OEE", _pct(oee), "%",
            "availability x effectiveness x quality ratio", coverage=cov, inputs=ids),
        kpi("utilisation", "设备利用率", "Utilisation", _pct(_ratio(t.running_s, t.calendar_s)),
            "%", "RUNNING time / calendar time", numerator=t.running_s / 3600,
            denominator=t.calendar_s / 3600, coverage=_ratio(
                t.calendar_s - t.unknown_period_s, t.calendar_s), inputs=ids),
        kpi("mtbf", "平均故障间隔时间 MTBF", "MTBF",
            t.running_s / events / 3600 if events else None,
            "h", "running time / DOWN events", numerator=t.running_s / 3600,
            denominator=events, coverage=cov, inputs=ids),
        kpi("mttr", "平均修复时间 MTTR", "MTTR",
            t.down_total_s / events / 3600 if events else None,
            "h", "DOWN time / DOWN events", numerator=t.down_total_s / 3600,
            denominator=events, coverage=cov, inputs=ids),
    ]  # fmt: skip


_DECLARED = "declared in the registry (not measured): see the measured rate beside it"


def nc_kpis(
    results: Sequence[EquipmentResult], industry: str, threshold: float
) -> list[dict[str, Any]]:
    key = [r for r in results if r.eq.key_process]
    declared = [r for r in key if r.eq.nc]
    measured = [r for r in declared if r.coverage >= threshold]
    cov = (
        sum(r.coverage for r in declared) / len(declared) if declared else None
    )  # of the NC machines whose data is the claim
    if industry == "process":
        procs: dict[str, list[EquipmentResult]] = defaultdict(list)
        for r in key:
            procs[r.eq.process or ""].append(r)
        dec = [p for p, rs in procs.items() if all(r.eq.nc for r in rs)]
        mea = [p for p, rs in procs.items() if all(r.eq.nc and r.coverage >= threshold for r in rs)]
        n = len(procs)
        return [
            kpi("nc_rate_declared", "关键工序数控化率(申报)", "Key-process NC rate (declared)",
                _pct(_ratio(len(dec), n)), "%",
                "key processes under PLC/DCS control / key processes (declared)",
                numerator=len(dec), denominator=n, inputs=dec, note=_DECLARED),
            kpi("nc_rate_measured", "关键工序数控化率(实测)", "Key-process NC rate (measured)",
                _pct(_ratio(len(mea), n)), "%",
                f"key processes whose every unit is controlled and delivered data for >= "
                f"{threshold:.0%} of its planned time / key processes",
                numerator=len(mea), denominator=n, coverage=cov, inputs=mea),
        ]  # fmt: skip
    n = len(key)
    return [
        kpi("nc_rate_declared", "关键工序数控化率(申报)", "Key-process NC rate (declared)",
            _pct(_ratio(len(declared), n)), "%",
            "NC equipment in key processes / equipment in key processes (declared)",
            numerator=len(declared), denominator=n, inputs=[r.eq.id for r in declared],
            note=_DECLARED),
        kpi("nc_rate_measured", "关键工序数控化率(实测)", "Key-process NC rate (measured)",
            _pct(_ratio(len(measured), n)), "%",
            f"NC equipment in key processes that delivered data for >= {threshold:.0%} of "
            "its planned operation time / equipment in key processes",
            numerator=len(measured), denominator=n, coverage=cov,
            inputs=[r.eq.id for r in measured]),
    ]  # fmt: skip


def networking_kpi(results: Sequence[EquipmentResult]) -> dict[str, Any]:
    prod = [r for r in results if r.eq.production]
    on = [r for r in prod if r.delivered]
    return kpi(
        "networking_rate", "设备联网率", "Equipment networking rate",
        _pct(_ratio(len(on), len(prod))), "%",
        "production equipment that delivered data in the period / production equipment",
        numerator=len(on), denominator=len(prod), inputs=[r.eq.id for r in on],
        coverage=_mean(r.coverage for r in on),
        note="coverage: the mean share of planned time with data of the networked equipment",
    )  # fmt: skip


# -- energy, water, carbon --------------------------------------------------------------


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
    factor_note: str = ""  # the emission factor was another region's or year's: which


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
        tce = q * coef.coefficient / 1000 if q is not None and coef else None
        tco2 = q * ef.factor / 1000 if q is not None and ef else None
        coverage = cov.get((m.device, role or ""), 0.0) if m.device else 0.0
        r = MeterResult(
            m.id, m.carrier, m.unit, m.parent is None, q, coverage, c, tce, tco2, ef_note
        )
        out.append(r)
        rows.append({
            "id": m.id, "name": m.name, "name_en": m.name_en, "site": m.site,
            "carrier": m.carrier, "unit": m.unit, "parent": m.parent, "top_level": r.top_level,
            "quantity": q, "coverage": coverage,
            "rollovers": c.rollovers if c else 0, "resets": c.resets if c else 0,
            "tce": tce, "tco2": tco2,
            "emission_factor": None if ef is None else {
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
        })  # fmt: skip
    return Production(output if has_out else None, va if has_va else None, unit, rows)


def energy_kpis(meters: Sequence[MeterResult], prod: Production) -> list[dict[str, Any]]:
    top = [m for m in meters if m.top_level]
    out: list[dict[str, Any]] = []
    carriers = sorted({m.carrier for m in top})
    for carrier in carriers:
        ms = [m for m in top if m.carrier == carrier]
        units = sorted({m.unit for m in ms})
        q = sum(m.quantity or 0.0 for m in ms)
        out.append(kpi(
            f"consumption_{carrier}", f"{_CARRIER_ZH.get(carrier, carrier)}消耗量",
            f"{carrier.capitalize()} consumption", q, "/".join(units),
            "sum of top-level meters (submeters are inside their parent)",
            coverage=_mean(m.coverage for m in ms), inputs=[m.id for m in ms],
            note=_anomaly_note(ms)))  # fmt: skip
    energy = [m for m in top if m.tce is not None]
    no_coef = sorted(m.id for m in top if m.tce is None and m.carrier not in ("water", "air"))
    tce = sum(m.tce or 0.0 for m in energy) if energy else None
    out.append(kpi(
        "energy_tce", "综合能耗", "Comprehensive energy consumption", tce, "tce",
        "sum(quantity_i x coefficient_i), GB/T 2589-2020 当量值",
        coverage=_mean(m.coverage for m in energy), inputs=[m.id for m in energy],
        note=(f"no coefficient for: {', '.join(no_coef)}" if no_coef else "")))  # fmt: skip
    carbon = [m for m in top if m.tco2 is not None]
    tco2 = sum(m.tco2 or 0.0 for m in carbon) if carbon else None
    out.append(kpi(
        "carbon_tco2", "二氧化碳排放量", "CO2 emissions", tco2, "tCO2",
        "sum(activity_i x emission factor_i)", coverage=_mean(m.coverage for m in carbon),
        inputs=[m.id for m in carbon],
        note="; ".join(dict.fromkeys(m.factor_note for m in carbon if m.factor_note))))  # fmt: skip
    water = [m for m in top if m.carrier == "water" and m.quantity is not None]
    w = sum(m.quantity or 0.0 for m in water) if water else None
    missing_out = "enter output with `ingest-server production add`" if prod.output is None else ""
    missing_va = (
        "enter value added with `ingest-server production add`" if prod.value_added is None else ""
    )
    ids_e = [m.id for m in energy]
    ids_w = [m.id for m in water]
    out += [
        kpi("energy_per_unit", "单位产品综合能耗", "Energy per unit of good product",
            _div(tce, prod.output, 1000), f"kgce/{prod.unit}", "energy_tce x 1000 / output",
            numerator=tce, denominator=prod.output, note=missing_out, inputs=ids_e,
            coverage=_mean(m.coverage for m in energy)),
        kpi("energy_per_value_added", "万元增加值综合能耗", "Energy per 10,000 CNY value added",
            _div(tce, prod.value_added), "tce/万元", "energy_tce / value added (10k CNY)",
            numerator=tce, denominator=prod.value_added, note=missing_va, inputs=ids_e,
            coverage=_mean(m.coverage for m in energy)),
        kpi("water_per_unit", "单位产品取水量", "Water per unit of product",
            _div(w, prod.output), f"m3/{prod.unit}", "water / output", numerator=w,
            denominator=prod.output, note=missing_out, inputs=ids_w,
            coverage=_mean(m.coverage for m in water)),
        kpi("water_per_value_added", "万元增加值取水量", "Water per 10,000 CNY value added",
            _div(w, prod.value_added), "m3/万元", "water / value added (10k CNY)",
            numerator=w, denominator=prod.value_added, note=missing_va, inputs=ids_w,
            coverage=_mean(m.coverage for m in water)),
        kpi("carbon_per_value_added", "万元增加值二氧化碳排放", "CO2 per 10,000 CNY value added",
            _div(tco2, prod.value_added), "tCO2/万元", "carbon_tco2 / value added (10k CNY)",
            numerator=tco2, denominator=prod.value_added, note=missing_va,
            inputs=[m.id for m in carbon], coverage=_mean(m.coverage for m in carbon)),
    ]  # fmt: skip
    return out


INTENSITIES = (
    "energy_per_unit",
    "energy_per_value_added",
    "water_per_unit",
    "water_per_value_added",
    "carbon_per_value_added",
)
_CARRIER_ZH = {"electricity": "电力", "water": "水", "gas": "天然气", "steam": "蒸汽",
               "heat": "热力", "air": "压缩空气", "diesel": "柴油"}  # fmt: skip


def _div(a: float | None, b: float | None, scale: float = 1.0) -> float | None:
    return a * scale / b if a is not None and b else None


def _mean(xs: Iterable[float]) -> float | None:
    v = list(xs)
    return sum(v) / len(v) if v else None


def _anomaly_note(ms: Sequence[MeterResult]) -> str:
    return "; ".join(
        f"{m.id}: {m.counter.rollovers} rollover(s), {m.counter.resets} reset(s)"
        for m in ms
        if m.counter and (m.counter.rollovers or m.counter.resets)
    )


def change_kpis(current: list[dict[str, Any]], base: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_id = {k["id"]: k for k in base}
    out = []
    for k in current:
        if k["id"] not in INTENSITIES:
            continue
        b = by_id.get(k["id"], {}).get("value")
        v = k["value"]
        change = (v - b) / b * 100 if v is not None and b else None
        out.append(kpi(
            f"{k['id']}_change", f"{k['name']}较基期变化", f"{k['name_en']}: change vs baseline",
            change, "%", "(period - baseline) / baseline", numerator=v, denominator=b,
            coverage=k["coverage"], inputs=k["inputs"],
            note="" if change is not None else "needs the value in both periods"))  # fmt: skip
    return out


# -- the report -------------------------------------------------------------------------


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


def _groups(results: Sequence[EquipmentResult]) -> dict[str, Any]:
    site: dict[str, list[EquipmentResult]] = defaultdict(list)
    proc: dict[str, list[EquipmentResult]] = defaultdict(list)
    for r in results:
        site[r.eq.site].append(r)
        proc[r.eq.process or ""].append(r)
    out: dict[str, Any] = {"site": {}, "process": {}}
    for sid, rs in sorted(site.items()):
        out["site"][sid] = {k["id"]: k["value"] for k in oee_kpis(rs)}
    for pid, rs in sorted(proc.items()):
        e = rs[0].eq
        out["process"][pid] = {
            "name": e.process_name,
            "name_en": e.process_name_en,
            "key_process": e.key_process,
            **{k["id"]: k["value"] for k in oee_kpis(rs)},
        }
    return out


def energy_section(
    inputs: Inputs, energy: EnergyTable, emission: EmissionTable
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], Production]:
    meters, rows = meter_results(inputs, energy, emission)
    prod = production_of(inputs)
    return energy_kpis(meters, prod), rows, prod


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
            "kpis": [k for k in b_kpis if k["id"] in INTENSITIES or k["id"] == "energy_tce"],
        }
    return {
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
        "kpis": kpis,
        "groups": _groups(results),
        "equipment": [_equipment_json(r, params.coverage_threshold) for r in results],
        "meters": meter_rows,
        "production": prod.rows,
        "quality": _quality(inputs),
    }
