"""The offline verifier's `kpis` check (evidence/offline.py): every KPI of the report
recomputed from the bundle alone, and the declared side it stands on.

    registry.json + equipment_audit.json + registry_audit.json
        --roll back to when the report read it--> plant
        (each trail against the report's `registry_audit`: count, SHA-256, edits listed;
         the rolled-back registry against the report's enterprise, sites, equipment and
         meters; a bundle made before registry_audit.json: that trail is empty)
    production.json --> entries (each one the report's, none entered after it)
    factors.json    --> the report's tables, and the published ones this software knows
    samples.parquet + series.parquet --kpi/columnar.py--> intervals, counters, coverage,
        origins --kpi/engine.py compute--> the report again --verify.compare--> figures

Pure: no database, no network; the bundle's members as bytes. Returns a `KpiCheck` the
caller turns into the verdict's check (status, bilingual reasons, details).
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from ingest_server.derive.runs import GAP_AFTER
from ingest_server.evidence.compare import compare
from ingest_server.kpi.columnar import (
    audit_block,
    counter_sums,
    ms_of,
    ms_time,
    registry_edit,
    state_intervals,
    state_samples_needed,
    tag_cover,
    trail_edit,
)
from ingest_server.kpi.edges import (
    PART_ROLES,
    PRORATED_ROLES,
    SeriesRef,
    by_window,
    is_counter,
    local_period,
    site_of,
    state_devices,
)
from ingest_server.kpi.engine import Parameters, compute
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
from ingest_server.reference.factors import (
    EMISSION_TABLES,
    ENERGY_TABLES,
    emission_from_json,
    energy_from_json,
)
from ingest_server.repo.registry_model import CalendarDef

MEMBERS = ("report.json", "registry.json", "equipment_audit.json", "production.json",
           "factors.json", "series.parquet", "samples.parquet")  # fmt: skip
_LISTED = 20  # differing figures listed in full; the rest are counted
# an audited attribute and its key in registry.json's equipment (repo/equipment.py EDITABLE;
# the registry's other trail names registry.json's keys themselves)
_COLUMN = {"process": "process_id"}
# registry_audit.json's kind -> registry.json's section (a list of rows by id; the
# enterprise: one object)
_SECTION = {"enterprise": "enterprise", "site": "sites", "calendar": "calendars",
            "process": "processes", "equipment": "equipment", "meter": "meters"}  # fmt: skip
_BLOCK_VERSIONS = (1, 2)  # kpi/columnar.py audit_block
# the report's equipment row key -> registry.json's
_ATTRIBUTES = {"name": "name", "name_en": "name_en", "process": "process_id", "nc": "nc",
               "production": "production", "interface": "interface",
               "ideal_cycle_time_s": "ideal_cycle_time_s"}  # fmt: skip
GAP_AFTER_S = GAP_AFTER.total_seconds()  # the runs' NO_DATA rule (state_intervals uses it)
_SAMPLE_COLUMNS = ["series_id", "ts", "value", "text", "quality", "batch_id"]


@dataclass
class KpiCheck:
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # code, zh, en
    details: dict[str, Any] = field(default_factory=dict)

    def fail(self, code: str, zh: str, en: str) -> None:
        self.failures.append((code, zh, en))


def _when(text: Any) -> dt.datetime:
    t = dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.UTC)


def _day(text: Any) -> dt.date:
    return dt.date.fromisoformat(str(text))


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
    return out


# -- factors ----------------------------------------------------------------------------


def _factors(out: KpiCheck, doc: dict[str, Any], factors: dict[str, Any]) -> None:
    """factors.json against the tables the report signed, and against the published ones."""
    for name, known in (("energy", ENERGY_TABLES), ("emission", EMISSION_TABLES)):
        mine = factors.get(name) or {}
        signed = (doc.get("factors") or {}).get(name) or {}
        version = mine.get("version")
        published = known.get(str(version))
        against: list[tuple[str, str, Any]] = [("报告签名的", "the report's signed", signed)]
        if published is None:
            out.fail("factor_unknown",
                     f"{name} 系数表 {version} 不是本软件已知的公开版本 ({sorted(known)})",
                     f"the {name} table {version} is not a published version this verifier "
                     f"knows ({sorted(known)}): use a verifier that knows it")  # fmt: skip
        else:
            against.append(("公开的", "the published", published.as_json()))
        for zh_what, what, table in against:
            for where, a, b in _diff(mine, table):
                out.fail("factor_differs",
                         f"证据包的 {name} 系数表 {version} 在 {where} 与{zh_what}表不符: "
                         f"{a!r} / {b!r}",
                         f"factors.json's {name} table {version}, {where}: {a!r}, but "
                         f"{what} table has {b!r}")  # fmt: skip


def _diff(a: Any, b: Any, where: str = "") -> list[tuple[str, Any, Any]]:
    """The places two JSON values differ, rows named by their index and content."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b))
                for d in _diff(a.get(k), b.get(k), f"{where}.{k}" if where else k)]  # fmt: skip
    if isinstance(a, list) and isinstance(b, list):
        out = []
        for i in range(max(len(a), len(b))):
            x = a[i] if i < len(a) else None
            y = b[i] if i < len(b) else None
            row = x if isinstance(x, dict) else y
            name = f"{where}[{i}]"
            if isinstance(row, dict):
                key = "/".join(str(row.get(k)) for k in ("carrier", "region", "year", "unit")
                               if row.get(k) is not None)  # fmt: skip
                name = f"{where}[{i}] ({key})"
            out += _diff(x, y, name)
        return out
    if a == b and type(a) is type(b):
        return []
    return [(where, a, b)]


# -- the edit trail and the registry as the report read it ------------------------------


def _edit_text(e: Mapping[str, Any]) -> str:
    if "kind" in e:  # the registry's other trail (registry_audit.json)
        what = (f"{e['kind']} {e['entity']} inserted {e['new']!r}" if e["old"] is None
                and e["field"] == "*" else f"{e['kind']} {e['entity']} removed {e['old']!r}"
                if e["field"] == "*" else
                f"{e['kind']} {e['entity']} {e['field']} {e['old']!r} -> {e['new']!r}")  # fmt: skip
        return f"registry edit {e['id']}: {what} by {e['account']} at {e['at']}"
    return (f"edit {e['id']}: equipment {e['equipment']} {e['field']} {e['old']!r} -> "
            f"{e['new']!r} by {e['account']} at {e['at']}")  # fmt: skip


def _compare_edits(
    out: KpiCheck, signed_edits: Any, have_edits: list[dict[str, Any]], member: str
) -> None:
    """Each edit the report lists against the bundle's: removed, added, changed."""
    signed = {int(e["id"]): e for e in signed_edits or []}
    have = {e["id"]: e for e in have_edits}
    for i in sorted(signed.keys() - have.keys()):
        out.fail("edit_removed",
                 f"报告签名的修改记录 {i} 不在证据包的 {member} 中: {_edit_text(signed[i])}",
                 f"{_edit_text(signed[i])}, signed in the report's registry_audit, is "
                 f"missing from {member}: it was removed from the trail",
                 )  # fmt: skip
    for i in sorted(have.keys() - signed.keys()):
        out.fail("edit_added",
                 f"证据包 {member} 的修改记录 {i} 不在报告签名的记录中: {_edit_text(have[i])}",
                 f"{_edit_text(have[i])} is in {member} but not among the "
                 "edits the report signed: it was added to the trail")  # fmt: skip
    for i in sorted(signed.keys() & have.keys()):
        if json.dumps(signed[i], sort_keys=True) != json.dumps(have[i], sort_keys=True):
            out.fail("edit_changed", f"修改记录 {i} 与报告签名的不同: {_edit_text(have[i])}",
                     f"{_edit_text(have[i])} differs from the edit the report signed: "
                     f"{_edit_text(signed[i])}")  # fmt: skip


def _compare_count(
    out: KpiCheck, mine: Mapping[str, Any], signed: Mapping[str, Any], member: str, read_at: str
) -> None:
    if (mine["entries"], mine["sha256"]) != (signed.get("entries"), signed.get("sha256")):
        out.fail("trail_differs",
                 f"证据包的 {member} 截至 {read_at} 有 {mine['entries']} 条修改记录, "
                 f"报告签名的是 {signed.get('entries')} 条 (SHA-256 不符): 修改记录被删改",
                 f"{member} holds {mine['entries']} edit(s) up to {read_at} (when the "
                 f"report read the registry), the report signed {signed.get('entries')} "
                 "with another SHA-256: the trail was changed (an edit removed, added or "
                 "altered)")  # fmt: skip


def _signed(
    out: KpiCheck,
    trail: list[dict[str, Any]],
    others: list[dict[str, Any]] | None,
    block: Any,
    read_at: dt.datetime,
) -> None:
    """The bundle's trails against the ones the report signed (`registry_audit`): each
    listed edit, and the count and SHA-256 of all of them. Version 1 (or no version): the
    equipment trail only; version 2: the registry's other trail too (`registry`)."""
    if not isinstance(block, dict):
        out.details["registry_audit"] = None  # a report made before it: the trail is unsigned
        return
    version = block.get("version", 1)
    if version not in _BLOCK_VERSIONS:
        out.fail("audit_version",
                 f"报告的 registry_audit 版本 {version!r} 不是本验证程序已知的版本 "
                 f"{list(_BLOCK_VERSIONS)}: 请使用更新的验证程序",
                 f"the report's registry_audit is version {version!r}, not one this "
                 f"verifier knows ({list(_BLOCK_VERSIONS)}): use a newer verifier")  # fmt: skip
        out.details["registry_audit"] = {"version": version}
        return
    since = _when(block["since"])
    signed_registry = block.get("registry") if version >= 2 else None
    mine = audit_block(trail, read_at, since,
                       None if signed_registry is None else others or [])  # fmt: skip
    _compare_edits(out, block.get("edits"), mine["edits"], "equipment_audit.json")
    _compare_count(out, mine, block, "equipment_audit.json", block["read_at"])
    if isinstance(signed_registry, dict):
        member = "registry_audit.json" if others is not None else (
            "registry_audit.json (the bundle lacks it)")  # fmt: skip
        _compare_edits(out, signed_registry.get("edits"), mine["registry"]["edits"], member)
        _compare_count(out, mine["registry"], signed_registry, member, block["read_at"])
    out.details["registry_audit"] = {
        "version": version, **{k: block.get(k) for k in ("read_at", "entries", "since")},
        "registry_entries": None if signed_registry is None else signed_registry.get("entries"),
    }  # fmt: skip


def _trail(  # noqa: PLR0917 (one caller, each part named there)
    out: KpiCheck,
    doc: dict[str, Any],
    registry: dict[str, Any],
    trails: tuple[list[dict[str, Any]], list[dict[str, Any]] | None],
    block: Any,
    read_at: dt.datetime,
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The registry as the report read it, and its equipment by id: registry.json (as the
    bundle was made) with every later edit of either trail undone, newest first. Fails on
    a trail that is not the one the report signed (an edit removed, added or changed), on
    an edit whose `new` is not what the registry holds, and on a rolled-back registry
    that gives the report's enterprise, sites, equipment or meters otherwise."""
    trail, others = trails
    edits = [trail_edit(e) for e in trail]
    changes = [{**registry_edit(e), "trail": "registry"} for e in others or []]
    timeline = sorted([*edits, *changes],
                      key=lambda x: (_when(x["at"]), "kind" in x, x["id"]))  # fmt: skip
    out.details["edits"] = [{**x, "after_report": _when(x["at"]) > read_at} for x in timeline]
    _signed(out, trail, others, block, read_at)
    rolled = copy.deepcopy(registry)
    sections: dict[str, dict[str, dict[str, Any]]] = {
        kind: {str(r["id"]): r for r in rolled.get(key) or []}
        for kind, key in _SECTION.items() if kind != "enterprise"
    }  # fmt: skip
    ent = rolled.get("enterprise")
    sections["enterprise"] = {str(ent["id"]): ent} if isinstance(ent, dict) else {}
    for x in reversed([x for x in timeline if _when(x["at"]) > read_at]):
        _undo(out, x, sections)
    for kind, key in _SECTION.items():
        if kind != "enterprise":
            rolled[key] = [sections[kind][i] for i in sorted(sections[kind])]
    _against_report(out, doc, rolled, sections, read_at)
    return rolled, sections["equipment"]


def _inconsistent(out: KpiCheck, x: Mapping[str, Any], now: Any, what: str) -> None:
    out.fail("trail_inconsistent",
             f"{_edit_text(x)}: 登记表中该项为 {now!r}, 与修改后的值不符",
             f"{_edit_text(x)}: the registry holds {now!r} there, not {what}: the trail "
             "does not account for the registry")  # fmt: skip


def _undo(out: KpiCheck, x: Mapping[str, Any], sections: dict[str, dict[str, Any]]) -> None:
    """One edit made after the report undone in `sections` (kind -> id -> row)."""
    kind = x.get("kind", "equipment")
    if kind not in _SECTION or (kind == "enterprise" and x["field"] == "*"):
        return  # the enterprise's own creation: no report reads a registry before it
    rows = sections[kind]
    entity = str(x.get("entity", x.get("equipment")))
    if x["field"] == "*":
        row = rows.get(entity)
        if x["old"] is None:  # inserted after the report: not in the registry it read
            extra = {k: v for k, v in (x["new"] or {}).items()
                     if row is not None and row.get(k) != v}  # fmt: skip
            if row is None or extra:
                _inconsistent(out, x, row, "the row it inserted")
            rows.pop(entity, None)
        else:  # removed after the report: back as it was
            if row is not None:
                _inconsistent(out, x, row, "nothing (it was removed)")
            rows[entity] = {"id": entity, **(x["old"] or {})}
        return
    row = rows.get(entity)
    col = _COLUMN.get(x["field"], x["field"]) if "kind" not in x else x["field"]
    if row is None or row.get(col) != x["new"]:
        _inconsistent(out, x, None if row is None else row.get(col), "what the edit set")
    if row is not None:
        row[col] = x["old"]


def _differs(  # noqa: PLR0917 (each part of the message)
    out: KpiCheck, what: str, key: str, mine: Any, used: Any, read_at: str
) -> None:
    out.fail("attribute_differs",
             f"{what} 的 {key}: 按修改记录回溯到 {read_at} 的登记表为 {mine!r}, "
             f"报告使用的是 {used!r}: 修改记录缺少一次修改",
             f"{what} {key}: the registry rolled back by the trail to {read_at} gives "
             f"{mine!r}, the report used {used!r}: an edit is missing from the trail, or "
             "the registry was changed without one")  # fmt: skip


def _against_report(
    out: KpiCheck,
    doc: dict[str, Any],
    rolled: dict[str, Any],
    sections: dict[str, dict[str, dict[str, Any]]],
    read_at: dt.datetime,
) -> None:
    """The rolled-back registry against what the report says it used: the enterprise,
    each site, equipment and meter (the report's rows list them all) and their attributes
    the figures read; a calendar shows in the figures it moves."""
    when = read_at.isoformat()
    ent, used_ent = rolled.get("enterprise") or {}, doc.get("enterprise") or {}
    for key in ("id", "name", "name_en", "credit_code"):
        if key in used_ent and (ent.get(key) or None) != (used_ent.get(key) or None):
            _differs(out, "enterprise", key, ent.get(key), used_ent.get(key), when)
    industry = (doc.get("parameters") or {}).get("industry")
    if industry is not None and ent.get("industry") != industry:
        _differs(out, "enterprise", "industry", ent.get("industry"), industry, when)
    processes = sections["process"]
    # (report section, registry kind, report key -> registry.json key)
    plan = (
        ("sites", "site", {"name": "name", "name_en": "name_en", "timezone": "timezone",
                           "grid_region": "grid_region"}),
        ("equipment", "equipment", {**_ATTRIBUTES, "site": "site_id"}),
        ("meters", "meter", {"name": "name", "name_en": "name_en", "site": "site_id",
                             "carrier": "carrier", "unit": "unit", "parent": "parent_id"}),
    )  # fmt: skip
    for section, kind, keys in plan:
        if not isinstance(doc.get(section), list):
            continue
        rows = sections[kind]
        used_ids = set()
        for r in doc[section]:
            used_ids.add(r.get("id"))
            row = rows.get(str(r.get("id")))
            if row is None:
                out.fail(f"{kind}_unknown",
                         f"报告中的{kind} {r.get('id')} 不在回溯到 {when} 的登记表中",
                         f"{kind} {r.get('id')} of the report is not in registry.json rolled "
                         f"back to {when}")  # fmt: skip
                continue
            pairs = [(key, row.get(col), r.get(key)) for key, col in keys.items() if key in r]
            if kind == "equipment" and "key_process" in r:
                p = processes.get(str(row.get("process_id"))) or {}
                pairs.append(("key_process", bool(p.get("key_process")), r["key_process"]))
            for key, mine_v, used in pairs:
                blank = key == "name_en"  # none and "" are one
                if (mine_v or "" if blank else mine_v) != (used or "" if blank else used):
                    _differs(out, f"{kind} {r['id']}", key, mine_v, used, when)
        for i in sorted(rows.keys() - {str(x) for x in used_ids}):
            out.fail(f"{kind}_not_in_report",
                     f"回溯到 {when} 的登记表中的{kind} {i} 不在报告中",
                     f"{kind} {i} is in registry.json rolled back to {when} but not in the "
                     "report: it was added without an edit on the trail")  # fmt: skip


# -- production entries ------------------------------------------------------------------


def _production(
    out: KpiCheck, doc: dict[str, Any], entries: list[dict[str, Any]], read_at: dt.datetime
) -> None:
    """Each entry of the report's period in production.json is one the report used, with
    its figures; none was entered after the report read them."""
    lo, hi = _day(doc["period"]["from"]), _day(doc["period"]["to"])
    used = {int(r["id"]): r for r in doc.get("production") or []}
    seen = set()
    for p in entries:
        name = (f"entry {p.get('id')} (entered by {p.get('entered_by')} at "
                f"{p.get('entered_at')})")  # fmt: skip
        late = p.get("entered_at") is not None and _when(p["entered_at"]) > read_at
        if late:
            out.fail("entry_after_report",
                     f"产量录入 {name} 在报告读取数据 ({read_at.isoformat()}) 之后才录入",
                     f"production {name} was entered after the report read its inputs "
                     f"({read_at.isoformat()})")  # fmt: skip
        if not (_day(p["period_from"]) <= hi and _day(p["period_to"]) >= lo):
            continue  # the baseline's: its figures are recomputed, not listed in the report
        seen.add(int(p["id"]))
        r = used.get(int(p["id"]))
        if r is None:
            if not late:
                out.fail("entry_not_in_report",
                         f"产量录入 {name} 不在报告的输入中",
                         f"production {name} is not among the report's inputs: it was added "
                         "to the bundle")  # fmt: skip
            continue
        pairs = {"site": ("site_id", "site"), "from": ("period_from", "from"),
                 "to": ("period_to", "to"), "output": ("output", "output"),
                 "output_unit": ("output_unit", "output_unit"),
                 "value_added_10k_cny": ("value_added_10k_cny", "value_added_10k_cny")}  # fmt: skip
        for what, (mine_k, theirs_k) in pairs.items():
            if p.get(mine_k) != r.get(theirs_k):
                out.fail("entry_changed",
                         f"产量录入 {name} 的 {what} 为 {p.get(mine_k)!r}, 报告使用的是 "
                         f"{r.get(theirs_k)!r}",
                         f"production {name}: {what} is {p.get(mine_k)!r}, the report used "
                         f"{r.get(theirs_k)!r}")  # fmt: skip
    for i in sorted(used.keys() - seen):
        out.fail(
            "entry_missing",
            f"报告使用的产量录入 {i} 不在证据包中",
            f"production entry {i}, which the report used, is not in production.json",
        )
    out.details["production_entries"] = len(entries)


# -- the inputs ---------------------------------------------------------------------------


@dataclass
class _Series:
    """One series' samples, sorted by time: what the figures read of it (by its role)."""

    ts: np.ndarray  # int64 ms, every sample
    signed: np.ndarray  # bool: in a batch (a gateway signed it)
    value: np.ndarray | None = None  # float64 (NaN when null): counters
    good: np.ndarray | None = None  # quality < 2 and a value: counters
    bad: np.ndarray | None = None  # quality >= 2: state and status series
    text: np.ndarray | None = None  # int32 code in Measured.strings, -1 null: states


@dataclass
class _Kept:
    """A series' samples (or a row group's piece of them) as kept: times as offsets from
    `base` (uint32 when they fit: 49 days), the rest as _Series holds them."""

    base: int
    offsets: np.ndarray
    signed: np.ndarray
    value: np.ndarray | None = None
    good: np.ndarray | None = None
    bad: np.ndarray | None = None
    text: np.ndarray | None = None

    @staticmethod
    def times(ts: np.ndarray) -> tuple[int, np.ndarray]:
        if not len(ts):
            return 0, ts.astype(np.int64)
        base = int(ts.min())
        off = ts - base
        return base, off.astype(np.uint32) if int(off.max()) <= 0xFFFFFFFF else off

    def ts(self) -> np.ndarray:
        out: np.ndarray = self.offsets.astype(np.int64) + self.base
        return out


_STATE_ROLES = ("machine_state", "device_status")
_EMPTY = _Series(np.zeros(0, np.int64), np.zeros(0, bool), np.zeros(0), np.zeros(0, bool),
                 np.zeros(0, bool), np.zeros(0, np.int32))  # fmt: skip


class Measured:
    """The bundle's samples, one series at a time, and its series (docs/evidence-verify.md,
    "Speed"). samples.parquet is read a row group at a time, only the columns the figures
    need; each row group's rows of a series (sorted by (series_id, ts) within the group,
    as the bundle writes them; sorted here if not) are copied out as the few arrays its
    role needs (counters: time, value, good; states: time, text code, bad; every series:
    time and signed), times as 4-byte offsets, the row group then let go; a series'
    pieces are joined and put in time order (stable: the file's order among equal
    times) when it is first asked for. Memory: about 14 bytes a counter sample and 10 a
    state sample, not the whole table with its sort."""

    def __init__(self, files: Mapping[str, bytes]) -> None:
        self.series = _read(files, "series.parquet").read().to_pylist()
        roles = {int(r["series_id"]): str(r["role"]) for r in self.series}
        counters = {sid for sid, role in roles.items() if role in PRORATED_ROLES
                    or role in PART_ROLES}  # fmt: skip
        states = {sid for sid, role in roles.items() if role in _STATE_ROLES}
        self.strings: list[str] = []  # the texts, each once
        self._string_at: dict[str, int] = {}
        self._pieces: dict[int, list[_Kept]] = {}
        self._joined: dict[int, _Kept] = {}
        self.n = 0
        pf = _read(files, "samples.parquet")
        for g in range(pf.num_row_groups):
            t = pf.read_row_group(g, columns=_SAMPLE_COLUMNS)
            self.n += t.num_rows
            self._split(t, counters, states)
            del t

    def _codes(self, col: pa.ChunkedArray | pa.Array) -> np.ndarray:
        """A text column's codes in `strings` (-1 null)."""
        enc = pc.dictionary_encode(col.combine_chunks() if isinstance(col, pa.ChunkedArray)
                                   else col)  # fmt: skip
        at = [self._string_at.setdefault(x, len(self._string_at)) for x in
              enc.dictionary.to_pylist()]  # fmt: skip
        self.strings = list(self._string_at)
        local = pc.fill_null(enc.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
        out: np.ndarray = np.array([*at, -1], np.int32)[local]
        return out

    def _split(self, t: pa.Table, counters: set[int], states: set[int]) -> None:
        n = t.num_rows
        if not n:
            return
        sid = pc.fill_null(t["series_id"], -1).to_numpy(zero_copy_only=False).astype(np.int64)
        if np.any(sid[1:] < sid[:-1]):  # not as the bundle writes it: group it (stable)
            order = np.argsort(sid, kind="stable")
            t, sid = t.take(pa.array(order)), sid[order]
        ts = pc.fill_null(t["ts"], 0).to_numpy(zero_copy_only=False).astype(np.int64)
        signed = pc.is_valid(t["batch_id"]).to_numpy(zero_copy_only=False)
        quality = pc.fill_null(t["quality"], 2).to_numpy(zero_copy_only=False)
        at = np.flatnonzero(np.r_[True, sid[1:] != sid[:-1], True])
        value = good = bad = text = None
        for lo, hi in zip(at[:-1].tolist(), at[1:].tolist(), strict=True):
            s = int(sid[lo])
            base, off = _Kept.times(ts[lo:hi])
            piece = _Kept(base, off, signed[lo:hi].copy())
            if s in counters:
                if value is None:
                    value = pc.fill_null(t["value"], np.nan).to_numpy(zero_copy_only=False)
                    good = (quality < 2) & pc.is_valid(t["value"]).to_numpy(zero_copy_only=False)
                piece.value, piece.good = value[lo:hi].copy(), good[lo:hi].copy()  # type: ignore[index]
            if s in states:
                if bad is None:
                    bad, text = quality >= 2, self._codes(t["text"])
                piece.bad, piece.text = bad[lo:hi].copy(), text[lo:hi].copy()  # type: ignore[index]
            self._pieces.setdefault(s, []).append(piece)

    def of(self, sid: int) -> _Series:
        """Series `sid`'s samples, sorted by time."""
        kept = self._joined.get(sid)
        if kept is None:
            kept = self._join(sid)
            if kept is None:
                return _EMPTY
            self._joined[sid] = kept
        return _Series(kept.ts(), kept.signed, kept.value, kept.good, kept.bad, kept.text)

    def _join(self, sid: int) -> _Kept | None:
        pieces = self._pieces.pop(sid, None)
        if not pieces:
            return None
        ts = np.concatenate([p.ts() for p in pieces])
        signed = np.concatenate([p.signed for p in pieces])
        value = good = bad = text = None
        if pieces[0].value is not None:
            value = np.concatenate([p.value for p in pieces])
            good = np.concatenate([p.good for p in pieces])
        if pieces[0].bad is not None:
            bad = np.concatenate([p.bad for p in pieces])
            text = np.concatenate([p.text for p in pieces])
        del pieces
        if np.any(ts[1:] < ts[:-1]):
            order = np.argsort(ts, kind="stable")
            ts, signed = ts[order], signed[order]
            if value is not None:
                value, good = value[order], good[order]  # type: ignore[index]
            if bad is not None:
                bad, text = bad[order], text[order]  # type: ignore[index]
        base, off = _Kept.times(ts)
        return _Kept(base, off, signed, value, good, bad, text)


def _read(files: Mapping[str, bytes], name: str) -> pq.ParquetFile:
    """A Parquet member: opened where it lies in the zip when `files` can (offline.py's
    Members), else over its bytes."""
    opener = getattr(files, "parquet", None)
    if opener is not None:
        return opener(name)
    return pq.ParquetFile(pa.BufferReader(files[name]))


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
              x["unit"], x.get("parent_id"), device(x))
        for x in sorted(registry.get("meters") or [], key=lambda x: x["id"])
    ]  # fmt: skip
    ent = registry["enterprise"]
    inputs = Inputs({k: ent.get(k) for k in ("id", "name", "name_en", "credit_code")},
                    ent["industry"], date_from, date_to, as_of, sites, eqs, meters)  # fmt: skip
    inputs.production = [
        ProductionEntry(int(p["id"]), p.get("site_id"), _day(p["period_from"]),
                        _day(p["period_to"]), p.get("output"), p["output_unit"],
                        p.get("value_added_10k_cny"), p.get("note") or "")
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
