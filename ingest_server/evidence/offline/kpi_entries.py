"""The `kpis` check's production entries: production.json against the entries the report
used (each one the report's, with its figures; none entered after it read them).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from ingest_server.evidence.offline.kpi_check import KpiCheck, _day, _when


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
