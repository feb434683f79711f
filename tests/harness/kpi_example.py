"""A complete evidence report (format factory-evidence.report, version 1) for tests.

The demo plant's November 2026: 15 machines in six processes (four of them key
processes), seven electricity meters, a water meter and a gas meter, a baseline of
November 2025. The per-machine figures follow from the time buckets by the ISO 22400-2
formulas and the totals from the meters, so the report agrees with itself; the water
meter's coverage is below the threshold, so the two water KPIs are null with a note.

The digest and the signature are shaped right but sign nothing: a rendering test needs
their look, a verification test signs its own report.

`example_report()` returns a new dict on each call: tests change their copy freely.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

# 25 workdays (Mon-Sat) in November 2026, two 8 h shifts with a 30 min break each
CALENDAR_S = 30 * 86400.0
POT_S = 25 * 16 * 3600.0
BREAKS_S = 25 * 3600.0
PBT_S = POT_S - BREAKS_S
THRESHOLD = 0.8

PROCESSES = {
    "turning": ("车削", "Turning", True),
    "milling": ("铣削", "Milling", True),
    "grinding": ("磨削", "Grinding", True),
    "heat-treatment": ("热处理", "Heat treatment", True),
    "washing": ("清洗", "Washing", False),
    "assembly": ("装配", "Assembly", False),
}

# id, name, name_en, process, nc, interface, ideal cycle s,
# shares of PBT: apt, setup, idle, down, off, unknown; speed vs ideal; scrap share; downs
EQUIPMENT: tuple[tuple[Any, ...], ...] = (
    ("cnc-01", "数控车床 1号", "CNC lathe 1", "turning", True, "opcua", 90.0,
     (0.72, 0.05, 0.12, 0.04, 0.02, 0.05), 0.92, 0.012, 9),
    ("cnc-02", "数控车床 2号", "CNC lathe 2", "turning", True, "opcua", 90.0,
     (0.68, 0.06, 0.14, 0.06, 0.03, 0.03), 0.90, 0.015, 12),
    ("cnc-03", "数控车床 3号", "CNC lathe 3", "turning", True, "opcua", 100.0,
     (0.61, 0.07, 0.15, 0.09, 0.02, 0.06), 0.86, 0.021, 15),
    ("cnc-04", "数控车床 4号", "CNC lathe 4", "turning", True, "opcua", 100.0,
     (0.45, 0.05, 0.10, 0.05, 0.05, 0.30), 0.88, 0.018, 7),
    ("cnc-08", "数控车床 8号(未联网)", "CNC lathe 8 (not networked)", "turning", True, "none",
     None, None, None, None, 0),
    ("cnc-05", "立式加工中心 5号", "Vertical machining centre 5", "milling", True, "opcua", 240.0,
     (0.70, 0.08, 0.10, 0.05, 0.03, 0.04), 0.91, 0.010, 6),
    ("cnc-06", "立式加工中心 6号", "Vertical machining centre 6", "milling", True, "opcua", 240.0,
     (0.66, 0.09, 0.12, 0.06, 0.03, 0.04), 0.89, 0.011, 8),
    ("cnc-07", "卧式加工中心 7号", "Horizontal machining centre 7", "milling", True, "opcua",
     300.0, (0.58, 0.10, 0.16, 0.08, 0.04, 0.04), 0.87, 0.014, 10),
    ("grd-01", "数控外圆磨床", "CNC cylindrical grinder", "grinding", True, "opcua", 60.0,
     (0.64, 0.04, 0.20, 0.05, 0.03, 0.04), 0.93, 0.008, 5),
    ("grd-02", "普通外圆磨床(手动)", "Manual cylindrical grinder", "grinding", False,
     "meter_only", None, None, None, None, 0),
    ("ht-01", "感应淬火机床", "Induction hardening machine", "heat-treatment", True,
     "modbus_plc", 45.0, (0.75, 0.02, 0.15, 0.03, 0.02, 0.03), 0.95, 0.004, 3),
    ("ht-02", "燃气回火炉", "Gas-fired tempering furnace", "heat-treatment", False,
     "modbus_plc", None, (0.80, 0.01, 0.12, 0.02, 0.02, 0.03), None, None, 2),
    ("wash-01", "通过式清洗机", "Through-feed parts washer", "washing", False, "modbus_plc",
     None, (0.60, 0.00, 0.35, 0.01, 0.02, 0.02), None, None, 1),
    ("press-01", "液压压装机", "Hydraulic press-fit machine", "assembly", False, "modbus_plc",
     30.0, (0.52, 0.03, 0.38, 0.02, 0.03, 0.02), 0.85, 0.006, 2),
    ("drill-01", "摇臂钻床(手动)", "Radial drilling machine (manual)", "assembly", False,
     "meter_only", None, None, None, None, 0),
)  # fmt: skip

# id, name, name_en, carrier, unit, parent, quantity, coverage, rollovers, resets
METERS: tuple[tuple[Any, ...], ...] = (
    ("em-main", "总进线电表", "Main incomer meter", "electricity", "kWh", None,
     186420.5, 0.998, 0, 0),
    ("em-turning", "车削线电表", "Turning line meter", "electricity", "kWh", "em-main",
     61200.2, 0.995, 0, 0),
    ("em-milling", "铣磨线电表", "Milling and grinding line meter", "electricity", "kWh",
     "em-main", 48110.7, 0.991, 1, 0),
    ("em-grd-02", "手动磨床电表", "Manual grinder meter", "electricity", "kWh", "em-milling",
     3020.4, 0.987, 0, 0),
    ("em-ht", "热处理清洗电表", "Heat treatment and washing meter", "electricity", "kWh",
     "em-main", 52400.9, 0.996, 0, 1),
    ("em-assembly", "装配区电表", "Assembly area meter", "electricity", "kWh", "em-main",
     9870.3, 0.993, 0, 0),
    ("em-drill-01", "摇臂钻电表", "Radial drill meter", "electricity", "kWh", "em-assembly",
     1150.8, 0.989, 0, 0),
    ("wm-main", "总水表", "Main water meter", "water", "m3", None, 1240.5, 0.62, 0, 0),
    ("gm-main", "天然气表", "Natural gas meter", "gas", "m3", None, 8450.0, 0.994, 0, 0),
)  # fmt: skip

KGCE = {("electricity", "kWh"): 0.1229, ("gas", "m3"): 1.2143}
KGCO2 = {("electricity", "kWh"): 0.6553, ("gas", "m3"): 2.1622}
OUTPUT_PCS = 48000.0
VALUE_ADDED_10K_CNY = 1250.0
PUBLIC_KEY = bytes(range(32))


def _equipment(row: tuple[Any, ...]) -> dict[str, Any]:
    eid, name, name_en, process, nc, interface, ideal, shares, speed, scrap, downs = row
    key = PROCESSES[process][2]
    time = dict.fromkeys(
        ("calendar_s", "pot_s", "planned_downtime_s", "pbt_s", "apt_s", "setup_s", "idle_s",
         "down_s", "off_in_plan_s", "unknown_s", "running_outside_s"),
        0.0,
    )  # fmt: skip
    time.update(calendar_s=CALENDAR_S, pot_s=POT_S, planned_downtime_s=BREAKS_S, pbt_s=PBT_S)
    parts: dict[str, float | None] = {"produced": None, "good": None, "scrap": None}
    perf: dict[str, float | None] = dict.fromkeys(
        ("availability", "effectiveness", "quality_ratio", "oee", "utilisation", "mtbf_s",
         "mttr_s"),
    )  # fmt: skip
    delivered = shares is not None
    if shares is None:  # no state data: the whole planned busy time is unknown
        time["unknown_s"] = PBT_S
    else:
        for bucket, share in zip(
            ("apt_s", "setup_s", "idle_s", "down_s", "off_in_plan_s", "unknown_s"),
            shares,
            strict=True,
        ):
            time[bucket] = round(share * PBT_S, 3)
        time["running_outside_s"] = 1800.0
        apt, known = time["apt_s"], PBT_S - time["unknown_s"]
        running = apt + time["running_outside_s"]
        availability = apt / known
        perf["availability"] = availability
        perf["utilisation"] = running / CALENDAR_S
        if downs:
            perf["mtbf_s"] = running / downs
            perf["mttr_s"] = time["down_s"] / downs
        if ideal is not None and speed is not None:
            produced = float(int(running * speed / ideal))
            scrapped = float(round(produced * scrap))
            parts = {"produced": produced, "good": produced - scrapped, "scrap": scrapped}
            effectiveness = ideal * produced / running
            quality = (produced - scrapped) / produced
            perf.update(
                effectiveness=effectiveness,
                quality_ratio=quality,
                oee=availability * effectiveness * quality,
            )
    coverage = (PBT_S - time["unknown_s"]) / PBT_S
    return {
        "id": eid,
        "name": name,
        "name_en": name_en,
        "site": "hf-plant1",
        "process": process,
        "process_name": PROCESSES[process][0],
        "key_process": key,
        "nc": nc,
        "production": True,
        "interface": interface,
        "ideal_cycle_time_s": ideal,
        "coverage": coverage,
        "delivered_data": delivered,
        "nc_measured": key and nc and delivered and coverage >= THRESHOLD,
        "time": time,
        "parts": parts,
        **perf,
        "down_events": downs,
    }


def _meter(row: tuple[Any, ...]) -> dict[str, Any]:
    mid, name, name_en, carrier, unit, parent, quantity, coverage, rollovers, resets = row
    kgce, kgco2 = KGCE.get((carrier, unit)), KGCO2.get((carrier, unit))
    return {
        "id": mid,
        "name": name,
        "name_en": name_en,
        "site": "hf-plant1",
        "carrier": carrier,
        "unit": unit,
        "parent": parent,
        "top_level": parent is None,
        "quantity": quantity,
        "coverage": coverage,
        "rollovers": rollovers,
        "resets": resets,
        "tce": quantity * kgce / 1000 if kgce is not None else None,
        "tco2": quantity * kgco2 / 1000 if kgco2 is not None else None,
    }


def _kpi(
    *head: Any, coverage: float = 1.0, note: str = "", inputs: list[str] | None = None
) -> dict[str, Any]:
    """head: id, name, name_en, value, unit, formula[, numerator, denominator]."""
    kid, name, name_en, value, unit, formula, *ratio = head
    numerator, denominator = ratio or (None, None)
    return {
        "id": kid,
        "name": name,
        "name_en": name_en,
        "value": value,
        "unit": unit,
        "formula": formula,
        "numerator": numerator,
        "denominator": denominator,
        "coverage": coverage,
        "note": note,
        "inputs": inputs or [],
    }


def _kpis(equipment: list[dict[str, Any]], meters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    key = [e for e in equipment if e["key_process"]]
    declared = [e for e in key if e["nc"]]
    measured = [e for e in key if e["nc_measured"]]
    delivered = [e for e in equipment if e["delivered_data"]]
    timed = [e for e in equipment if e["availability"] is not None]
    apt = sum(e["time"]["apt_s"] for e in timed)
    known = sum(e["time"]["pbt_s"] - e["time"]["unknown_s"] for e in timed)
    pbt = sum(e["time"]["pbt_s"] for e in timed)
    counted = [e for e in timed if e["parts"]["produced"] is not None]
    ideal = sum(e["ideal_cycle_time_s"] * e["parts"]["produced"] for e in counted)
    running = sum(e["time"]["apt_s"] + e["time"]["running_outside_s"] for e in counted)
    produced = sum(e["parts"]["produced"] for e in counted)
    good = sum(e["parts"]["good"] for e in counted)
    a, p, q = apt / known, ideal / running, good / produced
    all_running = sum(e["time"]["apt_s"] + e["time"]["running_outside_s"] for e in timed)
    downs = sum(e["down_events"] for e in timed)
    down_s = sum(e["time"]["down_s"] for e in timed)
    top = [m for m in meters if m["top_level"] and m["tce"] is not None]
    tce = sum(m["tce"] for m in top)
    tco2 = sum(m["tco2"] for m in top)
    energy_ids = [m["id"] for m in top]
    ids = [e["id"] for e in timed]
    water_note = (
        "水表 wm-main 数据覆盖率 62.0% 低于阈值 80% 不计算 / water meter wm-main coverage "
        "62.0% is below the 80% threshold: not computed"
    )
    per_unit = tce * 1000 / OUTPUT_PCS
    return [
        _kpi("nc_rate_declared", "关键工序数控化率(申报)", "Key-process NC rate (declared)",
             len(declared) / len(key), "%", "N_nc,declared / N_key", len(declared), len(key),
             note="按设备台账申报 / as declared in the equipment register",
             inputs=[e["id"] for e in declared]),
        _kpi("nc_rate_measured", "关键工序数控化率(实测)", "Key-process NC rate (measured)",
             len(measured) / len(key), "%", "N_nc,measured / N_key", len(measured), len(key),
             note="数控且数据覆盖率 ≥ 80% / NC with data coverage >= 80%",
             inputs=[e["id"] for e in measured]),
        _kpi("networking_rate", "设备联网率", "Equipment networking rate",
             len(delivered) / len(equipment), "%", "N_networked / N_production",
             len(delivered), len(equipment), inputs=[e["id"] for e in delivered]),
        _kpi("availability", "设备可用率", "Availability", a, "%", "sum APT / sum (PBT - unknown)",
             apt, known, coverage=known / pbt, inputs=ids),
        _kpi("effectiveness", "性能开动率", "Effectiveness", p, "%",
             "sum (t_ideal * parts) / sum running time", ideal, running,
             coverage=known / pbt, inputs=[e["id"] for e in counted]),
        _kpi("quality_ratio", "合格品率", "Quality ratio", q, "%", "good / produced", good,
             produced, inputs=[e["id"] for e in counted]),
        _kpi("oee", "设备综合效率", "OEE", a * p * q, "%", "availability * effectiveness * quality",
             coverage=known / pbt, inputs=[e["id"] for e in counted]),
        _kpi("utilisation", "设备利用率", "Utilisation", all_running / (CALENDAR_S * len(timed)),
             "%", "sum running time / sum calendar time", all_running,
             CALENDAR_S * len(timed), coverage=known / pbt, inputs=ids),
        _kpi("mtbf", "平均故障间隔时间", "Mean time between failures", all_running / downs / 3600,
             "h", "running time / failures", all_running / 3600, downs, inputs=ids),
        _kpi("mttr", "平均修复时间", "Mean time to repair", down_s / downs / 3600, "h",
             "down time / failures", down_s / 3600, downs, inputs=ids),
        _kpi("energy_tce", "综合能耗", "Comprehensive energy consumption", tce, "tce",
             "sum (quantity * coefficient) over top-level meters", coverage=0.994,
             note="当量值 / equivalent value, GB/T 2589-2020", inputs=energy_ids),
        _kpi("carbon_tco2", "二氧化碳排放量", "CO2 emissions", tco2, "tCO2",
             "sum (quantity * factor) over top-level meters", coverage=0.994,
             note="安徽电网 2023 年排放因子 / Anhui grid factor 2023", inputs=energy_ids),
        _kpi("energy_per_unit", "单位产品综合能耗", "Energy per unit of output", per_unit,
             "kgce/件", "1000 * E_tce / output", tce * 1000, OUTPUT_PCS, coverage=0.994,
             inputs=energy_ids),
        _kpi("energy_per_value_added", "万元工业增加值能耗", "Energy per 10k CNY value added",
             tce / VALUE_ADDED_10K_CNY, "tce/万元", "E_tce / value added", tce,
             VALUE_ADDED_10K_CNY, coverage=0.994, inputs=energy_ids),
        _kpi("water_per_unit", "单位产品取水量", "Water per unit of output", None, "m3/件",
             "W_m3 / output", None, OUTPUT_PCS, coverage=0.62, note=water_note,
             inputs=["wm-main"]),
        _kpi("water_per_value_added", "万元工业增加值用水量", "Water per 10k CNY value added",
             None, "m3/万元", "W_m3 / value added", None, VALUE_ADDED_10K_CNY, coverage=0.62,
             note=water_note, inputs=["wm-main"]),
        _kpi("energy_per_unit_change", "单位产品综合能耗变化(较基准期)",
             "Energy per unit, change against the baseline", (per_unit - 0.753) / 0.753, "%",
             "(current - baseline) / baseline", per_unit - 0.753, 0.753, coverage=0.994,
             inputs=energy_ids),
    ]  # fmt: skip


def _factors() -> dict[str, Any]:
    gbt = "GB/T 2589-2020 综合能耗计算通则, 附录A (当量值)"
    mee = "生态环境部 国家统计局公告2025年第47号 (2023年度电力二氧化碳排放因子)"
    return {
        "energy": {
            "version": "gbt2589-2020.1",
            "title": "GB/T 2589-2020 当量值 (calorific equivalent) defaults",
            "rows": [
                {"carrier": "electricity", "unit": "kWh", "coefficient": 0.1229,
                 "coefficient_unit": "kgce/kWh", "basis": "当量值 equivalent value",
                 "source": gbt},
                {"carrier": "gas", "unit": "m3", "coefficient": 1.2143,
                 "coefficient_unit": "kgce/m3", "basis": "天然气 平均低位发热量 38931 kJ/m3",
                 "source": gbt},
            ],
        },
        "emission": {
            "version": "cn-2023.1",
            "title": "China grid CO2 factors 2023 (national, provincial) and fuel defaults",
            "rows": [
                {"carrier": "electricity", "region": "anhui", "year": 2023, "unit": "kWh",
                 "factor": 0.6553, "factor_unit": "kgCO2/kWh", "source": mee},
                {"carrier": "gas", "region": "*", "year": 2023, "unit": "m3",
                 "factor": 2.1622, "factor_unit": "kgCO2/m3",
                 "source": "生态环境部 企业温室气体排放核算与报告指南 (天然气缺省值)"},
            ],
        },
    }  # fmt: skip


def _quality(equipment: list[dict[str, Any]]) -> dict[str, Any]:
    tags = []
    for e in equipment:
        if not e["delivered_data"]:
            continue
        for tag, role, expected in (("state", "state", 8640), ("parts_total", "parts", 8640)):
            received = round(expected * e["coverage"])
            tags.append(
                {"device": e["id"], "tag": tag, "role": role, "received": received,
                 "expected": expected, "coverage": received / expected}
            )  # fmt: skip
    gaps = [
        {"device": "cnc-04", "start": "2026-11-09T01:12:00Z", "end": "2026-11-12T09:40:00Z",
         "seconds": 289680.0, "kind": "offline"},
        {"device": "cnc-03", "start": "2026-11-17T06:02:30Z", "end": "2026-11-17T06:31:00Z",
         "seconds": 1710.0, "kind": "unknown"},
        {"device": "cnc-08", "start": "2026-10-31T16:00:00Z", "end": "2026-11-30T16:00:00Z",
         "seconds": CALENDAR_S, "kind": "no_data"},
    ]  # fmt: skip
    anomalies = [
        {"device": "em-milling", "tag": "energy_kwh", "ts": "2026-11-20T03:15:00Z",
         "flag": "rollover", "prev_value": 99998.6, "value": 12.4, "delta": 13.8},
        {"device": "em-ht", "tag": "energy_kwh", "ts": "2026-11-24T22:01:10Z",
         "flag": "reset", "prev_value": 402117.2, "value": 0.0, "delta": 0.0},
    ]  # fmt: skip
    return {"tags": tags, "gaps": gaps, "counter_anomalies": anomalies}


def example_report() -> dict[str, Any]:
    """A signed, complete (not partial) report with a baseline: every key of the format."""
    equipment = [_equipment(row) for row in EQUIPMENT]
    meters = [_meter(row) for row in METERS]
    kpis = _kpis(equipment, meters)
    for k in kpis:  # the format: a "%" KPI carries percent (83.3), not a fraction
        if k["unit"] == "%" and k["value"] is not None:
            k["value"] *= 100
    by_id = {k["id"]: k["value"] for k in kpis}
    processes: dict[str, dict[str, Any]] = {}
    for pid, (name, name_en, key) in PROCESSES.items():
        members = [e for e in equipment if e["process"] == pid]
        timed = [e for e in members if e["availability"] is not None]
        known = sum(e["time"]["pbt_s"] - e["time"]["unknown_s"] for e in timed)
        processes[pid] = {
            "name": name,
            "name_en": name_en,
            "key_process": key,
            "nc_rate_measured": (
                100 * sum(e["nc_measured"] for e in members) / len(members) if key else None
            ),
            "availability": (
                100 * sum(e["time"]["apt_s"] for e in timed) / known if known else None
            ),
        }
    baseline_kpis = [
        _kpi("energy_per_unit", "单位产品综合能耗", "Energy per unit of output", 0.753,
             "kgce/件", "1000 * E_tce / output", 34.638, 46000.0, coverage=0.97),
        _kpi("energy_per_value_added", "万元工业增加值能耗", "Energy per 10k CNY value added",
             0.0291, "tce/万元", "E_tce / value added", 34.638, 1190.3, coverage=0.97),
    ]  # fmt: skip
    public_key = base64.b64encode(PUBLIC_KEY).decode()
    return {
        "format": "factory-evidence.report",
        "format_version": 1,
        "report_id": "6f1c2b7e-4d3a-4e5f-9a8b-1c2d3e4f5a6b",
        "generated_at": "2026-12-01T01:30:12Z",
        "software": {"name": "factory-evidence", "version": "0.1.0"},
        "enterprise": {
            "id": "hf-precision",
            "name": "合肥精工传动机械有限公司",
            "name_en": "Hefei Precision Drive Machinery Co., Ltd.",
            "credit_code": "91340100MA2N0DEM0X",
        },
        "period": {
            "from": "2026-11-01",
            "to": "2026-11-30",
            "start": "2026-10-31T16:00:00Z",
            "end": "2026-11-30T16:00:00Z",
            "timezone": "Asia/Shanghai",
            "partial": False,
        },
        "baseline": {
            "from": "2025-11-01",
            "to": "2025-11-30",
            "start": "2025-10-31T16:00:00Z",
            "end": "2025-11-30T16:00:00Z",
            "timezone": "Asia/Shanghai",
            "partial": False,
            "kpis": baseline_kpis,
        },
        "parameters": {
            "coverage_threshold": THRESHOLD,
            "gap_after_s": 900,
            "heartbeat_s": 300,
            "industry": "discrete",
        },
        "factors": _factors(),
        "sites": [
            {
                "id": "hf-plant1",
                "name": "经开区一号工厂",
                "name_en": "Economic Development Zone Plant 1",
                "timezone": "Asia/Shanghai",
                "grid_region": "anhui",
            },
        ],
        "kpis": kpis,
        "groups": {
            "site": {"hf-plant1": {k: by_id[k] for k in ("availability", "oee", "energy_tce")}},
            "process": processes,
        },
        "equipment": equipment,
        "meters": meters,
        "production": [
            {
                "site": None,
                "from": "2026-11-01",
                "to": "2026-11-30",
                "output": OUTPUT_PCS,
                "output_unit": "件",
                "value_added_10k_cny": VALUE_ADDED_10K_CNY,
                "share": 1.0,
                "note": "财务月报 / monthly financial statement",
            },
        ],
        "quality": _quality(equipment),
        "digest": {
            "algorithm": "sha256",
            "rows": 1284311,
            "value": hashlib.sha256(b"factory-evidence example").hexdigest(),
        },
        "signature": {
            "algorithm": "Ed25519",
            "key_id": hashlib.sha256(PUBLIC_KEY).hexdigest()[:16],
            "public_key": public_key,
            "value": base64.b64encode(bytes(64)).decode(),
        },
    }
