"""A KPI as the engine computes it and a report document holds it: `Kpi`, a pydantic
model, and the report format's name and version (docs/kpi.md, "Report format").

The engine builds each `Kpi` by keyword, its labels from kpi/labels.py (`Kpi.of`), and
writes `Kpi.dump()` into the report document, which stays a plain dict: it is signed over
its RFC 8785 form, so the dump is exactly the entry the engine always wrote (every key,
None included, in this order; a count stays an int, a ratio a float), plus the Chinese of
its formula and note (`formula_zh`, `note_zh`: from kpi/labels.py, so a recomputation
writes them alike; verification compares figures, not texts, and reports made before them
lack them). The renderers
parse the entries of a document back into the model (`Kpi.model_validate`); documents
of older versions fill in what they lack from the defaults. `ratio`, `percent` and `mean`
are the arithmetic every KPI's figure shares: None where there is nothing to divide.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict

from ingest_server.kpi.labels import KPI_LABELS, KpiDef, Note

FORMAT = "factory-evidence.report"
FORMAT_VERSION = 1

# int | float, not float: pydantic would make a count of 5 the float 5.0, and the report
# writes the number as the engine computed it
Number = int | float


class Kpi(BaseModel):
    """One KPI: the figure, its labels, the ratio behind it and how much data it rests on.

    Strict: a document's figure that is not a JSON number (a string, true) is no KPI of
    this format, rather than one silently converted."""

    model_config = ConfigDict(frozen=True, strict=True)

    id: str
    name: str | None = None
    name_en: str | None = None
    value: Number | None = None
    unit: str | None = None
    formula: str | None = None
    formula_zh: str | None = None
    numerator: Number | None = None
    denominator: Number | None = None
    coverage: Number | None = None  # share of the planned time with data, 0..1
    note: str | None = ""
    note_zh: str | None = None  # None: a note in English only (a report made before zh)
    inputs: list[str] = []  # the ids of the equipment, processes or meters counted
    # how many of the samples behind `inputs` in the period came in batches their gateway
    # signed (contract v2): the share 0..1 and its two counts (kpi/attestation.py). All
    # None for a KPI that rests on no samples (the declared NC rate); `attested` None too
    # when its inputs delivered none. Reports made before these existed lack them.
    attested: Number | None = None
    samples: int | None = None
    samples_attested: int | None = None

    @classmethod
    def of(
        cls,
        key: str,
        *,
        value: Number | None,
        numerator: Number | None = None,
        denominator: Number | None = None,
        coverage: Number | None = None,
        note: Note | str = "",
        inputs: Iterable[str] = (),
        labels: dict[str, KpiDef] = KPI_LABELS,
        **fill: object,
    ) -> Kpi:
        """The KPI `key` of `labels` (a family's key filled in with `fill`), labelled; a
        `note` given as a plain string is English only (its `note_zh` None)."""
        d = labels[key].filled(**fill)
        en, zh = (note.en, note.zh) if isinstance(note, Note) else (note, None if note else "")
        return cls(
            id=key.format(**fill),
            name=d.name,
            name_en=d.name_en,
            value=value,
            unit=d.unit,
            formula=d.formula,
            formula_zh=d.formula_zh,
            numerator=numerator,
            denominator=denominator,
            coverage=coverage,
            note=en,
            note_zh=zh,
            inputs=sorted(inputs),
        )

    def dump(self) -> dict[str, Any]:
        """The KPI's entry in a report document."""
        return self.model_dump()


# -- the arithmetic of a figure ----------------------------------------------------------


def ratio(num: float, den: float) -> float | None:
    return num / den if den > 0 else None


def percent(x: float | None) -> float | None:
    return None if x is None else x * 100.0


def mean(xs: Iterable[float]) -> float | None:
    v = list(xs)
    return sum(v) / len(v) if v else None
