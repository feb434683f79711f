"""The KPI engine's `Inputs` rebuilt from a bundle (kpi/columnar.py, as kpi/fetch.py reads
the database): the plant from the (rolled-back) registry, the production entries, and
each window's intervals, counters and coverage from the bundle's samples (kpi_samples.py).
Also `plant_inputs`, for a maker of synthetic bundles to compute the report a verifier
then checks.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ingest_server.derive.runs import GAP_AFTER
from ingest_server.evidence.offline.kpi_check import _day, _when
from ingest_server.evidence.offline.kpi_samples import Measured
from ingest_server.kpi.columnar import (
    counter_sums,
    ms_of,
    ms_time,
    state_intervals,
    state_samples_needed,
    tag_cover,
)
from ingest_server.kpi.edges import (
    PRORATED_ROLES,
    SeriesRef,
    by_window,
    is_counter,
    local_period,
    site_of,
    state_devices,
)
from ingest_server.kpi.engine import Parameters
from ingest_server.kpi.records import (
    Anomaly,
    CounterSum,
    Equipment,
    GatewayRef,
    Inputs,
    Meter,
    ProductionEntry,
    SeriesOrigin,
    Site,
    TagCoverage,
)
from ingest_server.repo.registry_model import CalendarDef

GAP_AFTER_S = GAP_AFTER.total_seconds()  # the runs' NO_DATA rule (state_intervals uses it)


def _gids(registry: dict[str, Any]) -> dict[tuple[str, str], int]:
    """(site, gateway) -> the gateway's number: the registry's `gid` when the bundle gives
    it, else its position (a key only: no figure depends on it)."""
    rows = sorted(registry.get("gateways") or [], key=lambda g: (g["site_id"], g["id"]))
    return {(g["site_id"], g["id"]): int(g.get("gid") or i + 1) for i, g in enumerate(rows)}


def _inputs(  # noqa: PLR0917 (one caller, each part named there)
    registry: dict[str, Any],
    equipment: dict[str, dict[str, Any]],
    entries: list[dict[str, Any]],
    period: tuple[dt.date, dt.date],
    as_of: dt.datetime,
    m: Measured,
    params: Parameters,
) -> Inputs:
    date_from, date_to = period
    gids = _gids(registry)
    calendars = {c["id"]: c["definition"] for c in registry.get("calendars") or []}
    sites = []
    for s in registry.get("sites") or []:
        start, end, _ = local_period(date_from, date_to, s["timezone"], as_of)
        cal = calendars.get(s.get("calendar_id"))
        calendar = None if cal is None else CalendarDef.model_validate({"id": "c", **cal})
        sites.append(Site(s["id"], s["name"], s.get("name_en") or "", s["timezone"],
                          s["grid_region"], calendar, start, end))  # fmt: skip
    processes = {p["id"]: p for p in registry.get("processes") or []}

    def device(x: dict[str, Any]) -> tuple[int, str] | None:
        gid = gids.get((str(x["site_id"]), str(x.get("gateway_id"))))
        return None if gid is None or x.get("device") is None else (gid, x["device"])

    eqs = []
    for e in sorted(equipment.values(), key=lambda e: e["id"]):
        p = processes.get(e.get("process_id")) or {}
        eqs.append(Equipment(
            id=e["id"], name=e["name"], name_en=e.get("name_en") or "", site=e["site_id"],
            process=e.get("process_id"), process_name=p.get("name") or "",
            process_name_en=p.get("name_en") or "", key_process=bool(p.get("key_process")),
            nc=e["nc"], production=e["production"], interface=e.get("interface"),
            ideal_cycle_time_s=e.get("ideal_cycle_time_s"), device=device(e),
        ))  # fmt: skip
    meters = [
        Meter(x["id"], x.get("name") or "", x.get("name_en") or "", x["site_id"], x["carrier"],
              x["unit"], x.get("parent_id"), device(x), x.get("role") or "consumption")
        for x in sorted(registry.get("meters") or [], key=lambda x: x["id"])
    ]  # fmt: skip
    ent = registry["enterprise"]
    inputs = Inputs({k: ent.get(k) for k in ("id", "name", "name_en", "credit_code")},
                    ent["industry"], date_from, date_to, as_of, sites, eqs, meters)  # fmt: skip
    inputs.production = [
        ProductionEntry(int(p["id"]), p.get("site_id"), _day(p["period_from"]),
                        _day(p["period_to"]), p.get("output"), p["output_unit"],
                        p.get("value_added_10k_cny"), p.get("note") or "",
                        None if p.get("entered_at") is None else _when(p["entered_at"]),
                        p.get("entered_by") or "")
        for p in sorted(entries, key=lambda p: int(p["id"]))
        if _day(p["period_from"]) <= date_to and _day(p["period_to"]) >= date_from
    ]  # fmt: skip
    names = {gid: gw for (_, gw), gid in gids.items()}
    devices = sorted({d for d in [*(e.device for e in eqs), *(x.device for x in meters)] if d})
    for dev in devices:
        inputs.device_names[dev] = f"{names.get(dev[0], dev[0])}/{dev[1]}"
    wanted = set(devices)
    refs = sorted(
        (SeriesRef(int(r["series_id"]), key, r["tag"], r["role"], r["wrap"])
         for r in m.series
         if (key := (gids.get((r["site"], r["gateway"]), -1), r["device"])) in wanted),
        key=lambda r: (r.device, r.tag),
    )  # fmt: skip
    where = site_of(inputs)
    for (start, end), group in by_window(refs, where).items():
        _measure(inputs, m, group, start, end, params)
    for r in refs:  # each series' samples in its site's period, and those a gateway signed
        s = where[r.device]
        x = m.of(r.series_id)
        a, b = np.searchsorted(x.ts, ms_of(s.start)), np.searchsorted(x.ts, ms_of(s.end))
        signed = int(np.count_nonzero(x.signed[a:b]))
        inputs.origins.append(SeriesOrigin(r.device, r.tag, r.role, int(b - a), signed))
    contracts = {(g["site_id"], g["id"]): int(g.get("contract") or 1)
                 for g in registry.get("gateways") or []}  # fmt: skip
    for (site, gw), gid in gids.items():
        if any(d[0] == gid for d in devices):
            inputs.gateways[gid] = GatewayRef(gid, site, gw, contracts[(site, gw)])
    return inputs


def _measure(  # noqa: PLR0917
    inputs: Inputs,
    m: Measured,
    group: Sequence[SeriesRef],
    start: dt.datetime,
    end: dt.datetime,
    params: Parameters,
) -> None:
    """One window's intervals, counters and coverage (kpi/fetch.py's raw path)."""
    a, b = ms_of(start), ms_of(end)
    for dev, sids in sorted(state_devices(group).items()):
        kinds = {r.series_id: r.role for r in group if r.series_id in sids}
        rows: list[tuple[int, dt.datetime, str | None]] = []
        after: list[int] = []
        for sid in sids:
            x = m.of(sid)
            ts = x.ts
            i0, i1 = int(np.searchsorted(ts, a)), int(np.searchsorted(ts, b))
            lo = max(i0 - 1, 0)
            code = x.text[lo:i1] if x.text is not None else np.full(i1 - lo, -1, np.int32)
            bad = x.bad[lo:i1] if x.bad is not None else np.zeros(i1 - lo, bool)
            times = ts[lo:i1]
            if len(sids) == 1:  # one state series: only the samples the runs need
                keep = state_samples_needed(times, np.where(bad, -1, code), GAP_AFTER_S)
                at = np.flatnonzero(keep)
                code, bad, times = code[at], bad[at], times[at]
            words = [*m.strings, None]
            rows += [(sid, ms_time(t), None if x else words[c])
                     for t, c, x in zip(times.tolist(), code.tolist(), bad.tolist(),
                                        strict=True)]  # fmt: skip
            if i1 < len(ts):
                after.append(int(ts[i1]))
        first_after = ms_time(min(after)) if after else None
        inputs.intervals[dev] = state_intervals(rows, kinds, first_after, start, end)
    for r in group:
        if not is_counter(r):
            continue
        c = inputs.counters.setdefault((r.device, r.role), CounterSum())
        x = m.of(r.series_id)
        if x.good is None or x.value is None:  # not read as a counter: no role of one
            continue
        good = x.good
        got = counter_sums(x.ts[good], x.value[good], wrap=r.wrap, start_ms=a, end_ms=b,
                           prorated=r.role in PRORATED_ROLES)  # fmt: skip
        c.quantity += got.quantity
        c.deltas += got.deltas
        c.rollovers += got.rollovers
        c.resets += got.resets
        inputs.anomalies += [Anomaly(r.device, r.tag, ms_time(t), flag, v0, v1, d)
                             for t, flag, v0, v1, d in got.anomalies]  # fmt: skip
    for r in group:
        if r.role == "device_status":
            continue
        received, counted = tag_cover(m.of(r.series_id).ts, start_ms=a, end_ms=b,
                                      heartbeat_s=params.heartbeat_s)  # fmt: skip
        expected = max(0.0, (end - start).total_seconds()) / params.heartbeat_s
        inputs.tags.append(TagCoverage(r.device, r.tag, r.role, received, counted, expected))


def digest(*parts: Inputs | None) -> tuple[int, str]:
    """The input digest a report signs (evidence/report.py `digest`: every row of the
    inputs, then of the baseline's)."""
    h = hashlib.sha256()
    n = 0
    for part in parts:
        for line in [] if part is None else part.rows():
            h.update(line.encode())
            h.update(b"\n")
            n += 1
    return n, h.hexdigest()


def _partial(inputs: Inputs) -> bool:
    return any(local_period(inputs.date_from, inputs.date_to, s.timezone, inputs.as_of)[2]
               for s in inputs.sites)  # fmt: skip


def plant_inputs(  # noqa: PLR0917 (each part named by the caller)
    files: Mapping[str, bytes],
    registry: dict[str, Any],
    entries: list[dict[str, Any]],
    period: tuple[dt.date, dt.date],
    as_of: dt.datetime,
    params: Parameters,
) -> tuple[Inputs, bool]:
    """The inputs `check_kpis` recomputes a period from (registry.json as it stands, no
    edit after the report), and whether the period is partial: for a maker of synthetic
    bundles (bench/verify_throughput.py) to compute, with kpi/engine.py `compute`, the
    report a verifier then checks."""
    equipment = {e["id"]: dict(e) for e in registry.get("equipment") or []}
    inputs = _inputs(registry, equipment, entries, period, as_of, Measured(files), params)
    return inputs, _partial(inputs)
