"""The targets a registry enters, checked against the KPIs at `registry import`: each
names a KPI the engine computes (kpi/labels.py, a family's id filled in:
"consumption_water", "energy_per_unit_change") in that KPI's unit.

Here and not in the registry's model: repo/ sits below kpi/ and may not read its labels.
A unit the KPI takes from the data ("{units}" of a consumption, the output unit of a
"kgce/{output_unit}") is checked only in its fixed part; the target's evaluation against
a report's figure (evidence/targets.py) compares the filled unit.
"""

from __future__ import annotations

import re
import string

from ingest_server.kpi.labels import CARRIER_ZH, KPI_LABELS
from ingest_server.repo.registry_model import Registry

_FIELD = {"carrier": "|".join(CARRIER_ZH), "kpi": ".+"}


def _pattern(template: str, field_pattern: dict[str, str]) -> re.Pattern[str]:
    """A label's template as a regular expression: its fixed text literal, each field
    (`{carrier}`) the pattern `field_pattern` gives it (any text by default)."""
    parts = []
    for literal, field, _spec, _conv in string.Formatter().parse(template):
        parts.append(re.escape(literal))
        if field is not None:
            parts.append(f"(?:{field_pattern.get(field, '.+')})")
    return re.compile("".join(parts))


def kpi_unit(kpi: str) -> str | None:
    """The unit of a KPI id's figure as its label writes it ("kgce/{output_unit}"); None
    for an id that no KPI has. A change is of a KPI that is not itself a change."""
    for key, label in KPI_LABELS.items():
        if not _pattern(key, _FIELD).fullmatch(kpi):
            continue
        if key == "{kpi}_change":
            base = kpi.removesuffix("_change")
            if base.endswith("_change") or kpi_unit(base) is None:
                continue
        return label.unit
    return None


def target_problems(registry: Registry) -> list[str]:
    """Each target whose KPI no KPI id names, or whose unit is not that KPI's; [] if none."""
    out = []
    for ent in registry.enterprises:
        for i, t in enumerate(ent.targets):
            where = f"enterprises[{ent.id}].targets[{i}]"
            unit = kpi_unit(t.kpi)
            if unit is None:
                plain = sorted(k for k in KPI_LABELS if "{" not in k)
                out.append(
                    f"{where}.kpi: {t.kpi!r} is no KPI's id; use one of {', '.join(plain)}, "
                    "consumption_<carrier> or <kpi>_change (docs/kpi.md)"
                )
            elif not _pattern(unit, {}).fullmatch(t.unit):
                out.append(
                    f"{where}.unit: {t.unit!r} is not the unit of {t.kpi} ({unit}); give "
                    "the threshold in that unit"
                )
    return out
