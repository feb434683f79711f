"""Each figure against its targets: met, not met, for reference only, or not comparable
(and why), how far from the threshold, with the programme and the source; pure.

    a report's KPI entries ─┐
    the built-in table ─────┼─ evaluate ─▶ one result per (KPI, target) ─▶ targets_block
    the enterprise's rows ──┘                                              (report "targets")

A target is held against the KPI of its id, in the report's figure as computed (not as
printed: 74.96 shown as "75.0%" does not exceed 75). The result is

- met / not_met: a target of scope "enterprise" whose comparison holds or not;
- reference: a target of scope "region" (a province's or the country's, reference/
  targets.py): the comparison and the difference are shown, no verdict;
- not_comparable, with the reason: no_kpi (the report has no KPI of that id: a change
  without a baseline, the other industry's NC rate), no_figure (the KPI has no value),
  unit_mismatch (the target's unit is not the KPI's: both are in the result).

`difference` is the figure minus the threshold in the KPI's unit; for a KPI in % that is
percentage points (`difference_unit` "pp").

The block is added to a report after `compute_report`, like `anchoring`: figure
comparison ignores it, and reports made before it carry none. `targets_problems`
re-evaluates a report's block from its own figures and the rows it cites, and checks a
built-in table it cites against the published one (evidence/verify.py).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from ingest_server.evidence.compare import close
from ingest_server.kpi.results import Kpi
from ingest_server.reference.targets import (
    TARGET_TABLES,
    TargetDef,
    TargetTable,
    target_table,
    targets_from_json,
)

Status = Literal["met", "not_met", "reference", "not_comparable"]
Reason = Literal["no_kpi", "no_figure", "unit_mismatch"]
Origin = Literal["built_in", "entered"]

_HOLDS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt,
}  # fmt: skip


class TargetResult(BaseModel):
    """One KPI against one target: the figure, the target row, the verdict, how far."""

    model_config = ConfigDict(frozen=True)

    kpi: str
    name: str | None = None
    name_en: str | None = None
    value: int | float | None = None
    unit: str | None = None  # the KPI's
    origin: Origin
    target: TargetDef
    status: Status
    holds: bool | None = None  # whether the comparison holds; None: not comparable
    difference: float | None = None  # value - threshold, in the KPI's unit
    difference_unit: str | None = None  # "pp" for a KPI in %
    reason: Reason | None = None  # why not comparable


KpiEntry = Kpi | Mapping[str, Any]


def _figure(v: object) -> float | int | None:
    """A number, or None (a tampered entry's string or bool is no figure)."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return v


def evaluate_one(
    target: TargetDef, entry: Mapping[str, Any] | None, origin: Origin
) -> TargetResult:
    """`target` against the KPI entry of its id (None: the report has none)."""
    if entry is None:
        return TargetResult(
            kpi=target.kpi, origin=origin, target=target, status="not_comparable", reason="no_kpi"
        )
    unit, value = entry.get("unit"), _figure(entry.get("value"))

    def result(
        status: Status,
        reason: Reason | None = None,
        holds: bool | None = None,
        difference: float | None = None,
        difference_unit: str | None = None,
    ) -> TargetResult:
        return TargetResult(
            kpi=target.kpi,
            name=entry.get("name"),
            name_en=entry.get("name_en"),
            value=value,
            unit=unit,
            origin=origin,
            target=target,
            status=status,
            holds=holds,
            difference=difference,
            difference_unit=difference_unit,
            reason=reason,
        )

    if (unit or "").strip() != target.unit.strip():
        return result("not_comparable", "unit_mismatch")
    if value is None:
        return result("not_comparable", "no_figure")
    holds = _HOLDS[target.comparison](value, target.threshold)
    if target.scope == "region":
        status: Status = "reference"
    else:
        status = "met" if holds else "not_met"
    in_pp = target.unit.strip() == "%"
    return result(
        status, holds=holds, difference=value - target.threshold,
        difference_unit="pp" if in_pp else target.unit,
    )  # fmt: skip


def evaluate(
    kpis: Iterable[KpiEntry], table: TargetTable, entered: Sequence[TargetDef] = ()
) -> list[TargetResult]:
    """Every target of the table, then every one the enterprise entered, against the
    report's KPI of its id, in that order."""
    by_id: dict[str, Mapping[str, Any]] = {}
    for k in kpis:
        entry = k.dump() if isinstance(k, Kpi) else k
        by_id.setdefault(str(entry.get("id")), entry)
    rows: list[tuple[TargetDef, Origin]] = [(t, "built_in") for t in table.rows]
    rows += [(t, "entered") for t in entered]
    return [evaluate_one(t, by_id.get(t.kpi), origin) for t, origin in rows]


def targets_block(
    kpis: Iterable[KpiEntry],
    table: TargetTable | None = None,
    *,
    entered: Sequence[TargetDef] = (),
) -> dict[str, Any]:
    """A report's `targets`: the built-in table it cites (version, title, every row), the
    targets the enterprise entered (`entered`: repo's enterprise_targets), and each
    KPI's result against each of them."""
    table = table or target_table()
    return {
        **table.as_json(),
        "entered": [t.model_dump(mode="json") for t in entered],
        "results": [r.model_dump(mode="json") for r in evaluate(kpis, table, entered)],
    }


def results_of(block: object) -> list[TargetResult]:
    """A report's target results as `TargetResult`s, for the renderings; [] for a report
    without a block. A result that does not fit is refused, naming it."""
    if not isinstance(block, Mapping):
        return []
    out = []
    for i, r in enumerate(block.get("results") or []):
        try:
            out.append(TargetResult.model_validate(r))
        except ValidationError as exc:
            raise ValueError(
                f"targets.results[{i}] is no target result: {exc.errors()[0]['msg']}"
            ) from None
    return out


def targets_problems(doc: Mapping[str, Any]) -> list[str]:
    """What in a report's `targets` block its own figures and rows contradict: a result
    that re-evaluates otherwise, a built-in table that differs from the published one of
    its version. [] for a report without a block (made before it existed)."""
    block = doc.get("targets")
    if block is None:
        return []
    if not isinstance(block, Mapping) or not all(
        isinstance(block.get(k), list) for k in ("rows", "entered", "results")
    ):
        return ["targets: not an object with lists rows, entered and results"]
    rows = [("rows", i, t) for i, t in enumerate(block["rows"])]
    rows += [("entered", i, t) for i, t in enumerate(block["entered"])]
    for where, i, t in rows:
        try:
            TargetDef.model_validate(t)
        except ValidationError as exc:
            return [f"targets: {where}[{i}] is no target ({_first_error(exc)})"]
    table = targets_from_json(
        {"version": block.get("version"), "title": block.get("title"), "rows": block["rows"]}
    )
    entered = [TargetDef.model_validate(t) for t in block["entered"]]
    out = []
    published = TARGET_TABLES.get(table.version)
    if published is not None and published != table:
        out.append(
            f"targets: the table {table.version} in the report differs from the published one"
        )
    again = [r.model_dump(mode="json") for r in evaluate(_kpi_entries(doc), table, entered)]
    claimed = block["results"]
    if len(claimed) != len(again):
        out.append(f"targets: {len(claimed)} results in the report, its rows give {len(again)}")
    for i, (c, a) in enumerate(zip(claimed, again, strict=False)):
        if not isinstance(c, Mapping):
            out.append(f"targets: result {i} is not an object")
            continue
        t = a["target"]
        what = f"targets: result {i} ({t['kpi']} {t['comparison']} {t['threshold']} {t['unit']})"
        out.extend(
            f"{what}: {key} {c.get(key)!r} in the report, {a[key]!r} re-evaluated"
            for key in ("kpi", "status", "holds", "value", "difference", "reason")
            if not _same(c.get(key), a[key])
        )
        mine = c.get("target")
        mine = mine if isinstance(mine, Mapping) else {}
        out.extend(
            f"{what}: the result's target has {field} {mine.get(field)!r}, the rows {v!r}"
            for field, v in t.items()
            if not _same(mine.get(field), v)
        )
    return out


def _kpi_entries(doc: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    kpis = doc.get("kpis")
    return [k for k in kpis if isinstance(k, Mapping)] if isinstance(kpis, list) else []


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return close(a, b)


def _first_error(exc: ValidationError) -> str:
    e = exc.errors()[0]
    return f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}"
