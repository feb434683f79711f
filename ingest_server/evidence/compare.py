"""Claimed against recomputed, figure by figure, pure: every KPI (with its gateway-signed
share), equipment figure, meter figure and the samples by gateway and origin of a report,
against the same report recomputed. The server's `verify` (evidence/verify.py) recomputes
from the database's raw samples, the offline verifier from a bundle's; both compare here,
with one tolerance (`close`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class Check:
    item: str
    claimed: Any
    recomputed: Any
    ok: bool


def close(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return bool(a == b)
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-6)
    return bool(a == b)


_EQUIPMENT_FIELDS = (
    "coverage", "delivered_data", "nc_measured", "availability", "effectiveness",
    "quality_ratio", "oee", "utilisation", "mtbf_s", "mttr_s", "down_events",
)  # fmt: skip
_METER_FIELDS = ("quantity", "coverage", "rollovers", "resets", "tce", "tco2")


def compare(claimed: dict[str, Any], again: dict[str, Any]) -> Iterator[Check]:
    """Every KPI (with its gateway-signed share), equipment figure, meter figure and the
    samples by gateway and origin: claimed vs recomputed.

    The claimed document is read as it is, entry by entry, not parsed into `Kpi`: a
    figure that is not a number (tampered, or written by another program) is a mismatch
    to report with the value it holds, not a document to refuse or a value to convert."""
    yield from _compare_kpis(claimed["kpis"], again["kpis"])
    for section, fields, extra in (
        ("equipment", _EQUIPMENT_FIELDS, ("parts", "time")),
        ("meters", _METER_FIELDS, ()),
    ):
        mine = {x["id"]: x for x in again[section]}
        for x in claimed[section]:
            y = mine.pop(x["id"], None)
            if y is None:
                yield Check(f"{section} {x['id']}", "present", "absent", False)
                continue
            for f in fields:
                if not close(x.get(f), y.get(f)):
                    yield Check(f"{section} {x['id']} {f}", x.get(f), y.get(f), False)
            for sub in extra:
                a, b = x.get(sub) or {}, y.get(sub) or {}
                for f in sorted(set(a) | set(b)):
                    if not close(a.get(f), b.get(f)):
                        yield Check(f"{section} {x['id']} {sub}.{f}", a.get(f), b.get(f), False)
        for extra_id in mine:
            yield Check(f"{section} {extra_id}", "absent", "present", False)
    if "attestation" in claimed:  # reports made before it have none: nothing claimed
        yield from _compare_origin(claimed["attestation"], again["attestation"])


def _compare_kpis(claimed: list[Any], again: list[dict[str, Any]]) -> Iterator[Check]:
    """A check per KPI (its value); one more per differing gateway-signed figure."""
    got = {k["id"]: k for k in again}
    for k in claimed:
        r = got.pop(k["id"], None)
        value = None if r is None else r["value"]
        yield Check(f"kpi {k['id']}", k["value"], value, r is not None and close(k["value"], value))
        if r is not None:
            yield from _differing(f"kpi {k['id']}", k, r, _ATTESTED_FIELDS)
    for kid in got:
        yield Check(f"kpi {kid}", None, got[kid]["value"], False)


# a KPI's gateway-signed share and its counts, compared where the report states them
_ATTESTED_FIELDS = ("attested", "samples", "samples_attested")
_ORIGIN_FIELDS = ("samples", "attested", "not_attested", "share")


def _differing(
    item: str, claimed: Any, again: dict[str, Any], fields: tuple[str, ...]
) -> Iterator[Check]:
    """A check for each of `fields` the claim states and the recomputation differs in."""
    if not isinstance(claimed, dict):
        yield Check(item, claimed, "an object", False)
        return
    for f in fields:
        if f in claimed and not close(claimed[f], again.get(f)):
            yield Check(f"{item} {f}", claimed[f], again.get(f), False)


def _compare_origin(claimed: Any, again: dict[str, Any]) -> Iterator[Check]:
    """The report's samples by gateway and origin against the raw samples now. A
    gateway's `contract` is not compared: it is the registry's at issue, and a gateway
    enrolled for v2 since then does not make the report's counts wrong."""
    yield from _differing("attestation", claimed, again, ("samples", "attested", "share"))
    if not isinstance(claimed, dict):
        return
    entries = claimed.get("gateways")
    mine = {(g["site"], g["gateway"]): g for g in again["gateways"]}
    for g in entries if isinstance(entries, list) else []:
        key = (g.get("site"), g.get("gateway")) if isinstance(g, dict) else (None, str(g))
        name = f"attestation gateway {key[0]}/{key[1]}"
        y = mine.pop(key, None)
        if y is None:
            yield Check(name, "present", "absent", False)
            continue
        yield from _differing(name, g, y, _ORIGIN_FIELDS)
    for site, gw in mine:
        yield Check(f"attestation gateway {site}/{gw}", "absent", "present", False)
