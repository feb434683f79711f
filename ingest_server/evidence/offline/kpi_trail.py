"""The `kpis` check's registry as the report read it: registry.json rolled back by both edit
trails (equipment_audit.json, registry_audit.json), each trail against the one the report
signed (`registry_audit`: its edits, count and SHA-256), and the rolled-back registry
against the enterprise, sites, equipment and meters the report used.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from ingest_server.evidence.offline.kpi_check import KpiCheck, _when
from ingest_server.kpi.columnar import audit_block, registry_edit, trail_edit

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
                             "carrier": "carrier", "unit": "unit", "parent": "parent_id",
                             "role": "role"}),
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
