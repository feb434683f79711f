"""The equipment's KPIs: each machine's ISO 22400-2 time model and parts over the period
(`equipment_results`), its row in the report (`equipment_row`), and the KPIs over a group
of machines: the OEE family (`oee_kpis`, also per site and per process: `groups`), the
key-process NC rates declared and measured (`nc_kpis`) and the networking rate.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ingest_server.kpi.calendar import windows
from ingest_server.kpi.labels import KPI_NOTES, NO_NOTE, PROCESS_INDUSTRY_LABELS
from ingest_server.kpi.records import Equipment, Inputs, Site
from ingest_server.kpi.results import Kpi, mean, percent, ratio
from ingest_server.kpi.timemodel import (
    TimeBuckets,
    performance,
    plan_segments,
    time_model,
)


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


def equipment_row(r: EquipmentResult, threshold: float) -> dict[str, Any]:
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


def oee_kpis(results: Sequence[EquipmentResult]) -> list[Kpi]:
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
    cov = ratio(known, pbt)
    ids = [r.eq.id for r in timed]
    missing = sorted(r.eq.id for r in prod if not r.has_state)
    note = KPI_NOTES["no_state_data"].filled(ids=", ".join(missing)) if missing else NO_NOTE
    availability = ratio(t.apt_s, known)
    eff = [r for r in timed if r.eq.ideal_cycle_time_s and r.produced is not None]
    ideal = sum((r.eq.ideal_cycle_time_s or 0.0) * (r.produced or 0.0) for r in eff)
    run_eff = sum(r.time.running_s for r in eff)
    effectiveness = ratio(ideal, run_eff)
    q = [r for r in timed if r.produced is not None and r.good is not None]
    produced = sum(r.produced or 0.0 for r in q)
    good = sum(r.good or 0.0 for r in q)
    quality = ratio(good, produced)
    oee = (
        availability * effectiveness * quality
        if availability is not None and effectiveness is not None and quality is not None
        else None
    )
    events = t.down_events
    return [
        Kpi.of("availability", value=percent(availability), numerator=t.apt_s / 3600,
               denominator=known / 3600, coverage=cov, note=note, inputs=ids),
        Kpi.of("effectiveness", value=percent(effectiveness), numerator=ideal / 3600,
               denominator=run_eff / 3600, coverage=cov, inputs=[r.eq.id for r in eff]),
        Kpi.of("quality_ratio", value=percent(quality), numerator=good, denominator=produced,
               coverage=cov, inputs=[r.eq.id for r in q]),
        Kpi.of("oee", value=percent(oee), coverage=cov, inputs=ids),
        Kpi.of("utilisation", value=percent(ratio(t.running_s, t.calendar_s)),
               numerator=t.running_s / 3600, denominator=t.calendar_s / 3600,
               coverage=ratio(t.calendar_s - t.unknown_period_s, t.calendar_s), inputs=ids),
        Kpi.of("mtbf", value=t.running_s / events / 3600 if events else None,
               numerator=t.running_s / 3600, denominator=events, coverage=cov, inputs=ids),
        Kpi.of("mttr", value=t.down_total_s / events / 3600 if events else None,
               numerator=t.down_total_s / 3600, denominator=events, coverage=cov, inputs=ids),
    ]  # fmt: skip


_DECLARED = KPI_NOTES["declared"]


def nc_kpis(results: Sequence[EquipmentResult], industry: str, threshold: float) -> list[Kpi]:
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
            Kpi.of("nc_rate_declared", value=percent(ratio(len(dec), n)), numerator=len(dec),
                   denominator=n, inputs=dec, note=_DECLARED, labels=PROCESS_INDUSTRY_LABELS),
            Kpi.of("nc_rate_measured", value=percent(ratio(len(mea), n)), numerator=len(mea),
                   denominator=n, coverage=cov, inputs=mea, labels=PROCESS_INDUSTRY_LABELS,
                   threshold=threshold),
        ]  # fmt: skip
    n = len(key)
    return [
        Kpi.of("nc_rate_declared", value=percent(ratio(len(declared), n)),
               numerator=len(declared), denominator=n, inputs=[r.eq.id for r in declared],
               note=_DECLARED),
        Kpi.of("nc_rate_measured", value=percent(ratio(len(measured), n)),
               numerator=len(measured), denominator=n, coverage=cov,
               inputs=[r.eq.id for r in measured], threshold=threshold),
    ]  # fmt: skip


def networking_kpi(results: Sequence[EquipmentResult]) -> Kpi:
    prod = [r for r in results if r.eq.production]
    on = [r for r in prod if r.delivered]
    return Kpi.of(
        "networking_rate", value=percent(ratio(len(on), len(prod))), numerator=len(on),
        denominator=len(prod), inputs=[r.eq.id for r in on],
        coverage=mean(r.coverage for r in on),
        note=KPI_NOTES["networking_coverage"],
    )  # fmt: skip


def groups(results: Sequence[EquipmentResult]) -> dict[str, Any]:
    site: dict[str, list[EquipmentResult]] = defaultdict(list)
    proc: dict[str, list[EquipmentResult]] = defaultdict(list)
    for r in results:
        site[r.eq.site].append(r)
        proc[r.eq.process or ""].append(r)
    out: dict[str, Any] = {"site": {}, "process": {}}
    for sid, rs in sorted(site.items()):
        out["site"][sid] = {k.id: k.value for k in oee_kpis(rs)}
    for pid, rs in sorted(proc.items()):
        e = rs[0].eq
        out["process"][pid] = {
            "name": e.process_name,
            "name_en": e.process_name_en,
            "key_process": e.key_process,
            **{k.id: k.value for k in oee_kpis(rs)},
        }
    return out
