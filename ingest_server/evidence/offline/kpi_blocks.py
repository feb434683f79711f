"""The `kpis` check's part over the report's blocks added after its figures: `targets`,
`meter_register`, `green` and `ghg` (evidence/report.py). Each is checked twice:

    report.json's block --the server's own check (targets_problems, register_problems,
        green_problems, ghg_problems: evidence/verify.py runs the same)--> against the
        report's own figures, dates and entries
    the same block --made again (evaluate, meter_register_block, green_block, ghg_block)
        from the report recomputed from the bundle (kpis.py) and the registry rolled back
        to when the report read it (kpi_trail.py)--> against what the bundle proves

So a block that agrees with a figure the samples do not give (a target "met" by a KPI the
bundle recomputes lower), or a meter's certificate other than the registry's, fails even
when the report agrees with itself. A report made before a block has none: "not present"
in the details, no failure. The codes are the server's reasons (`targets_differ`,
`register_differs`, `green_differs`, `ghg_differs`), so a block reads the same either way.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from ingest_server.evidence.compare import close
from ingest_server.evidence.declared import meter_register_block, register_problems
from ingest_server.evidence.ghg import ProcessEmission, ghg_block, ghg_problems
from ingest_server.evidence.green import GreenEntries, green_block, green_problems
from ingest_server.evidence.offline.kpi_check import KpiCheck, _day
from ingest_server.evidence.targets import evaluate, targets_problems
from ingest_server.reference.targets import TargetDef, targets_from_json
from ingest_server.repo.registry_model import CalibrationDef

Json = dict[str, Any]
Difference = tuple[str, Any, Any]  # where, the report's value, the bundle's
_LISTED = 20  # differences of one block listed in full; the rest are counted

# block -> (reason code, its name in Chinese, the server's check of it)
_BLOCKS: dict[str, tuple[str, str, Callable[[Json], list[str]]]] = {
    "targets": ("targets_differ", "目标对照", targets_problems),
    "meter_register": ("register_differs", "计量器具一览表", register_problems),
    "green": ("green_differs", "绿色工厂指标表", green_problems),
    "ghg": ("ghg_differs", "温室气体排放报告", ghg_problems),
}  # fmt: skip
_REGISTER_KEYS = ("name", "name_en", "carrier", "serial", "model", "accuracy_class")


def _blocks(out: KpiCheck, doc: Json, again: Json, rolled: Json, read_at: dt.datetime) -> None:
    """Each block of the report against its own figures and against the bundle; a
    failure names the block, the field and both values (module docstring)."""
    when = read_at.isoformat()
    made_again: dict[str, tuple[Callable[[], list[Difference]], str, str]] = {
        "targets": (lambda: _targets(doc, again, rolled),
                    "根据证据包重新计算的指标得出", "the KPIs recomputed from the bundle give"),
        "meter_register": (lambda: _register(doc, rolled),
                           f"按修改记录回溯到 {when} 的登记表为",
                           f"registry.json rolled back to {when} gives"),
        "green": (lambda: _green(doc, again),
                  "根据证据包重新计算的数值得出", "the figures recomputed from the bundle give"),
        "ghg": (lambda: _ghg(doc, again),
                "根据证据包重新计算的数值得出", "the figures recomputed from the bundle give"),
    }  # fmt: skip
    details: dict[str, Any] = {}
    for name, (code, zh_name, own_check) in _BLOCKS.items():
        if doc.get(name) is None:  # a report made before the block
            details[name] = "not present"
            continue
        own = own_check(doc)
        for p in own:
            out.fail(code, f"报告的{zh_name} ({name}) 与报告自身的数值、日期或所填数据不符: {p}",
                     f"{p} (against the report's own figures)")  # fmt: skip
        run, zh_from, en_from = made_again[name]
        try:
            found = run()
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            found = []
            out.fail(code, f"报告的{zh_name} ({name}) 无法与证据包比对: {exc}",
                     f"{name}: the block cannot be made again from the bundle to compare "
                     f"it: {exc}")  # fmt: skip
        for i, (where, claimed, mine) in enumerate(found):
            if i == _LISTED:
                more = len(found) - _LISTED
                out.fail(code, f"{name}: 另有 {more} 项不符未列出",
                         f"{name}: and {more} more differing field(s)")  # fmt: skip
                break
            out.fail(code, f"{where}: 报告为 {claimed!r}, {zh_from} {mine!r}",
                     f"{where}: the report states {claimed!r}, {en_from} {mine!r}")  # fmt: skip
        details[name] = {
            "compared": _count(name, doc[name]),
            "own_problems": own,
            "differences": [{"where": w, "claimed": c, "recomputed": m} for w, c, m in found],
        }
    out.details["blocks"] = details


def _targets(doc: Json, again: Json, rolled: Json) -> list[Difference]:
    """Each result evaluated again against the recomputed KPIs, with the table and the
    entered targets the block cites; the entered targets against the enterprise's in the
    rolled-back registry (a bundle whose registry.json has none: not compared)."""
    block = doc["targets"]
    table = targets_from_json({"version": block.get("version"), "title": block.get("title"),
                               "rows": block["rows"]})  # fmt: skip
    entered = [TargetDef.model_validate(t) for t in block["entered"]]
    mine = [r.model_dump(mode="json") for r in evaluate(again["kpis"], table, entered)]
    claimed = block["results"]
    found: list[Difference] = []
    if len(claimed) != len(mine):
        found.append(("targets.results", f"{len(claimed)} results", f"{len(mine)} results"))
    for i, (c, m) in enumerate(zip(claimed, mine, strict=False)):
        t = m["target"]
        what = f"targets.results[{i}] ({t['kpi']} {t['comparison']} {t['threshold']} {t['unit']})"
        found += _diff(what, c, m)
    ent = rolled.get("enterprise")
    if isinstance(ent, Mapping) and "targets" in ent:
        registry = [TargetDef.model_validate(t).model_dump(mode="json")
                    for t in ent["targets"] or []]  # fmt: skip
        found += _diff("targets.entered", block["entered"], registry)
    return found


def _register(doc: Json, rolled: Json) -> list[Difference]:
    """The block's meters against the rolled-back registry's meters of the report's sites
    (each nameplate and certificate, and the state at the period's end they give)."""
    block = doc["meter_register"]
    lo, hi = _day(doc["period"]["from"]), _day(doc["period"]["to"])
    sites = {str(s.get("id")) for s in doc.get("sites") or [] if isinstance(s, Mapping)}
    meters = sorted((m for m in rolled.get("meters") or [] if str(m.get("site_id")) in sites),
                    key=lambda m: (str(m["site_id"]), str(m["id"])))  # fmt: skip
    rows = [{"id": m["id"], "site": m["site_id"], **{k: m.get(k) for k in _REGISTER_KEYS},
             "calibration": None if m.get("calibration") is None
             else CalibrationDef.model_validate(m["calibration"])}
            for m in meters]  # fmt: skip
    mine = meter_register_block(rows, lo, hi)
    return [*_diff("meter_register.as_of", block.get("as_of"), mine["as_of"]),
            *_diff("meter_register.meters", block.get("meters"), mine["meters"])]  # fmt: skip


def _green(doc: Json, again: Json) -> list[Difference]:
    """The sheet made again from the recomputed report with the block's own entries."""
    block = doc["green"]
    entries = GreenEntries.model_validate(block.get("entries"))
    mine = green_block(again, entries, block.get("entered"))
    return [*_diff("green.error", block.get("error"), mine["error"]),
            *_diff("green.rows", block.get("rows"), mine["rows"])]  # fmt: skip


def _ghg(doc: Json, again: Json) -> list[Difference]:
    """The GHG report made again from the recomputed report with the block's own process
    emissions."""
    block = doc["ghg"]
    process = [ProcessEmission.model_validate(p) for p in block["process"]]
    mine = ghg_block(again, process, block.get("entered"))
    return [*_diff("ghg.error", block.get("error"), mine["error"]),
            *_diff("ghg.report", block.get("report"), mine["report"])]  # fmt: skip


def _count(name: str, block: Any) -> str:
    """What a block holds to compare, for the details: its results, meters, rows or
    sources."""
    key = {"targets": "results", "meter_register": "meters", "green": "rows"}.get(name)
    if key is None:  # ghg: its report's sources
        inner = block.get("report") if isinstance(block, Mapping) else None
        block, key = inner, "sources"
    items = block.get(key) if isinstance(block, Mapping) else None
    return f"{key}: {len(items)}" if isinstance(items, list) else f"{key}: none"


def _diff(where: str, claimed: Any, mine: Any) -> Iterator[Difference]:
    """Every leaf where the report's value is not the bundle's (numbers by `close`, as
    the figures are compared); rows with ids are matched by id, other lists by place."""
    if isinstance(claimed, Mapping) and isinstance(mine, Mapping):
        for k in [*mine, *(k for k in claimed if k not in mine)]:
            yield from _diff(f"{where}.{k}", claimed.get(k), mine.get(k))
        return
    if isinstance(claimed, list) and isinstance(mine, list):
        if _ids(claimed) is not None and _ids(mine) is not None:
            theirs = {str(x["id"]): x for x in claimed}
            ours = {str(x["id"]): x for x in mine}
            for rid in [*ours, *(x for x in theirs if x not in ours)]:
                c, m = theirs.get(rid), ours.get(rid)
                if c is None or m is None:
                    yield (f"{where}[{rid}]", "absent" if c is None else "present",
                           "absent" if m is None else "present")  # fmt: skip
                else:
                    yield from _diff(f"{where}[{rid}]", c, m)
            return
        if len(claimed) == len(mine):
            for i, (c, m) in enumerate(zip(claimed, mine, strict=True)):
                yield from _diff(f"{where}[{i}]", c, m)
            return
    if not close(claimed, mine):
        yield where, claimed, mine


def _ids(rows: list[Any]) -> list[str] | None:
    """The rows' ids when each row is an object with a distinct id, else None."""
    ids = [str(x["id"]) for x in rows if isinstance(x, Mapping) and "id" in x]
    return ids if len(ids) == len(rows) and len(set(ids)) == len(ids) else None
