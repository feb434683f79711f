"""The `kpis` check's factors: factors.json against the tables the report signed, and
against the published tables this verifier knows (reference/factors.py).
"""

from __future__ import annotations

from typing import Any

from ingest_server.evidence.offline.kpi_check import KpiCheck
from ingest_server.reference.factors import EMISSION_TABLES, ENERGY_TABLES


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
